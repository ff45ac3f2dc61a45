//! Keys on the hot paths: [`same_key`], equality without a call to
//! `memcmp`, and [`fingerprint`], a seeded 64-bit hash cheaper than the
//! tables' own.

/// Whether `a` and `b` are the same key.
///
/// Cache keys are mostly short (`user:00001234:profile`), and for short
/// slices the library `memcmp` call costs more than the compare itself
/// (callgrind, `hitloop`: about 30 instructions of a 310-instruction fresh
/// hit). Up to 32 bytes this compares the first and last 16, 8 or 4 bytes
/// (overlapping), or byte by byte; longer keys go to `==`.
#[inline(always)]
pub(crate) fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 32 {
        return a == b;
    }
    if let (Some(ah), Some(at), Some(bh), Some(bt)) = (
        a.first_chunk::<16>(),
        a.last_chunk::<16>(),
        b.first_chunk::<16>(),
        b.last_chunk::<16>(),
    ) {
        return u128::from_ne_bytes(*ah) == u128::from_ne_bytes(*bh)
            && u128::from_ne_bytes(*at) == u128::from_ne_bytes(*bt);
    }
    if let (Some(ah), Some(at), Some(bh), Some(bt)) = (
        a.first_chunk::<8>(),
        a.last_chunk::<8>(),
        b.first_chunk::<8>(),
        b.last_chunk::<8>(),
    ) {
        return u64::from_ne_bytes(*ah) == u64::from_ne_bytes(*bh)
            && u64::from_ne_bytes(*at) == u64::from_ne_bytes(*bt);
    }
    if let (Some(ah), Some(at), Some(bh), Some(bt)) = (
        a.first_chunk::<4>(),
        a.last_chunk::<4>(),
        b.first_chunk::<4>(),
        b.last_chunk::<4>(),
    ) {
        return ah == bh && at == bt;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Multiplies and folds the 128-bit product's halves together.
#[inline(always)]
pub(crate) fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

pub(crate) const K0: u64 = 0x9e37_79b9_7f4a_7c15;
pub(crate) const K1: u64 = 0xbf58_476d_1ce4_e5b9;

/// The little-endian word of 8 bytes.
#[inline(always)]
fn word(w: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*w)
}

/// The two little-endian words of 16 bytes, loaded straight from them (a
/// copy through a stack buffer first made the loads wait on the copy's
/// store: a stale hit took a third longer).
#[inline(always)]
fn halves(c: &[u8; 16]) -> (u64, u64) {
    let (lo, hi) = c.split_at(8);
    match (lo.first_chunk::<8>(), hi.first_chunk::<8>()) {
        (Some(lo), Some(hi)) => (word(lo), word(hi)),
        _ => (0, 0),
    }
}

/// The two little-endian words of up to 16 bytes, zero-padded.
fn padded(c: &[u8]) -> (u64, u64) {
    let mut w = [0u8; 16];
    let n = c.len().min(16);
    w[..n].copy_from_slice(&c[..n]);
    halves(&w)
}

/// A seeded 64-bit fingerprint of `key`, folding 16 bytes per multiply (a
/// 21-byte key costs about 20 instructions, against about 40 for
/// `hashbrown`'s default hasher). For tags that only ever save work when
/// they match (see `marks.rs`), not for tables an attacker can fill.
#[inline(always)]
pub(crate) fn fingerprint(seed: u64, key: &str) -> u64 {
    let b = key.as_bytes();
    let s = seed ^ (b.len() as u64).wrapping_mul(K0);
    let h = match (b.first_chunk::<16>(), b.last_chunk::<16>()) {
        (Some(head), Some(tail)) => {
            // 16 bytes or more: the first and the last 16 (overlapping),
            // and every whole 16 in between.
            let (h0, h1) = halves(head);
            let (t0, t1) = halves(tail);
            let mut h = fold(s ^ h0, K1 ^ h1);
            if b.len() > 32 {
                for c in b[16..b.len() - 16].chunks(16) {
                    let (c0, c1) = padded(c);
                    h = fold(h ^ c0, K1 ^ c1);
                }
            }
            h ^ fold(s ^ t0, K0 ^ t1)
        }
        _ => {
            let (x, y) = match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
                (Some(f), Some(l)) => (word(f), word(l)),
                _ => match (b.first_chunk::<4>(), b.last_chunk::<4>()) {
                    (Some(f), Some(l)) => (
                        u64::from(u32::from_le_bytes(*f)),
                        u64::from(u32::from_le_bytes(*l)),
                    ),
                    // 0 to 3 bytes: the first, middle and last cover them all.
                    _ => match (b.first(), b.get(b.len() / 2), b.last()) {
                        (Some(&f), Some(&m), Some(&l)) => {
                            (u64::from(f) | u64::from(m) << 8 | u64::from(l) << 16, 0)
                        }
                        _ => (0, 0),
                    },
                },
            };
            fold(s ^ x, K1 ^ y)
        }
    };
    fold(h, K0)
}

#[cfg(test)]
mod tests {
    use super::{fingerprint, same_key};
    use alloc::string::String;

    #[test]
    fn agrees_with_string_equality_for_every_length_and_differing_byte() {
        for len in 0..=48 {
            let a: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            assert!(same_key(&a, &a.clone()), "len {len}");
            for at in 0..len {
                let mut b = a.clone().into_bytes();
                b[at] = b'#';
                let b = String::from_utf8(b).expect("ascii");
                assert!(!same_key(&a, &b), "len {len}, differing at {at}");
            }
            let longer = alloc::format!("{a}x");
            assert!(
                !same_key(&a, &longer) && !same_key(&longer, &a),
                "len {len}"
            );
        }
    }

    #[test]
    fn fingerprints_differ_for_close_keys_and_seeds() {
        let mut seen = alloc::collections::BTreeSet::new();
        for len in 0..=70usize {
            for at in 0..len.max(1) {
                let mut k = alloc::vec![b'k'; len];
                if len > 0 {
                    k[at] = b'#';
                }
                let k = String::from_utf8(k).expect("ascii");
                seen.insert((fingerprint(1, &k), k.clone()));
                assert_ne!(fingerprint(1, &k), fingerprint(2, &k), "{k:?}");
            }
        }
        let distinct: alloc::collections::BTreeSet<u64> = seen.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "no two keys share a fingerprint"
        );
    }
}
