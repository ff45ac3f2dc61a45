//! The spawned batch call: one upstream call for every key a batch lookup
//! admitted (`batch.rs`), each key still owned by its own [`Ticket`], so
//! every engine rule holds per key. The steps are `task.rs`'s — re-read,
//! lease, fetch, store, hand out — taken for all keys at once, the whole
//! under the call's one deadline and the shutdown latch ("one deadline per
//! call", "shutdown is final").

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::{pending, Future};
use core::pin::pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use futures::future::{join, join_all, select};
use hashbrown::HashMap;

use super::shared::Shared;
use super::task::{
    await_other_process, entry_of, fetch_estimate, store, stored_since, tag_entry, tag_names,
    within, Awaited, FetchStart, Step,
};
use super::ticket::Ticket;
use super::CallOptions;
use crate::bytes::Bytes;
use crate::entry::Entry;
use crate::error::StorageError;
use crate::error::{Error, MissingFromBatch, NotCounted, UpstreamError};
use crate::metrics::UpstreamOutcome;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::{MaybeSend, MaybeSync};
use crate::tags::fence::Change;
use crate::tags::Tags;
use crate::time::duration_ms;
use crate::trace::{CallEnd, CallSpan};

/// What a batch fetch answered: a value (or, for typed batches, an encoding
/// error) per key it returned.
pub(crate) type Answer = Vec<(String, Result<Bytes, Error>)>;

/// One key of a batch call: its ticket, and what the lookup read for it.
pub(crate) struct Member<S, R, C>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    pub(crate) ticket: Ticket<S, R, C>,
    pub(crate) seen: Option<Entry>,
}

/// Spawns the batch call for `members` on the engine's runtime; nothing when
/// there are none (a batch of fresh keys makes no call).
pub(crate) fn spawn<S, R, C, J, F>(
    shared: &Arc<Shared<S, R, C>>,
    members: Vec<Member<S, R, C>>,
    job: J,
    opts: CallOptions,
) where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: FnOnce(Vec<String>) -> F + MaybeSend + 'static,
    F: Future<Output = Result<Answer, Error>> + MaybeSend + 'static,
{
    if members.is_empty() {
        return;
    }
    let started = FetchStart::now(shared);
    let runtime = shared.runtime();
    let span = CallSpan::batch(members.len(), started.at(), runtime);
    let call = run(shared.clone(), members, job, opts, started);
    runtime.spawn(async move {
        let end = span.instrument(call).await;
        span.end(end);
    });
}

/// The error of a key the batch fetch returned no value for.
fn missing() -> Error {
    Error::Upstream(UpstreamError::new(NotCounted::new(MissingFromBatch)))
}

