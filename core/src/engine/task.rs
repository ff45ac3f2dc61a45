//! The spawned upstream call: re-read, lease, fetch, store — every step under
//! the call's one deadline and the shutdown latch ("one deadline per call",
//! "shutdown is final"). What the call holds is owned by its [`Ticket`].

use core::future::Future;
use core::pin::{pin, Pin};
use core::time::Duration;

use futures::future::{select, Either};

use super::ticket::{Kind, Ticket};
use crate::bytes::Bytes;
use crate::entry::{CacheTtl, Entry};
use crate::error::Error;
use crate::error::StorageError;
use crate::log::event_warn;
use crate::metrics::{StorageOp, UpstreamOutcome};
use crate::phase::Phase;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::{MaybeSend, MaybeSync};
use crate::tags::fence::Change;
use crate::tags::{TagNames, Tags};
use crate::trace::{CallEnd, CallSpan};
use crate::wait::Latch;

/// What an upstream call produced: a value (or "not modified"), the TTL
/// and tags the fetch chose for it, and whether to store it.
pub(crate) struct Produced {
    pub(crate) value: Option<Bytes>,
    pub(crate) ttl: Option<CacheTtl>,
    /// `None`: the call chose none, and the entry keeps the tags of the one
    /// it replaces (as a pinned TTL sticks).
    pub(crate) tags: Option<TagNames>,
    pub(crate) store: bool,
}

impl Produced {
    fn bytes(r: Result<Bytes, Error>) -> Result<Produced, Error> {
        r.map(|v| Produced {
            value: Some(v),
            ttl: None,
            tags: None,
            store: true,
        })
    }
}

/// An upstream call as the engine runs it: called once, in a spawned task,
/// with what the store held, producing what to store.
pub(crate) trait Job: MaybeSend + 'static {
    /// Starts the call.
    fn call(
        self,
        seen: Option<&Entry>,
    ) -> impl Future<Output = Result<Produced, Error>> + MaybeSend + 'static;
}

impl<F, Fut> Job for F
where
    F: FnOnce() -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
{
    fn call(
        self,
        _: Option<&Entry>,
    ) -> impl Future<Output = Result<Produced, Error>> + MaybeSend + 'static {
        futures::FutureExt::map(self(), Produced::bytes as fn(_) -> _)
    }
}

/// A fetch that takes a [`FetchContext`](super::fetch::FetchContext).
pub(crate) struct WithContext<F>(pub(crate) F);

impl<F, Fut> Job for WithContext<F>
where
    F: FnOnce(super::fetch::FetchContext) -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<Produced, Error>> + MaybeSend + 'static,
{
    fn call(
        self,
        seen: Option<&Entry>,
    ) -> impl Future<Output = Result<Produced, Error>> + MaybeSend + 'static {
        (self.0)(super::fetch::FetchContext::of(seen))
    }
}

/// A call made with per-call options: with tags (`CallOptions::tags`), the
/// value is stored with them unless the fetch chose its own.
pub(crate) struct Tagged<J> {
    pub(crate) job: J,
    pub(crate) tags: Option<TagNames>,
}

impl<J: Job> Job for Tagged<J> {
    fn call(
        self,
        seen: Option<&Entry>,
    ) -> impl Future<Output = Result<Produced, Error>> + MaybeSend + 'static {
        let fut = self.job.call(seen);
        let tags = self.tags;
        async move {
            let mut produced = fut.await?;
            if let Some(tags) = tags {
                produced.tags.get_or_insert(tags);
            }
            Ok(produced)
        }
    }
}

/// What a spawned call needs besides its ticket.
pub(crate) struct Call<J> {
    pub(crate) job: J,
    /// The TTL the caller chose, if any.
    pub(crate) ttl: Option<CacheTtl>,
    /// What the caller read from storage, if anything.
    pub(crate) seen: Option<Entry>,
    /// When it was admitted.
    pub(crate) started: FetchStart,
}

/// Spawns the call on the engine's runtime, inside its span.
pub(crate) fn spawn<S, R, C, J>(ticket: Ticket<S, R, C>, call: Call<J>)
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
{
    let runtime = ticket.shared().runtime().clone();
    let background = ticket.kind() == Kind::Refresh;
    let span = CallSpan::call(ticket.key(), background, ticket.started_ms(), &runtime);
    runtime.spawn(async move {
        let end = span.instrument(run(ticket, call)).await;
        span.end(end);
    });
}

