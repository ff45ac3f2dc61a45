//! The persistent-store envelope: how an entry is written to bytes by every
//! storage that leaves the process (files, Redis, IndexedDB, the Cache API, JS
//! stores).
//!
//! Layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `SWRE` |
//! | 1 | version: 3 for an entry with tags, else 2 (this build reads 1, 2 and 3) |
//! | 1 | flags: bit 0 set when the TTL was chosen per call (`Entry::pinned_ttl`); the other bits 0 |
//! | 4 | key length `k` |
//! | 4 | value length `v` |
//! | 8 × 4 | `created_at`, `fresh_until`, `stale_until`, `expires_at` |
//! | 4 | version 2 on: `fetch_ms`, how long the fetch took (0: unknown) |
//! | 4 | version 3 on: tag section length `t` |
//! | k | key, UTF-8 |
//! | v | value |
//! | t | version 3 on: per tag, its name's length (2 bytes), name (UTF-8), hard and soft epochs (8 bytes each) |
//! | 4 | CRC-32 of everything before it |
//!
//! The key is stored so that a store addressing entries by a hash of the key
//! can check it never returns another key's value.
//!
//! Upgrades keep the cache: every version this build knows is read (a
//! version-1 envelope reads with `fetch_ms` 0, versions 1 and 2 without
//! tags). Untagged entries are written as version 2, so the build before
//! tags still reads them; tagged ones as version 3. An older build reads a
//! newer envelope as absent, so a fleet running two versions side by side
//! refetches what only the newer one can read and loses nothing else. [`decode`] of any byte
//! string yields the entry that was written or `None` — never a panic.

use alloc::vec::Vec;

use crate::bytes::Bytes;
use crate::entry::Entry;
use crate::error::{StorageError, StorageErrorKind};
use crate::tags::{TagStamp, Tags};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"SWRE";
/// The newest envelope version this build writes (for tagged entries; it
/// reads every earlier one).
pub const VERSION: u8 = 3;
/// The version this build writes for entries without tags.
pub const VERSION_UNTAGGED: u8 = 2;
/// Bytes of fixed header before the key in a version-1 envelope.
pub const HEADER_LEN_V1: usize = 4 + 1 + 1 + 4 + 4 + 8 * 4;
/// Bytes of fixed header before the key in a version-2 envelope.
pub const HEADER_LEN_V2: usize = HEADER_LEN_V1 + 4;
/// Bytes of fixed header before the key in the newest version (at least as
/// long as any earlier version's; an envelope of an earlier version may be
/// shorter than this in all).
pub const HEADER_LEN: usize = HEADER_LEN_V2 + 4;

/// The header length of `version`, if this build reads it.
fn header_len(version: u8) -> Option<usize> {
    match version {
        1 => Some(HEADER_LEN_V1),
        2 => Some(HEADER_LEN_V2),
        3 => Some(HEADER_LEN),
        _ => None,
    }
}
/// Bytes of checksum after the value.
pub const TRAILER_LEN: usize = 4;

/// A decoded envelope: the key it was written for and its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The key the entry was written under.
    pub key: &'a str,
    /// The entry.
    pub entry: Entry,
}

/// [`encode`] for a store's `set`: the bytes, or the `TooLarge` error every
/// store reports for a key or value over 4 GiB.
pub fn seal(key: &str, entry: &Entry) -> Result<Vec<u8>, StorageError> {
    encode(key, entry)
        .ok_or_else(|| StorageError::new(StorageErrorKind::TooLarge, "key or value over 4 GiB"))
}

