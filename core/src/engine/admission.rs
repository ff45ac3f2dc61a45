//! Admission: the one place an upstream call takes anything. Shutdown and
//! the refresh bound are checked, a breaker permit is taken, and a flight is
//! registered holding the claims; the caller gets a [`Ticket`] that owns it,
//! or joins the live flight of the key.

use alloc::sync::Arc;

use super::shared::Shared;
use super::ticket::{Kind, Ticket};
use crate::detail::Detail;
use crate::error::Error;
use crate::flight::{Claims, Flight, Registered};
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::{MaybeSend, MaybeSync};
use crate::time::duration_ms;

/// The outcome of admitting an upstream call.
pub(crate) enum Admission<S, R, C>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    /// This caller starts the call: spawn it with the ticket.
    Started(Ticket<S, R, C>),
    /// A live call is running: wait for it.
    Joined(Arc<Flight>),
}

/// Admits a call that callers wait for: `Err(Shutdown)` once the engine is
/// stopping, `Err(CircuitOpen)` while a breaker is open.
pub(crate) fn admit_fetch<S, R, C>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    remember_error: bool,
    now: u64,
) -> Result<Admission<S, R, C>, Error>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    if let Some(f) = live_flight(shared, key, now) {
        return Ok(Admission::Joined(f));
    }
    if shared.is_stopping() {
        return Err(Error::Shutdown);
    }
    register(
        shared,
        key,
        Kind::Fetch { remember_error },
        Claims::default(),
        now,
        None,
    )
}

/// Admits a background refresh, or says why none may start now (stopping,
/// the refresh bound reached, a breaker open: the stale value is served
/// without one).
pub(crate) fn admit_refresh<S, R, C>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    now: u64,
    mark: u64,
) -> Result<Admission<S, R, C>, Detail>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    if let Some(f) = live_flight(shared, key, now) {
        return Ok(Admission::Joined(f));
    }
    if shared.is_stopping() {
        return Err(Detail::Shutdown);
    }
    if !shared.take_refresh_slot() {
        return Err(Detail::RefreshSkipped);
    }
    let claims = Claims {
        refresh_slot: true,
        ..Claims::default()
    };
    register(shared, key, Kind::Refresh, claims, now, Some(mark))
        .map_err(|e| Detail::of_failure(&e))
}

fn live_flight<S, R, C>(shared: &Shared<S, R, C>, key: &str, now: u64) -> Option<Arc<Flight>> {
    shared.flights().get(key).filter(|f| f.is_joinable(now))
}

fn register<S, R, C>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    kind: Kind,
    mut claims: Claims,
    now: u64,
    mark: Option<u64>,
) -> Result<Admission<S, R, C>, Error>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    match shared.breaker().try_acquire(key, now) {
        Some((permit, transitions)) => {
            shared.report_transitions(key, transitions);
            claims.permit = Some(permit);
        }
        None => {
            bump(&shared.counters().breaker_rejections);
            shared.give_back(key, claims);
            return Err(Error::CircuitOpen);
        }
    }
    let deadline_ms = now.saturating_add(duration_ms(shared.cfg().refresh_timeout));
    match shared
        .flights()
        .register(key, now, deadline_ms, claims, mark)
    {
        Registered::Running(flight, claims) => {
            shared.give_back(key, claims);
            Ok(Admission::Joined(flight))
        }
        Registered::Started { flight, replaced } => {
            if let Some(old) = replaced.filter(|f| f.is_abandoned(now)) {
                shared.take_over(key, &old);
            }
            shared.count_task(&flight);
            Ok(Admission::Started(Ticket::new(
                shared, key, flight, kind, now,
            )))
        }
    }
}
