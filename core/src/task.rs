//! The spawned upstream call: runs the fetch under `refresh_timeout` and the
//! shutdown latch, shares the result, stores it, and — through a drop guard —
//! releases its in-flight slot however it ends (rule 2).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::future::Future;
use core::pin::pin;
use core::sync::atomic::Ordering;
use core::time::Duration;

use futures::future::{select, Either};

use crate::breaker::Permit;
use crate::bytes::Bytes;
use crate::codec::Codec;
use crate::engine::{Engine, Inner};
use crate::entry::{CacheTtl, Entry};
use crate::error::Error;
use crate::flight::Flight;
use crate::metrics::{StorageOp, UpstreamOutcome};
use crate::phase::Phase;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::MaybeSend;
use crate::time::duration_ms;

enum Outcome {
    Done(Result<Bytes, Error>),
    TimedOut,
    Aborted,
}

/// Owns one flight's slot; dropping it (normally, by panic or by the platform
/// dropping the task) releases the slot and never leaves a waiter hanging.
struct FlightGuard<S, R, C> {
    inner: Arc<Inner<S, R, C>>,
    key: Box<str>,
    flight: Arc<Flight>,
    permit: Option<Permit>,
    background: bool,
    remember_error: bool,
    started_ms: u64,
}

impl<S: Storage, R: Runtime, C: Codec + Clone> Engine<S, R, C> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn_flight<J, JF>(
        &self,
        key: &str,
        flight: Arc<Flight>,
        permit: Permit,
        ttl: Option<CacheTtl>,
        job: J,
        background: bool,
        remember_error: bool,
        now: u64,
        seen: Option<Entry>,
    ) where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
    {
        let i = &self.inner;
        i.tasks.increment();
        if background {
            bump(&i.counters.refreshes_started);
        }
        let guard = FlightGuard {
            inner: i.clone(),
            key: Box::from(key),
            flight,
            permit: Some(permit),
            background,
            remember_error,
            started_ms: now,
        };
        i.runtime.spawn(guard.run(job, ttl, seen));
    }
}

impl<S: Storage, R: Runtime, C> FlightGuard<S, R, C> {
    async fn run<J, JF>(mut self, job: J, ttl: Option<CacheTtl>, seen: Option<Entry>)
    where
        J: FnOnce() -> JF,
        JF: Future<Output = Result<Bytes, Error>>,
    {
        let inner = self.inner.clone();
        let timeout = inner.cfg.refresh_timeout;
        // A caller may have read storage just before another call for this key
        // stored its value and left the table: look once more before calling
        // upstream, so a stampede makes exactly one call.
        if let Some(entry) = self.stored_since(seen.as_ref(), timeout).await {
            self.share_stored(entry);
            return;
        }
        // Fleet-wide: one process per key calls upstream (stores that are not
        // shared grant every lease; a store that cannot answer is not waited for).
        let mut leased = false;
        match self
            .bounded(inner.storage.try_lease(&self.key, timeout), timeout)
            .await
        {
            Some(Ok(true)) => leased = true,
            Some(Ok(false)) => {
                bump(&inner.counters.lease_waits);
                if let Some(entry) = self.await_other_process(seen.as_ref(), timeout).await {
                    self.share_stored(entry);
                    return;
                }
                if self.background {
                    // A stale value is being served; another process refreshes it.
                    if let Some(p) = self.permit.take() {
                        inner.breaker.abandon(&self.key, p);
                    }
                    self.flight.complete(Err(Error::Timeout { after: timeout }));
                    return;
                }
            }
            Some(Err(_)) | None => {}
        }
        bump(&inner.counters.upstream_calls);
        let outcome = match self.bounded(job(), timeout).await {
            Some(r) => Outcome::Done(r),
            None if inner.abort.is_set() => Outcome::Aborted,
            None => Outcome::TimedOut,
        };
        let now = inner.runtime.now_ms();
        let elapsed = Duration::from_millis(now.saturating_sub(self.started_ms));
        match outcome {
            Outcome::Done(Ok(bytes)) => {
                self.upstream(UpstreamOutcome::Success, elapsed);
                if let Some(p) = self.permit.take() {
                    inner.report_transition(inner.breaker.success(&self.key, p));
                }
                if inner.cfg.negative_ttl.is_some() {
                    inner.negatives.remove(&self.key);
                }
                let ttl = inner.ttl_for(&self.key, &bytes, ttl);
                let entry = Entry::new(bytes, now, ttl);
                self.flight.complete(Ok(entry.clone()));
                self.store(entry, timeout).await;
            }
            Outcome::Done(Err(e @ Error::Upstream(_))) => {
                bump(&inner.counters.upstream_errors);
                self.fail(e, elapsed, now, UpstreamOutcome::Error);
            }
            Outcome::Done(Err(e)) => {
                // Upstream answered but its value could not be encoded: not
                // upstream's failure, so the breaker is not charged.
                if let Some(p) = self.permit.take() {
                    inner.breaker.abandon(&self.key, p);
                }
                self.flight.complete(Err(e));
            }
            Outcome::TimedOut => {
                bump(&inner.counters.upstream_timeouts);
                self.fail(
                    Error::Timeout { after: timeout },
                    elapsed,
                    now,
                    UpstreamOutcome::Timeout,
                );
            }
            // The guard's drop reports the abandoned call as a shutdown.
            Outcome::Aborted => {}
        }
        if leased {
            let _ = self
                .bounded(inner.storage.release_lease(&self.key), timeout)
                .await;
        }
    }

