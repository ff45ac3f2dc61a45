//! [`Entry`], a cached value with its absolute phase boundaries, and
//! [`CacheTtl`], the lengths of the phases.

use core::time::Duration;

use crate::bytes::Bytes;
use crate::tags::Tags;
use crate::time::duration_ms;

/// How long each phase of an entry lasts, one after the other.
///
/// An entry written at `t` is fresh until `t + fresh`, stale until
/// `t + fresh + stale` and expired (still usable as a fallback) until
/// `t + fresh + stale + expired`; after that it is gone.
///
/// ```
/// use core::time::Duration;
/// use swre_core::CacheTtl;
///
/// let ttl = CacheTtl::new(Duration::from_secs(5), Duration::from_secs(60), Duration::from_secs(3600));
/// assert_eq!(ttl.total(), Duration::from_secs(3665));
/// assert_eq!(CacheTtl::default().fresh, Duration::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheTtl {
    /// Served as a plain hit for this long.
    pub fresh: Duration,
    /// Then served at once while one background refresh runs, for this long.
    pub stale: Duration,
    /// Then kept as a fallback for upstream failures, for this long.
    pub expired: Duration,
}

impl CacheTtl {
    /// The Go library's minimum total lifetime; shorter TTLs are rejected.
    pub const MIN_TOTAL: Duration = Duration::from_secs(5);

    /// Phases of the given lengths.
    pub const fn new(fresh: Duration, stale: Duration, expired: Duration) -> Self {
        Self {
            fresh,
            stale,
            expired,
        }
    }

    /// The whole lifetime, `fresh + stale + expired` (saturating).
    pub fn total(&self) -> Duration {
        self.fresh
            .saturating_add(self.stale)
            .saturating_add(self.expired)
    }

    /// Whether the TTL is usable: its total is at least [`CacheTtl::MIN_TOTAL`].
    pub fn is_valid(&self) -> bool {
        self.total() >= Self::MIN_TOTAL
    }
}

impl Default for CacheTtl {
    /// Fresh 5 s, stale 1 h, expired 3.5 days (the Go library's defaults).
    fn default() -> Self {
        Self::new(
            Duration::from_secs(5),
            Duration::from_secs(3600),
            Duration::from_secs(302_400),
        )
    }
}

/// A cached value and the absolute Unix-millisecond times that bound its phases.
///
/// Invariant kept by [`Entry::new`]: `created_at <= fresh_until <= stale_until <= expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value; clones share its allocation.
    pub value: Bytes,
    /// When the value was fetched.
    pub created_at: u64,
    /// End of the fresh phase.
    pub fresh_until: u64,
    /// End of the stale phase.
    pub stale_until: u64,
    /// End of the expired phase: from here on the entry is gone.
    pub expires_at: u64,
    /// Whether its TTL was chosen by a caller (a per-call TTL): refreshes of
    /// the entry keep that TTL rather than the engine's default or policy,
    /// until a later write or call chooses another.
    pub pinned_ttl: bool,
    /// How long the upstream call that fetched the value took, in ms (0:
    /// unknown, e.g. a value given to `set`): the δ of the XFetch early
    /// refresh (`EngineBuilder::early_refresh`). Kept by persistent stores.
    pub fetch_ms: u32,
    /// The tags it was written with and their epochs then (see
    /// [`tags`](crate::tags)); none for most entries. Kept by persistent
    /// stores.
    pub tags: Tags,
}

impl Entry {
    /// An entry for `value` fetched at `now_ms` with phases of `ttl`.
    ///
    /// ```
    /// use core::time::Duration;
    /// use swre_core::{CacheTtl, Entry};
    ///
    /// let e = Entry::new("v", 1_000, CacheTtl::new(Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(3)));
    /// assert_eq!((e.fresh_until, e.stale_until, e.expires_at), (2_000, 4_000, 7_000));
    /// ```
    pub fn new(value: impl Into<Bytes>, now_ms: u64, ttl: CacheTtl) -> Self {
        let fresh_until = now_ms.saturating_add(duration_ms(ttl.fresh));
        let stale_until = fresh_until.saturating_add(duration_ms(ttl.stale));
        let expires_at = stale_until.saturating_add(duration_ms(ttl.expired));
        Self {
            value: value.into(),
            created_at: now_ms,
            fresh_until,
            stale_until,
            expires_at,
            pinned_ttl: false,
            fetch_ms: 0,
            tags: Tags::NONE,
        }
    }

    /// The entry with its TTL marked as chosen by a caller (or not).
    pub fn pinned(mut self, pinned: bool) -> Self {
        self.pinned_ttl = pinned;
        self
    }

    /// The phase lengths the entry was written with.
    ///
    /// ```
    /// use core::time::Duration;
    /// use swre_core::{CacheTtl, Entry};
    ///
    /// let ttl = CacheTtl::new(Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(3));
    /// assert_eq!(Entry::new("v", 1_000, ttl).ttl(), ttl);
    /// ```
    pub fn ttl(&self) -> CacheTtl {
        CacheTtl::new(
            Duration::from_millis(self.fresh_until.saturating_sub(self.created_at)),
            Duration::from_millis(self.stale_until.saturating_sub(self.fresh_until)),
            Duration::from_millis(self.expires_at.saturating_sub(self.stale_until)),
        )
    }

    /// Whether the times are ordered `created_at <= fresh_until <= stale_until <= expires_at`.
    pub fn times_are_ordered(&self) -> bool {
        self.created_at <= self.fresh_until
            && self.fresh_until <= self.stale_until
            && self.stale_until <= self.expires_at
    }

    /// How old the entry is at `now_ms`; zero if the clock reads earlier than its creation.
    pub fn age(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.created_at))
    }
}
