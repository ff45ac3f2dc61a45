//! [`TokioRuntime`]: the engine's clock, timer and spawner on tokio.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swre_core::{Clock, Spawn, Timer};
use tokio::runtime::Handle;

/// The system wall clock, in Unix milliseconds (0 before the epoch).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Clock, timer and spawner on tokio.
///
/// Timers are `tokio::time::sleep` (so `tokio::time::pause` drives them in
/// tests); tasks go to the runtime that was current when this value was made,
/// or else to the one current at spawn time. A task that cannot be spawned
/// (no tokio runtime at all) is dropped, and the engine's drop guard answers
/// its waiters with `Error::Panicked` instead of leaving them hanging.
///
/// A fetch that panics is caught by tokio at the task boundary; the engine's
/// guard then completes the call with `Error::Panicked` for every waiter.
#[derive(Clone, Debug)]
pub struct TokioRuntime<C = SystemClock> {
    clock: C,
    handle: Option<Handle>,
}

impl TokioRuntime<SystemClock> {
    /// The system clock and the current tokio runtime (if any).
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }
}

impl Default for TokioRuntime<SystemClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone + 'static> TokioRuntime<C> {
    /// `clock` (e.g. a `ManualClock` in tests) and the current tokio runtime (if any).
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            handle: Handle::try_current().ok(),
        }
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C: Clock> Clock for TokioRuntime<C> {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

impl<C: Clock> Timer for TokioRuntime<C> {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(d)
    }
}

impl<C: Clock> Spawn for TokioRuntime<C> {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.handle.clone().or_else(|| Handle::try_current().ok());
        if let Some(h) = handle {
            drop(h.spawn(task));
        }
    }
}