/// The envelope bytes for `entry` under `key`.
///
/// Returns `None` only if the key or value is longer than 4 GiB.
///
/// ```
/// use swre_core::{envelope, CacheTtl, Entry};
///
/// let e = Entry::new("value", 1_000, CacheTtl::default());
/// let bytes = envelope::encode("key", &e).unwrap();
/// assert_eq!(envelope::decode_for("key", &bytes), Some(e));
/// assert_eq!(envelope::decode_for("other", &bytes), None);
/// ```
pub fn encode(key: &str, entry: &Entry) -> Option<Vec<u8>> {
    let key_len = u32::try_from(key.len()).ok()?;
    let value_len = u32::try_from(entry.value.len()).ok()?;
    let tags = encode_tags(&entry.tags)?;
    let tagged = !tags.is_empty();
    let mut out =
        Vec::with_capacity(HEADER_LEN + key.len() + entry.value.len() + tags.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(if tagged { VERSION } else { VERSION_UNTAGGED });
    out.push(u8::from(entry.pinned_ttl));
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&value_len.to_le_bytes());
    for t in [
        entry.created_at,
        entry.fresh_until,
        entry.stale_until,
        entry.expires_at,
    ] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out.extend_from_slice(&entry.fetch_ms.to_le_bytes());
    if tagged {
        out.extend_from_slice(&u32::try_from(tags.len()).ok()?.to_le_bytes());
    }
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&entry.value);
    out.extend_from_slice(&tags);
    let crc = crate::crc::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// `tags` as a version-3 envelope's tag section holds them (for stores that
/// keep an entry's parts apart, as the JS table does).
/// `None` if a name is over 64 KiB (the engine accepts at most
/// [`MAX_TAG_BYTES`](crate::tags::MAX_TAG_BYTES)).
pub fn encode_tags(tags: &Tags) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for t in tags.stamps() {
        out.extend_from_slice(&u16::try_from(t.name.len()).ok()?.to_le_bytes());
        out.extend_from_slice(t.name.as_bytes());
        out.extend_from_slice(&t.hard.to_le_bytes());
        out.extend_from_slice(&t.soft.to_le_bytes());
    }
    Some(out)
}

/// The tag stamps in a version-3 tag section ([`encode_tags`]), or `None`
/// if it is not whole (or empty).
pub fn decode_tags(mut section: &[u8]) -> Option<Tags> {
    let mut stamps = Vec::new();
    while !section.is_empty() {
        let len = usize::from(u16::from_le_bytes(section.get(..2)?.try_into().ok()?));
        let name = core::str::from_utf8(section.get(2..2 + len)?).ok()?;
        let hard = read_u64(section, 2 + len)?;
        let soft = read_u64(section, 10 + len)?;
        if name.is_empty() || stamps.len() == crate::tags::MAX_TAGS {
            return None;
        }
        stamps.push(TagStamp {
            name: name.into(),
            hard,
            soft,
        });
        section = &section[18 + len..];
    }
    // A version-3 envelope always has tags.
    (!stamps.is_empty()).then(|| Tags::new(stamps))
}

/// The key and entry in `bytes`, or `None` if they are not a whole, intact
/// envelope of a version this build reads (wrong magic or unknown version,
/// truncated, trailing bytes, bad checksum, key not UTF-8, or times out of
/// order).
pub fn decode(bytes: &[u8]) -> Option<Decoded<'_>> {
    let body_len = bytes.len().checked_sub(TRAILER_LEN)?;
    let (body, crc) = bytes.split_at(body_len);
    if body.len() < HEADER_LEN_V1 || body[..4] != MAGIC || body[5] > 1 {
        return None;
    }
    let header_len = header_len(body[4])?;
    if body.len() < header_len {
        return None;
    }
    if crate::crc::hash(body).to_le_bytes() != crc {
        return None;
    }
    let key_len = read_u32(body, 6)? as usize;
    let value_len = read_u32(body, 10)? as usize;
    let tags_len = if header_len == HEADER_LEN {
        read_u32(body, HEADER_LEN_V2)? as usize
    } else {
        0
    };
    if header_len
        .checked_add(key_len)?
        .checked_add(value_len)?
        .checked_add(tags_len)?
        != body.len()
    {
        return None;
    }
    let times = [14, 22, 30, 38].map(|at| read_u64(body, at));
    let [Some(created_at), Some(fresh_until), Some(stale_until), Some(expires_at)] = times else {
        return None;
    };
    let fetch_ms = if header_len > HEADER_LEN_V1 {
        read_u32(body, HEADER_LEN_V1)?
    } else {
        0
    };
    let key = core::str::from_utf8(body.get(header_len..header_len + key_len)?).ok()?;
    let value_at = header_len + key_len;
    let value = body.get(value_at..value_at + value_len)?;
    let tags = if header_len == HEADER_LEN {
        decode_tags(body.get(value_at + value_len..)?)?
    } else {
        Tags::NONE
    };
    let entry = Entry {
        value: Bytes::copy_from_slice(value),
        created_at,
        fresh_until,
        stale_until,
        expires_at,
        pinned_ttl: body[5] == 1,
        fetch_ms,
        tags,
    };
    entry.times_are_ordered().then_some(Decoded { key, entry })
}

