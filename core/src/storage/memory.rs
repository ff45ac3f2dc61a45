//! [`MemoryStorage`]: a sharded in-memory store bounded by bytes and entries,
//! evicting expired entries first and then by SIEVE.
//!
//! Each shard keeps its entries in a slab threaded as a list from newest to
//! oldest, a `hashbrown::HashTable` of slab indices (the key is stored once, in
//! the node), and a min-heap of expiry times. A read takes only its shard's read
//! lock, clones the entry (a reference-count bump) and sets the node's `visited`
//! bit; eviction first drops any entry whose `expires_at` has passed (as of the
//! write being made room for), then walks the SIEVE hand from the oldest end,
//! sparing visited nodes once.

use alloc::boxed::Box;
use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::hash::BuildHasher;
use core::sync::atomic::{AtomicBool, Ordering};

use hashbrown::hash_table::HashTable;
use hashbrown::DefaultHashBuilder;

use crate::entry::Entry;
use crate::error::{StorageError, StorageErrorKind};
use crate::storage::Storage;

// The one module of swre-core with `unsafe`: a lock needs it; see its docs.
#[allow(unsafe_code)]
mod lock;
use lock::ShardLock;

/// Bytes charged per entry on top of its key and value (node, table slot, heap record).
pub const ENTRY_OVERHEAD: usize = 96;

const NIL: u32 = u32::MAX;

/// Limits and sharding for a [`MemoryStorage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Upper bound on charged bytes (key + value + [`ENTRY_OVERHEAD`] per entry).
    pub max_bytes: usize,
    /// Upper bound on the number of entries.
    pub max_entries: usize,
    /// Number of shards (rounded down to a power of two, at least 1); `0` picks
    /// one from the limits: up to 16, while each shard keeps at least 64 entries
    /// and 4 MiB.
    pub shards: usize,
}

impl Default for MemoryLimits {
    /// 64 MiB, 100 000 entries, automatic sharding.
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_entries: 100_000,
            shards: 0,
        }
    }
}

impl MemoryLimits {
    fn shard_count(&self) -> usize {
        if self.shards > 0 {
            return prev_power_of_two(self.shards);
        }
        let mut n = 16;
        while n > 1 && (self.max_entries / n < 64 || self.max_bytes / n < (4 << 20)) {
            n /= 2;
        }
        n
    }
}

/// The largest power of two not above `n` (1 for 0 and 1).
fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.max(1).leading_zeros())
}

/// A bounded, sharded in-memory [`Storage`].
///
/// Readers of different keys rarely share a lock (one read lock per shard);
/// a read never allocates. Each shard gets an equal part of the limits; an entry
/// larger than a shard's byte budget is refused with
/// [`StorageErrorKind::TooLarge`].
///
/// ```
/// use core::time::Duration;
/// use swre_core::{CacheTtl, Entry, MemoryStorage, Storage};
/// use swre_core::storage::memory::MemoryLimits;
///
/// let store = MemoryStorage::with_limits(MemoryLimits { max_bytes: 1 << 20, max_entries: 1000, shards: 0 });
/// let e = Entry::new("v", 0, CacheTtl::default());
/// futures::executor::block_on(async {
///     store.set("k", e.clone()).await.unwrap();
///     assert_eq!(store.get("k").await.unwrap(), Some(e));
/// });
/// ```
pub struct MemoryStorage {
    shards: Box<[ShardLock<Shard>]>,
    mask: u64,
    hasher: DefaultHashBuilder,
    limits: MemoryLimits,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::with_limits(MemoryLimits::default())
    }
}

