//! Built-in counters: atomic, lock-free, and read as a [`Stats`] snapshot.

use portable_atomic::{AtomicU64, Ordering};

use crate::phase::Status;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// A snapshot of the engine's counters (`engine.stats()`).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[$doc])* pub $name: u64, )*
            /// Upstream calls running now (foreground and background).
            pub in_flight: u64,
            /// Background refreshes running now.
            pub refreshes_running: u64,
            /// Spawned engine tasks not yet finished.
            pub tasks_running: u64,
            /// Per-key circuit breakers kept.
            pub key_breakers: u64,
        }

        #[derive(Default)]
        pub(crate) struct Counters {
            $( pub(crate) $name: AtomicU64, )*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats {
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                    ..Stats::default()
                }
            }
        }
    };
}

counters! {
    /// Lookups answered with [`Status::Hit`].
    hits,
    /// Lookups answered with [`Status::Stale`].
    stale,
    /// Lookups answered with [`Status::Miss`].
    misses,
    /// Lookups answered with [`Status::Expired`].
    expired,
    /// Lookups answered with [`Status::Fallback`].
    fallbacks,
    /// Lookups that returned an error.
    errors,
    /// Upstream calls started.
    upstream_calls,
    /// Upstream calls that returned an error.
    upstream_errors,
    /// Upstream calls that timed out.
    upstream_timeouts,
    /// Upstream calls that ended without a result (panic, dropped task, shutdown).
    upstream_abandoned,
    /// Background refreshes started.
    refreshes_started,
    /// Background refreshes not started because `max_concurrent_refreshes` were running.
    refreshes_skipped,
    /// Upstream calls refused by an open circuit breaker.
    breaker_rejections,
    /// Times a breaker (global or per key) opened.
    breaker_opened,
    /// Lookups answered from the negative cache without calling upstream.
    negative_hits,
    /// Storage reads that failed (each served as a miss).
    storage_read_errors,
    /// Storage writes that failed (the fetched value was still returned).
    storage_write_errors,
    /// Stored entries that could not be decoded (served as misses and overwritten).
    decode_errors,
    /// Fetched values over `max_value_bytes`: returned, not stored.
    oversized_values,
    /// Lookups rejected for an invalid key.
    invalid_keys,
    /// Upstream calls not made here because another process held the key's lease.
    lease_waits,
}

#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    #[inline]
    pub(crate) fn status(&self, s: Status) {
        bump(match s {
            Status::Hit => &self.hits,
            Status::Stale => &self.stale,
            Status::Miss => &self.misses,
            Status::Expired => &self.expired,
            Status::Fallback => &self.fallbacks,
        });
    }
}

impl Stats {
    /// Lookups answered with a value, whatever their status.
    pub fn lookups_answered(&self) -> u64 {
        self.hits + self.stale + self.misses + self.expired + self.fallbacks
    }
}