/// The fixed header of an envelope, read without checking the checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Key length in bytes.
    pub key_len: u32,
    /// Value length in bytes.
    pub value_len: u32,
    /// `Entry::created_at`.
    pub created_at: u64,
    /// `Entry::expires_at`.
    pub expires_at: u64,
    /// The envelope's header length (its version's).
    pub header_len: u32,
    /// The tag section's length (0 before version 3).
    pub tags_len: u32,
}

impl Header {
    /// The total envelope length this header announces.
    pub fn envelope_len(&self) -> u64 {
        u64::from(self.header_len)
            + u64::from(self.key_len)
            + u64::from(self.value_len)
            + u64::from(self.tags_len)
            + TRAILER_LEN as u64
    }
}

/// The header at the start of `bytes` (which may be just the first
/// [`HEADER_LEN`] bytes of a file, or fewer if the file is shorter), or
/// `None` if the magic differs or the version is unknown. Cheap: for indexing
/// a store; use [`decode`] before trusting an entry.
pub fn header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < HEADER_LEN_V1 || bytes[..4] != MAGIC || bytes[5] > 1 {
        return None;
    }
    let header_len = header_len(bytes[4])?;
    if bytes.len() < header_len {
        return None;
    }
    Some(Header {
        header_len: header_len as u32,
        key_len: read_u32(bytes, 6)?,
        value_len: read_u32(bytes, 10)?,
        created_at: read_u64(bytes, 14)?,
        expires_at: read_u64(bytes, 38)?,
        tags_len: if header_len == HEADER_LEN {
            read_u32(bytes, HEADER_LEN_V2)?
        } else {
            0
        },
    })
}

