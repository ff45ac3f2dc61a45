//! One lookup: read, [`decide`], and serve, join or start an upstream call.
//!
//! The first poll does everything that needs no waiting — a read from a
//! store that answers at once, fresh and stale hits — without building any
//! further future; only a store read that must be awaited or an upstream call
//! to wait for continues in a boxed future.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::future::Future;
use core::pin::{pin, Pin};
use core::task::Poll;
use core::time::Duration;

use futures::future::{poll_fn, select, Either};

use super::admission::{admit_fetch, admit_refresh, Admission};
use super::cached::Cached;
use super::config::checked_ttl;
use super::decide::{decide, Decision};
use super::shared::Shared;
use super::task::{self, Call, Job};
use crate::bytes::Bytes;
use crate::detail::Detail;
use crate::entry::{CacheTtl, Entry};
use crate::error::{CodecError, Error};
use crate::flight::Flight;
use crate::marks::Mark;
use crate::phase::Status;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::{MaybeSend, MaybeSync};

/// Turns a stored entry's value into the caller's value; an entry that
/// fails to decode is treated as absent. It may move the bytes out (bytes
/// lookups do, to avoid a second reference-count bump); the entry keeps its
/// times.
pub(crate) trait Decode<V> {
    /// Whether a fresh hit reads the value where it lies
    /// (`Storage::peek_ready`) rather than from a copy of the entry.
    const PEEK: bool = false;

    /// The caller's value from the entry's bytes.
    fn decode(&self, bytes: &mut Bytes) -> Result<V, CodecError>;
}

impl<V, D: Fn(&mut Bytes) -> Result<V, CodecError>> Decode<V> for D {
    #[inline(always)]
    fn decode(&self, bytes: &mut Bytes) -> Result<V, CodecError> {
        self(bytes)
    }
}

/// A bytes lookup's decode: the bytes moved out of the entry, no second
/// reference-count bump. Its fresh hits read the entry where it lies: 255
/// instructions a hit against 287 from a copy. Typed lookups do not: their
/// decode is a call, and the first poll with both paths grew too large to
/// be inlined into the caller's future (495 against 420).
pub(crate) struct TakeBytes;

impl Decode<Bytes> for TakeBytes {
    const PEEK: bool = true;

    #[inline(always)]
    fn decode(&self, bytes: &mut Bytes) -> Result<Bytes, CodecError> {
        Ok(core::mem::take(bytes))
    }
}

/// The lookup of `key`: `job` is the upstream call producing the bytes to
/// store, `ttl` the TTL the caller chose, if any.
pub(crate) fn lookup<'a, S, R, C, K, J, V, D>(
    shared: &'a Arc<Shared<S, R, C>>,
    key: K,
    ttl: Option<CacheTtl>,
    job: J,
    decode: D,
) -> impl Future<Output = Result<Cached<V>, Error>> + 'a
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    K: AsRef<str> + 'a,
    J: Job,
    D: Decode<V> + 'a,
    V: 'a,
{
    let mut start = Some((job, decode));
    let mut waiting = None;
    poll_fn(move |cx| {
        if let Some((job, decode)) = start.take() {
            match begin(shared, key.as_ref(), ttl, job, decode) {
                Begun::Done(result) => return Poll::Ready(result),
                Begun::Waiting(rest) => waiting = Some(rest),
            }
        }
        let Some(rest) = waiting.as_mut() else {
            // Polled again after completing: stay pending, never panic.
            return Poll::Pending;
        };
        let result = rest.as_mut().poll(cx);
        if result.is_ready() {
            waiting = None;
        }
        result
    })
}

/// A lookup's first poll: answered, or continuing in a boxed future.
enum Begun<V, F> {
    Done(Result<Cached<V>, Error>),
    Waiting(Pin<Box<F>>),
}

/// A stored value a lookup can serve at once, with the status it is served with.
struct Found<'e, V> {
    value: V,
    status: Status,
    entry: &'e Entry,
}

