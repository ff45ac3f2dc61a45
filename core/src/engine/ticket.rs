//! The [`Ticket`]: everything one upstream call takes from the engine,
//! given back in one place.
//!
//! Admission (`admission.rs`) registers a flight holding the `Claims`
//! (breaker permit, refresh slot, task count, later the lease) and hands the
//! call a ticket that owns that flight: [`Ticket::succeed`] / [`Ticket::fail`]
//! consume the permit with the call's outcome, [`Ticket::deliver`] hands the
//! value out, and its `Drop` completes a flight left without a result, gives
//! back whatever claims remain and leaves the table — as tokio's
//! `SemaphorePermit` returns its permits. A lookup that takes over an
//! abandoned flight takes its claims instead ([`Shared::take_over`]); either
//! way they are given back exactly once.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::time::Duration;

use super::shared::Shared;
use crate::entry::Entry;
use crate::error::Error;
use crate::flight::Flight;
use crate::log::event_warn;
use crate::metrics::UpstreamOutcome;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::{LeaseToken, Storage};
use crate::sync::{MaybeSend, MaybeSync};
use crate::time::duration_ms;

/// What an upstream call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A background refresh of a value being served.
    Refresh,
    /// Callers wait for the value. `remember_error`: they have no usable
    /// value, so a failure may be remembered ("errors can be remembered").
    Fetch { remember_error: bool },
}

/// One admitted upstream call's hold on the engine; see the module docs.
pub(crate) struct Ticket<S, R, C>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    shared: Arc<Shared<S, R, C>>,
    key: Box<str>,
    flight: Arc<Flight>,
    kind: Kind,
    started_ms: u64,
}