/// How a bounded step ended.
pub(crate) enum Step<T> {
    Done(T),
    /// The call's deadline passed.
    Late,
    /// The shutdown grace period ended.
    Aborted,
}

/// `fut`'s output, unless the deadline passes or shutdown aborts first.
pub(crate) async fn within<T, D>(
    fut: impl Future<Output = T>,
    deadline: Pin<&mut D>,
    abort: &Latch,
) -> Step<T>
where
    D: Future<Output = ()>,
{
    if abort.is_set() {
        return Step::Aborted;
    }
    let fut = pin!(fut);
    let abort = pin!(abort.wait());
    // The deadline and the latch are polled first: a step whose deadline is
    // due never runs on, so an abandoned call cannot write after a lookup
    // that took over at that deadline.
    match select(select(deadline, abort), fut).await {
        Either::Left((Either::Left(_), _)) => Step::Late,
        Either::Left((Either::Right(_), _)) => Step::Aborted,
        Either::Right((v, _)) => Step::Done(v),
    }
}

/// The entry a successful call stores: its value with the TTL the fetch
/// chose, or the caller's, or the policy's; or, for "not modified", the value
/// the store held with its phases starting again now (chosen the same way).
/// "Not modified" with nothing held fails the call. A fetch's TTL may be of
/// any length (see `Fetched::ttl`).
pub(crate) fn entry_of<S, R, C>(
    shared: &super::shared::Shared<S, R, C>,
    key: &str,
    value: Option<Bytes>,
    ttl: Option<CacheTtl>,
    caller_ttl: Option<CacheTtl>,
    seen: Option<&Entry>,
    now: u64,
) -> Result<Entry, Error> {
    match (value, ttl, seen) {
        (Some(bytes), Some(ttl), _) => Ok(Entry::new(bytes, now, ttl)),
        (Some(bytes), None, _) => Ok(shared.entry_for(key, bytes, now, caller_ttl, seen)),
        // Not `old.ttl()`: an `expire` (or `expire_tag`) cut its fresh phase.
        (None, Some(ttl), Some(old)) => Ok(Entry::new(old.value.clone(), now, ttl)),
        (None, None, Some(old)) => {
            Ok(shared.entry_for(key, old.value.clone(), now, caller_ttl, Some(old)))
        }
        (None, _, None) => Err(Error::Upstream(crate::error::UpstreamError::new(
            "the fetch answered \"not modified\" but the cache held no value for the key",
        ))),
    }
}

/// When a call was admitted: tag operations (and clears) from then on may
/// be about what it fetches.
#[derive(Clone, Copy)]
pub(crate) struct FetchStart {
    /// The engine's tag-operation count.
    fence: u64,
    /// The clock (for operations by other engines, seen in the records).
    at: u64,
}

impl FetchStart {
    /// When (by the clock) the call was admitted.
    pub(crate) fn at(&self) -> u64 {
        self.at
    }

    pub(crate) fn now<S, R, C>(shared: &super::shared::Shared<S, R, C>) -> Self
    where
        S: Storage,
        R: Runtime,
        C: MaybeSend + MaybeSync + 'static,
    {
        Self {
            fence: shared.tag_fence().now(),
            at: shared.now(),
        }
    }
}

/// The tags a fetched value is stored with: the call's choice, else those
/// of the entry it replaces.
pub(crate) fn tag_names(chosen: Option<TagNames>, seen: Option<&Entry>) -> TagNames {
    chosen.unwrap_or_else(|| seen.map(|s| TagNames::of(&s.tags)).unwrap_or_default())
}

/// Stamps `entry` with `names`' epochs (or with `stamped`, made once for a
/// whole batch) and says whether it may be stored: not if one of its tags
/// was invalidated (here, or in another engine by its record's time) or the
/// cache cleared since the call was admitted, nor if the tags' records
/// cannot be read or written (an untagged copy would outlive its tags'
/// invalidation). A tag expired meanwhile stores it stale: it predates the
/// expiry, and the entry it replaces stays a fallback that way. Counted as
/// `tag_fenced`.
pub(crate) async fn tag_entry<S, R, C>(
    shared: &super::shared::Shared<S, R, C>,
    entry: &mut Entry,
    names: &TagNames,
    started: FetchStart,
    stamped: Option<&Result<(Tags, Change), StorageError>>,
) -> bool
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    let mut change = Change::None;
    if !names.is_empty() {
        let stamp = match stamped {
            Some(s) => s.clone(),
            None => shared.stamp_tags(names, Some(started.at)).await,
        };
        match stamp {
            Ok((tags, theirs)) => {
                entry.tags = tags;
                change = theirs;
            }
            Err(e) => {
                shared.storage_error(StorageOp::Set);
                event_warn!(
                    name: "swre.storage.error",
                    { operation = "set" },
                    "tag records unavailable, the value was not stored: {}",
                    e
                );
                change = Change::Hard;
            }
        }
    }
    change = change.max(shared.tag_fence().touched(started.fence, names.iter()));
    if change != Change::None {
        bump(&shared.counters().tag_fenced);
    }
    if change == Change::Soft {
        let since = entry.created_at;
        crate::storage::expire_entry(entry, since);
    }
    change != Change::Hard
}

