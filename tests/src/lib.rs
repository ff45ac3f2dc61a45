//! Shared helpers for swre's cross-crate tests and the crash-test writer.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

pub mod fuzzing;
pub mod soak;

/// The value the crash writer stores for `key` in round `i`: a header naming
/// both, padded to a length that varies with `i`, so a torn or mixed write
/// can be recognised.
pub fn crash_value(key: &str, i: u64) -> Vec<u8> {
    let header = format!("{key}|{i}|");
    let len = 64 + ((i * 7919) % 65_536) as usize;
    let mut v = header.into_bytes();
    let mut x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push((x & 0xff) as u8);
    }
    v
}

/// Parses the round out of a crash value's header.
pub fn crash_round(value: &[u8]) -> Option<(String, u64)> {
    let text_end = value.iter().position(|&b| b == b'|')?;
    let key = std::str::from_utf8(&value[..text_end]).ok()?.to_owned();
    let rest = &value[text_end + 1..];
    let num_end = rest.iter().position(|&b| b == b'|')?;
    let i = std::str::from_utf8(&rest[..num_end]).ok()?.parse().ok()?;
    Some((key, i))
}
