//! [`Shared`]: the state one engine and its tasks hold by `Arc`, with the
//! operations on it. The end of the engine's one-way flow: lookups, admission
//! and tasks call into it; it calls nothing of theirs.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use futures::future::{select, Either};

use super::config::Config;
use super::decoded::Decoded;
use crate::breaker::{Breaker, BreakerState, Transitions};
use crate::entry::{CacheTtl, Entry};
use crate::error::{Error, KeyError, StorageError};
use crate::flight::{Claims, Flight, FlightTable};
use crate::log::{event_debug, event_info, event_warn};
use crate::metrics::{Metrics, StorageOp, UpstreamOutcome};
use crate::negative::NegativeCache;
use crate::phase::Status;
use crate::policy::TtlPolicy;
use crate::random::Random;
use crate::runtime::Runtime;
use crate::stats::{bump, Counters, Stats};
use crate::storage::{LeaseToken, Storage};
use crate::tags::fence::TagFence;
use crate::tags::record::RESERVED_PREFIX;
use crate::throttle::Throttle;
use crate::time::duration_ms;
use crate::wait::{Latch, TaskCount};

/// Shared state of one engine.
pub(crate) struct Shared<S, R, C> {
    storage: S,
    runtime: R,
    codec: C,
    cfg: Config,
    flights: FlightTable,
    breaker: Breaker,
    negatives: NegativeCache,
    throttle: Throttle,
    random: Random,
    /// Which tags this engine invalidated or expired lately.
    tag_fence: TagFence,
    /// This engine's id in the tag records it writes.
    id: u64,
    counters: Counters,
    metrics: Option<Arc<dyn Metrics>>,
    ttl_policy: Option<Arc<dyn TtlPolicy>>,
    /// Every spawned upstream call.
    tasks: TaskCount,
    /// Background refreshes, bounded by `max_concurrent_refreshes`.
    refreshes: TaskCount,
    stopping: AtomicBool,
    /// Set when the shutdown grace period ends: running calls stop.
    abort: Latch,
    /// When (clock ms) the refresh bound last swept for abandoned calls.
    last_sweep_ms: portable_atomic::AtomicU64,
    /// Typed values decoded once per stored version; made on first use.
    decoded: spin::Once<Decoded>,
}

impl<S, R, C> Shared<S, R, C> {
    pub(crate) fn new(
        storage: S,
        runtime: R,
        codec: C,
        cfg: Config,
        metrics: Option<Arc<dyn Metrics>>,
        ttl_policy: Option<Arc<dyn TtlPolicy>>,
    ) -> Self {
        let random = Random::new(core::hash::BuildHasher::hash_one(
            &hashbrown::DefaultHashBuilder::default(),
            0x6561_726c_u64,
        ));
        // Two engines of one process get one seed: their ids differ by
        // where they live.
        let id = random.next_u64() ^ (&random as *const Random as u64).rotate_left(17);
        Self {
            id,
            breaker: Breaker::new(cfg.breaker),
            storage,
            runtime,
            codec,
            flights: FlightTable::new(cfg.max_concurrent_refreshes),
            throttle: Throttle::new(cfg.fail_safe_throttle),
            random,
            cfg,
            tag_fence: TagFence::default(),
            negatives: NegativeCache::default(),
            counters: Counters::default(),
            metrics,
            ttl_policy,
            tasks: TaskCount::default(),
            refreshes: TaskCount::default(),
            stopping: AtomicBool::new(false),
            abort: Latch::default(),
            last_sweep_ms: portable_atomic::AtomicU64::new(0),
            decoded: spin::Once::new(),
        }
    }

    /// The decoded-value tier.
    #[inline]
    pub(crate) fn decoded(&self) -> &Decoded {
        self.decoded.call_once(|| Decoded::new(self.cfg.decoded))
    }

    /// Random draws (the early refresh's).
    #[inline]
    pub(crate) fn random(&self) -> &Random {
        &self.random
    }

    /// This engine's id in the tag records it writes.
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Recent tag operations, for calls running across them.
    #[inline]
    pub(crate) fn tag_fence(&self) -> &TagFence {
        &self.tag_fence
    }

