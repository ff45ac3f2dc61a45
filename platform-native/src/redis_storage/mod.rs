//! [`RedisStorage`] (feature `redis`): entries and fleet-wide refresh leases
//! in a shared Redis.

mod scripts;
mod versioned;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, RedisResult};
use swre_core::{envelope, Entry, LeaseToken, Storage, StorageError, StorageErrorKind};

use scripts::Scripts;

/// Latest `expires_at` handed to Redis as an expiry (year 9999); later
/// entries are stored without one (the engine still ages them).
const MAX_PXAT: u64 = 253_402_300_799_999;

/// Connection options for [`RedisStorage::connect_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prefix of every key this storage writes: values under
    /// `<prefix>:v:<key>`, leases under `<prefix>:lease:<key>`. Default `swre`.
    pub prefix: String,
    /// Longest wait for one command before it fails (and the engine
    /// degrades). Default 1 s.
    pub response_timeout: Duration,
    /// Longest wait to (re)connect. Default 1 s.
    pub connection_timeout: Duration,
    /// How long a deleted key's version stays behind it (a tombstone), so
    /// a change queued elsewhere while Redis was unreachable and replayed
    /// later is not made over the delete. A [`Backplane`](crate::Backplane)
    /// drops queued changes older than this. Default 10 minutes.
    pub tombstone_ttl: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "swre".to_owned(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
            tombstone_ttl: Duration::from_secs(600),
        }
    }
}

/// A [`Storage`] in Redis, shared by every process of a fleet.
///
/// - Values are the versioned [`envelope`] under `<prefix>:v:<key>`, with the
///   Redis key's own expiry set to the entry's `expires_at` (`PXAT`), so Redis
///   drops entries that are gone. Anything else found there reads as a miss
///   and is overwritten.
/// - Every write, delete and clear is one Lua script that also takes a
///   version from a counter Redis keeps (`<prefix>:meta:version`) and stores
///   it under `<prefix>:ver:<key>` (after a delete, as a tombstone for
///   [`RedisOptions::tombstone_ttl`]; a clear's under
///   `<prefix>:meta:cleared`). [`set_if_unchanged`](Self::set_if_unchanged)
///   writes only if nothing changed the key or cleared the store after a
///   given version: a [`Backplane`](crate::Backplane) replays the writes it
///   could not make during an outage with it. `expire` is conditional on
///   the version it read, so a write that lands between its read and its
///   write is kept. `clear` deletes the values (`<prefix>:v:*`) and keeps
///   leases, versions and the counter.
/// - [`Storage::try_lease`] is `SET <prefix>:lease:<key> <token> NX PX <ttl>`;
///   the release deletes the lease only while it still holds this process's
///   token (a Lua script), so an expired lease taken over by another process
///   is never released by the first.
/// - The connection is a `redis` `ConnectionManager`: commands fail fast
///   while Redis is down (the engine answers from upstream) and it reconnects
///   by itself when Redis is back. A command that finds the connection
///   dropped (Redis restarted, or closed it while idle) is sent once more on
///   a new one, so the first command after Redis is back does not fail; a
///   lease request is not repeated (it may have been granted), and one that
///   fails has its token released, so a grant whose answer was lost (a
///   response timeout) does not hold the key for the lease's whole TTL.
#[derive(Clone)]
pub struct RedisStorage {
    conn: ConnectionManager,
    prefix: Arc<str>,
    token_base: Arc<str>,
    token_seq: Arc<AtomicU64>,
    scripts: Scripts,
    observed: Arc<AtomicU64>,
    tombstone_ms: u64,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("prefix", &self.prefix)
            .finish()
    }
}

pub(crate) fn error(kind: StorageErrorKind, what: &str, e: redis::RedisError) -> StorageError {
    StorageError::new(kind, format!("redis {what}: {e}"))
}

/// A command's error, `Unavailable` when Redis could not be reached.
pub(crate) fn io(what: &str) -> impl Fn(redis::RedisError) -> StorageError + '_ {
    move |e| {
        let kind = if e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_io_error()
        {
            StorageErrorKind::Unavailable
        } else {
            StorageErrorKind::Io
        };
        error(kind, what, e)
    }
}

