//! [`EarlyRefresh`]: a fresh hit that starts a background refresh before the
//! entry goes stale, so popular keys are refreshed ahead of expiry rather
//! than served stale (FusionCache's eager refresh, XFetch).

use crate::entry::Entry;
use crate::random::Random;

/// When a fresh hit starts a background refresh (off by default).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum EarlyRefresh {
    /// XFetch (Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic
    /// Cache Stampede Prevention", VLDB 2015): a fresh hit refreshes when
    /// `now + δ·beta·(−ln u) ≥ fresh_until`, `u` uniform in (0, 1] and δ how
    /// long the key's last fetch took (`Entry::fetch_ms`; a hundredth of the
    /// fresh phase when unknown). The chance rises as expiry nears, sooner
    /// for keys that are slow to fetch; `beta` 1 is the paper's optimum,
    /// larger refreshes earlier.
    XFetch {
        /// The paper's β: greater than zero.
        beta: f64,
    },
    /// From this fraction of the fresh phase on (FusionCache's
    /// `EagerRefreshThreshold`): 0.9 refreshes in the last tenth.
    Threshold(f64),
}

impl EarlyRefresh {
    /// Whether the setting is usable: `beta` positive and finite, the
    /// threshold strictly between 0 and 1.
    pub(crate) fn is_valid(&self) -> bool {
        match *self {
            EarlyRefresh::XFetch { beta } => beta.is_finite() && beta > 0.0,
            EarlyRefresh::Threshold(f) => f > 0.0 && f < 1.0,
        }
    }

    /// Whether a fresh hit on `entry` at `now` starts a refresh.
    #[inline]
    pub(crate) fn is_due(&self, entry: &Entry, now: u64, random: &Random) -> bool {
        let fresh = entry.fresh_until.saturating_sub(entry.created_at);
        let left = entry.fresh_until.saturating_sub(now);
        match *self {
            EarlyRefresh::Threshold(f) => {
                let _ = left;
                now >= entry
                    .created_at
                    .saturating_add((fresh as f64 * f + 0.5) as u64)
            }
            EarlyRefresh::XFetch { beta } => {
                let delta = match entry.fetch_ms {
                    0 => fresh as f64 / 100.0,
                    ms => f64::from(ms),
                };
                let scale = delta * beta;
                // −ln u never exceeds about 37 for u ≥ 2⁻⁵³: far from expiry
                // no draw is needed.
                if left as f64 > scale * 37.0 {
                    return false;
                }
                scale * random.exponential() >= left as f64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::CacheTtl;
    use core::time::Duration;

    fn entry(fetch_ms: u32) -> Entry {
        let s = Duration::from_secs(100);
        let mut e = Entry::new("v", 0, CacheTtl::new(s, s, s));
        e.fetch_ms = fetch_ms;
        e
    }

    #[test]
    fn a_threshold_starts_at_its_exact_fraction() {
        let t = EarlyRefresh::Threshold(0.9);
        let r = Random::new(1);
        assert!(!t.is_due(&entry(0), 89_999, &r));
        assert!(t.is_due(&entry(0), 90_000, &r));
    }

    /// The share of hits at `now` that start a refresh.
    fn share(x: EarlyRefresh, e: &Entry, now: u64) -> f64 {
        let r = Random::new(7);
        (0..20_000).filter(|_| x.is_due(e, now, &r)).count() as f64 / 20_000.0
    }

    #[test]
    fn xfetch_rises_as_expiry_nears_and_sooner_for_slow_fetches() {
        let x = EarlyRefresh::XFetch { beta: 1.0 };
        let slow = entry(2_000);
        // P(due) = exp(−left / δβ).
        for (left, want) in [
            (100_000u64, 0.0),
            (4_000, 0.135),
            (2_000, 0.368),
            (200, 0.905),
        ] {
            let got = share(x, &slow, 100_000 - left);
            assert!(
                (got - want).abs() < 0.02,
                "{left} ms left: {got}, want {want}"
            );
        }
        let fast = entry(20);
        assert_eq!(
            share(x, &fast, 100_000 - 2_000),
            0.0,
            "a 20 ms fetch waits for the end"
        );
        // Unknown δ: a hundredth of the fresh phase (1 s here).
        let got = share(x, &entry(0), 100_000 - 1_000);
        assert!((got - 0.368).abs() < 0.02, "{got}");
        assert!(!EarlyRefresh::XFetch { beta: 0.0 }.is_valid());
        assert!(!EarlyRefresh::Threshold(1.0).is_valid());
    }
}
