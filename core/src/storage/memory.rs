//! [`MemoryStorage`]: a sharded in-memory store bounded by bytes and entries,
//! evicting expired entries first, then by SIEVE behind a TinyLFU admission
//! filter (see `shard`).
//!
//! A read takes only its shard's read lock, clones the entry (a
//! reference-count bump) and sets the node's `visited` bit if unset; writes
//! take the shard's write lock.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hash::BuildHasher;
use core::sync::atomic::Ordering;

use hashbrown::DefaultHashBuilder;

use crate::entry::Entry;
use crate::error::{StorageError, StorageErrorKind};
use crate::storage::Storage;

// The one module of swre-core with `unsafe`: a lock needs it; see its docs.
#[allow(unsafe_code)]
pub(crate) mod lock;
mod shard;
mod sketch;
use lock::ShardLock;
use shard::Shard;

/// Bytes charged per entry on top of its key's and value's heap blocks:
/// the node in the slab (with the slab's growth slack of up to a quarter),
/// the hash-table slot, the expiry-heap record (with the heap's slack) and
/// the admission sketch's share.
pub const ENTRY_OVERHEAD: usize = core::mem::size_of::<shard::Node>() * 9 / 8 + 8 + 24 + 6;

/// What a general-purpose allocator spends on a block of `n` bytes: glibc's
/// rule (`n` plus an 8-byte header, rounded up to 16, at least 32), which
/// jemalloc's and mimalloc's size classes come close to; nothing for 0.
const fn heap_block(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let chunk = (n + 8 + 15) & !15;
    if chunk < 32 {
        32
    } else {
        chunk
    }
}

/// The bytes a [`MemoryStorage`] charges against `max_bytes` for an entry
/// with a key of `key_len` bytes and a value of `value_len`: what the heap
/// really spends on it, within about 20 % (the key's block, the value's
/// reference-counted block, and [`ENTRY_OVERHEAD`]).
pub const fn entry_charge(key_len: usize, value_len: usize) -> usize {
    let value_block = if value_len == 0 {
        0
    } else {
        // `Arc<[u8]>`: two counters, then the bytes.
        heap_block(2 * core::mem::size_of::<usize>() + value_len)
    };
    heap_block(key_len) + value_block + ENTRY_OVERHEAD
}

/// Limits and sharding for a [`MemoryStorage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Upper bound on charged bytes ([`entry_charge`] per entry: what the
    /// heap spends on it).
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

    /// The bytes charged for the entries held ([`entry_charge`] each).
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
    #[inline(always)]
    pub fn get_now(&self, key: &str) -> Option<Entry> {
        self.peek_now(key, Entry::clone)
    }

    /// `f` of the entry under `key`, read where it lies under the shard's
    /// read lock (`f` must not call the store), without a copy of it.
    #[inline(always)]
    pub fn peek_now<T>(&self, key: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        let (hash, shard) = self.locate(key);
        let shard = shard.read();
        let idx = *shard
            .table
            .find(hash, |&i| shard::key_is(shard.nodes(), i, key))?;
        let node = shard.node(idx)?;
        if !node.visited.load(Ordering::Relaxed) {
            node.visited.store(true, Ordering::Relaxed);
        }
        Some(f(&node.entry))
    }

    /// Stores `entry` under `key` at once, evicting as needed.
    pub fn set_now(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let (hash, shard) = self.locate(key);
        let charge = entry_charge(key.len(), entry.value.len()) + entry.tags.heap_bytes();
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
        shard.insert(hash, key, entry, charge);
        Ok(())
    }

    /// Removes `key` at once.
    pub fn delete_now(&self, key: &str) {
        let (hash, shard) = self.locate(key);
        shard.write().remove(hash, key);
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

    #[inline(always)]
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        Some(Ok(self.get_now(key)))
    }

    /// `f` runs under the shard's read lock.
    #[inline(always)]
    fn peek_ready<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Entry) -> T,
    ) -> Option<Result<Option<T>, StorageError>> {
        Some(Ok(self.peek_now(key, f)))
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.set_now(key, entry)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.delete_now(key);
        Ok(())
    }

    /// Atomic: compared and removed under the shard's lock.
    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        let (hash, shard) = self.locate(key);
        shard.write().remove_older(hash, key, written);
        Ok(())
    }

    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        let (hash, shard) = self.locate(key);
        Ok(shard.write().expire(hash, key, now))
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.clear_now();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
