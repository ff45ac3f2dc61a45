//! The fail-safe throttle: after a refresh of a key that has an old value
//! fails, that value is served for a window without calling upstream again
//! (FusionCache's `FailSafeThrottleDuration`, BentoCache's `graceBackoff`).
//! The window doubles with each consecutive failure, from `base` up to
//! `max`; a success, a write or an invalidation of the key ends it.
//!
//! Records live in sharded maps of at most [`MAX_KEYS`] keys. A record is
//! kept for `max` past its window, so that a failure soon after the window
//! still counts as consecutive; when a shard is full, such records go first,
//! and if it is still full the failure is not throttled (the key behaves as
//! without the throttle, and nothing else is lost).

use alloc::boxed::Box;
use core::hash::BuildHasher;
use core::time::Duration;

use hashbrown::{DefaultHashBuilder, HashMap};
use spin::Mutex;

use crate::time::duration_ms;

/// Keys throttled at most, over all shards.
pub(crate) const MAX_KEYS: usize = 10_000;
const SHARDS: usize = 16;

/// The throttle's window after a first failure and its cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailSafeThrottle {
    /// The window after one failure; each consecutive failure doubles it.
    pub base: Duration,
    /// The longest window.
    pub max: Duration,
}

impl Default for FailSafeThrottle {
    /// 5 s, doubling up to 1 min.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy)]
struct Record {
    /// The window ends here (Unix ms).
    until: u64,
    /// Consecutive failures so far.
    failures: u32,
}

/// The throttle's records; see the module docs.
pub(crate) struct Throttle {
    shards: [Mutex<HashMap<Box<str>, Record>>; SHARDS],
    hasher: DefaultHashBuilder,
    base_ms: u64,
    max_ms: u64,
}

impl Throttle {
    /// A throttle with `cfg`'s windows, or one that never throttles.
    pub(crate) fn new(cfg: Option<FailSafeThrottle>) -> Self {
        let (base_ms, max_ms) = cfg.map_or((0, 0), |c| (duration_ms(c.base), duration_ms(c.max)));
        Self {
            shards: core::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: DefaultHashBuilder::default(),
            base_ms,
            max_ms: max_ms.max(base_ms),
        }
    }

    /// Whether failures are throttled at all.
    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.base_ms > 0
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<Box<str>, Record>> {
        &self.shards[(self.hasher.hash_one(key) >> 40) as usize % SHARDS]
    }

    /// The end of `key`'s window if it is throttled at `now`.
    pub(crate) fn until(&self, key: &str, now: u64) -> Option<u64> {
        if !self.is_on() {
            return None;
        }
        let map = self.shard(key).lock();
        map.get(key).map(|r| r.until).filter(|&until| now < until)
    }

    /// Records a failed call for `key` at `now` and returns the end of the
    /// window it opens, or `None` if the throttle is off or full.
    pub(crate) fn failed(&self, key: &str, now: u64) -> Option<u64> {
        if !self.is_on() {
            return None;
        }
        let mut map = self.shard(key).lock();
        let failures = match map.get(key) {
            // Consecutive: the last window ended less than `max` ago.
            Some(r) if now < r.until.saturating_add(self.max_ms) => r.failures.saturating_add(1),
            _ => 1,
        };
        let window = self
            .base_ms
            .saturating_mul(1u64 << (failures - 1).min(32))
            .min(self.max_ms);
        let until = now.saturating_add(window);
        if map.len() >= MAX_KEYS / SHARDS && !map.contains_key(key) {
            let max = self.max_ms;
            map.retain(|_, r| now < r.until.saturating_add(max));
            if map.len() >= MAX_KEYS / SHARDS {
                return None;
            }
        }
        map.insert(Box::from(key), Record { until, failures });
        Some(until)
    }

    /// Ends every window.
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            shard.lock().clear();
        }
    }

    /// Ends `key`'s window and forgets its failures.
    pub(crate) fn forget(&self, key: &str) {
        if !self.is_on() {
            return;
        }
        let mut map = self.shard(key).lock();
        if !map.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(Some(FailSafeThrottle {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        }))
    }

    #[test]
    fn the_window_doubles_with_consecutive_failures_up_to_the_cap() {
        let t = throttle();
        let mut now = 1_000;
        for want in [1_000, 2_000, 4_000, 5_000, 5_000] {
            let until = t.failed("k", now).expect("recorded");
            assert_eq!(until - now, want);
            assert_eq!(t.until("k", until - 1), Some(until));
            assert_eq!(t.until("k", until), None, "the window ends at its exact ms");
            now = until;
        }
    }

    #[test]
    fn a_failure_long_after_the_window_starts_over_and_forget_ends_it() {
        let t = throttle();
        let until = t.failed("k", 0).unwrap();
        assert_eq!(
            t.failed("k", until + 5_000).unwrap() - (until + 5_000),
            1_000
        );
        t.forget("k");
        assert_eq!(t.until("k", until + 5_000), None);
        assert_eq!(
            t.failed("k", until + 5_000).unwrap() - (until + 5_000),
            1_000
        );
    }

    #[test]
    fn off_never_throttles_and_full_shards_drop_new_keys_only() {
        let off = Throttle::new(None);
        assert_eq!(off.failed("k", 0), None);
        assert_eq!(off.until("k", 0), None);
        let t = throttle();
        for i in 0..MAX_KEYS * 2 {
            t.failed(&alloc::format!("k{i}"), 0);
        }
        let held: usize = t.shards.iter().map(|s| s.lock().len()).sum();
        assert!(held <= MAX_KEYS, "{held} records");
        assert!(t.until("k0", 1).is_some(), "an early key keeps its window");
        // Once records age out, new keys are throttled again.
        assert!(t.failed("late", 100_000).is_some());
    }
}
