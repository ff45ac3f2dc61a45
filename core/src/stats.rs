//! Built-in counters: atomic, lock-free, and read as a [`Stats`] snapshot.

use portable_atomic::{AtomicU64, Ordering};

use crate::phase::Status;
use crate::stripe::{stripe, Padded};

macro_rules! counters {
    (
        striped { $( $(#[$sdoc:meta])* $striped:ident ),* $(,)? }
        $( $(#[$doc:meta])* $name:ident ),* $(,)?
    ) => {
        /// A snapshot of the engine's counters (`engine.stats()`);
        /// `Serialize` with the `serde` feature (for a metrics endpoint).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[$sdoc])* pub $striped: u64, )*
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

        impl Stats {
            /// Every field with its name, in declaration order: the one list
            /// that bindings (the JS package's `stats()`) and exporters follow.
            ///
            /// ```
            /// let s = swre_core::Stats::default();
            /// assert!(s.fields().any(|(name, _)| name == "hits"));
            /// assert!(s.fields().any(|(name, _)| name == "in_flight"));
            /// ```
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [
                    $( (stringify!($striped), self.$striped), )*
                    $( (stringify!($name), self.$name), )*
                    ("in_flight", self.in_flight),
                    ("refreshes_running", self.refreshes_running),
                    ("tasks_running", self.tasks_running),
                    ("key_breakers", self.key_breakers),
                ]
                .into_iter()
            }
        }

        #[derive(Default)]
        pub(crate) struct Counters {
            $( pub(crate) $striped: Striped, )*
            $( pub(crate) $name: AtomicU64, )*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats {
                    $( $striped: self.$striped.sum(), )*
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                    ..Stats::default()
                }
            }
        }
    };
}

counters! {
    striped {
        /// Lookups answered with [`Status::Hit`].
        hits,
        /// Lookups answered with [`Status::Stale`].
        stale,
    }
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
    /// Batch upstream calls started (`get_many_or_fetch`), each also one of
    /// `upstream_calls`.
    batch_calls,
    /// Keys a batch call was asked for and did not return a value for
    /// (each failed with `MissingFromBatch`).
    batch_keys_missing,
    /// Background refreshes started.
    refreshes_started,
    /// Background refreshes not started because `max_concurrent_refreshes` were running.
    refreshes_skipped,
    /// Lookups answered with an old value without calling upstream because
    /// the key was in its fail-safe throttle window.
    throttled,
    /// Lookups answered with an old value when the refresh they waited on
    /// passed the soft timeout (the refresh ran on).
    soft_timeouts,
    /// Background refreshes started by a fresh hit (the early refresh).
    early_refreshes,
    /// Fetched values handed out but not stored because one of their tags
    /// was invalidated or expired, or the cache cleared, while they were
    /// being fetched (or their tags' records could not be read or written).
    tag_fenced,
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
    /// Upstream calls abandoned past their deadline and taken over by a later lookup.
    flights_taken_over,
    /// Values that could not be stored whose older stored entry could not be removed either.
    store_cleanup_failures,
}

/// A counter spread over cache-line-padded slots (one per thread, as far as
/// [`stripe`] can tell), so threads counting hits at the same time rarely
/// write the same line; a single shared counter would make every hit on every
/// core contend.
#[derive(Default)]
pub(crate) struct Striped([Padded; STRIPES]);

const STRIPES: usize = 16;

impl Striped {
    #[inline]
    pub(crate) fn add(&self) {
        self.0[stripe(STRIPES)].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    #[inline]
    pub(crate) fn status(&self, s: Status) {
        match s {
            Status::Hit => self.hits.add(),
            Status::Stale => self.stale.add(),
            Status::Miss => bump(&self.misses),
            Status::Expired => bump(&self.expired),
            Status::Fallback => bump(&self.fallbacks),
        }
    }
}

impl Stats {
    /// Lookups answered with a value, whatever their status.
    pub fn lookups_answered(&self) -> u64 {
        self.hits + self.stale + self.misses + self.expired + self.fallbacks
    }
}