    /// The fail-safe throttle's records.
    #[inline]
    pub(crate) fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    pub(crate) fn storage(&self) -> &S {
        &self.storage
    }

    pub(crate) fn runtime(&self) -> &R {
        &self.runtime
    }

    pub(crate) fn codec(&self) -> &C {
        &self.codec
    }

    pub(crate) fn cfg(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn flights(&self) -> &FlightTable {
        &self.flights
    }

    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub(crate) fn negatives(&self) -> &NegativeCache {
        &self.negatives
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn abort_latch(&self) -> &Latch {
        &self.abort
    }

    /// A snapshot of the counters and gauges.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            in_flight: self.flights.len() as u64,
            refreshes_running: self.refreshes.get() as u64,
            tasks_running: self.tasks.get() as u64,
            key_breakers: self.breaker.key_count() as u64,
            ..self.counters.snapshot()
        }
    }

    /// "Bad input changes nothing": an empty, over-long or reserved key is
    /// rejected.
    #[inline]
    pub(crate) fn check_key(&self, key: &str) -> Result<(), Error> {
        let max = self.cfg.max_key_bytes;
        let bytes = key.as_bytes();
        // One comparison for both bounds on the hit path: an empty key wraps
        // to `usize::MAX`. A reserved key starts with NUL, which no key the
        // hit path sees does: one more byte test.
        let err = if bytes.len().wrapping_sub(1) >= max {
            if bytes.is_empty() {
                KeyError::Empty
            } else {
                KeyError::TooLong {
                    len: key.len(),
                    max,
                }
            }
        } else if bytes[0] != 0 || !key.starts_with(RESERVED_PREFIX) {
            return Ok(());
        } else {
            KeyError::Reserved
        };
        bump(&self.counters.invalid_keys);
        Err(Error::InvalidKey(err))
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.abort.is_set()
    }

    #[inline(always)]
    pub(crate) fn record_status(&self, status: Status) {
        self.counters.status(status);
        if let Some(m) = &self.metrics {
            m.lookup(status);
        }
    }

    pub(crate) fn record_error(&self, e: &Error) {
        bump(&self.counters.errors);
        if let Some(m) = &self.metrics {
            m.lookup_error(e);
        }
    }

    #[inline]
    pub(crate) fn record<V>(&self, result: &Result<V, Error>, status: impl Fn(&V) -> Status) {
        match result {
            Ok(c) => self.record_status(status(c)),
            Err(e) => self.record_error(e),
        }
    }

    /// Counts and reports the breaker transitions an event of `key` made.
    pub(crate) fn report_transitions(&self, key: &str, transitions: Transitions) {
        // Named only in `tracing` events, by its hash.
        #[cfg(not(feature = "tracing"))]
        let _ = key;
        for (scope, state) in transitions.into_iter().flatten() {
            match state {
                BreakerState::Open => {
                    bump(&self.counters.breaker_opened);
                    event_warn!(
                        name: "swre.breaker.transition",
                        { scope = scope.as_str(), state = "open", key_hash = %crate::trace::KeyHash::of(key) },
                        "circuit breaker ({:?}) opened",
                        scope
                    );
                }
                BreakerState::Closed => event_info!(
                    name: "swre.breaker.transition",
                    { scope = scope.as_str(), state = "closed", key_hash = %crate::trace::KeyHash::of(key) },
                    "circuit breaker ({:?}) closed",
                    scope
                ),
                BreakerState::HalfOpen => event_info!(
                    name: "swre.breaker.transition",
                    { scope = scope.as_str(), state = "half_open", key_hash = %crate::trace::KeyHash::of(key) },
                    "circuit breaker ({:?}) half-open: trial calls pass",
                    scope
                ),
            }
            if let Some(m) = &self.metrics {
                m.breaker(scope, state);
            }
        }
    }

    pub(crate) fn storage_error(&self, op: StorageOp) {
        let counter = match op {
            StorageOp::Get => &self.counters.storage_read_errors,
            _ => &self.counters.storage_write_errors,
        };
        bump(counter);
        if let Some(m) = &self.metrics {
            m.storage_error(op);
        }
    }