/// What a lookup still has to wait for.
enum Pending<V, J> {
    /// A read from a store that cannot answer at once.
    Read(J),
    /// An upstream call.
    Upstream(Wait<V, J>),
}

/// What a lookup could answer at once, or what it must wait for.
enum Served<V, J> {
    Now(Result<Cached<V>, Error>),
    Later(Wait<V, J>),
    /// A tagged entry whose tags' records must be awaited: read again.
    Read(J),
}

/// A lookup that needs an upstream call.
enum Wait<V, J> {
    /// Expired (revalidate mode): wait, and fall back to `value` on failure.
    Revalidate { job: J, value: V, entry: Entry },
    /// Nothing usable: wait for the value. `seen` is what storage held, if
    /// anything (an undecodable or gone entry).
    Fetch { job: J, seen: Option<Entry> },
}

#[inline(always)]
fn begin<'a, S, R, C, J, V, D>(
    shared: &'a Arc<Shared<S, R, C>>,
    key: &str,
    ttl: Option<CacheTtl>,
    job: J,
    decode: D,
) -> Begun<V, impl Future<Output = Result<Cached<V>, Error>> + 'a>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
    D: Decode<V> + 'a,
    V: 'a,
{
    if let Err(e) = shared.check_key(key) {
        shared.record_error(&e);
        return Begun::Done(Err(e));
    }
    if ttl.is_some() {
        if let Err(e) = checked_ttl(ttl) {
            shared.record_error(&e);
            return Begun::Done(Err(e));
        }
    }
    let now = shared.now();
    let ready = if D::PEEK {
        // A fresh hit of an untagged entry is read where it lies: the value
        // (one reference-count bump) and its times, no copy of the entry,
        // which cost a bytes hit about 30 instructions. Anything else is
        // copied out and goes on below.
        let plain = shared.cfg().early_refresh.is_none();
        let mode = shared.cfg().expired_mode;
        let peeked = shared.storage().peek_ready(key, |entry| {
            if plain && entry.tags.is_empty() && decide(Some(entry), now, mode) == Decision::Serve {
                Ok(Cached::new(entry.value.clone(), Status::Hit, entry, now))
            } else {
                Err(entry.clone())
            }
        });
        match peeked {
            Some(Ok(Some(Ok(mut hit)))) => {
                if let Ok(value) = decode.decode(&mut hit.value) {
                    shared.record_status(Status::Hit);
                    return Begun::Done(Ok(hit.map(|_| value)));
                }
                // Undecodable (rare): read again, counted below.
                shared
                    .storage()
                    .get_ready(key)
                    .map(|r| shared.degrade_read(r))
            }
            Some(Ok(Some(Err(entry)))) => Some(Some(entry)),
            Some(Ok(None)) => Some(None),
            Some(Err(e)) => Some(shared.degrade_read(Err(e))),
            None => None,
        }
    } else {
        shared
            .storage()
            .get_ready(key)
            .map(|r| shared.degrade_read(r))
    };
    let pending = match ready {
        Some(mut stored) => {
            // Fresh and stale hits answer here, on a short path of their
            // own: through `serve_at_once` the result takes more moves,
            // which made a fresh hit cost half as much again. The other
            // decisions, and values that fail to decode, go on below.
            if let Some(entry) = stored.as_mut() {
                match decide(Some(entry), now, shared.cfg().expired_mode) {
                    // Tagged entries go on below, where their tags are checked.
                    Decision::Serve if entry.tags.is_empty() => {
                        if let Ok(value) = decode.decode(&mut entry.value) {
                            shared.record_status(Status::Hit);
                            if shared.cfg().early_refresh.is_some() {
                                let cached = hit_with_early_refresh(
                                    shared, key, ttl, job, value, entry, now,
                                );
                                return Begun::Done(Ok(cached));
                            }
                            return Begun::Done(Ok(Cached::new(value, Status::Hit, entry, now)));
                        }
                    }
                    Decision::ServeAndRefresh(status) if entry.tags.is_empty() => {
                        if let Ok(value) = decode.decode(&mut entry.value) {
                            // The refresh this entry's stale hits started is
                            // still running: the common case, answered
                            // without the flight table (see `marks.rs`).
                            let marks = shared.flights().marks();
                            let mark = marks.state(marks.tag(key, entry.created_at), now);
                            if mark != Mark::None {
                                shared.record_status(status);
                                let cached = Cached::new(value, status, entry, now);
                                return Begun::Done(Ok(if mark == Mark::Throttled {
                                    bump(&shared.counters().throttled);
                                    cached.with_detail(Detail::Throttled)
                                } else {
                                    cached
                                }));
                            }
                            let found = Found {
                                value,
                                status,
                                entry,
                            };
                            let cached =
                                serve_and_refresh(shared, key, ttl, job, &decode, found, now);
                            shared.record_status(cached.status);
                            return Begun::Done(Ok(cached));
                        }
                    }
                    _ => {}
                }
            }
            match serve_rest(shared, key, ttl, job, &decode, stored, now) {
                Served::Now(result) => {
                    shared.record(&result, |c| c.status);
                    return Begun::Done(result);
                }
                Served::Later(wait) => Pending::Upstream(wait),
                Served::Read(job) => Pending::Read(job),
            }
        }
        None => Pending::Read(job),
    };
    let key = Box::from(key);
    Begun::Waiting(Box::pin(finish(shared, key, ttl, decode, pending, now)))
}