/// How long fetching the key takes, for the early refresh: this call's time
/// (at least 1 ms), averaged with the previous estimate when there is one.
pub(crate) fn fetch_estimate(elapsed: Duration, seen: Option<&Entry>) -> u32 {
    let now = u32::try_from(elapsed.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    match seen.map(|s| s.fetch_ms) {
        Some(before) if before > 0 => ((u64::from(before) + u64::from(now)) / 2) as u32,
        _ => now,
    }
}

/// Whether `found` is a fresh entry other than the one the caller saw.
pub(crate) fn stored_since(found: &Entry, seen: Option<&Entry>, now: u64) -> bool {
    let times = |e: &Entry| (e.created_at, e.fresh_until, e.stale_until, e.expires_at);
    Phase::of(Some(found), now) == Phase::Fresh && seen.is_none_or(|s| times(s) != times(found))
}

async fn run<S, R, C, J>(ticket: Ticket<S, R, C>, call: Call<J>) -> CallEnd
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: Job,
{
    let shared = ticket.shared().clone();
    let key = ticket.key();
    let timeout = shared.cfg().refresh_timeout;
    let late = Error::Timeout { after: timeout };
    let abort = shared.abort_latch();
    // The flight's deadline was set at admission; the task may start later.
    let left = ticket
        .flight()
        .deadline_ms()
        .saturating_sub(shared.now())
        .min(crate::time::duration_ms(timeout));
    let mut deadline = pin!(shared.runtime().sleep(Duration::from_millis(left)));
    let mut seen = call.seen.as_ref();

    // A caller may have read storage just before another call for this key
    // stored its value and left the table: look once more before calling
    // upstream, so a stampede makes exactly one call.
    match within(shared.read_shared(key), deadline.as_mut(), abort).await {
        Step::Done(Some(e)) if stored_since(&e, seen, shared.now()) => {
            ticket.share_stored(e);
            return CallEnd::Shared;
        }
        // A tagged entry gone since the lookup read it was invalidated (by
        // tag, or removed): the fetch is not told it, nor may "not
        // modified" bring it back.
        Step::Done(None) if seen.is_some_and(|s| !s.tags.is_empty()) => seen = None,
        Step::Done(_) => {}
        Step::Late => return give_up(&ticket, late),
        Step::Aborted => return CallEnd::Shutdown,
    }

    // Fleet-wide: one process per key calls upstream. A store that cannot
    // answer is not waited for ("storage failures degrade").
    match within(
        shared.storage().try_lease(key, timeout),
        deadline.as_mut(),
        abort,
    )
    .await
    {
        Step::Done(Ok(Some(token))) => ticket.hold_lease(token),
        Step::Done(Ok(None)) => {
            shared.lease_wait();
            match await_other_process(&ticket, seen, Some(timeout), deadline.as_mut(), abort).await
            {
                Step::Done(Awaited::Stored(e)) => {
                    ticket.share_stored(e);
                    return CallEnd::SharedFromStore;
                }
                // The holder is gone without a value this call can use
                // (it failed, or what it stored was removed since): this
                // call fetches, holding the lease now.
                // (The ticket holds the lease already, if it was granted.)
                Step::Done(Awaited::Lease) => {}
                Step::Late => return give_up(&ticket, late),
                Step::Aborted => return CallEnd::Shutdown,
            }
        }
        Step::Done(Err(_)) => {}
        Step::Late => return give_up(&ticket, late),
        Step::Aborted => return CallEnd::Shutdown,
    }

    // "Shutdown is final": past the grace period no fetch starts.
    if shared.is_aborted() {
        return CallEnd::Shutdown;
    }
    bump(&shared.counters().upstream_calls);
    let started = call.started;
    let outcome = within(call.job.call(seen), deadline.as_mut(), abort).await;
    let now = shared.now();
    let elapsed = ticket.elapsed(now);
    let end = match outcome {
        Step::Done(Ok(produced)) => {
            shared.upstream_outcome(UpstreamOutcome::Success, elapsed);
            let (value, ttl) = (produced.value, produced.ttl);
            let names = tag_names(produced.tags, seen);
            if let Err(e) = names.check() {
                ticket.fail(Error::InvalidTag(e), now, seen);
                return CallEnd::Rejected;
            }
            let mut entry = match entry_of(&shared, key, value, ttl, call.ttl, seen, now) {
                Ok(entry) => entry,
                Err(e) => {
                    ticket.fail(e, now, seen);
                    return CallEnd::Rejected;
                }
            };
            ticket.succeed();
            entry.fetch_ms = fetch_estimate(elapsed, seen);
            // A TTL the fetch chose may be short (read from an HTTP
            // answer, say); under 1 ms in total it is not stored.
            let lasting = ttl.is_none_or(|t| crate::time::duration_ms(t.total()) > 0);
            let write = if produced.store && lasting {
                let tagged = tag_entry(&shared, &mut entry, &names, started, None);
                match within(tagged, deadline.as_mut(), abort).await {
                    Step::Done(may_store) => may_store,
                    Step::Late => return give_up(&ticket, late),
                    Step::Aborted => return CallEnd::Shutdown,
                }
            } else {
                false
            };
            // Stored (or the older entry removed) before it is handed out:
            // no caller then reads an older value than one handed out.
            match store(&ticket, entry.clone(), write, deadline.as_mut()).await {
                Step::Done(()) => ticket.deliver(entry),
                // The value was fetched, but not handed out: the call
                // succeeded upstream all the same.
                Step::Late => ticket.give_up(late),
                Step::Aborted => return CallEnd::Shutdown,
            }
            CallEnd::Success
        }
        Step::Done(Err(e)) => {
            if let Error::Upstream(_) = e {
                bump(&shared.counters().upstream_errors);
                shared.upstream_outcome(UpstreamOutcome::Error, elapsed);
            }
            ticket.fail(e, now, seen);
            CallEnd::Error
        }
        Step::Late => {
            bump(&shared.counters().upstream_timeouts);
            shared.upstream_outcome(UpstreamOutcome::Timeout, elapsed);
            ticket.fail(late, now, seen);
            CallEnd::Timeout
        }
        // The ticket's drop reports the abandoned call as a shutdown.
        Step::Aborted => return CallEnd::Shutdown,
    };
    ticket.leave_table();
    if let Some(token) = ticket.take_lease() {
        // Bounded by its own timer, not by shutdown: a lease left behind
        // would make the rest of the fleet wait out its whole TTL.
        let release = pin!(shared.storage().release_lease(key, token));
        let sleep = pin!(shared.runtime().sleep(timeout));
        let _ = select(release, sleep).await;
    }
    end
}

/// Ends the call without a value to hand out ([`Ticket::give_up`]).
fn give_up<S, R, C>(ticket: &Ticket<S, R, C>, error: Error) -> CallEnd
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    ticket.give_up(error);
    CallEnd::GaveUp
}

