//! One key of a batch lookup (`batch.rs`): what it does with what the
//! store holds, decided as a single lookup would (`decide`, the phase
//! table), and admitted on its own when it needs upstream (`admission.rs`:
//! its own breaker permit, flight and, for a refresh, refresh slot), its
//! ticket kept for the batch call (`batch_task.rs`).

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::admission::{admit_fetch, admit_refresh, Admission};
use super::batch_task::Member;
use super::cached::Cached;
use super::decide::Decision;
use super::lookup::{usable, Decode};
use super::shared::Shared;
use crate::detail::Detail;
use crate::entry::Entry;
use crate::error::Error;
use crate::flight::Flight;
use crate::marks::Mark;
use crate::phase::Status;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::{MaybeSend, MaybeSync};

/// One distinct key of a batch: its answer, or what it waits for.
pub(crate) struct Plan<V> {
    pub(crate) state: State<V>,
    /// The key's call, if it has one: the call it waits for, or its
    /// background refresh (this batch's or one already running).
    pub(crate) call: Option<Arc<Flight>>,
    /// Whether the answer was made again from `call` once already, after
    /// its value expired while the batch waited (see `batch.rs`).
    pub(crate) remade: bool,
}

pub(crate) enum State<V> {
    Now(Result<Cached<V>, Error>),
    /// Waiting for `call`. `fallback`: the expired value served if it
    /// fails (revalidate mode).
    Wait {
        fallback: Option<(V, Entry)>,
    },
}

impl<V> Plan<V> {
    fn now(result: Result<Cached<V>, Error>, call: Option<Arc<Flight>>) -> Self {
        Self {
            state: State::Now(result),
            call,
            remade: false,
        }
    }

    fn wait(flight: Arc<Flight>, fallback: Option<(V, Entry)>) -> Self {
        Self {
            state: State::Wait { fallback },
            call: Some(flight),
            remade: false,
        }
    }
}

/// What one key of the batch does with what the store holds, as a lookup
/// would; a key admitted for a call joins `members`.
pub(crate) fn plan<S, R, C, V, D>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    mut stored: Option<Entry>,
    decode: &D,
    now: u64,
    members: &mut Vec<Member<S, R, C>>,
) -> Plan<V>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    D: Decode<V>,
{
    let usable = usable(shared, stored.as_mut(), decode, now);
    match (usable, stored) {
        (Some((Decision::Serve, value)), Some(entry)) => {
            let cached = Cached::new(value, Status::Hit, &entry, now);
            early_refresh(shared, key, &entry, now, members, cached)
        }
        (Some((Decision::ServeAndRefresh(status), value)), Some(entry)) => {
            let cached = Cached::new(value, status, &entry, now);
            match refresh(shared, key, &entry, now, members) {
                Ok((flight, _)) => {
                    // A value the refresh fetched and has not stored yet is
                    // newer: served instead ("the latest write wins").
                    let newer = flight.completed_value().and_then(|mut newer| {
                        let v = decode.decode(&mut newer.value).ok()?;
                        Some(Cached::new(v, Status::Hit, &newer, now))
                    });
                    Plan::now(Ok(newer.unwrap_or(cached)), Some(flight))
                }
                Err(why) => Plan::now(Ok(cached.with_detail(why)), None),
            }
        }
        (Some((_, value)), Some(entry)) => {
            // Expired, revalidate mode. Its last refresh failed a moment
            // ago: the old value, not sent (the fail-safe throttle).
            if shared.throttle().until(key, now).is_some() {
                bump(&shared.counters().throttled);
                let cached = Cached::new(value, Status::Fallback, &entry, now);
                return Plan::now(Ok(cached.with_detail(Detail::Throttled)), None);
            }
            match admit_fetch(shared, key, false, now) {
                Ok(Admission::Started(ticket)) => {
                    let flight = ticket.flight().clone();
                    let seen = Some(entry.clone());
                    members.push(Member { ticket, seen });
                    Plan::wait(flight, Some((value, entry)))
                }
                Ok(Admission::Joined(flight)) => joined(flight, decode, now, Some((value, entry))),
                Err(e) => {
                    let cached = Cached::new(value, Status::Fallback, &entry, now);
                    Plan::now(Ok(cached.with_detail(Detail::of_failure(&e))), None)
                }
            }
        }
        (_, stored) => {
            if shared.cfg().negative_ttl.is_some() {
                if let Some(e) = shared.negatives().get(key, now) {
                    bump(&shared.counters().negative_hits);
                    return Plan::now(Err(e), None);
                }
            }
            match admit_fetch(shared, key, true, now) {
                Ok(Admission::Started(ticket)) => {
                    let flight = ticket.flight().clone();
                    members.push(Member {
                        ticket,
                        seen: stored,
                    });
                    Plan::wait(flight, None)
                }
                Ok(Admission::Joined(flight)) => joined(flight, decode, now, None),
                Err(e) => Plan::now(Err(e), None),
            }
        }
    }
}