/// A tagged entry as its tags leave it (see `tag_epochs.rs`), if the store
/// answers for its tags' records at once; `false` if they must be awaited.
/// Out of line: untagged entries pay one test.
#[cold]
#[inline(never)]
fn resolve_tags_now<S, R, C>(shared: &Shared<S, R, C>, stored: &mut Option<Entry>, now: u64) -> bool
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    let Some(entry) = stored.take() else {
        return true;
    };
    match shared.tags_ready(&entry.tags, now) {
        Some(state) => {
            *stored = state.apply(entry, now);
            true
        }
        None => false,
    }
}

/// The rest of a lookup that has to wait: for a store read, then (if
/// needed) for an upstream call.
async fn finish<S, R, C, J, V, D>(
    shared: &Arc<Shared<S, R, C>>,
    key: Box<str>,
    ttl: Option<CacheTtl>,
    decode: D,
    pending: Pending<V, J>,
    now: u64,
) -> Result<Cached<V>, Error>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
    D: Decode<V>,
{
    let key = &*key;
    let (wait, now) = match pending {
        Pending::Upstream(wait) => (wait, now),
        Pending::Read(job) => {
            let stored = shared.read(key).await;
            let now = shared.now();
            // Read with its tags checked.
            match serve_at_once(shared, key, ttl, job, &decode, stored, now, true) {
                Served::Now(result) => {
                    shared.record(&result, |c| c.status);
                    return result;
                }
                Served::Later(wait) => (wait, now),
                // Not returned when the tags were checked; were it, the
                // caller would fetch.
                Served::Read(job) => (Wait::Fetch { job, seen: None }, now),
            }
        }
    };
    let result = serve_after_upstream(shared, key, ttl, &decode, wait, now).await;
    shared.record(&result, |c| c.status);
    result
}

/// What a stored entry gives a lookup: the phase table's decision and the
/// decoded value, or `None` when it is gone or does not decode (counted).
pub(crate) fn usable<S, R, C, V, D>(
    shared: &Shared<S, R, C>,
    stored: Option<&mut Entry>,
    decode: &D,
    now: u64,
) -> Option<(Decision, V)>
where
    D: Decode<V>,
{
    let entry = stored?;
    match decide(Some(entry), now, shared.cfg().expired_mode) {
        Decision::Fetch => None,
        decision => match decode.decode(&mut entry.value) {
            Ok(value) => Some((decision, value)),
            Err(_) => {
                bump(&shared.counters().decode_errors);
                None
            }
        },
    }
}