/// What waiting on another process's lease ends with.
pub(crate) enum Awaited {
    /// The value it stored.
    Stored(Entry),
    /// No such value: the call fetches, holding the lease (through its
    /// ticket) when it was granted; when the store could not answer, the
    /// call goes on without one, as when it first asked.
    Lease,
}

/// Polls storage, with backoff and until the deadline, for the value another
/// process (holding the lease) is fetching. With `lease_ttl`, each poll that
/// finds no such value also asks for the lease (for that long): a holder
/// that ended without storing one, or whose value was removed since, would
/// otherwise leave this call waiting out its whole deadline.
pub(crate) async fn await_other_process<S, R, C, D>(
    ticket: &Ticket<S, R, C>,
    seen: Option<&Entry>,
    lease_ttl: Option<Duration>,
    mut deadline: Pin<&mut D>,
    abort: &Latch,
) -> Step<Awaited>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    D: Future<Output = ()>,
{
    let shared = ticket.shared();
    let mut delay = Duration::from_millis(20);
    loop {
        match within(shared.runtime().sleep(delay), deadline.as_mut(), abort).await {
            Step::Done(()) => {}
            Step::Late => return Step::Late,
            Step::Aborted => return Step::Aborted,
        }
        match within(shared.read_shared(ticket.key()), deadline.as_mut(), abort).await {
            Step::Done(Some(e)) if stored_since(&e, seen, shared.now()) => {
                return Step::Done(Awaited::Stored(e))
            }
            Step::Done(_) => {}
            Step::Late => return Step::Late,
            Step::Aborted => return Step::Aborted,
        }
        if let Some(ttl) = lease_ttl {
            let lease = shared.storage().try_lease(ticket.key(), ttl);
            match within(lease, deadline.as_mut(), abort).await {
                Step::Done(Ok(Some(token))) => {
                    // Held by the ticket at once: if the deadline or
                    // shutdown ends the call during the read below, the
                    // ticket's end releases it (the rest of the fleet would
                    // otherwise wait out its whole TTL).
                    ticket.hold_lease(token);
                    // The holder may have stored its value and released the
                    // lease between the read above and this grant: look once
                    // more, so that it is used rather than fetched again.
                    let read = within(shared.read_shared(ticket.key()), deadline.as_mut(), abort);
                    return match read.await {
                        Step::Done(Some(e)) if stored_since(&e, seen, shared.now()) => {
                            if let Some(token) = ticket.take_lease() {
                                let release = shared.storage().release_lease(ticket.key(), token);
                                let _ = within(release, deadline.as_mut(), abort).await;
                            }
                            Step::Done(Awaited::Stored(e))
                        }
                        Step::Done(_) => Step::Done(Awaited::Lease),
                        Step::Late => Step::Late,
                        Step::Aborted => Step::Aborted,
                    };
                }
                Step::Done(Ok(None)) => {}
                Step::Done(Err(_)) => return Step::Done(Awaited::Lease),
                Step::Late => return Step::Late,
                Step::Aborted => return Step::Aborted,
            }
        }
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Writes the fetched entry, unless a later write superseded the call ("the
/// latest write wins"). A value the store refuses (too large, a write error)
/// removes the older stored entry, so no caller is handed a value older than
/// this one; failures are counted, never returned ("storage failures
/// degrade"). `Late` if the deadline passed first: the value is then not
/// handed out (it may not be stored, and the older entry may still be there).
pub(crate) async fn store<S, R, C, D>(
    ticket: &Ticket<S, R, C>,
    entry: Entry,
    write: bool,
    mut deadline: Pin<&mut D>,
) -> Step<()>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    D: Future<Output = ()>,
{
    let shared = ticket.shared();
    let key = ticket.key();
    let abort = shared.abort_latch();
    if !ticket.flight().begin_store() {
        // A write superseded the call before it stored: until that write
        // lands the store holds an older value than this one, so the value
        // is handed out only after it.
        return within(ticket.flight().overwritten(), deadline, abort).await;
    }
    let written = entry.clone();
    if !write {
        // The fetch said not to store it: only what it replaces goes.
    } else if entry.value.len() > shared.cfg().max_value_bytes {
        bump(&shared.counters().oversized_values);
        event_warn!(
            "fetched value of {} bytes is over max_value_bytes ({}); returned, not stored",
            entry.value.len(),
            shared.cfg().max_value_bytes
        );
    } else {
        match within(shared.storage().set(key, entry), deadline.as_mut(), abort).await {
            Step::Done(Ok(())) => return Step::Done(()),
            Step::Done(Err(e)) => {
                shared.storage_error(StorageOp::Set);
                event_warn!(
                    name: "swre.storage.error",
                    { operation = "set" },
                    "storage write failed, the value was still returned: {}",
                    e
                );
            }
            Step::Late => {
                shared.storage_error(StorageOp::Set);
                return Step::Late;
            }
            Step::Aborted => return Step::Aborted,
        }
    }
    match within(
        shared.storage().remove_older(key, &written),
        deadline,
        abort,
    )
    .await
    {
        Step::Done(Ok(())) => Step::Done(()),
        Step::Done(Err(_)) => {
            bump(&shared.counters().store_cleanup_failures);
            shared.storage_error(StorageOp::Delete);
            Step::Done(())
        }
        Step::Late => {
            bump(&shared.counters().store_cleanup_failures);
            Step::Late
        }
        Step::Aborted => Step::Aborted,
    }
}