/// The entry in `bytes` if it is an intact envelope written for exactly `key`.
pub fn decode_for(key: &str, bytes: &[u8]) -> Option<Entry> {
    decode(bytes).filter(|d| d.key == key).map(|d| d.entry)
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::CacheTtl;
    use alloc::vec;

    fn sample() -> (Entry, Vec<u8>) {
        let e = Entry::new("hello, envelope", 1_700_000_000_000, CacheTtl::default());
        let bytes = encode("some/key", &e).unwrap();
        (e, bytes)
    }

    #[test]
    fn round_trip_keeps_key_value_and_times() {
        let (e, bytes) = sample();
        let d = decode(&bytes).unwrap();
        assert_eq!(d.key, "some/key");
        assert_eq!(d.entry, e);
        let empty = Entry::new(Vec::new(), 0, CacheTtl::default());
        assert_eq!(decode_for("k", &encode("k", &empty).unwrap()), Some(empty));
    }

    #[test]
    fn every_truncation_is_absent() {
        let (_, bytes) = sample();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_absent() {
        let (_, bytes) = sample();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert_eq!(decode(&b), None, "flip byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn trailing_bytes_and_other_keys_are_absent() {
        let (_, mut bytes) = sample();
        assert!(decode_for("some/keY", &bytes).is_none());
        bytes.push(0);
        assert!(decode(&bytes).is_none());
    }

    #[test]
    fn unordered_times_are_absent_even_with_a_good_checksum() {
        let mut e = Entry::new("v", 100, CacheTtl::default());
        e.fresh_until = 50;
        assert!(decode(&encode("k", &e).unwrap()).is_none());
    }

    #[test]
    fn header_reads_lengths_and_times() {
        let (e, bytes) = sample();
        let h = header(&bytes[..HEADER_LEN_V2]).unwrap();
        assert_eq!((h.key_len, h.value_len), (8, e.value.len() as u32));
        assert_eq!((h.created_at, h.expires_at), (e.created_at, e.expires_at));
        assert_eq!(h.envelope_len(), bytes.len() as u64);
        assert!(header(&bytes[..HEADER_LEN_V2 - 1]).is_none());
        assert!(header(b"SWRF").is_none());
    }

    /// A version-1 envelope as the previous build wrote it.
    fn encode_v1(key: &str, e: &Entry) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.push(1);
        out.push(u8::from(e.pinned_ttl));
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(e.value.len() as u32).to_le_bytes());
        for t in [e.created_at, e.fresh_until, e.stale_until, e.expires_at] {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&e.value);
        let crc = crate::crc::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn version_1_envelopes_still_read_and_the_fetch_time_round_trips() {
        let (e, _) = sample();
        let v1 = encode_v1("some/key", &e);
        assert_eq!(decode_for("some/key", &v1), Some(e.clone()));
        let h = header(&v1).unwrap();
        assert_eq!(
            (h.header_len as usize, h.envelope_len()),
            (HEADER_LEN_V1, v1.len() as u64)
        );
        let mut timed = e.clone();
        timed.fetch_ms = 1_234;
        let v2 = encode("some/key", &timed).unwrap();
        assert_eq!(v2[4], 2);
        assert_eq!(decode_for("some/key", &v2).unwrap().fetch_ms, 1_234);
        assert_eq!(header(&v2).unwrap().envelope_len(), v2.len() as u64);
        let mut v4 = v2.clone();
        v4[4] = 4;
        assert_eq!(decode(&v4), None, "an unknown version is absent");
    }

    fn tagged() -> Entry {
        let mut e = Entry::new("tagged value", 1_700_000_000_000, CacheTtl::default());
        e.tags = Tags::new(vec![
            TagStamp {
                name: "user:1".into(),
                hard: 7,
                soft: u64::MAX,
            },
            TagStamp {
                name: "ü".into(),
                hard: 0,
                soft: 1,
            },
        ]);
        e
    }

    #[test]
    fn tags_round_trip_in_version_3_and_untagged_entries_stay_version_2() {
        let e = tagged();
        let bytes = encode("k", &e).unwrap();
        assert_eq!(bytes[4], 3);
        assert_eq!(decode_for("k", &bytes), Some(e.clone()));
        let h = header(&bytes[..HEADER_LEN]).unwrap();
        assert_eq!(h.envelope_len(), bytes.len() as u64);
        assert_eq!(h.value_len as usize, e.value.len());
        let (plain, plain_bytes) = sample();
        assert_eq!(plain_bytes[4], 2);
        assert_eq!(decode_for("some/key", &plain_bytes), Some(plain));
    }

    #[test]
    fn every_truncation_or_bit_flip_of_a_tagged_envelope_is_absent() {
        let bytes = encode("k", &tagged()).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert_eq!(decode(&b), None, "flip byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn a_version_3_envelope_with_a_malformed_tag_section_is_absent() {
        // A section cut inside a tag, with the lengths and checksum made to agree.
        let bytes = encode("k", &tagged()).unwrap();
        let mut b = bytes[..bytes.len() - TRAILER_LEN - 3].to_vec();
        let t = read_u32(&b, HEADER_LEN_V2).unwrap() - 3;
        b[HEADER_LEN_V2..HEADER_LEN].copy_from_slice(&t.to_le_bytes());
        let crc = crate::crc::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&b), None);
    }

    #[test]
    fn huge_declared_lengths_do_not_panic() {
        let (_, bytes) = sample();
        let mut b = bytes.clone();
        b[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        b[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        let body = b.len() - TRAILER_LEN;
        let crc = crate::crc::hash(&b[..body]);
        b[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(decode(&b).is_none());
        assert!(decode(&vec![0xff; 4096]).is_none());
    }
}