    /// Another process holds the key's refresh lease: this call waits for its
    /// value rather than calling upstream.
    pub(crate) fn lease_wait(&self) {
        bump(&self.counters.lease_waits);
        event_debug!(
            name: "swre.lease.wait",
            {},
            "another process holds the refresh lease; waiting for its value"
        );
        if let Some(m) = &self.metrics {
            m.lease_wait();
        }
    }

    pub(crate) fn upstream_outcome(&self, outcome: UpstreamOutcome, elapsed: Duration) {
        if let Some(m) = &self.metrics {
            m.upstream(outcome, elapsed);
        }
    }

    /// A read's result, degraded per "storage failures degrade": an error
    /// reads as absent (counted).
    #[inline(always)]
    pub(crate) fn degrade_read(&self, read: Result<Option<Entry>, StorageError>) -> Option<Entry> {
        match read {
            Ok(e) => e,
            Err(e) => {
                self.storage_error(StorageOp::Get);
                event_warn!(
                    name: "swre.storage.error",
                    { operation = "get" },
                    "storage read failed, served as a miss: {}",
                    e
                );
                None
            }
        }
    }

    /// The entry for a value fetched at `now`: the call's TTL if it chose one;
    /// else the TTL a caller pinned on the entry it refreshes (`seen`); else
    /// the policy's valid answer; else the default.
    pub(crate) fn entry_for(
        &self,
        key: &str,
        value: crate::bytes::Bytes,
        now: u64,
        call: Option<CacheTtl>,
        seen: Option<&Entry>,
    ) -> Entry {
        match (call, seen) {
            (Some(ttl), _) => Entry::new(value, now, ttl).pinned(true),
            (None, Some(s)) if s.pinned_ttl => Entry::new(value, now, s.ttl()).pinned(true),
            (None, _) => {
                let ttl = self.default_ttl(key, &value);
                Entry::new(value, now, ttl)
            }
        }
    }

    /// The policy's valid TTL for `value`, else the engine's default.
    pub(crate) fn default_ttl(&self, key: &str, value: &[u8]) -> CacheTtl {
        self.ttl_policy
            .as_ref()
            .and_then(|p| p.ttl_for(key, value))
            .filter(CacheTtl::is_valid)
            .unwrap_or(self.cfg.ttl)
    }

    /// Counts a spawned task (given back with its flight's claims).
    pub(crate) fn count_task(&self, flight: &Flight) {
        if flight.with_claims(|c| c.task = true).is_some() {
            self.tasks.increment();
        }
    }

    /// Moves the engine towards shutdown: no new upstream call starts.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Stops running calls (the end of the shutdown grace period).
    pub(crate) fn abort(&self) {
        self.abort.set();
    }

    pub(crate) fn tasks_running(&self) -> usize {
        self.tasks.get()
    }

    pub(crate) fn tasks_done(&self) -> impl Future<Output = ()> + '_ {
        self.tasks.wait_zero()
    }
}

