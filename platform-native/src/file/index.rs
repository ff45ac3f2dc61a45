//! What FileStorage knows about its directory without reading it: each
//! file's size and expiry, total bytes, and least-recently-used order.
//!
//! Recency is a time (the store's clock at the last write or read, or, for a
//! file another process wrote, its `created_at`), so files this process
//! used and files it found compete on one scale; a tick breaks ties.

use std::collections::{BTreeMap, HashMap};

use super::disk::Stamp;

#[derive(Clone, Copy, Debug)]
struct Meta {
    stamp: Stamp,
    expires_at: u64,
    rank: Rank,
}

/// Position in least-recently-used order: last use (ms), then a tick.
type Rank = (u64, u64);

/// File name → size, expiry and recency; kept in step with the directory
/// under the storage's mutex.
#[derive(Default, Debug)]
pub(crate) struct Index {
    files: HashMap<String, Meta>,
    by_recency: BTreeMap<Rank, String>,
    bytes: u64,
    tick: u64,
}

impl Index {
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// The stamp `name` was indexed with, if known.
    pub(crate) fn stamp_of(&self, name: &str) -> Option<Stamp> {
        self.files.get(name).map(|m| m.stamp)
    }

    /// Every known name.
    pub(crate) fn names(&self) -> impl Iterator<Item = &String> {
        self.files.keys()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Records `name` (replacing what was known of it) as last used at
    /// `used_at`.
    pub(crate) fn insert(&mut self, name: &str, stamp: Stamp, expires_at: u64, used_at: u64) {
        self.remove(name);
        let rank = (used_at, self.next_tick());
        self.files.insert(
            name.to_owned(),
            Meta {
                stamp,
                expires_at,
                rank,
            },
        );
        self.by_recency.insert(rank, name.to_owned());
        self.bytes += stamp.size;
    }

    /// Marks `name` as used at `now` (never moving it back in time).
    pub(crate) fn touch(&mut self, name: &str, now: u64) {
        let tick = self.next_tick();
        if let Some(meta) = self.files.get_mut(name) {
            self.by_recency.remove(&meta.rank);
            meta.rank = (meta.rank.0.max(now), tick);
            self.by_recency.insert(meta.rank, name.to_owned());
        }
    }

    /// Forgets `name`; `true` if it was known.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        match self.files.remove(name) {
            Some(meta) => {
                self.by_recency.remove(&meta.rank);
                self.bytes -= meta.stamp.size;
                true
            }
            None => false,
        }
    }

    /// Names to delete so that at most `max_bytes` remain, sparing `keep`:
    /// entries expired at `now_ms` first, then the least recently used. The
    /// chosen names are already forgotten.
    pub(crate) fn evict(&mut self, max_bytes: u64, now_ms: u64, keep: &str) -> Vec<String> {
        let mut victims = Vec::new();
        if self.bytes <= max_bytes {
            return victims;
        }
        let expired: Vec<String> = self
            .files
            .iter()
            .filter(|(name, m)| m.expires_at <= now_ms && name.as_str() != keep)
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            if self.bytes <= max_bytes {
                break;
            }
            self.remove(&name);
            victims.push(name);
        }
        while self.bytes > max_bytes {
            let oldest = self
                .by_recency
                .values()
                .find(|n| n.as_str() != keep)
                .cloned();
            let Some(name) = oldest else { break };
            self.remove(&name);
            victims.push(name);
        }
        victims
    }

    /// Every known name whose entry expired at `now_ms`, forgotten.
    pub(crate) fn take_expired(&mut self, now_ms: u64) -> Vec<String> {
        let expired: Vec<String> = self
            .files
            .iter()
            .filter(|(_, m)| m.expires_at <= now_ms)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &expired {
            self.remove(n);
        }
        expired
    }

    /// Every known name, forgotten.
    pub(crate) fn take_all(&mut self) -> Vec<String> {
        let names = self.files.keys().cloned().collect();
        *self = Index {
            tick: self.tick,
            ..Index::default()
        };
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64) -> Stamp {
        Stamp::at(std::path::Path::new("/nonexistent/swre"), size)
    }

    #[test]
    fn eviction_takes_expired_then_least_recently_used() {
        let mut ix = Index::default();
        ix.insert("a", stamp(10), 1_000, 1);
        ix.insert("b", stamp(10), 50, 1);
        ix.insert("c", stamp(10), 1_000, 1);
        ix.touch("a", 1);
        ix.insert("d", stamp(10), 1_000, 1);
        assert_eq!(ix.bytes(), 40);
        let victims = ix.evict(20, 100, "d");
        assert_eq!(victims, ["b", "c"]);
        assert_eq!((ix.bytes(), ix.len()), (20, 2));
        assert!(ix.evict(0, 100, "d").contains(&"a".to_owned()));
        assert_eq!(ix.len(), 1, "the kept name survives even over the bound");
    }

    #[test]
    fn a_file_found_ranks_by_when_it_was_written() {
        let mut ix = Index::default();
        ix.insert("mine-old", stamp(10), 1_000, 100);
        ix.insert("mine-new", stamp(10), 1_000, 300);
        ix.insert("found", stamp(10), 1_000, 200); // adopted later, written between
        assert_eq!(ix.evict(20, 0, ""), ["mine-old"]);
        assert_eq!(ix.evict(10, 0, ""), ["found"]);
    }

    #[test]
    fn reinsert_replaces_the_size() {
        let mut ix = Index::default();
        ix.insert("a", stamp(10), 0, 0);
        ix.insert("a", stamp(25), 0, 0);
        assert_eq!((ix.bytes(), ix.len()), (25, 1));
        assert!(ix.remove("a"));
        assert!(!ix.remove("a"));
        assert_eq!(ix.bytes(), 0);
    }
}
