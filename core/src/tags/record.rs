//! The records behind tags: where each lives in the store, and what it holds.
//!
//! A tag `t` has two records: its hard epoch under `"\0swre:tag:" + t` and
//! its soft epoch under `"\0swre:tag-soft:" + t`. Keys starting with
//! [`RESERVED_PREFIX`] are refused as user keys, so no write of a user's can
//! replace a record. Each record is an entry whose value is 24 bytes: the
//! epoch, the clock time (Unix ms) at which it was last changed, and the
//! writing engine's id, all little-endian. Records live [`RECORD_TTL`] (a
//! century: nothing renews them, so no renewal can race an operation).

use core::time::Duration;

use crate::bytes::Bytes;
use crate::entry::{CacheTtl, Entry};

use super::MAX_TAG_BYTES;

/// Keys starting with this belong to the engine (tag records); lookups and
/// writes of such keys are refused with `KeyError::Reserved`.
pub const RESERVED_PREFIX: &str = "\0swre:";
const HARD: &str = "\0swre:tag:";
const SOFT: &str = "\0swre:tag-soft:";

/// How long a record lives: a century (an entry outliving its records
/// counts as invalidated then).
pub const RECORD_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Which of a tag's two records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The invalidation epoch: a change makes the tag's entries absent.
    Hard,
    /// The expiry epoch: a change makes the tag's entries stale.
    Soft,
}

/// A record key, built without allocating.
pub struct RecordKey {
    buf: [u8; SOFT.len() + MAX_TAG_BYTES],
    len: usize,
}

impl RecordKey {
    /// The key of `tag`'s record of `kind`, or `None` for a name over
    /// [`MAX_TAG_BYTES`] (checked before any record is read or written).
    pub fn new(kind: Kind, tag: &str) -> Option<Self> {
        let prefix = match kind {
            Kind::Hard => HARD,
            Kind::Soft => SOFT,
        };
        if tag.len() > MAX_TAG_BYTES {
            return None;
        }
        let mut buf = [0; SOFT.len() + MAX_TAG_BYTES];
        buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
        buf[prefix.len()..prefix.len() + tag.len()].copy_from_slice(tag.as_bytes());
        Some(Self {
            buf,
            len: prefix.len() + tag.len(),
        })
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        // Two UTF-8 strings joined: UTF-8 (never fails; checked anyway).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or(RESERVED_PREFIX)
    }
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The epoch entries are stamped with.
    pub epoch: u64,
    /// When (Unix ms, the writer's clock) the epoch was last changed.
    pub changed_at: u64,
    /// The engine that wrote it (a random id per engine).
    pub writer: u64,
}

impl Record {
    /// The record in a stored entry, if it is one (24 bytes).
    pub fn of(entry: &Entry) -> Option<Self> {
        let v: &[u8] = &entry.value;
        if v.len() != 24 {
            return None;
        }
        let word = |i: usize| {
            Some(u64::from_le_bytes(
                v.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(Self {
            epoch: word(0)?,
            changed_at: word(1)?,
            writer: word(2)?,
        })
    }

    /// The entry storing this record, written at `now`.
    pub fn entry(&self, now: u64) -> Entry {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.epoch.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.changed_at.to_le_bytes());
        bytes[16..].copy_from_slice(&self.writer.to_le_bytes());
        Entry::new(
            Bytes::copy_from_slice(&bytes),
            now,
            CacheTtl::new(RECORD_TTL, Duration::ZERO, Duration::ZERO),
        )
        .pinned(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_anything_else_is_no_record() {
        let r = Record {
            epoch: 0x0123_4567_89ab_cdef,
            changed_at: 42,
            writer: u64::MAX,
        };
        assert_eq!(Record::of(&r.entry(7)), Some(r));
        for bad in [&b""[..], &[0; 16], &[0; 23], &[0; 25]] {
            assert_eq!(Record::of(&Entry::new(bad, 0, CacheTtl::default())), None);
        }
    }

    #[test]
    fn keys_are_reserved_distinct_and_bounded() {
        let hard = RecordKey::new(Kind::Hard, "user:1").unwrap();
        let soft = RecordKey::new(Kind::Soft, "user:1").unwrap();
        assert_eq!(hard.as_str(), "\0swre:tag:user:1");
        assert_eq!(soft.as_str(), "\0swre:tag-soft:user:1");
        assert!(hard.as_str().starts_with(RESERVED_PREFIX));
        let longest = "é".repeat(MAX_TAG_BYTES / 2);
        assert!(RecordKey::new(Kind::Soft, &longest)
            .unwrap()
            .as_str()
            .ends_with(&*longest));
        assert!(RecordKey::new(Kind::Hard, &"x".repeat(MAX_TAG_BYTES + 1)).is_none());
    }
}