impl RedisStorage {
    /// Connects to `url` (`redis://host:port/db`) with default options.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `url` with `options`. Fails if the URL is invalid or the
    /// server cannot be reached now; later outages are survived.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StorageError> {
        if options.prefix.is_empty() {
            return Err(StorageError::new(
                StorageErrorKind::InvalidKey,
                "redis prefix must not be empty",
            ));
        }
        let client =
            Client::open(url).map_err(|e| error(StorageErrorKind::InvalidKey, "url", e))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.response_timeout))
            .set_connection_timeout(Some(options.connection_timeout))
            // One connection attempt per reconnection: a command waits for
            // at most one (refused at once while Redis is down; bounded by
            // `connection_timeout` when unreachable), and is itself sent once
            // more on a dropped connection (`retried`).
            .set_number_of_retries(0);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(io("connect"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let storage = Self {
            conn,
            prefix: options.prefix.into(),
            token_base: format!("{}-{nanos:x}", std::process::id()).into(),
            token_seq: Arc::default(),
            scripts: Scripts::new(),
            observed: Arc::default(),
            tombstone_ms: u64::try_from(options.tombstone_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        };
        storage.refresh_observed_version().await?;
        Ok(storage)
    }

    /// The Redis key holding `key`'s value.
    pub fn value_key(&self, key: &str) -> Vec<u8> {
        self.namespaced("v", key)
    }

    /// The value a lease grant `token` is written as: unique to this storage
    /// (and its clones) by its base, and to the grant by the number.
    fn token_string(&self, token: LeaseToken) -> String {
        format!("{}-{}", self.token_base, token.0)
    }

    /// The Redis key holding `key`'s refresh lease.
    pub fn lease_key(&self, key: &str) -> Vec<u8> {
        self.namespaced("lease", key)
    }

    /// `command` on the connection, sent once more if the connection turned
    /// out to be dropped: the manager reconnects on that failure, and only
    /// the second attempt tells whether Redis is there. For commands whose
    /// repetition is harmless (reads, writes of the same value, deletes).
    async fn retried<T, F, Fut>(&self, what: &str, command: F) -> Result<T, StorageError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match command(self.conn.clone()).await {
            Err(e) if e.is_connection_dropped() => command(self.conn.clone()).await,
            first => first,
        }
        .map_err(io(what))
    }

    /// Releases `key`'s lease if it holds `token`, in the background (a
    /// lease request that failed may still have been granted).
    fn release_in_background(&self, key: &str, token: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (script, lease, mut conn) = (
            self.scripts.release.clone(),
            self.lease_key(key),
            self.conn.clone(),
        );
        runtime.spawn(async move {
            let _: Result<i64, _> = script.key(lease).arg(token).invoke_async(&mut conn).await;
        });
    }

    fn namespaced(&self, kind: &str, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + kind.len() + key.len() + 2);
        k.extend_from_slice(self.prefix.as_bytes());
        k.push(b':');
        k.extend_from_slice(kind.as_bytes());
        k.push(b':');
        k.extend_from_slice(key.as_bytes());
        k
    }
}

/// `prefix` with Redis glob metacharacters escaped, for `SCAN MATCH`.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Storage for RedisStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let k = self.value_key(key);
        let bytes: Option<Vec<u8>> = self
            .retried("GET", |mut c| {
                let k = &k;
                async move { c.get(k).await }
            })
            .await?;
        Ok(bytes.and_then(|b| envelope::decode_for(key, &b)))
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.write(key, &entry, None, false).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.remove(key).await
    }

    /// One script: compared and deleted atomically in Redis, so another
    /// process's newer value is never deleted.
    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        self.remove_if_older(key, written).await
    }

    /// Conditional on the version read: a write that lands between this
    /// read and its write is kept (tried three times, then that write's
    /// entry is answered).
    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        self.expire_versioned(key, now).await
    }

    /// Deletes every value under the prefix (`SCAN` and `DEL`), after
    /// recording the clear's version; leases, versions and the counter
    /// stay (see the type's docs).
    async fn clear(&self) -> Result<(), StorageError> {
        self.clear_values().await
    }

    async fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StorageError> {
        // Unique per grant: the process's base and a sequence number, so two
        // engines sharing this storage (or a clone of it) never hold one token.
        let seq = self
            .token_seq
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let token = self.token_string(LeaseToken(seq));
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        let granted: RedisResult<Option<String>> = redis::cmd("SET")
            .arg(self.lease_key(key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await;
        match granted {
            Ok(granted) => Ok(granted.map(|_| LeaseToken(seq))),
            Err(e) => {
                // Not repeated: it may have been granted, and a repeat would
                // then find the key taken (by this very request). Released
                // instead, in case it was; it runs after the request on the
                // same connection, or finds the key not ours.
                self.release_in_background(key, token);
                Err(io("SET NX")(e))
            }
        }
    }

    async fn release_lease(&self, key: &str, token: LeaseToken) {
        let (lease, token) = (self.lease_key(key), self.token_string(token));
        let _: Result<i64, _> = self
            .retried("release", |mut c| {
                let mut invocation = self.scripts.release.key(&lease);
                invocation.arg(&token);
                async move { invocation.invoke_async(&mut c).await }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\^"), "a\\*b\\?\\[c\\]\\\\\\^");
        assert_eq!(glob_escape("swre"), "swre");
    }
}