impl core::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("limits", &self.limits)
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl MemoryStorage {
    /// A store with the default limits (64 MiB, 100 000 entries).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with the given limits; zero limits are raised to 1.
    pub fn with_limits(limits: MemoryLimits) -> Self {
        let limits = MemoryLimits {
            max_bytes: limits.max_bytes.max(1),
            max_entries: limits.max_entries.max(1),
            shards: limits.shards,
        };
        // No more shards than entries, so every shard holds at least one and
        // the shards' limits add up to exactly the store's.
        let n = limits
            .shard_count()
            .min(prev_power_of_two(limits.max_entries));
        let share = |total: usize, i: usize| total / n + usize::from(i < total % n);
        let shards = (0..n)
            .map(|i| {
                ShardLock::new(Shard::new(
                    share(limits.max_bytes, i),
                    share(limits.max_entries, i),
                ))
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self {
            shards,
            mask: (n - 1) as u64,
            hasher: DefaultHashBuilder::default(),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> MemoryLimits {
        self.limits
    }

    /// The number of entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len).sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes charged for the entries held (key + value + [`ENTRY_OVERHEAD`] each).
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.read().bytes).sum()
    }

    #[inline]
    fn locate(&self, key: &str) -> (u64, &ShardLock<Shard>) {
        let hash = self.hasher.hash_one(key);
        // The table uses the low and top bits; pick the shard from the middle.
        let shard = ((hash >> 32) & self.mask) as usize;
        (hash, &self.shards[shard])
    }

    /// The entry under `key`, without going through a future (the read never waits).
    #[inline]
    pub fn get_now(&self, key: &str) -> Option<Entry> {
        let (hash, shard) = self.locate(key);
        let shard = shard.read();
        let idx = *shard.table.find(hash, |&i| shard.key_is(i, key))?;
        let node = shard.node(idx)?;
        if !node.visited.load(Ordering::Relaxed) {
            node.visited.store(true, Ordering::Relaxed);
        }
        Some(node.entry.clone())
    }

    /// Stores `entry` under `key` at once, evicting as needed.
    pub fn set_now(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let (hash, shard) = self.locate(key);
        let charge = key.len() + entry.value.len() + ENTRY_OVERHEAD;
        let mut shard = shard.write();
        if charge > shard.max_bytes {
            return Err(StorageError::new(
                StorageErrorKind::TooLarge,
                alloc::format!(
                    "entry of {charge} bytes exceeds this memory shard's budget of {} bytes",
                    shard.max_bytes
                ),
            ));
        }
        shard.insert(&self.hasher, hash, key, entry, charge);
        Ok(())
    }

    /// Removes `key` at once.
    pub fn delete_now(&self, key: &str) {
        let (hash, shard) = self.locate(key);
        let mut guard = shard.write();
        let shard = &mut *guard;
        let nodes = &shard.nodes;
        if let Ok(found) = shard
            .table
            .find_entry(hash, |&i| shard_key_is(nodes, i, key))
        {
            let (idx, _) = found.remove();
            shard.unlink_and_free(idx);
        }
    }

    /// Removes everything at once.
    pub fn clear_now(&self) {
        for s in self.shards.iter() {
            let mut s = s.write();
            let (b, e) = (s.max_bytes, s.max_entries);
            *s = Shard::new(b, e);
        }
    }
}

impl Storage for MemoryStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self.get_now(key))
    }

    #[inline]
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        Some(Ok(self.get_now(key)))
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.set_now(key, entry)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.delete_now(key);
        Ok(())
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.clear_now();
        Ok(())
    }
}

struct Node {
    key: Box<str>,
    entry: Entry,
    charge: usize,
    visited: AtomicBool,
    /// Bumped on every write so stale expiry records are recognised.
    generation: u32,
    newer: u32,
    older: u32,
}

struct Shard {
    table: HashTable<u32>,
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    newest: u32,
    oldest: u32,
    hand: u32,
    len: usize,
    bytes: usize,
    max_bytes: usize,
    max_entries: usize,
    next_generation: u32,
    expiry: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

fn shard_key_is(nodes: &[Option<Node>], idx: u32, key: &str) -> bool {
    matches!(nodes.get(idx as usize), Some(Some(n)) if &*n.key == key)
}

impl Shard {
    fn new(max_bytes: usize, max_entries: usize) -> Self {
        Self {
            table: HashTable::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            hand: NIL,
            len: 0,
            bytes: 0,
            max_bytes,
            max_entries,
            next_generation: 0,
            expiry: BinaryHeap::new(),
        }
    }

    fn key_is(&self, idx: u32, key: &str) -> bool {
        shard_key_is(&self.nodes, idx, key)
    }

    fn node(&self, idx: u32) -> Option<&Node> {
        self.nodes.get(idx as usize).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, idx: u32) -> Option<&mut Node> {
        self.nodes.get_mut(idx as usize).and_then(Option::as_mut)
    }