/// [`serve_at_once`] for the first poll: what its short paths left (tagged
/// entries, expired ones, misses, values that failed to decode). Out of
/// line: inlined, it made the first poll too large to be inlined into its
/// caller, which cost a typed fresh hit about 80 instructions (cachegrind,
/// `hitloop typed`).
#[inline(never)]
fn serve_rest<S, R, C, J, V, D>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    ttl: Option<CacheTtl>,
    job: J,
    decode: &D,
    stored: Option<Entry>,
    now: u64,
) -> Served<V, J>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
    D: Decode<V>,
{
    serve_at_once(shared, key, ttl, job, decode, stored, now, false)
}

/// Everything a lookup can answer without waiting: fresh hits, values served
/// while a background refresh starts, remembered errors. The rest needs an
/// upstream call.
// One more argument than clippy likes: bundling them moved the fresh-hit
// path's code about and cost it instructions (see BENCHMARKS.md).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn serve_at_once<S, R, C, J, V, D>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    ttl: Option<CacheTtl>,
    job: J,
    decode: &D,
    mut stored: Option<Entry>,
    now: u64,
    tags_checked: bool,
) -> Served<V, J>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
    D: Decode<V>,
{
    if !tags_checked
        && stored.as_ref().is_some_and(|e| !e.tags.is_empty())
        && !resolve_tags_now(shared, &mut stored, now)
    {
        // A record must be awaited: the whole read is.
        return Served::Read(job);
    }
    let usable = usable(shared, stored.as_mut(), decode, now);
    match (usable, stored) {
        (Some((Decision::Serve, value)), Some(entry)) => {
            if shared.cfg().early_refresh.is_some() {
                let cached = hit_with_early_refresh(shared, key, ttl, job, value, &entry, now);
                return Served::Now(Ok(cached));
            }
            Served::Now(Ok(Cached::new(value, Status::Hit, &entry, now)))
        }
        (Some((Decision::ServeAndRefresh(status), value)), Some(entry)) => {
            let found = Found {
                value,
                status,
                entry: &entry,
            };
            Served::Now(Ok(serve_and_refresh(
                shared, key, ttl, job, decode, found, now,
            )))
        }
        (Some((_, value)), Some(entry)) => {
            // Its last refresh failed a moment ago: the old value, no call
            // (the fail-safe throttle).
            if shared.throttle().until(key, now).is_some() {
                bump(&shared.counters().throttled);
                let cached = Cached::new(value, Status::Fallback, &entry, now);
                return Served::Now(Ok(cached.with_detail(Detail::Throttled)));
            }
            Served::Later(Wait::Revalidate { job, value, entry })
        }
        (_, stored) => {
            if shared.cfg().negative_ttl.is_some() {
                if let Some(e) = shared.negatives().get(key, now) {
                    bump(&shared.counters().negative_hits);
                    return Served::Now(Err(e));
                }
            }
            Served::Later(Wait::Fetch { job, seen: stored })
        }
    }
}

/// A value served at once (stale, or expired in `ServeStale` mode) while a
/// background refresh starts or runs. A value that refresh already fetched
/// and not yet stored is served instead: no caller is handed a value older
/// than one already handed out ("the latest write wins").
///
/// Not inlined: inlined into the first poll, the stale branch changes how
/// the fresh-hit path around it is compiled (callgrind, `hitloop`: 8 more
/// instructions per fresh hit inlined with these arguments, 4 called).
#[inline(never)]
fn serve_and_refresh<S, R, C, J, V, D>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    ttl: Option<CacheTtl>,
    job: J,
    decode: &D,
    found: Found<'_, V>,
    now: u64,
) -> Cached<V>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
    D: Decode<V>,
{
    let (newer, detail, _) = refresh_in_background(shared, key, ttl, job, found.entry, now);
    if let Some(mut newer) = newer {
        if let Ok(v) = decode.decode(&mut newer.value) {
            return Cached::new(v, Status::Hit, &newer, now);
        }
    }
    Cached::new(found.value, found.status, found.entry, now).with_detail(detail)
}