    /// A fresh entry in storage other than `seen` (the one the caller read).
    async fn stored_since(&self, seen: Option<&Entry>, timeout: Duration) -> Option<Entry> {
        let inner = &self.inner;
        let entry = match self.bounded(inner.storage.get(&self.key), timeout).await? {
            Ok(found) => found?,
            Err(_) => {
                inner.storage_error(StorageOp::Get, &inner.counters.storage_read_errors);
                return None;
            }
        };
        let fresh = Phase::of(Some(&entry), inner.runtime.now_ms()) == Phase::Fresh;
        (fresh && seen != Some(&entry)).then_some(entry)
    }

    /// Polls storage, with backoff and for at most `timeout` of timer time,
    /// for the value another process (holding the lease) is fetching.
    async fn await_other_process(&self, seen: Option<&Entry>, timeout: Duration) -> Option<Entry> {
        let mut delay = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        while waited < timeout {
            let step = delay.min(timeout - waited);
            self.bounded(self.inner.runtime.sleep(step), timeout)
                .await?;
            waited += step;
            if let Some(entry) = self.stored_since(seen, timeout).await {
                return Some(entry);
            }
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        None
    }

    /// Completes the flight with an entry another call stored.
    fn share_stored(&mut self, entry: Entry) {
        if let Some(p) = self.permit.take() {
            self.inner.breaker.abandon(&self.key, p);
        }
        self.flight.complete_from_storage(entry);
    }

    /// `fut`'s output, or `None` if `timeout` passes or shutdown aborts first.
    async fn bounded<T>(&self, fut: impl Future<Output = T>, timeout: Duration) -> Option<T> {
        let fut = pin!(fut);
        let sleep = pin!(self.inner.runtime.sleep(timeout));
        let abort = pin!(self.inner.abort.wait());
        match select(fut, select(sleep, abort)).await {
            Either::Left((v, _)) => Some(v),
            Either::Right(_) => None,
        }
    }

    fn upstream(&self, outcome: UpstreamOutcome, elapsed: Duration) {
        if let Some(m) = &self.inner.metrics {
            m.upstream(outcome, elapsed);
        }
    }

    fn fail(&mut self, error: Error, elapsed: Duration, now: u64, outcome: UpstreamOutcome) {
        let inner = &self.inner;
        self.upstream(outcome, elapsed);
        if let Some(p) = self.permit.take() {
            inner.report_transition(inner.breaker.failure(&self.key, p, now));
        }
        if let (true, Some(window)) = (self.remember_error, inner.cfg.negative_ttl) {
            let until = now.saturating_add(duration_ms(window));
            inner.negatives.insert(&self.key, error.clone(), now, until);
        }
        self.flight.complete(Err(error));
    }

    /// Writes the fetched entry, bounded by the timeout and the shutdown latch;
    /// failures are counted, never returned (rule 5).
    async fn store(&self, entry: Entry, timeout: Duration) {
        let inner = &self.inner;
        if entry.value.len() > inner.cfg.max_value_bytes {
            bump(&inner.counters.oversized_values);
            return;
        }
        let ok = matches!(
            self.bounded(inner.storage.set(&self.key, entry), timeout)
                .await,
            Some(Ok(()))
        );
        if !ok {
            inner.storage_error(StorageOp::Set, &inner.counters.storage_write_errors);
        }
    }
}

impl<S, R, C> Drop for FlightGuard<S, R, C> {
    fn drop(&mut self) {
        let inner = &self.inner;
        if !self.flight.is_complete() {
            let error = if inner.stopping.load(Ordering::Acquire) {
                Error::Shutdown
            } else {
                Error::Panicked
            };
            bump(&inner.counters.upstream_abandoned);
            if let Some(m) = &inner.metrics {
                m.upstream(UpstreamOutcome::Abandoned, Duration::ZERO);
            }
            self.flight.complete(Err(error));
        }
        if let Some(p) = self.permit.take() {
            inner.breaker.abandon(&self.key, p);
        }
        inner.flights.remove(&self.key, &self.flight);
        if self.background {
            inner.refreshes.decrement();
        }
        inner.tasks.decrement();
    }
}
