//! [`Tiered`]: a fast store (L1, usually memory) in front of a persistent one (L2).

use crate::entry::Entry;
use crate::error::StorageError;
use crate::storage::{LeaseToken, Storage};
use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use hashbrown::DefaultHashBuilder;

/// Two storages as one: reads try L1 and then L2 (filling L1 on an L2 hit);
/// writes go to both.
///
/// - An L1 hit never touches L2.
/// - An L1 read error is treated as an L1 miss.
/// - An L2 hit fills L1 unless a write or delete of the key ran while L2 was
///   read or L1 filled (each bumps its key's write counter before and after
///   it changes either tier), so a fill never replaces a newer value and
///   never undoes a delete; a fill that a write overlapped is taken back.
/// - `set` writes L1 first (the process serves the new value at once), then
///   L2; it reports L2's error; when L1 refuses the entry, L1's older copy is
///   removed (an L1 hit never asks L2). After a failed `set` the
///   engine calls [`remove_older`](Storage::remove_older): L2's entry goes
///   (best effort), L1's stays if it is the one just written (or newer), so
///   while L2 is down the process keeps serving what it fetched instead of
///   calling upstream on every lookup.
/// - `delete` and `clear` apply to both and report the first error.
/// - Leases are L2's (the shared store decides).
///
/// ```
/// use swre_core::{CacheTtl, Entry, MemoryStorage, Storage, Tiered};
///
/// let tiered = Tiered::new(MemoryStorage::new(), MemoryStorage::new());
/// futures::executor::block_on(async {
///     let e = Entry::new("v", 0, CacheTtl::default());
///     tiered.l2().set("k", e.clone()).await.unwrap();
///     assert_eq!(tiered.get("k").await.unwrap(), Some(e.clone())); // L2 hit fills L1
///     assert_eq!(tiered.l1().get("k").await.unwrap(), Some(e));
/// });
/// ```
#[derive(Debug, Default)]
pub struct Tiered<L1, L2> {
    l1: L1,
    l2: L2,
    writes: Writes,
}

/// Write counters striped by key: a write or delete bumps its key's stripe
/// before it changes either tier and again once both are changed, so a read
/// that saw the same count before and after its L2 read and its L1 fill
/// overlapped no write of that key.
#[derive(Debug)]
struct Writes {
    hasher: DefaultHashBuilder,
    stripes: [AtomicU32; STRIPES],
}

const STRIPES: usize = 32;