impl<S, R, C> Ticket<S, R, C>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    /// The ticket of a call admitted at `now` whose flight was just registered.
    pub(crate) fn new(
        shared: &Arc<Shared<S, R, C>>,
        key: &str,
        flight: Arc<Flight>,
        kind: Kind,
        now: u64,
    ) -> Self {
        Self {
            shared: shared.clone(),
            key: Box::from(key),
            flight,
            kind,
            started_ms: now,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<S, R, C>> {
        &self.shared
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    /// What the call is for.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// When (by the clock) the call was admitted.
    pub(crate) fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Time since admission, by the wall clock (for metrics only).
    pub(crate) fn elapsed(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.started_ms))
    }

    /// Holds the fleet lease `token` until the ticket ends. If a takeover
    /// already reclaimed the ticket's claims, the lease is released at once.
    pub(crate) fn hold_lease(&self, token: LeaseToken) {
        if self.flight.with_claims(|c| c.lease = Some(token)).is_none() {
            self.shared.release_lease_later(&self.key, token);
        }
    }

    /// Takes the lease back to release it now (awaited by the task).
    pub(crate) fn take_lease(&self) -> Option<LeaseToken> {
        self.flight.with_claims(|c| c.lease.take()).flatten()
    }

    /// Upstream answered: the breaker hears of the success and the key's
    /// fail-safe throttle ends (the value is stored, then handed out with
    /// [`deliver`](Self::deliver)).
    pub(crate) fn succeed(&self) {
        // A call a later write superseded says nothing about the key now.
        if !self.flight.is_fenced() {
            self.shared.throttle().forget(&self.key);
        }
        if let Some(p) = self.take_permit() {
            self.shared
                .report_transitions(&self.key, self.shared.breaker().success(&self.key, p));
        }
        if self.shared.cfg().negative_ttl.is_some() {
            self.shared.negatives().remove(&self.key);
        }
    }

    /// Hands `entry` to every waiter, leaving the flight table first: a
    /// lookup that starts once the value is handed out must not join this
    /// finished call, as it would if the task were descheduled before
    /// [`leave_table`](Self::leave_table), but read the store, which holds
    /// the value (it is stored before it is handed out), or holds what
    /// replaced or removed it since (a delete straight from the store by
    /// another process, say); a call it then starts re-reads the store
    /// before it calls upstream. A flight a write fenced stays until it
    /// completes: until that write lands its value is newer than the store's.
    pub(crate) fn deliver(&self, entry: Entry) {
        if !self.flight.is_fenced() {
            self.shared.flights().remove(&self.key, &self.flight);
        }
        self.flight.complete(Ok(entry));
    }

    /// The call failed with `error`. Upstream errors count against the
    /// breaker unless the fetch marked them as not counting; timeouts count;
    /// anything else (a codec error, a store too slow to answer) is not
    /// upstream's failure and gives the permit back unused. An upstream error
    /// or timeout of a call made for callers who have an old value (`seen`)
    /// opens the key's fail-safe throttle window.
    pub(crate) fn fail(&self, error: Error, now: u64, seen: Option<&Entry>) {
        self.fail_scoped(error, now, seen, true);
    }

    /// [`fail`](Self::fail), told to the global breaker only if `global`: a
    /// batch call that failed as a whole is one failure to it, counted with
    /// its first key (`batch_task.rs`); each key's own breaker hears of it.
    pub(crate) fn fail_scoped(&self, error: Error, now: u64, seen: Option<&Entry>, global: bool) {
        let counts = match &error {
            Error::Upstream(e) => e.counts_against_breaker(),
            Error::Timeout { .. } => true,
            _ => false,
        };
        if let Some(p) = self.take_permit() {
            if counts {
                let breaker = self.shared.breaker();
                self.shared.report_transitions(
                    &self.key,
                    if global {
                        breaker.failure(&self.key, p, now)
                    } else {
                        breaker.key_failure(&self.key, p, now)
                    },
                );
            } else {
                self.shared.breaker().abandon(&self.key, p);
            }
        }
        if self.kind == Kind::Refresh {
            event_warn!("background refresh failed: {}", error);
        }
        // Not remembered for a call a later write superseded: the write
        // (an `invalidate` forgets remembered errors) is newer than it.
        if let (
            Kind::Fetch {
                remember_error: true,
            },
            Some(window),
            false,
        ) = (
            self.kind,
            self.shared.cfg().negative_ttl,
            self.flight.is_fenced(),
        ) {
            let until = now.saturating_add(duration_ms(window));
            self.shared
                .negatives()
                .insert(&self.key, error.clone(), now, until);
        }
        // Not a call a later write (set, invalidate, expire) or a takeover
        // superseded: that write ended the key's window, and the call's
        // failure is no news about what the key holds now.
        let throttles = matches!(error, Error::Upstream(_) | Error::Timeout { .. })
            && matches!(
                self.kind,
                Kind::Refresh
                    | Kind::Fetch {
                        remember_error: false
                    }
            )
            && !self.flight.is_fenced();
        self.flight.complete(Err(error));
        // After the flight's own mark is cleared (by `complete`).
        if let (true, Some(seen)) = (throttles, seen) {
            if let Some(until) = self.shared.throttle().failed(&self.key, now) {
                let marks = self.shared.flights().marks();
                marks.mark_throttled(marks.tag(&self.key, seen.created_at), until);
            }
        }
    }

    /// Another call stored a fresh value meanwhile: share it, no upstream call.
    pub(crate) fn share_stored(&self, entry: Entry) {
        self.flight.complete_from_storage(entry);
    }

    /// Ends without a value to hand out: a lease holder elsewhere did not
    /// deliver in time, or the store did not answer by the deadline.
    pub(crate) fn give_up(&self, error: Error) {
        self.flight.complete(Err(error));
    }

    /// Leaves the flight table once the call has its result (stored and
    /// handed out, or failed): a lookup from now on reads the store rather
    /// than joining a call that is only releasing its lease. Otherwise one
    /// that arrived after another process deleted the key would be handed
    /// the value this call fetched before the delete. The drop does it too.
    pub(crate) fn leave_table(&self) {
        if self.flight.is_complete() {
            self.shared.flights().remove(&self.key, &self.flight);
        }
    }

    fn take_permit(&self) -> Option<crate::breaker::Permit> {
        self.flight.with_claims(|c| c.permit.take()).flatten()
    }
}

impl<S, R, C> Drop for Ticket<S, R, C>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    fn drop(&mut self) {
        let shared = &self.shared;
        if !self.flight.is_complete() {
            let error = if shared.is_stopping() {
                Error::Shutdown
            } else {
                Error::Abandoned
            };
            bump(&shared.counters().upstream_abandoned);
            shared.upstream_outcome(UpstreamOutcome::Abandoned, Duration::ZERO);
            event_warn!("upstream call ended without a result: {}", error);
            self.flight.complete(Err(error));
        }
        if let Some(claims) = self.flight.take_claims() {
            shared.give_back(&self.key, claims);
        }
        shared.flights().remove(&self.key, &self.flight);
        self.flight.settle();
    }
}
