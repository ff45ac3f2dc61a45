//! The phase table, written once: what a lookup does with what storage holds
//! at a given time. Pure; used by the fast path, the slow path and `peek`.

use crate::entry::Entry;
use crate::phase::{Phase, Status};
use crate::policy::ExpiredMode;

/// What a lookup does with an entry (or with none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Fresh: serve it as a [`Status::Hit`].
    Serve,
    /// Serve it at once with this status ([`Status::Stale`], or
    /// [`Status::Expired`] in [`ExpiredMode::ServeStale`]) and refresh it in
    /// the background.
    ServeAndRefresh(Status),
    /// Expired, in [`ExpiredMode::Revalidate`]: wait for a refresh, and serve
    /// it as a [`Status::Fallback`] if the refresh fails.
    Revalidate,
    /// Nothing usable: fetch and wait.
    Fetch,
}

/// The decision for `entry` at `now` in `mode`.
#[inline(always)]
pub(crate) fn decide(entry: Option<&Entry>, now: u64, mode: ExpiredMode) -> Decision {
    match Phase::of(entry, now) {
        Phase::Fresh => Decision::Serve,
        Phase::Stale => Decision::ServeAndRefresh(Status::Stale),
        Phase::Expired => match mode {
            ExpiredMode::ServeStale => Decision::ServeAndRefresh(Status::Expired),
            ExpiredMode::Revalidate => Decision::Revalidate,
        },
        Phase::Gone => Decision::Fetch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::CacheTtl;
    use core::time::Duration;

    #[test]
    fn every_phase_in_both_modes() {
        let s = Duration::from_secs(1);
        let e = Entry::new("v", 0, CacheTtl::new(s, s, s));
        let table = [
            (0, Decision::Serve, Decision::Serve),
            (
                1_000,
                Decision::ServeAndRefresh(Status::Stale),
                Decision::ServeAndRefresh(Status::Stale),
            ),
            (
                2_000,
                Decision::Revalidate,
                Decision::ServeAndRefresh(Status::Expired),
            ),
            (3_000, Decision::Fetch, Decision::Fetch),
        ];
        for (now, revalidate, serve_stale) in table {
            assert_eq!(
                decide(Some(&e), now, ExpiredMode::Revalidate),
                revalidate,
                "at {now}"
            );
            assert_eq!(
                decide(Some(&e), now, ExpiredMode::ServeStale),
                serve_stale,
                "at {now}"
            );
        }
        assert_eq!(decide(None, 0, ExpiredMode::ServeStale), Decision::Fetch);
    }
}
