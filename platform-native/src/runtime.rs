//! [`TokioRuntime`]: the engine's clock, timer and spawner on tokio.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Once;
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

/// The system wall clock read from a value that one background thread
/// refreshes every millisecond: about 1 ns per read instead of a
/// `clock_gettime` call, at 1–2 ms resolution (the engine's phases are in
/// milliseconds and it never times anything with the clock).
///
/// The thread (`swre-clock`) starts on the first read and lives as long as the
/// process; if it cannot be started, reads fall back to [`SystemClock`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CoarseClock;

static COARSE_NOW: AtomicU64 = AtomicU64::new(0);
/// 0: not started, 1: ticking, 2: no thread (read the system clock).
static COARSE_MODE: AtomicU8 = AtomicU8::new(0);
static COARSE_START: Once = Once::new();

impl CoarseClock {
    #[cold]
    fn start() {
        COARSE_START.call_once(|| {
            COARSE_NOW.store(SystemClock.now_ms(), Ordering::Release);
            let ticking = std::thread::Builder::new()
                .name("swre-clock".to_owned())
                .spawn(|| loop {
                    std::thread::sleep(Duration::from_millis(1));
                    COARSE_NOW.store(SystemClock.now_ms(), Ordering::Release);
                })
                .is_ok();
            COARSE_MODE.store(if ticking { 1 } else { 2 }, Ordering::Release);
        });
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        match COARSE_MODE.load(Ordering::Acquire) {
            1 => COARSE_NOW.load(Ordering::Acquire),
            2 => SystemClock.now_ms(),
            _ => {
                Self::start();
                SystemClock.now_ms()
            }
        }
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
pub struct TokioRuntime<C = CoarseClock> {
    clock: C,
    handle: Option<Handle>,
}

impl TokioRuntime<CoarseClock> {
    /// The system wall clock (as a [`CoarseClock`]) and the current tokio
    /// runtime (if any). Use [`with_clock`](Self::with_clock)`(SystemClock)`
    /// for a clock read per call.
    pub fn new() -> Self {
        Self::with_clock(CoarseClock)
    }
}

impl Default for TokioRuntime<CoarseClock> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_follows_the_system_clock() {
        let first = CoarseClock.now_ms();
        std::thread::sleep(Duration::from_millis(30));
        let coarse = CoarseClock.now_ms();
        let precise = SystemClock.now_ms();
        assert!(
            coarse >= first + 20,
            "the coarse clock advanced: {first} -> {coarse}"
        );
        assert!(
            precise.abs_diff(coarse) <= 50,
            "within 50 ms of the system clock: {coarse} vs {precise}"
        );
    }
}