async fn run<S, R, C, J, F>(
    shared: Arc<Shared<S, R, C>>,
    mut members: Vec<Member<S, R, C>>,
    job: J,
    opts: CallOptions,
    started: FetchStart,
) -> CallEnd
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    J: FnOnce(Vec<String>) -> F + MaybeSend + 'static,
    F: Future<Output = Result<Answer, Error>> + MaybeSend + 'static,
{
    let shared = &shared;
    let timeout = shared.cfg().refresh_timeout;
    let late = Error::Timeout { after: timeout };
    let abort = shared.abort_latch();
    // The flights were admitted together, with one deadline.
    let deadline_ms = members
        .iter()
        .map(|m| m.ticket.flight().deadline_ms())
        .min()
        .unwrap_or(0);
    let left = deadline_ms
        .saturating_sub(shared.now())
        .min(duration_ms(timeout));
    let mut deadline = pin!(shared.runtime().sleep(Duration::from_millis(left)));

    // Each key's re-read before calling upstream (as `task.rs` does): a key
    // another call stored meanwhile is shared, not fetched again.
    let reread = join_all(members.iter().map(|m| async move {
        if let Some(e) = shared.read_shared(m.ticket.key()).await {
            if stored_since(&e, m.seen.as_ref(), shared.now()) {
                m.ticket.share_stored(e);
                // At once, as a single call does: while other keys' reads
                // run, a write may land that this value is older than.
                m.ticket.leave_table();
            }
        }
    }));
    match within(reread, deadline.as_mut(), abort).await {
        Step::Done(_) => {}
        Step::Late => return give_up(&members, &late),
        Step::Aborted => return CallEnd::Shutdown,
    }
    // Done keys leave now: their tickets give back what they hold.
    members.retain(|m| !m.ticket.flight().is_complete());

    // Fleet-wide leases, per key; a key another process holds is waited for
    // (its value polled from the store) rather than fetched.
    let leases = join_all(members.iter().map(|m| async move {
        match shared.storage().try_lease(m.ticket.key(), timeout).await {
            Ok(Some(token)) => {
                m.ticket.hold_lease(token);
                false
            }
            Ok(None) => {
                shared.lease_wait();
                true
            }
            Err(_) => false,
        }
    }));
    let elsewhere = match within(leases, deadline.as_mut(), abort).await {
        Step::Done(v) => v,
        Step::Late => return give_up(&members, &late),
        Step::Aborted => return CallEnd::Shutdown,
    };
    // "Shutdown is final": past the grace period no fetch starts.
    if shared.is_aborted() {
        return CallEnd::Shutdown;
    }
    let (to_fetch, others): (Vec<_>, Vec<_>) = members
        .iter()
        .zip(elsewhere)
        .partition(|(_, elsewhere)| !elsewhere);
    let to_fetch: Vec<&Member<S, R, C>> = to_fetch.into_iter().map(|(m, _)| m).collect();

    let answered = AtomicBool::new(false);
    let waiting = !others.is_empty();
    let call = async {
        let Some(first) = to_fetch.first() else {
            // Every key left was stored meanwhile, here or by another process.
            return if waiting {
                CallEnd::SharedFromStore
            } else {
                CallEnd::Shared
            };
        };
        bump(&shared.counters().upstream_calls);
        bump(&shared.counters().batch_calls);
        let keys = to_fetch.iter().map(|m| String::from(m.ticket.key()));
        let result = job(keys.collect()).await;
        answered.store(true, Ordering::Release);
        let now = shared.now();
        let elapsed = first.ticket.elapsed(now);
        match result {
            Ok(answer) => {
                shared.upstream_outcome(UpstreamOutcome::Success, elapsed);
                let values = match_answer(&to_fetch, answer);
                // The call's own tags, stamped once for all its keys (each
                // key creating a new tag's records would undo the others').
                let stamped = match &opts.tags {
                    Some(names) if !names.is_empty() => {
                        Some(shared.stamp_tags(names, Some(started.at())).await)
                    }
                    _ => None,
                };
                let stamped = stamped.as_ref();
                join_all(to_fetch.iter().zip(values).map(|(m, value)| {
                    let took = Took {
                        now,
                        elapsed,
                        started,
                    };
                    settle(shared, m, value, &opts, took, stamped, &late)
                }))
                .await;
                CallEnd::Success
            }
            Err(e) => {
                if let Error::Upstream(_) = e {
                    bump(&shared.counters().upstream_errors);
                    shared.upstream_outcome(UpstreamOutcome::Error, elapsed);
                }
                fail_all(&to_fetch, &e, now);
                CallEnd::Error
            }
        }
    };
    let waits = join_all(others.into_iter().map(|(m, _)| async move {
        let never = pin!(pending::<()>());
        // A batch waits for the holder's value only (one fetch for the
        // whole batch is already under way).
        let waited = await_other_process(&m.ticket, m.seen.as_ref(), None, never, abort).await;
        if let Step::Done(Awaited::Stored(e)) = waited {
            m.ticket.share_stored(e);
            m.ticket.leave_table();
        }
    }));
    let end = match within(join(call, waits), deadline.as_mut(), abort).await {
        Step::Done((end, _)) => end,
        Step::Late => {
            let mut end = CallEnd::GaveUp;
            if !answered.load(Ordering::Acquire) {
                if let Some(first) = to_fetch.first() {
                    let now = shared.now();
                    bump(&shared.counters().upstream_timeouts);
                    shared.upstream_outcome(UpstreamOutcome::Timeout, first.ticket.elapsed(now));
                    fail_all(&to_fetch, &late, now);
                    end = CallEnd::Timeout;
                }
            }
            // Keys storing, or waiting on another process.
            give_up(&members, &late);
            end
        }
        // The tickets' drops report the abandoned call as a shutdown.
        Step::Aborted => return CallEnd::Shutdown,
    };
    for m in &members {
        m.ticket.leave_table();
    }
    // Bounded by its own timer, not by shutdown (as `task.rs` does).
    let releases = members.iter().filter_map(|m| {
        let token = m.ticket.take_lease()?;
        Some(shared.storage().release_lease(m.ticket.key(), token))
    });
    let releases = pin!(join_all(releases));
    let sleep = pin!(shared.runtime().sleep(timeout));
    let _ = select(releases, sleep).await;
    end
}

