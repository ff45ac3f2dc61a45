//! [`RedisStorage`]'s changes that take a version (see [`scripts`](super::scripts)),
//! and the conditional ones a [`Backplane`](crate::Backplane) replays.

use std::sync::atomic::Ordering;

use swre_core::storage::expire_entry;
use swre_core::{envelope, Entry, StorageError};

use super::{glob_escape, RedisStorage, MAX_PXAT};

/// `since` as the scripts take it: -1 for an unconditional change.
fn since_arg(since: Option<u64>) -> i64 {
    since.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl RedisStorage {
    /// The Redis key holding `key`'s version (or its delete's tombstone).
    pub fn version_key(&self, key: &str) -> Vec<u8> {
        self.namespaced("ver", key)
    }

    /// How long a deleted key's version stays as a tombstone
    /// ([`RedisOptions::tombstone_ttl`](crate::RedisOptions::tombstone_ttl)).
    pub fn tombstone_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.tombstone_ms)
    }

    fn counter_key(&self) -> Vec<u8> {
        self.namespaced("meta", "version")
    }

    fn cleared_key(&self) -> Vec<u8> {
        self.namespaced("meta", "cleared")
    }

    fn epoch_key(&self) -> Vec<u8> {
        self.namespaced("meta", "epoch")
    }

    /// The highest version Redis assigned to a change this storage (or a
    /// clone of it) made; 0 before its first. Every change another instance
    /// makes after this storage read it gets a higher one, so it is the
    /// `since` of a change this storage could not make now and replays
    /// later.
    pub fn observed_version(&self) -> u64 {
        self.observed.load(Ordering::Relaxed)
    }

    /// Reads the counter Redis takes versions from, so that
    /// [`observed_version`](Self::observed_version) is at least what it was
    /// then: a write that fails later is replayed unless the key changed
    /// after this read, rather than after this storage's last own change.
    /// Done at connection and, by a [`Backplane`](crate::Backplane), once
    /// per heartbeat.
    pub async fn refresh_observed_version(&self) -> Result<u64, StorageError> {
        let keys = [self.counter_key(), self.epoch_key()];
        let current: u64 = self
            .retried("observe", |mut c| {
                let mut invocation = self.scripts.observe.prepare_invoke();
                invocation.key(&keys[..]);
                async move { invocation.invoke_async(&mut c).await }
            })
            .await?;
        Ok(self.observe(current))
    }

    fn observe(&self, version: u64) -> u64 {
        self.observed.fetch_max(version, Ordering::Relaxed);
        version
    }

    /// Writes `entry` under `key` (when `since` is given, only if the key
    /// is unchanged after it, and with `store_wide` also the store); its
    /// version, or 0 when skipped.
    pub(super) async fn write(
        &self,
        key: &str,
        entry: &Entry,
        since: Option<u64>,
        store_wide: bool,
    ) -> Result<u64, StorageError> {
        let bytes = envelope::seal(key, entry)?;
        let expiry = if entry.expires_at <= MAX_PXAT {
            entry.expires_at.max(1).to_string()
        } else {
            String::new()
        };
        let keys = [
            self.value_key(key),
            self.version_key(key),
            self.counter_key(),
            self.cleared_key(),
            self.epoch_key(),
        ];
        let since = since_arg(since);
        let scope = if store_wide { "1" } else { "0" };
        let version: u64 = self
            .retried("SET", |mut c| {
                let mut invocation = self.scripts.set.prepare_invoke();
                invocation
                    .key(&keys[..])
                    .arg(&bytes)
                    .arg(&expiry)
                    .arg(since)
                    .arg(scope);
                async move { invocation.invoke_async(&mut c).await }
            })
            .await?;
        Ok(self.observe(version))
    }

    /// Deletes `key`'s value, leaving its version as a tombstone.
    pub(super) async fn remove(&self, key: &str) -> Result<(), StorageError> {
        let keys = [
            self.value_key(key),
            self.version_key(key),
            self.counter_key(),
            self.epoch_key(),
        ];
        let version: u64 = self
            .retried("DEL", |mut c| {
                let mut invocation = self.scripts.delete.prepare_invoke();
                invocation.key(&keys[..]).arg(self.tombstone_ms);
                async move { invocation.invoke_async(&mut c).await }
            })
            .await?;
        self.observe(version);
        Ok(())
    }

    /// `Storage::remove_older` in one script.
    pub(super) async fn remove_if_older(
        &self,
        key: &str,
        written: &Entry,
    ) -> Result<(), StorageError> {
        let keys = [
            self.value_key(key),
            self.version_key(key),
            self.counter_key(),
            self.epoch_key(),
        ];
        let sealed = envelope::seal(key, written).unwrap_or_default();
        let created_at = written.created_at.to_string();
        let version: u64 = self
            .retried("remove_older", |mut c| {
                let mut invocation = self.scripts.remove_older.prepare_invoke();
                invocation
                    .key(&keys[..])
                    .arg(&created_at)
                    .arg(&sealed)
                    .arg(self.tombstone_ms);
                async move { invocation.invoke_async(&mut c).await }
            })
            .await?;
        self.observe(version);
        Ok(())
    }

    /// `key`'s entry and version, read together.
    async fn read_versioned(&self, key: &str) -> Result<(Option<Entry>, u64), StorageError> {
        let keys = [self.value_key(key), self.version_key(key)];
        let (bytes, version): (Option<Vec<u8>>, Option<u64>) = self
            .retried("MGET", |mut c| {
                let keys = &keys;
                async move {
                    redis::cmd("MGET")
                        .arg(&keys[..])
                        .query_async::<(Option<Vec<u8>>, Option<u64>)>(&mut c)
                        .await
                }
            })
            .await?;
        let entry = bytes.and_then(|b| envelope::decode_for(key, &b));
        Ok((entry, version.unwrap_or(0)))
    }

    /// `Storage::expire`, conditional on the version it read.
    pub(super) async fn expire_versioned(
        &self,
        key: &str,
        now: u64,
    ) -> Result<Option<Entry>, StorageError> {
        for _ in 0..3 {
            let (found, version) = self.read_versioned(key).await?;
            let Some(mut entry) = found else {
                return Ok(None);
            };
            if !expire_entry(&mut entry, now) {
                return Ok(Some(entry));
            }
            // A value without a version was written before versions were
            // kept: nothing to compare with, so the write is unconditional.
            // Conditional on the key alone: a clear since would have
            // deleted it, and the read found it.
            let since = (version > 0).then_some(version);
            if self.write(key, &entry, since, false).await? > 0 {
                return Ok(Some(entry));
            }
        }
        // Written again after each read: the latest write is newer than the
        // expiry, and is what the key holds.
        Ok(self.read_versioned(key).await?.0)
    }

    /// Records that the store is cleared (before its values go).
    pub(super) async fn mark_cleared(&self) -> Result<(), StorageError> {
        let keys = [self.counter_key(), self.cleared_key(), self.epoch_key()];
        let version: u64 = self
            .retried("clear", |mut c| {
                let mut invocation = self.scripts.cleared.prepare_invoke();
                invocation.key(&keys[..]);
                async move { invocation.invoke_async(&mut c).await }
            })
            .await?;
        self.observe(version);
        Ok(())
    }

    /// Writes `entry` under `key` only if neither the key nor the store (a
    /// clear) changed after version `since`, and `since` is from the
    /// history Redis holds (not from before a restart without data); the
    /// write's version, or `None` when it was not made.
    pub async fn set_if_unchanged(
        &self,
        key: &str,
        entry: &Entry,
        since: u64,
    ) -> Result<Option<u64>, StorageError> {
        let version = self.write(key, entry, Some(since), true).await?;
        Ok((version > 0).then_some(version))
    }

    /// Deletes every value (`<prefix>:v:*`), after recording the clear's
    /// version; versions, tombstones, leases and the counter stay.
    pub(super) async fn clear_values(&self) -> Result<(), StorageError> {
        self.mark_cleared().await?;
        let pattern = format!("{}:v:*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .retried("SCAN", |mut c| {
                    let scan = &scan;
                    async move { scan.query_async(&mut c).await }
                })
                .await?;
            if !keys.is_empty() {
                self.retried("DEL", |mut c| {
                    let keys = &keys;
                    async move {
                        redis::cmd("DEL")
                            .arg(&keys[..])
                            .query_async::<()>(&mut c)
                            .await
                    }
                })
                .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
