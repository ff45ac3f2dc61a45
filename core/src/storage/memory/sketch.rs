//! A count-min sketch of how often each key was wanted: the frequency
//! estimate TinyLFU admission compares (Einziger, Friedman, Manes, "TinyLFU:
//! A Highly Efficient Cache Admission Policy", 2017).
//!
//! Four rows of 8-bit counters saturating at 15; a key's estimate is the
//! least of its four counters. After `10 × capacity` increments every
//! counter is halved, so old popularity fades.

use alloc::vec;
use alloc::vec::Vec;

/// Odd multipliers that spread one 64-bit hash over the four rows.
const SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
];

const MAX_COUNT: u8 = 15;

/// Frequencies of recently wanted keys, by hash.
pub(super) struct Sketch {
    counters: Vec<u8>,
    /// Counters per row, minus one (rows are a power of two long).
    mask: usize,
    additions: usize,
    reset_at: usize,
}

impl Sketch {
    /// A sketch for a shard holding about `capacity` entries.
    pub(super) fn new(capacity: usize) -> Self {
        let width = capacity.clamp(16, 1 << 22).next_power_of_two();
        Self {
            counters: vec![0; 4 * width],
            mask: width - 1,
            additions: 0,
            reset_at: 10 * width,
        }
    }

    fn slots(&self, hash: u64) -> [usize; 4] {
        let width = self.mask + 1;
        let mut slots = [0; 4];
        for (row, seed) in SEEDS.iter().enumerate() {
            let h = hash.wrapping_mul(*seed);
            slots[row] = row * width + ((h >> 32) as usize & self.mask);
        }
        slots
    }

    /// Counts one more want of the key with `hash`.
    pub(super) fn increment(&mut self, hash: u64) {
        let mut grew = false;
        for slot in self.slots(hash) {
            if let Some(c) = self.counters.get_mut(slot) {
                if *c < MAX_COUNT {
                    *c += 1;
                    grew = true;
                }
            }
        }
        if grew {
            self.additions += 1;
            if self.additions >= self.reset_at {
                self.halve();
            }
        }
    }

    /// The estimated wants of the key with `hash`.
    pub(super) fn frequency(&self, hash: u64) -> u8 {
        self.slots(hash)
            .iter()
            .map(|&s| self.counters.get(s).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    fn halve(&mut self) {
        for c in &mut self.counters {
            *c >>= 1;
        }
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_and_fade() {
        let mut s = Sketch::new(16);
        for _ in 0..20 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), MAX_COUNT);
        assert_eq!(s.frequency(43), 0);
        // Enough other increments to trigger halving.
        for h in 0..(10 * 16 * 2) {
            s.increment(h * 0x1_0000_0001);
        }
        assert!(s.frequency(42) < MAX_COUNT, "old counts never fade");
    }
}