/// The answer's value for each key of `to_fetch`, in order: the first one
/// the answer holds for it; keys it was not asked for are ignored.
fn match_answer<S, R, C>(
    to_fetch: &[&Member<S, R, C>],
    answer: Answer,
) -> Vec<Option<Result<Bytes, Error>>>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    let index: HashMap<&str, usize> = to_fetch
        .iter()
        .enumerate()
        .map(|(i, m)| (m.ticket.key(), i))
        .collect();
    let mut values: Vec<Option<Result<Bytes, Error>>> = to_fetch.iter().map(|_| None).collect();
    for (key, value) in answer {
        let slot = index.get(key.as_str()).and_then(|&i| values.get_mut(i));
        if let Some(slot @ None) = slot {
            *slot = Some(value);
        }
    }
    values
}

/// One key's end of a batch call that answered: its value stored (or the
/// older entry removed) and handed out, or the key failed on its own (not
/// returned, not encodable, a TTL refused).
async fn settle<S, R, C>(
    shared: &Shared<S, R, C>,
    m: &Member<S, R, C>,
    value: Option<Result<Bytes, Error>>,
    opts: &CallOptions,
    took: Took,
    stamped: Option<&Result<(Tags, Change), StorageError>>,
    late: &Error,
) where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    let (ticket, seen) = (&m.ticket, m.seen.as_ref());
    let Took {
        now,
        elapsed,
        started,
    } = took;
    let bytes = match value {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => {
            ticket.fail(e, now, seen);
            return ticket.leave_table();
        }
        None => {
            bump(&shared.counters().batch_keys_missing);
            ticket.fail(missing(), now, seen);
            return ticket.leave_table();
        }
    };
    let ttl = opts.ttl;
    let mut entry = match entry_of(shared, ticket.key(), Some(bytes), None, ttl, seen, now) {
        Ok(entry) => entry,
        Err(e) => {
            ticket.fail(e, now, seen);
            return ticket.leave_table();
        }
    };
    ticket.succeed();
    entry.fetch_ms = fetch_estimate(elapsed, seen);
    // The call's deadline bounds the whole step from outside (`run`); a
    // write it cuts short is not counted as a storage write error, as
    // `task.rs` counts one (the key gives up with `Timeout` all the same).
    let names = tag_names(opts.tags.clone(), seen);
    let write = tag_entry(shared, &mut entry, &names, started, stamped).await;
    let never = pin!(pending::<()>());
    match store(ticket, entry.clone(), write, never).await {
        Step::Done(()) => ticket.deliver(entry),
        Step::Late => ticket.give_up(late.clone()),
        Step::Aborted => return,
    }
    ticket.leave_table();
}

/// When the call's answer came, how long it took, and when its fetch began.
#[derive(Clone, Copy)]
struct Took {
    now: u64,
    elapsed: Duration,
    started: FetchStart,
}

/// Every key of a call that failed as a whole fails with `error`; the
/// global breaker counts it once (with the first key still running).
fn fail_all<S, R, C>(to_fetch: &[&Member<S, R, C>], error: &Error, now: u64)
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    let mut global = true;
    for m in to_fetch {
        if !m.ticket.flight().is_complete() {
            m.ticket
                .fail_scoped(error.clone(), now, m.seen.as_ref(), global);
            global = false;
            m.ticket.leave_table();
        }
    }
}

/// Ends every key still without a result with `error` (not upstream's
/// failure: the re-read, a lease, a store or another process was too slow).
fn give_up<S, R, C>(members: &[Member<S, R, C>], error: &Error) -> CallEnd
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    for m in members {
        if !m.ticket.flight().is_complete() {
            m.ticket.give_up(error.clone());
        }
    }
    CallEnd::GaveUp
}