/// A fresh hit with early refresh on: the hit, and the early refresh if it
/// is due and this hit started it ([`Detail::EarlyRefresh`]). Off the
/// fresh-hit path proper: with early refresh off a hit pays one branch.
#[cold]
#[inline(never)]
fn hit_with_early_refresh<S, R, C, J, V>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    ttl: Option<CacheTtl>,
    job: J,
    value: V,
    entry: &Entry,
    now: u64,
) -> Cached<V>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
{
    let cached = Cached::new(value, Status::Hit, entry, now);
    match shared.cfg().early_refresh {
        Some(early) if early.is_due(entry, now, shared.random()) => {
            let detail = refresh_early(shared, key, ttl, job, entry, now);
            cached.with_detail(detail)
        }
        _ => cached,
    }
}

/// A fresh hit's early refresh: started unless one is running or none may
/// start; [`Detail::EarlyRefresh`] when this hit started it.
fn refresh_early<S, R, C, J>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    ttl: Option<CacheTtl>,
    job: J,
    seen: &Entry,
    now: u64,
) -> Detail
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
{
    let marks = shared.flights().marks();
    if marks.state(marks.tag(key, seen.created_at), now) != Mark::None
        || shared.throttle().until(key, now).is_some()
    {
        return Detail::None;
    }
    match refresh_in_background(shared, key, ttl, job, seen, now) {
        (_, _, true) => {
            bump(&shared.counters().early_refreshes);
            Detail::EarlyRefresh
        }
        _ => Detail::None,
    }
}

/// Starts a background refresh of `key` unless one is running or none may
/// start ("bounded refresh", "breaker guards upstream only", "shutdown is
/// final", the fail-safe throttle). Returns the value of a refresh that has
/// completed but not yet stored it, why none started if none did, and
/// whether this call started one.
fn refresh_in_background<S, R, C, J>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    ttl: Option<CacheTtl>,
    job: J,
    seen: &Entry,
    now: u64,
) -> (Option<Entry>, Detail, bool)
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
{
    // The lookup found no mark of a running refresh (see `marks.rs`): ask
    // the flight table, and mark the refresh this starts.
    let marks = shared.flights().marks();
    let mark = marks.tag(key, seen.created_at);
    if let Some(value) = shared.flights().running_value(key, now) {
        return (value, Detail::None, false);
    }
    if let Some(until) = shared.throttle().until(key, now) {
        marks.mark_throttled(mark, until);
        bump(&shared.counters().throttled);
        return (None, Detail::Throttled, false);
    }
    match admit_refresh(shared, key, now, mark) {
        Ok(Admission::Started(ticket)) => {
            let seen = Some(seen.clone());
            let started = task::FetchStart::now(shared);
            task::spawn(
                ticket,
                Call {
                    job,
                    ttl,
                    seen,
                    started,
                },
            );
            (None, Detail::None, true)
        }
        Ok(Admission::Joined(flight)) => (flight.completed_value(), Detail::None, false),
        Err(why) => (None, why, false),
    }
}

