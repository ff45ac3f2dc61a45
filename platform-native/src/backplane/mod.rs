//! [`Backplane`] (feature `redis`): keeps the L1 copies of a fleet's
//! instances coherent over Redis pub/sub.

mod message;
mod stats;
mod subscriber;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Client;
use swre_core::{
    Entry, LeaseToken, MemoryStorage, Storage, StorageError, StorageErrorKind, Tiered,
};
use tokio::task::JoinHandle;

use crate::redis_storage::{error as redis_error, io};
use message::{Kind, Message};
pub use stats::BackplaneStats;
use stats::Counters;

/// Options for [`Backplane::connect_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackplaneOptions {
    /// The pub/sub channel every instance of the fleet publishes on and
    /// listens to. Default `swre:backplane`. Fleets that share a Redis but
    /// not their entries (different `RedisOptions::prefix`) should use
    /// different channels: one fleet's changes would otherwise make the
    /// other drop L1 copies for nothing (harmless, but each costs a read).
    pub channel: String,
    /// Longest wait for one `PUBLISH` before it counts as failed. Default 1 s.
    pub response_timeout: Duration,
    /// Longest wait to (re)connect. Default 1 s.
    pub connection_timeout: Duration,
}

impl Default for BackplaneOptions {
    fn default() -> Self {
        Self {
            channel: "swre:backplane".to_owned(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
        }
    }
}

/// A [`Tiered`] store (memory in front of a shared [`RedisStorage`]) whose
/// instances tell each other what they change, so none keeps serving an L1
/// copy another instance replaced, removed, expired or cleared
/// (FusionCache's backplane, BentoCache's bus).
///
/// It is a [`Storage`]: give it to `Engine::builder` in place of the
/// `Tiered` it wraps; the engine needs no change. Every method is the
/// wrapped store's. In addition:
///
/// - After each successful `set`, `delete`, `expire`, `remove_older` and
///   `clear` it `PUBLISH`es one short message on the channel: the kind of
///   change, the key, this instance's id (random, drawn at construction) and
///   its message count. Never the value: receivers read it from L2 when they
///   need it. The write is done when the message is sent; a publish that
///   fails never fails the write ("storage failures degrade"), it is counted
///   (`publish_errors`). `remove_older` is published whenever it succeeds
///   (the store does not say whether it removed anything).
/// - A task (spawned at construction, on its own pub/sub connection)
///   receives the other instances' messages and drops the key's L1 copy
///   (empties L1 for a clear), as a write of the key, so a read in flight
///   does not put the older copy back; the next read finds L2. An expired
///   entry's copy is dropped too: L2 holds it expired. The instance's own
///   messages are ignored; a message it cannot read is counted and ignored.
///   The task ends when the `Backplane` is dropped.
/// - Tag operations write their records through `set`, so they are
///   published like any write; tagged entries do not depend on it, though,
///   as the engine reads tag records from L2 (`get_shared`) on every hit of
///   a tagged entry.
///
/// **Not yet handled: gaps.** When the pub/sub connection drops (Redis
/// restarted, a network cut) the task ends (`subscription_lost`) and is not
/// restarted: every change published from then on is missed, and this
/// instance's L1 copies stay as they are until they expire. Likewise a
/// change whose publish failed is not sent again. Reconnection, replay and
/// distrust of L1 after a gap are the next step (issue 19, item 2); until
/// then, keep L1's fresh phase short where staleness after an outage
/// matters.
///
/// [`RedisStorage`]: crate::RedisStorage
pub struct Backplane<L1 = MemoryStorage, L2 = crate::RedisStorage> {
    store: Arc<Tiered<L1, L2>>,
    publisher: ConnectionManager,
    channel: Arc<str>,
    instance: u64,
    seq: AtomicU64,
    counters: Arc<Counters>,
    subscriber: JoinHandle<()>,
}

impl<L1, L2> std::fmt::Debug for Backplane<L1, L2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("channel", &self.channel)
            .field("instance", &format_args!("{:016x}", self.instance))
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl<L1: Storage, L2: Storage> Backplane<L1, L2> {
    /// `store` with a backplane on the Redis at `url`, default options.
    pub async fn connect(url: &str, store: Tiered<L1, L2>) -> Result<Self, StorageError> {
        Self::connect_with(url, store, BackplaneOptions::default()).await
    }

    /// `store` with a backplane on the Redis at `url`: connects for
    /// publishing, subscribes to `options.channel` on a connection of its
    /// own and spawns the task that listens to it (on the current tokio
    /// runtime). Once it returns, every change another instance publishes is
    /// received. Fails if the URL is invalid, Redis cannot be reached now,
    /// or it is not called within a tokio runtime.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), swre_native::StorageError> {
    /// use swre_native::{Backplane, Engine, MemoryStorage, RedisStorage, Tiered, TokioRuntime};
    ///
    /// let url = "redis://127.0.0.1:6379/";
    /// let store = Tiered::new(MemoryStorage::new(), RedisStorage::connect(url).await?);
    /// let backplane = Backplane::connect(url, store).await?;
    /// let _engine = Engine::builder(backplane, TokioRuntime::new()).build();
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(
        url: &str,
        store: Tiered<L1, L2>,
        options: BackplaneOptions,
    ) -> Result<Self, StorageError> {
        if options.channel.is_empty() {
            return Err(StorageError::new(
                StorageErrorKind::InvalidKey,
                "backplane channel must not be empty",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StorageError::new(
                StorageErrorKind::Other,
                "Backplane::connect must be called within a tokio runtime",
            )
        })?;
        let client =
            Client::open(url).map_err(|e| redis_error(StorageErrorKind::InvalidKey, "url", e))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.response_timeout))
            .set_connection_timeout(Some(options.connection_timeout))
            .set_number_of_retries(0);
        let publisher = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(io("connect"))?;
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(options.channel.as_str()).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        let stream = tokio::time::timeout(options.connection_timeout, subscribe)
            .await
            .map_err(|_| {
                StorageError::new(StorageErrorKind::Unavailable, "redis SUBSCRIBE: timed out")
            })?
            .map_err(io("SUBSCRIBE"))?;
        let store = Arc::new(store);
        let counters = Arc::new(Counters::default());
        let instance = instance_id();
        let subscriber = runtime.spawn(subscriber::run(
            stream,
            store.clone(),
            instance,
            counters.clone(),
        ));
        Ok(Self {
            store,
            publisher,
            channel: options.channel.into(),
            instance,
            seq: AtomicU64::new(0),
            counters,
            subscriber,
        })
    }

