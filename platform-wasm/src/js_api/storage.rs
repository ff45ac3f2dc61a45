//! The storage a `SwrCache` was opened with, as one type the engine can hold.

use std::time::Duration;

use swre_core::tags::record::RESERVED_PREFIX;
use swre_core::{Entry, LeaseToken, Storage, StorageError, StorageErrorKind, Tiered};

use super::table::{self, JsTable, Table};
use super::value;
use crate::{Broadcast, CacheApiStorage, IndexedDbStorage, JsStorage, LeaseStats};

/// A persistent store behind the memory tier.
pub(crate) enum Persistent {
    IndexedDb(IndexedDbStorage),
    Cache(CacheApiStorage),
    Js(JsStorage),
}

/// `"memory"` (the JS table), or the table in front of a persistent store:
/// IndexedDB's shared with the origin's other contexts (its leases are Web
/// Locks, and its changes are announced on a `BroadcastChannel`), the
/// others' local to this context.
pub(crate) enum AnyStorage {
    Memory(JsTable),
    Tiered(Tiered<JsTable, Readable>),
    Shared(Broadcast<JsTable, Readable>),
}

/// A persistent store whose entries read as absent when the JS API cannot
/// read their value back (another writer's bytes, JSON that does not
/// parse): a miss, so the next fetch overwrites them, as with any garbage,
/// instead of an error on every read until they expire. Tag records (keys
/// under `RESERVED_PREFIX`) hold the engine's bytes, no JS value: they pass
/// as they are (dropped, every tagged entry another instance or an earlier
/// run wrote would read as invalidated).
pub(crate) struct Readable {
    store: Persistent,
    json: Table,
}

impl Readable {
    pub(crate) fn new(store: Persistent, json: Table) -> Self {
        Self { store, json }
    }
}

impl Storage for Readable {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let found = self.store.get(key).await?;
        if key.starts_with(RESERVED_PREFIX) {
            return Ok(found);
        }
        Ok(found.filter(|e| value::decode(&e.value, &self.json).is_ok()))
    }
    /// A value read from the memory tier (a handle, written back by a "not
    /// modified" answer) is stored as its encoded bytes.
    async fn set(&self, key: &str, mut entry: Entry) -> Result<(), StorageError> {
        if let Some(v) = table::handle_value(&self.json, key, &entry.value) {
            let held = v.ok_or_else(|| {
                StorageError::new(
                    StorageErrorKind::Other,
                    "the value written back is no longer held by the memory tier",
                )
            })?;
            let bytes = value::encode(&held, &self.json)
                .map_err(|m| StorageError::new(StorageErrorKind::Other, m))?;
            entry.value = bytes.into();
        }
        self.store.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.store.delete(key).await
    }
    async fn clear(&self) -> Result<(), StorageError> {
        self.store.clear().await
    }
    async fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StorageError> {
        self.store.try_lease(key, ttl).await
    }
    async fn release_lease(&self, key: &str, token: LeaseToken) {
        self.store.release_lease(key, token).await
    }
}

impl Storage for Persistent {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match self {
            Persistent::IndexedDb(s) => s.get(key).await,
            Persistent::Cache(s) => s.get(key).await,
            Persistent::Js(s) => s.get(key).await,
        }
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        match self {
            Persistent::IndexedDb(s) => s.set(key, entry).await,
            Persistent::Cache(s) => s.set(key, entry).await,
            Persistent::Js(s) => s.set(key, entry).await,
        }
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Persistent::IndexedDb(s) => s.delete(key).await,
            Persistent::Cache(s) => s.delete(key).await,
            Persistent::Js(s) => s.delete(key).await,
        }
    }
    async fn clear(&self) -> Result<(), StorageError> {
        match self {
            Persistent::IndexedDb(s) => s.clear().await,
            Persistent::Cache(s) => s.clear().await,
            Persistent::Js(s) => s.clear().await,
        }
    }
    /// IndexedDB's leases are Web Locks; the other stores keep the default
    /// (always granted).
    async fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StorageError> {
        match self {
            Persistent::IndexedDb(s) => s.try_lease(key, ttl).await,
            Persistent::Cache(s) => s.try_lease(key, ttl).await,
            Persistent::Js(s) => s.try_lease(key, ttl).await,
        }
    }
    async fn release_lease(&self, key: &str, token: LeaseToken) {
        match self {
            Persistent::IndexedDb(s) => s.release_lease(key, token).await,
            Persistent::Cache(s) => s.release_lease(key, token).await,
            Persistent::Js(s) => s.release_lease(key, token).await,
        }
    }
}