impl<S: Storage, R: Runtime, C: 'static + crate::sync::MaybeSend + crate::sync::MaybeSync>
    Shared<S, R, C>
{
    /// The wall clock now.
    #[inline(always)]
    pub(crate) fn now(&self) -> u64 {
        self.runtime.now_ms()
    }

    /// Gives back everything in `claims` ("every ticket is returned"): the
    /// breaker permit unused, the refresh slot, the task count, and the lease,
    /// released by a spawned task as `Drop` cannot await.
    pub(crate) fn give_back(self: &Arc<Self>, key: &str, claims: Claims) {
        if let Some(p) = claims.permit {
            self.breaker.abandon(key, p);
        }
        if claims.refresh_slot {
            self.refreshes.decrement();
        }
        if let Some(token) = claims.lease {
            self.release_lease_later(key, token);
        }
        if claims.task {
            self.tasks.decrement();
        }
    }

    /// Releases `key`'s lease `token` in a spawned task bounded by
    /// `refresh_timeout` (not by shutdown: a lease left behind would make the
    /// rest of the fleet wait out its whole TTL).
    pub(crate) fn release_lease_later(self: &Arc<Self>, key: &str, token: LeaseToken) {
        let shared = self.clone();
        let key: Box<str> = Box::from(key);
        let timeout = self.cfg.refresh_timeout;
        self.runtime.spawn(async move {
            let release = pin!(shared.storage.release_lease(&key, token));
            let sleep = pin!(shared.runtime.sleep(timeout));
            let _ = select(release, sleep).await;
        });
    }

    /// Takes the table slot of an abandoned flight (one past its deadline):
    /// it is fenced, its waiters get a timeout, and what it claimed is given
    /// back now — its task may never run again to do it ("one deadline per
    /// call").
    pub(crate) fn take_over(self: &Arc<Self>, key: &str, old: &Flight) {
        old.fence();
        old.hide();
        old.settle();
        old.complete(Err(Error::Timeout {
            after: self.cfg.refresh_timeout,
        }));
        if let Some(claims) = old.take_claims() {
            bump(&self.counters.upstream_abandoned);
            bump(&self.counters.flights_taken_over);
            self.upstream_outcome(UpstreamOutcome::Abandoned, Duration::ZERO);
            event_warn!(
                "upstream call for a key abandoned past its deadline (generation {}); the next lookup took over",
                old.generation()
            );
            self.give_back(key, claims);
        }
    }

    /// Takes one of the `max_concurrent_refreshes` slots ("bounded refresh");
    /// a refusal is counted as a skipped refresh.
    pub(crate) fn take_refresh_slot(self: &Arc<Self>) -> bool {
        let max = self.cfg.max_concurrent_refreshes;
        if self.refreshes.try_increment(max)
            || (max > 0
                && self.may_sweep()
                && self.reclaim_abandoned() > 0
                && self.refreshes.try_increment(max))
        {
            bump(&self.counters.refreshes_started);
            return true;
        }
        bump(&self.counters.refreshes_skipped);
        if let Some(m) = &self.metrics {
            m.refresh_skipped();
        }
        false
    }

    /// Whether the refresh bound may sweep the flight table now: at most once
    /// per quarter of `refresh_timeout`, so a bound reached under load does
    /// not make every stale hit scan the table.
    fn may_sweep(&self) -> bool {
        let now = self.now();
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        let every = duration_ms(self.cfg.refresh_timeout) / 4;
        now >= last.saturating_add(every)
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes over every flight past its deadline: their tasks may never run
    /// again to give back what they hold. Called when the refresh bound is
    /// reached and at shutdown, so never-polled calls cannot wedge either.
    pub(crate) fn reclaim_abandoned(self: &Arc<Self>) -> usize {
        let abandoned = self.flights.abandoned(self.now());
        for (key, flight) in &abandoned {
            self.flights.remove(key, flight);
            self.take_over(key, flight);
        }
        abandoned.len()
    }

    /// Supersedes any flight of `key` before a write ("the latest write
    /// wins"): a flight that has not stored yet never will; one that is
    /// storing now is let finish first (bounded by its deadline), so the
    /// write lands after it. The writer hides the flight's value once its
    /// own write has landed.
    pub(crate) async fn supersede(&self, key: &str) -> Option<Arc<Flight>> {
        let flight = self.flights.get(key)?;
        self.fence_flight(&flight).await;
        Some(flight)
    }

    /// [`supersede`](Self::supersede) of every key's flight (for `clear`).
    pub(crate) async fn supersede_all(&self) -> Vec<Arc<Flight>> {
        let flights = self.flights.all();
        for flight in &flights {
            self.fence_flight(flight).await;
        }
        flights
    }

    /// Fences `flight`; if it was storing, waits (bounded by its deadline)
    /// until it has.
    async fn fence_flight(&self, flight: &Flight) {
        if !flight.fence() {
            return;
        }
        let now = self.now();
        let left = flight
            .deadline_ms()
            .saturating_sub(now)
            .min(duration_ms(self.cfg.refresh_timeout));
        {
            let settled = pin!(flight.settled());
            let sleep = pin!(self.runtime.sleep(Duration::from_millis(left)));
            if let Either::Right(_) = select(settled, sleep).await {
                event_warn!(
                    "a write waited out a flight's store that did not settle by its deadline"
                );
            }
        }
    }
}
