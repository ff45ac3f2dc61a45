//! [`Cached`]: what a lookup returns — the value, how it was obtained, and
//! the times of the entry it came from.

use core::time::Duration;

use crate::detail::Detail;
use crate::entry::Entry;
use crate::phase::Status;

/// A value returned by a lookup, with how it was obtained and the times of the
/// entry it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cached<V> {
    /// The value.
    pub value: V,
    /// What the lookup did.
    pub status: Status,
    /// Why, where the status alone does not tell (a fallback's cause, a
    /// throttled or skipped refresh); [`Detail::None`] otherwise.
    pub detail: Detail,
    /// How old the value is (zero if the clock reads earlier than its creation).
    pub age: Duration,
    /// When the value was fetched (Unix ms).
    pub created_at: u64,
    /// End of its fresh phase (Unix ms).
    pub fresh_until: u64,
    /// End of its stale phase (Unix ms).
    pub stale_until: u64,
    /// When it is gone (Unix ms).
    pub expires_at: u64,
}

impl<V> Cached<V> {
    #[inline(always)]
    pub(crate) fn new(value: V, status: Status, entry: &Entry, now: u64) -> Self {
        Self {
            value,
            status,
            detail: Detail::None,
            age: entry.age(now),
            created_at: entry.created_at,
            fresh_until: entry.fresh_until,
            stale_until: entry.stale_until,
            expires_at: entry.expires_at,
        }
    }

    /// The same result with `detail` as its detail.
    #[inline(always)]
    pub(crate) fn with_detail(mut self, detail: Detail) -> Self {
        self.detail = detail;
        self
    }

    /// The same lookup result with its value mapped by `f`.
    pub fn map<U>(self, f: impl FnOnce(V) -> U) -> Cached<U> {
        Cached {
            value: f(self.value),
            status: self.status,
            detail: self.detail,
            age: self.age,
            created_at: self.created_at,
            fresh_until: self.fresh_until,
            stale_until: self.stale_until,
            expires_at: self.expires_at,
        }
    }
}
