//! Time as the engine sees it: a wall [`Clock`] for entry ages and a [`Timer`]
//! for timeouts, plus [`ManualClock`] for deterministic tests.

use alloc::sync::Arc;
use core::future::Future;
use core::time::Duration;
use portable_atomic::{AtomicU64, Ordering};

use crate::sync::{MaybeSend, MaybeSync};

/// A wall clock in Unix milliseconds.
///
/// Entries carry absolute times so that they outlive processes and page reloads.
///
/// Contract:
/// - `now_ms` MUST never panic and MUST be cheap (it is read on every lookup).
/// - It MAY be coarse or frozen (Cloudflare Workers' `Date.now()` does not advance
///   during CPU work) and MAY jump backwards; the engine never derives a timeout
///   from clock deltas (those come from [`Timer`]), and a clock that went backwards
///   only makes entries look younger.
pub trait Clock: MaybeSend + MaybeSync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// Sleeps, used for refresh timeouts and the bounded shutdown wait.
///
/// Contract: the returned future MUST complete no earlier than `duration` after it
/// was created (as the platform measures time) and MUST NOT panic. Dropping it
/// early MUST be harmless.
pub trait Timer: MaybeSend + MaybeSync {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + MaybeSend + 'static;
}

/// A settable clock shared by all its clones, for deterministic tests.
///
/// ```
/// use core::time::Duration;
/// use swre_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// let seen_by_engine = clock.clone();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(seen_by_engine.now_ms(), 3_000);
/// clock.set(10);
/// assert_eq!(seen_by_engine.now_ms(), 10);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start_ms` until moved.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let ms = duration_ms(d);
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(ms))
            });
    }

    /// Sets the clock to `ms`, forwards or backwards.
    pub fn set(&self, ms: u64) {
        self.now.store(ms, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
