//! The [`Metrics`] hook: engine events for an external metrics system.

use core::time::Duration;

use crate::breaker::{BreakerScope, BreakerState};
use crate::error::Error;
use crate::phase::Status;
use crate::sync::{MaybeSend, MaybeSync};

/// How an upstream call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// It returned a value.
    Success,
    /// It returned an error.
    Error,
    /// It did not finish within `refresh_timeout`.
    Timeout,
    /// It ended without a result (panic, dropped task, shutdown).
    Abandoned,
}

impl UpstreamOutcome {
    /// The lower-case name (`"success"`, `"error"`, `"timeout"`, `"abandoned"`),
    /// as metrics exporters and spans label it.
    ///
    /// ```
    /// assert_eq!(swre_core::UpstreamOutcome::Timeout.as_str(), "timeout");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamOutcome::Success => "success",
            UpstreamOutcome::Error => "error",
            UpstreamOutcome::Timeout => "timeout",
            UpstreamOutcome::Abandoned => "abandoned",
        }
    }
}

/// Which storage operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageOp {
    /// A read.
    Get,
    /// A write.
    Set,
    /// A delete.
    Delete,
}

impl StorageOp {
    /// The lower-case name (`"get"`, `"set"`, `"delete"`).
    ///
    /// ```
    /// assert_eq!(swre_core::StorageOp::Set.as_str(), "set");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            StorageOp::Get => "get",
            StorageOp::Set => "set",
            StorageOp::Delete => "delete",
        }
    }
}

/// Receives engine events; every method has an empty default.
///
/// Methods are called inline on the engine's path and MUST be cheap and MUST
/// NOT block. No per-key data is passed, so implementations need no allocation.
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering};
/// use swre_core::{Metrics, Status};
///
/// #[derive(Default)]
/// struct HitCounter(AtomicU64);
/// impl Metrics for HitCounter {
///     fn lookup(&self, status: Status) {
///         if status == Status::Hit { self.0.fetch_add(1, Ordering::Relaxed); }
///     }
/// }
/// ```
pub trait Metrics: MaybeSend + MaybeSync + 'static {
    /// A lookup returned a value with `status`.
    fn lookup(&self, status: Status) {
        let _ = status;
    }
    /// A lookup returned `error`.
    fn lookup_error(&self, error: &Error) {
        let _ = error;
    }
    /// An upstream call ended; `elapsed` is measured with the engine's clock
    /// (coarse or zero where the clock is frozen during work).
    fn upstream(&self, outcome: UpstreamOutcome, elapsed: Duration) {
        let _ = (outcome, elapsed);
    }
    /// A background refresh was skipped because too many were running.
    fn refresh_skipped(&self) {}
    /// A circuit breaker changed state.
    fn breaker(&self, scope: BreakerScope, state: BreakerState) {
        let _ = (scope, state);
    }
    /// A storage operation failed and was degraded.
    fn storage_error(&self, op: StorageOp) {
        let _ = op;
    }
    /// An upstream call was not made here because another process held the
    /// key's fleet-wide refresh lease: the call waits for that process's
    /// value instead (counted in `Stats::lease_waits` too).
    fn lease_wait(&self) {}
}

/// Metrics that go nowhere (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {}

/// Shared metrics: an `Arc` of metrics is metrics, so one recorder can be
/// given to the engine and kept for reading.
impl<M: Metrics> Metrics for alloc::sync::Arc<M> {
    fn lookup(&self, status: Status) {
        (**self).lookup(status)
    }
    fn lookup_error(&self, error: &Error) {
        (**self).lookup_error(error)
    }
    fn upstream(&self, outcome: UpstreamOutcome, elapsed: Duration) {
        (**self).upstream(outcome, elapsed)
    }
    fn refresh_skipped(&self) {
        (**self).refresh_skipped()
    }
    fn breaker(&self, scope: BreakerScope, state: BreakerState) {
        (**self).breaker(scope, state)
    }
    fn storage_error(&self, op: StorageOp) {
        (**self).storage_error(op)
    }
    fn lease_wait(&self) {
        (**self).lease_wait()
    }
}