    fn generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    fn insert(
        &mut self,
        hasher: &DefaultHashBuilder,
        hash: u64,
        key: &str,
        entry: Entry,
        charge: usize,
    ) {
        let now = entry.created_at;
        let expires_at = entry.expires_at;
        let generation = self.generation();
        if let Some(&idx) = self
            .table
            .find(hash, |&i| shard_key_is(&self.nodes, i, key))
        {
            let old_charge = match self.node_mut(idx) {
                Some(node) => {
                    let old = node.charge;
                    node.entry = entry;
                    node.charge = charge;
                    node.generation = generation;
                    old
                }
                None => return,
            };
            self.bytes = self.bytes - old_charge + charge;
            self.expiry.push(Reverse((expires_at, idx, generation)));
            self.make_room(hasher, now, Some(idx));
            self.compact_expiry();
            return;
        }
        // Make room first so the new node is not its own victim.
        self.bytes += charge;
        self.len += 1;
        self.make_room(hasher, now, None);
        let node = Node {
            key: Box::from(key),
            entry,
            charge,
            visited: AtomicBool::new(false),
            generation,
            newer: NIL,
            older: self.newest,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = Some(node);
                i
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        };
        if let Some(prev) = self.node_mut(self.newest) {
            prev.newer = idx;
        }
        self.newest = idx;
        if self.oldest == NIL {
            self.oldest = idx;
        }
        let nodes = &self.nodes;
        self.table
            .insert_unique(hash, idx, |&i| match nodes.get(i as usize) {
                Some(Some(n)) => hasher.hash_one(&*n.key),
                _ => 0,
            });
        self.expiry.push(Reverse((expires_at, idx, generation)));
        self.compact_expiry();
    }

    /// Evicts until the shard is within its limits, sparing `keep`.
    fn make_room(&mut self, hasher: &DefaultHashBuilder, now: u64, keep: Option<u32>) {
        while self.len > self.max_entries || self.bytes > self.max_bytes {
            let victim = self
                .expired_victim(now, keep)
                .or_else(|| self.sieve_victim(keep));
            match victim {
                Some(idx) => self.evict(hasher, idx),
                None => break,
            }
        }
    }

    fn expired_victim(&mut self, now: u64, keep: Option<u32>) -> Option<u32> {
        while let Some(&Reverse((at, idx, generation))) = self.expiry.peek() {
            if at > now {
                return None;
            }
            self.expiry.pop();
            let live = matches!(self.node(idx), Some(n) if n.generation == generation);
            if live && Some(idx) != keep {
                return Some(idx);
            }
        }
        None
    }

    fn sieve_victim(&mut self, keep: Option<u32>) -> Option<u32> {
        // Two passes over the list are enough: the first clears every visited bit.
        let mut steps = 2 * self.len + 2;
        let mut hand = if self.hand == NIL {
            self.oldest
        } else {
            self.hand
        };
        while steps > 0 {
            steps -= 1;
            let Some(node) = self.node(hand) else {
                hand = self.oldest;
                if hand == NIL {
                    return None;
                }
                continue;
            };
            let newer = node.newer;
            if node.visited.load(Ordering::Relaxed) || Some(hand) == keep {
                node.visited.store(false, Ordering::Relaxed);
                hand = if newer == NIL { self.oldest } else { newer };
                continue;
            }
            self.hand = newer;
            return Some(hand);
        }
        None
    }

    fn evict(&mut self, hasher: &DefaultHashBuilder, idx: u32) {
        let Some(node) = self.node(idx) else { return };
        let hash = hasher.hash_one(&*node.key);
        if let Ok(found) = self.table.find_entry(hash, |&i| i == idx) {
            found.remove();
        }
        self.unlink_and_free(idx);
    }

    fn unlink_and_free(&mut self, idx: u32) {
        let Some(node) = self.nodes.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        if self.hand == idx {
            self.hand = node.newer;
        }
        match self.node_mut(node.newer) {
            Some(n) => n.older = node.older,
            None => self.newest = node.older,
        }
        match self.node_mut(node.older) {
            Some(n) => n.newer = node.newer,
            None => self.oldest = node.newer,
        }
        self.len -= 1;
        self.bytes -= node.charge;
        self.free.push(idx);
    }

    /// Drops superseded expiry records once they outnumber live ones.
    fn compact_expiry(&mut self) {
        if self.expiry.len() <= 2 * self.len + 16 {
            return;
        }
        let nodes = &self.nodes;
        self.expiry
            .retain(|Reverse((_, idx, g))| matches!(nodes.get(*idx as usize), Some(Some(n)) if n.generation == *g));
    }
}

#[cfg(test)]
mod tests;