impl Default for Writes {
    fn default() -> Self {
        Self {
            hasher: DefaultHashBuilder::default(),
            stripes: core::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl Writes {
    fn of(&self, key: &str) -> &AtomicU32 {
        &self.stripes[(self.hasher.hash_one(key) as usize) % STRIPES]
    }

    fn bump(counter: &AtomicU32) {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    fn bump_all(&self) {
        for s in &self.stripes {
            Self::bump(s);
        }
    }
}

impl<L1: Storage, L2: Storage> Tiered<L1, L2> {
    /// `l1` in front of `l2`.
    pub fn new(l1: L1, l2: L2) -> Self {
        Self {
            l1,
            l2,
            writes: Writes::default(),
        }
    }

    /// The front store.
    pub fn l1(&self) -> &L1 {
        &self.l1
    }

    /// The back store.
    pub fn l2(&self) -> &L2 {
        &self.l2
    }

    /// Drops `key`'s L1 copy and leaves L2 as it is, so the next read finds
    /// L2's entry: for a process told that another one changed the key in a
    /// shared L2 (a fleet backplane). It counts as a write of the key, so a
    /// read that has just found an older entry in L2 does not put it back in
    /// L1 (a delete through [`l1`](Self::l1) would not stop it).
    ///
    /// ```
    /// use swre_core::{CacheTtl, Entry, MemoryStorage, Storage, Tiered};
    ///
    /// let tiered = Tiered::new(MemoryStorage::new(), MemoryStorage::new());
    /// futures::executor::block_on(async {
    ///     tiered.set("k", Entry::new("v1", 0, CacheTtl::default())).await.unwrap();
    ///     let v2 = Entry::new("v2", 1, CacheTtl::default());
    ///     tiered.l2().set("k", v2.clone()).await.unwrap(); // another process
    ///     tiered.remove_from_l1("k").await.unwrap();
    ///     assert_eq!(tiered.get("k").await.unwrap(), Some(v2));
    /// });
    /// ```
    pub async fn remove_from_l1(&self, key: &str) -> Result<(), StorageError> {
        let writes = self.writes.of(key);
        Writes::bump(writes);
        let removed = self.l1.delete(key).await;
        Writes::bump(writes);
        removed
    }

    /// Empties L1 and leaves L2 as it is: [`remove_from_l1`](Self::remove_from_l1)
    /// of every key (as a write of every key).
    ///
    /// ```
    /// use swre_core::{CacheTtl, Entry, MemoryStorage, Storage, Tiered};
    ///
    /// let tiered = Tiered::new(MemoryStorage::new(), MemoryStorage::new());
    /// futures::executor::block_on(async {
    ///     tiered.set("k", Entry::new("v", 0, CacheTtl::default())).await.unwrap();
    ///     tiered.clear_l1().await.unwrap();
    ///     assert_eq!(tiered.l1().get("k").await.unwrap(), None);
    ///     assert!(tiered.l2().get("k").await.unwrap().is_some());
    /// });
    /// ```
    pub async fn clear_l1(&self) -> Result<(), StorageError> {
        self.writes.bump_all();
        let cleared = self.l1.clear().await;
        self.writes.bump_all();
        cleared
    }
}

impl<L1: Storage, L2: Storage> Tiered<L1, L2> {
    /// Puts `found`, just read from L2, in L1 unless L1 holds one at least
    /// as new or a write of the key overlapped (its counter moved from
    /// `before`); returns the newer of the two.
    async fn fill(&self, key: &str, found: Entry, before: u32) -> Entry {
        let writes = self.writes.of(key);
        if writes.load(Ordering::SeqCst) != before {
            // A write or delete ran during the read: this read is older than
            // it, and must not put its value in front of it.
            return found;
        }
        if let Ok(Some(current)) = self.l1.get(key).await {
            if current.created_at >= found.created_at {
                return current;
            }
        }
        // Filling L1 is an optimisation; its failure changes nothing.
        let _ = self.l1.set(key, found.clone()).await;
        if writes.load(Ordering::SeqCst) != before {
            // A write began while L1 was filled: the fill may have replaced
            // its value or undone its delete. Take it back; the next read
            // finds L2.
            let _ = self.l1.delete(key).await;
        }
        found
    }
}

impl<L1: Storage, L2: Storage> Storage for Tiered<L1, L2> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let writes = self.writes.of(key);
        let before = writes.load(Ordering::SeqCst);
        if let Ok(Some(e)) = self.l1.get(key).await {
            return Ok(Some(e));
        }
        let Some(found) = self.l2.get(key).await? else {
            return Ok(None);
        };
        Ok(Some(self.fill(key, found, before).await))
    }

    /// L2's entry, which another process may have written since L1 was
    /// filled; L1 fills from it when it is newer. With none in L2, L1's.
    /// A tag's record (a key under
    /// [`RESERVED_PREFIX`](crate::tags::record::RESERVED_PREFIX)) is L2's
    /// alone, present or not: another process may rewrite it within the
    /// millisecond of L1's copy, or with a clock behind this one's, so
    /// `created_at` cannot say which is newer, and a copy L2 no longer holds
    /// must not keep an entry valid.
    async fn get_shared(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        if key.starts_with(crate::tags::record::RESERVED_PREFIX) {
            return self.l2.get_shared(key).await;
        }
        let before = self.writes.of(key).load(Ordering::SeqCst);
        match self.l2.get_shared(key).await? {
            Some(found) => Ok(Some(self.fill(key, found, before).await)),
            None => Ok(self.l1.get(key).await.ok().flatten()),
        }
    }

    /// The shared store's answer, at once if it can give one.
    #[inline]
    fn get_shared_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        self.l2.get_shared_ready(key)
    }

    /// From L1 when it holds the key; else `None` (awaited through `get`).
    #[inline]
    fn peek_ready<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Entry) -> T,
    ) -> Option<Result<Option<T>, StorageError>> {
        match self.l1.peek_ready(key, f) {
            Some(Ok(Some(t))) => Some(Ok(Some(t))),
            _ => None,
        }
    }

    /// Ready when L1 holds the key; an L1 miss needs L2, so it is not.
    #[inline]
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        match self.l1.get_ready(key) {
            Some(Ok(Some(e))) => Some(Ok(Some(e))),
            _ => None,
        }
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let writes = self.writes.of(key);
        Writes::bump(writes);
        if self.l1.set(key, entry.clone()).await.is_err() {
            // L1 cannot hold it (too large for a shard, say): it must not
            // keep serving the older value it holds, as an L1 hit never
            // asks L2. A failed delete leaves the key to L2 at worst.
            let _ = self.l1.remove_older(key, &entry).await;
        }
        let l2 = self.l2.set(key, entry).await;
        Writes::bump(writes);
        l2
    }

    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        let writes = self.writes.of(key);
        Writes::bump(writes);
        let l2 = self.l2.remove_older(key, written).await;
        let l1 = self.l1.remove_older(key, written).await;
        Writes::bump(writes);
        l2.and(l1)
    }

    /// L2's entry first (the one other processes share), then L1's copy.
    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        let writes = self.writes.of(key);
        Writes::bump(writes);
        let l2 = self.l2.expire(key, now).await;
        let l1 = self.l1.expire(key, now).await;
        Writes::bump(writes);
        match (l2, l1) {
            (Ok(Some(e)), _) | (Ok(None), Ok(Some(e))) => Ok(Some(e)),
            (Ok(None), _) => Ok(None),
            (Err(e), _) => Err(e),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let writes = self.writes.of(key);
        Writes::bump(writes);
        let l2 = self.l2.delete(key).await;
        let l1 = self.l1.delete(key).await;
        Writes::bump(writes);
        l2.and(l1)
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.writes.bump_all();
        let l2 = self.l2.clear().await;
        let l1 = self.l1.clear().await;
        self.writes.bump_all();
        l2.and(l1)
    }

    async fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StorageError> {
        self.l2.try_lease(key, ttl).await
    }

    async fn release_lease(&self, key: &str, token: LeaseToken) {
        self.l2.release_lease(key, token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::CacheTtl;
    use crate::storage::memory::{MemoryLimits, MemoryStorage};
    use futures::executor::block_on;

    #[test]
    fn a_peek_answers_from_l1_and_leaves_an_l1_miss_to_be_awaited() {
        let t = Tiered::new(MemoryStorage::new(), MemoryStorage::new());
        block_on(async {
            t.l2.set("only-in-l2", Entry::new("2", 1, CacheTtl::default()))
                .await
                .unwrap();
            t.set("both", Entry::new("b", 2, CacheTtl::default()))
                .await
                .unwrap();
        });
        let created = |key| t.peek_ready(key, |e| e.created_at);
        assert!(matches!(created("both"), Some(Ok(Some(2)))));
        // In L2 only: not answered at once (the engine awaits `get`, which
        // asks L2 and fills L1), never answered as absent.
        assert!(created("only-in-l2").is_none());
        assert!(created("nowhere").is_none());
    }

    #[test]
    fn a_value_l1_refuses_does_not_leave_the_older_one_served() {
        // L1's shard budget is 4 KiB; L2 takes anything.
        let l1 = MemoryStorage::with_limits(MemoryLimits {
            max_bytes: 4_096,
            max_entries: 100,
            shards: 1,
        });
        let t = Tiered::new(l1, MemoryStorage::new());
        block_on(async {
            let old = Entry::new("old", 1_000, CacheTtl::default());
            t.set("k", old).await.unwrap();
            let new = Entry::new(alloc::vec![b'n'; 10_000], 2_000, CacheTtl::default());
            // L1 refuses it (TooLarge, ignored), L2 stores it: Ok, so the
            // engine hands out `new` and calls no remove_older.
            t.set("k", new.clone()).await.unwrap();
            let got = t.get("k").await.unwrap().unwrap();
            assert_eq!(
                got.created_at, new.created_at,
                "an L1 hit serves the older value after the newer one was stored"
            );
        });
    }

    #[test]
    fn remove_older_keeps_a_newer_entry_and_the_written_one() {
        // The trait's contract: remove only what is older than `created_at`.
        let s = MemoryStorage::new();
        let t = Tiered::new(MemoryStorage::new(), MemoryStorage::new());
        block_on(async {
            let newer = Entry::new("newer", 2_000, CacheTtl::default());
            s.set("k", newer.clone()).await.unwrap();
            t.set("k", newer.clone()).await.unwrap();
            // A write of an entry created at 1_000 failed earlier; its
            // cleanup runs after the newer write landed.
            let failed = Entry::new("failed", 1_000, CacheTtl::default());
            s.remove_older("k", &failed).await.unwrap();
            t.remove_older("k", &failed).await.unwrap();
            assert_eq!(t.l1().get("k").await.unwrap(), Some(newer.clone()), "L1");
            assert_eq!(
                t.l2().get("k").await.unwrap(),
                Some(newer.clone()),
                "Tiered's L2"
            );
            assert_eq!(
                s.get("k").await.unwrap(),
                Some(newer),
                "default remove_older"
            );
        });
    }
}