impl AnyStorage {
    /// The memory tier: the whole store, or its L1.
    pub(crate) fn table(&self) -> &JsTable {
        match self {
            AnyStorage::Memory(s) => s,
            AnyStorage::Tiered(s) => s.l1(),
            AnyStorage::Shared(s) => s.tiered().l1(),
        }
    }

    /// The counters of the sharing between contexts, by name (`stats()`
    /// adds them to the engine's): zero unless the store is shared.
    pub(crate) fn sharing_fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let (leases, broadcasts) = match self {
            AnyStorage::Shared(s) => {
                let leases = match &s.tiered().l2().store {
                    Persistent::IndexedDb(idb) => idb.lease_stats(),
                    _ => LeaseStats::default(),
                };
                (leases, s.stats())
            }
            _ => Default::default(),
        };
        leases.fields().chain(broadcasts.fields())
    }
}

impl Storage for AnyStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match self {
            AnyStorage::Memory(s) => s.get(key).await,
            AnyStorage::Tiered(s) => s.get(key).await,
            AnyStorage::Shared(s) => s.get(key).await,
        }
    }
    async fn get_shared(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match self {
            AnyStorage::Memory(s) => s.get(key).await,
            AnyStorage::Tiered(s) => s.get_shared(key).await,
            AnyStorage::Shared(s) => s.get_shared(key).await,
        }
    }
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        match self {
            AnyStorage::Memory(s) => s.get_ready(key),
            AnyStorage::Tiered(s) => s.get_ready(key),
            AnyStorage::Shared(s) => s.get_ready(key),
        }
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        match self {
            AnyStorage::Memory(s) => s.set(key, entry).await,
            AnyStorage::Tiered(s) => s.set(key, entry).await,
            AnyStorage::Shared(s) => s.set(key, entry).await,
        }
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            AnyStorage::Memory(s) => s.delete(key).await,
            AnyStorage::Tiered(s) => s.delete(key).await,
            AnyStorage::Shared(s) => s.delete(key).await,
        }
    }
    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        match self {
            AnyStorage::Memory(s) => s.remove_older(key, written).await,
            AnyStorage::Tiered(s) => s.remove_older(key, written).await,
            AnyStorage::Shared(s) => s.remove_older(key, written).await,
        }
    }
    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        match self {
            AnyStorage::Memory(s) => s.expire(key, now).await,
            AnyStorage::Tiered(s) => s.expire(key, now).await,
            AnyStorage::Shared(s) => s.expire(key, now).await,
        }
    }
    async fn clear(&self) -> Result<(), StorageError> {
        match self {
            AnyStorage::Memory(s) => s.clear().await,
            AnyStorage::Tiered(s) => s.clear().await,
            AnyStorage::Shared(s) => s.clear().await,
        }
    }
    async fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StorageError> {
        match self {
            AnyStorage::Memory(s) => s.try_lease(key, ttl).await,
            AnyStorage::Tiered(s) => s.try_lease(key, ttl).await,
            AnyStorage::Shared(s) => s.try_lease(key, ttl).await,
        }
    }
    async fn release_lease(&self, key: &str, token: LeaseToken) {
        match self {
            AnyStorage::Memory(s) => s.release_lease(key, token).await,
            AnyStorage::Tiered(s) => s.release_lease(key, token).await,
            AnyStorage::Shared(s) => s.release_lease(key, token).await,
        }
    }
}