/// The lookups that wait for an upstream call: expired (revalidate) and gone.
async fn serve_after_upstream<S, R, C, J, V, D>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    ttl: Option<CacheTtl>,
    decode: &D,
    wait: Wait<V, J>,
    now: u64,
) -> Result<Cached<V>, Error>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
    D: Decode<V>,
{
    let (result, fallback) = match wait {
        Wait::Revalidate { job, value, entry } => {
            let call = Call {
                job,
                ttl,
                seen: Some(entry.clone()),
                started: task::FetchStart::now(shared),
            };
            let mut fetch = pin!(fetch_shared(shared, key, call, false, now));
            // The soft timeout: past it the caller gets the old value, and
            // the call runs on in its task to the hard deadline, storing
            // what it fetches. Not past `expires_at`: then it waits on.
            let result = match shared.cfg().soft_timeout {
                Some(soft) => {
                    let sleep = pin!(shared.runtime().sleep(soft));
                    match select(fetch.as_mut(), sleep).await {
                        Either::Left((result, _)) => result,
                        Either::Right(((), _)) => {
                            let now = shared.now();
                            if now < entry.expires_at {
                                bump(&shared.counters().soft_timeouts);
                                let cached = Cached::new(value, Status::Fallback, &entry, now);
                                return Ok(cached.with_detail(Detail::SoftTimeout));
                            }
                            fetch.await
                        }
                    }
                }
                None => fetch.await,
            };
            (result, Some((value, entry)))
        }
        Wait::Fetch { job, seen } => {
            let started = task::FetchStart::now(shared);
            let call = Call {
                job,
                ttl,
                seen,
                started,
            };
            (fetch_shared(shared, key, call, true, now).await, None)
        }
    };
    match (result, fallback) {
        (Ok((mut newer, status)), _) => {
            let v = decode.decode(&mut newer.value).map_err(Error::Codec)?;
            Ok(Cached::new(v, status, &newer, shared.now()))
        }
        // "Nothing is served past `expires_at`": the wait may have outlived it.
        (Err(e), Some((value, entry))) => {
            let now = shared.now();
            if now < entry.expires_at {
                let cached = Cached::new(value, Status::Fallback, &entry, now);
                Ok(cached.with_detail(Detail::of_failure(&e)))
            } else {
                Err(e)
            }
        }
        (Err(e), None) => Err(e),
    }
}

/// Waits for the upstream call for `key`, joining a running one or starting
/// one ("one call per key"). `remember_error`: the caller has no usable
/// value, so a failure may be remembered ("errors can be remembered").
///
/// The status is `Miss` when the caller waited for an upstream call, and
/// `Hit` when the value was already there: a call that had completed before
/// this caller joined it, or an entry another call had just stored.
async fn fetch_shared<S, R, C, J>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    call: Call<J>,
    remember_error: bool,
    now: u64,
) -> Result<(Entry, Status), Error>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
{
    match admit_fetch(shared, key, remember_error, now)? {
        Admission::Started(ticket) => {
            let flight = ticket.flight().clone();
            task::spawn(ticket, call);
            wait_for(shared, &flight, now).await
        }
        Admission::Joined(flight) => {
            if let Some(done) = flight.completed_value() {
                return Ok((done, Status::Hit));
            }
            wait_for(shared, &flight, now).await
        }
    }
}

/// Waits for `flight`'s result, on a timer, until the flight's deadline: a
/// flight whose task is never polled again cannot leave its waiters hanging
/// ("one deadline per call"; "timeouts come from timers").
pub(crate) async fn wait_for<S, R, C>(
    shared: &Shared<S, R, C>,
    flight: &Arc<Flight>,
    now: u64,
) -> Result<(Entry, Status), Error>
where
    R: Runtime,
{
    let timeout = shared.cfg().refresh_timeout;
    let left = Duration::from_millis(flight.deadline_ms().saturating_sub(now)).min(timeout);
    let result = pin!(flight.wait());
    let sleep = pin!(shared.runtime().sleep(left));
    match select(result, sleep).await {
        Either::Left((result, _)) => {
            let status = if flight.came_from_storage() {
                Status::Hit
            } else {
                Status::Miss
            };
            result.map(|e| (e, status))
        }
        Either::Right(_) => Err(Error::Timeout { after: timeout }),
    }
}