/// A key whose call was already running: its value if it has one (`Hit`:
/// nothing waited for, as a single lookup reports it), else a wait.
fn joined<V, D: Decode<V>>(
    flight: Arc<Flight>,
    decode: &D,
    now: u64,
    fallback: Option<(V, Entry)>,
) -> Plan<V> {
    match flight.completed_value() {
        Some(mut done) => {
            let result = decode
                .decode(&mut done.value)
                .map(|v| Cached::new(v, Status::Hit, &done, now))
                .map_err(Error::Codec);
            Plan::now(result, Some(flight))
        }
        None => Plan::wait(flight, fallback),
    }
}

/// The key's background refresh: one already running, or one admitted into
/// this batch's call (`true`), or why none may start now (throttled, over
/// the bound, breaker open, shutting down) — what `lookup.rs`'s
/// `refresh_in_background` does for one key, with the ticket kept for the
/// batch call instead of spawned.
fn refresh<S, R, C>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    seen: &Entry,
    now: u64,
    members: &mut Vec<Member<S, R, C>>,
) -> Result<(Arc<Flight>, bool), Detail>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    if let Some(flight) = shared.flights().get(key).filter(|f| f.is_joinable(now)) {
        return Ok((flight, false));
    }
    let marks = shared.flights().marks();
    let mark = marks.tag(key, seen.created_at);
    if let Some(until) = shared.throttle().until(key, now) {
        marks.mark_throttled(mark, until);
        bump(&shared.counters().throttled);
        return Err(Detail::Throttled);
    }
    match admit_refresh(shared, key, now, mark)? {
        Admission::Started(ticket) => {
            let flight = ticket.flight().clone();
            let seen = Some(seen.clone());
            members.push(Member { ticket, seen });
            Ok((flight, true))
        }
        Admission::Joined(flight) => Ok((flight, false)),
    }
}

/// A fresh key's hit, and its early refresh admitted into the batch call
/// when one is due ([`Detail::EarlyRefresh`]), as a single lookup's would
/// start.
fn early_refresh<S, R, C, V>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    entry: &Entry,
    now: u64,
    members: &mut Vec<Member<S, R, C>>,
    cached: Cached<V>,
) -> Plan<V>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    let Some(early) = shared.cfg().early_refresh else {
        return Plan::now(Ok(cached), None);
    };
    let marks = shared.flights().marks();
    if !early.is_due(entry, now, shared.random())
        || marks.state(marks.tag(key, entry.created_at), now) != Mark::None
        || shared.throttle().until(key, now).is_some()
    {
        return Plan::now(Ok(cached), None);
    }
    match refresh(shared, key, entry, now, members) {
        Ok((flight, true)) => {
            bump(&shared.counters().early_refreshes);
            Plan::now(Ok(cached.with_detail(Detail::EarlyRefresh)), Some(flight))
        }
        Ok((flight, false)) => Plan::now(Ok(cached), Some(flight)),
        Err(_) => Plan::now(Ok(cached), None),
    }
}

/// The error of a key whose answer expired while the batch waited for
/// others, with no call left to make it again from: why it had none.
pub(crate) fn expired<S, R, C>(shared: &Shared<S, R, C>, detail: Detail) -> Error {
    match detail {
        Detail::BreakerOpen => Error::CircuitOpen,
        Detail::Shutdown => Error::Shutdown,
        _ => Error::Timeout {
            after: shared.cfg().refresh_timeout,
        },
    }
}
