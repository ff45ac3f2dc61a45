//! The phase table: where an entry stands at a given time, and the [`Status`]
//! a lookup reports.

use core::fmt;

use crate::entry::Entry;

/// Where an entry stands at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `now < fresh_until`: served as is.
    Fresh,
    /// `fresh_until <= now < stale_until`: served at once, refreshed in background.
    Stale,
    /// `stale_until <= now < expires_at`: usable only as a fallback (or served
    /// with `ExpiredMode::ServeStale`).
    Expired,
    /// No entry, or `now >= expires_at`: must be fetched.
    Gone,
}

impl Phase {
    /// The phase of `entry` (or of no entry) at `now_ms`.
    ///
    /// ```
    /// use core::time::Duration;
    /// use swre_core::{CacheTtl, Entry, Phase};
    ///
    /// let s = Duration::from_secs(1);
    /// let e = Entry::new("v", 0, CacheTtl::new(s, s, s));
    /// assert_eq!(Phase::of(Some(&e), 999), Phase::Fresh);
    /// assert_eq!(Phase::of(Some(&e), 1_000), Phase::Stale);
    /// assert_eq!(Phase::of(Some(&e), 2_000), Phase::Expired);
    /// assert_eq!(Phase::of(Some(&e), 3_000), Phase::Gone);
    /// assert_eq!(Phase::of(None, 0), Phase::Gone);
    /// ```
    #[inline]
    pub fn of(entry: Option<&Entry>, now_ms: u64) -> Phase {
        match entry {
            None => Phase::Gone,
            Some(e) if now_ms < e.fresh_until => Phase::Fresh,
            Some(e) if now_ms < e.stale_until => Phase::Stale,
            Some(e) if now_ms < e.expires_at => Phase::Expired,
            Some(_) => Phase::Gone,
        }
    }
}

/// What a lookup did, as reported to the caller.
///
/// Four bytes wide on purpose (`repr(u32)`), beside the four-byte
/// [`Detail`](crate::Detail): a one-byte status left seven bytes of padding
/// in [`Cached`](crate::Cached), and the compiler copied those with
/// overlapping partial moves whenever a lookup's result passed through a
/// `Result` or `Poll`; the moves defeat store forwarding and cost a fresh
/// hit about a sixth of its time (41 → 34 ns in
/// `benches/examples/hitloop.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum Status {
    /// A fresh value from storage.
    Hit,
    /// A stale value from storage, served at once; a background refresh was
    /// started (or was already running, or was skipped and counted).
    Stale,
    /// A value fetched from upstream while the caller waited.
    Miss,
    /// An expired value served at once (`ExpiredMode::ServeStale`).
    Expired,
    /// An old value served because upstream failed, timed out or its circuit
    /// breaker was open.
    Fallback,
}

impl Status {
    /// All statuses, in declaration order.
    pub const ALL: [Status; 5] = [
        Status::Hit,
        Status::Stale,
        Status::Miss,
        Status::Expired,
        Status::Fallback,
    ];

    /// The lower-case name (`"hit"`, `"stale"`, `"miss"`, `"expired"`, `"fallback"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "hit",
            Status::Stale => "stale",
            Status::Miss => "miss",
            Status::Expired => "expired",
            Status::Fallback => "fallback",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::CacheTtl;
    use core::time::Duration;

    fn entry() -> Entry {
        Entry::new(
            "v",
            100,
            CacheTtl::new(
                Duration::from_millis(10),
                Duration::from_millis(20),
                Duration::from_millis(30),
            ),
        )
    }

    #[test]
    fn every_boundary_of_the_table() {
        let e = entry();
        assert_eq!(
            (e.fresh_until, e.stale_until, e.expires_at),
            (110, 130, 160)
        );
        let cases = [
            (0, Phase::Fresh), // clock behind creation: still fresh, never older
            (100, Phase::Fresh),
            (109, Phase::Fresh),
            (110, Phase::Stale),
            (129, Phase::Stale),
            (130, Phase::Expired),
            (159, Phase::Expired),
            (160, Phase::Gone),
            (u64::MAX, Phase::Gone),
        ];
        for (now, want) in cases {
            assert_eq!(Phase::of(Some(&e), now), want, "at {now}");
        }
        assert_eq!(Phase::of(None, 100), Phase::Gone);
    }

    #[test]
    fn zero_length_phases_are_skipped() {
        let e = Entry::new(
            "v",
            0,
            CacheTtl::new(Duration::ZERO, Duration::ZERO, Duration::from_secs(5)),
        );
        assert_eq!(Phase::of(Some(&e), 0), Phase::Expired);
        let e = Entry::new(
            "v",
            0,
            CacheTtl::new(Duration::ZERO, Duration::from_secs(5), Duration::ZERO),
        );
        assert_eq!(Phase::of(Some(&e), 0), Phase::Stale);
        assert_eq!(Phase::of(Some(&e), 5_000), Phase::Gone);
    }

    #[test]
    fn age_saturates_when_the_clock_went_back() {
        let e = entry();
        assert_eq!(e.age(50), Duration::ZERO);
        assert_eq!(e.age(150), Duration::from_millis(50));
    }

    #[test]
    fn status_names() {
        let names: alloc::vec::Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["hit", "stale", "miss", "expired", "fallback"]);
    }
}
