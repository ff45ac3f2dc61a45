//! [`Tiered`]: a fast store (L1, usually memory) in front of a persistent one (L2).

use crate::entry::Entry;
use crate::error::StorageError;
use crate::storage::{LeaseToken, Storage};
use core::time::Duration;

/// Two storages as one: reads try L1 and then L2 (filling L1 on an L2 hit);
/// writes go to both.
///
/// - An L1 hit never touches L2.
/// - An L1 read error is treated as an L1 miss.
/// - An L2 hit fills L1 unless L1 meanwhile got an entry at least as new (a
///   write that raced the read), so a fill never replaces a newer value.
/// - `set` writes L1 first (the process serves the new value at once), then
///   L2; it reports L2's error (L1 still holds the entry so the process keeps
///   serving it) and ignores L1's.
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
}

impl<L1: Storage, L2: Storage> Tiered<L1, L2> {
    /// `l1` in front of `l2`.
    pub fn new(l1: L1, l2: L2) -> Self {
        Self { l1, l2 }
    }

    /// The front store.
    pub fn l1(&self) -> &L1 {
        &self.l1
    }

    /// The back store.
    pub fn l2(&self) -> &L2 {
        &self.l2
    }
}

impl<L1: Storage, L2: Storage> Storage for Tiered<L1, L2> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        if let Ok(Some(e)) = self.l1.get(key).await {
            return Ok(Some(e));
        }
        let Some(found) = self.l2.get(key).await? else {
            return Ok(None);
        };
        if let Ok(Some(current)) = self.l1.get(key).await {
            if current.created_at >= found.created_at {
                return Ok(Some(current));
            }
        }
        // Filling L1 is an optimisation; its failure changes nothing.
        let _ = self.l1.set(key, found.clone()).await;
        Ok(Some(found))
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
        let _ = self.l1.set(key, entry.clone()).await;
        self.l2.set(key, entry).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let l2 = self.l2.delete(key).await;
        let l1 = self.l1.delete(key).await;
        l2.and(l1)
    }

    async fn clear(&self) -> Result<(), StorageError> {
        let l2 = self.l2.clear().await;
        let l1 = self.l1.clear().await;
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
