//! [`Random`]: cheap random draws for the early refresh, without `std`.
//!
//! One xorshift state per cache-line-padded slot, picked by [`stripe`] as the
//! striped counters are: a draw is a load, a few shifts and a store (no
//! read-modify-write). Two threads drawing from one slot at once may get the
//! same number; the early refresh only needs draws spread over (0, 1].

use portable_atomic::{AtomicU64, Ordering};

use crate::stripe::{stripe, Padded};

const SLOTS: usize = 16;

/// Random draws; see the module docs.
pub(crate) struct Random([Padded; SLOTS]);

impl Random {
    /// Draws seeded by `seed` (made nonzero per slot).
    pub(crate) fn new(seed: u64) -> Self {
        Self(core::array::from_fn(|i| {
            Padded(AtomicU64::new(
                (seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
            ))
        }))
    }

    /// A uniform 64-bit draw (never 0).
    pub(crate) fn next_u64(&self) -> u64 {
        let slot = &self.0[stripe(SLOTS)].0;
        let mut x = slot.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        slot.store(x, Ordering::Relaxed);
        x
    }

    /// Uniform in (0, 1].
    pub(crate) fn unit(&self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// An exponential draw with mean 1: `-ln(u)` for `u` uniform in (0, 1].
    pub(crate) fn exponential(&self) -> f64 {
        neg_ln(self.unit())
    }
}

/// `-ln(u)` for `u` in (0, 1], within about 1e-7 (no `std` here: the
/// exponent from the bits, the mantissa's logarithm from a short series).
pub(crate) fn neg_ln(u: f64) -> f64 {
    let bits = u.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // The mantissa as a number in [1, 2), then in [√½, √2).
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    if m > core::f64::consts::SQRT_2 {
        m /= 2.0;
        exponent += 1;
    }
    // ln m = 2 (t + t³/3 + t⁵/5 + …) with |t| = |m − 1|/(m + 1) ≤ 0.18.
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = t
        * (1.0
            + t2 * (1.0 / 3.0
                + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0 + t2 / 11.0)))));
    -(exponent as f64 * core::f64::consts::LN_2 + 2.0 * series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neg_ln_matches_known_values() {
        for (u, want) in [
            (1.0, 0.0),
            (0.5, core::f64::consts::LN_2),
            (0.1, core::f64::consts::LN_10),
            (1e-9, 20.723_265_836_946_41),
            (0.999_999, 1.000_000_5e-6),
            (f64::MIN_POSITIVE, 708.396_418_532_264_1),
        ] {
            let got = neg_ln(u);
            assert!(
                (got - want).abs() <= 1e-7 * want.max(1.0),
                "-ln({u}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn draws_are_in_range_and_average_as_they_should() {
        let r = Random::new(42);
        let n = 200_000;
        let (mut sum_u, mut sum_e) = (0.0, 0.0);
        for _ in 0..n {
            let u = r.unit();
            assert!(u > 0.0 && u <= 1.0);
            sum_u += u;
            sum_e += r.exponential();
        }
        let (mean_u, mean_e) = (sum_u / n as f64, sum_e / n as f64);
        assert!((mean_u - 0.5).abs() < 0.01, "mean of u {mean_u}");
        assert!((mean_e - 1.0).abs() < 0.02, "mean of -ln u {mean_e}");
    }
}