    /// The wrapped store.
    pub fn tiered(&self) -> &Tiered<L1, L2> {
        &self.store
    }

    /// This instance's id, as its messages carry it.
    pub fn instance_id(&self) -> u64 {
        self.instance
    }

    /// The channel it publishes on and listens to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// What it has published and received so far.
    pub fn stats(&self) -> BackplaneStats {
        self.counters.snapshot()
    }

    /// Tells the other instances about a change of `key` (empty for a
    /// clear); a failure is counted, never returned.
    async fn publish(&self, kind: Kind, key: &str) {
        let message = Message {
            kind,
            origin: self.instance,
            seq: self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            key,
        };
        let mut conn = self.publisher.clone();
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&*self.channel)
            .arg(message.encode())
            .query_async(&mut conn)
            .await;
        match sent {
            Ok(_) => Counters::bump(&self.counters.published),
            Err(_) => Counters::bump(&self.counters.publish_errors),
        }
    }

    /// `result`, after publishing `kind` of `key` if it is a success.
    async fn published<T>(
        &self,
        kind: Kind,
        key: &str,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if result.is_ok() {
            self.publish(kind, key).await;
        }
        result
    }
}

/// Stops the subscriber task (and closes its connection).
impl<L1, L2> Drop for Backplane<L1, L2> {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// A random id for this instance: std's `RandomState` is keyed from the
/// OS's randomness once per process and differs for each new state; the
/// clock and process id are mixed in as well.
fn instance_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

impl<L1: Storage, L2: Storage> Storage for Backplane<L1, L2> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.store.get(key).await
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let written = self.store.set(key, entry).await;
        self.published(Kind::Set, key, written).await
    }

    #[inline]
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        self.store.get_ready(key)
    }

    async fn get_shared(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.store.get_shared(key).await
    }

    #[inline]
    fn peek_ready<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Entry) -> T,
    ) -> Option<Result<Option<T>, StorageError>> {
        self.store.peek_ready(key, f)
    }

    #[inline]
    fn get_shared_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        self.store.get_shared_ready(key)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let deleted = self.store.delete(key).await;
        self.published(Kind::Delete, key, deleted).await
    }

    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        let removed = self.store.remove_older(key, written).await;
        self.published(Kind::Delete, key, removed).await
    }

    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        let expired = self.store.expire(key, now).await;
        self.published(Kind::Expire, key, expired).await
    }

    async fn clear(&self) -> Result<(), StorageError> {
        let cleared = self.store.clear().await;
        self.published(Kind::Clear, "", cleared).await
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
