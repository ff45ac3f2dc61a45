//! The storage a `SwrCache` was opened with, as one type the engine can hold.

use swre_core::tags::record::RESERVED_PREFIX;
use swre_core::{Entry, Storage, StorageError, StorageErrorKind, Tiered};

use super::table::{self, JsTable, Table};
use super::value;
use crate::{CacheApiStorage, IndexedDbStorage, JsStorage};

/// A persistent store behind the memory tier.
pub(crate) enum Persistent {
    IndexedDb(IndexedDbStorage),
    Cache(CacheApiStorage),
    Js(JsStorage),
}

/// `"memory"` (the JS table), or the table in front of a persistent store.
pub(crate) enum AnyStorage {
    Memory(JsTable),
    Tiered(Tiered<JsTable, Readable>),
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
}

impl AnyStorage {
    /// The memory tier: the whole store, or its L1.
    pub(crate) fn table(&self) -> &JsTable {
        match self {
            AnyStorage::Memory(s) => s,
            AnyStorage::Tiered(s) => s.l1(),
        }
    }
}

impl Storage for AnyStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match self {
            AnyStorage::Memory(s) => s.get(key).await,
            AnyStorage::Tiered(s) => s.get(key).await,
        }
    }
    async fn get_shared(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match self {
            AnyStorage::Memory(s) => s.get(key).await,
            AnyStorage::Tiered(s) => s.get_shared(key).await,
        }
    }
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        match self {
            AnyStorage::Memory(s) => s.get_ready(key),
            AnyStorage::Tiered(s) => s.get_ready(key),
        }
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        match self {
            AnyStorage::Memory(s) => s.set(key, entry).await,
            AnyStorage::Tiered(s) => s.set(key, entry).await,
        }
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            AnyStorage::Memory(s) => s.delete(key).await,
            AnyStorage::Tiered(s) => s.delete(key).await,
        }
    }
    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        match self {
            AnyStorage::Memory(s) => s.remove_older(key, written).await,
            AnyStorage::Tiered(s) => s.remove_older(key, written).await,
        }
    }
    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        match self {
            AnyStorage::Memory(s) => s.expire(key, now).await,
            AnyStorage::Tiered(s) => s.expire(key, now).await,
        }
    }
    async fn clear(&self) -> Result<(), StorageError> {
        match self {
            AnyStorage::Memory(s) => s.clear().await,
            AnyStorage::Tiered(s) => s.clear().await,
        }
    }
}
