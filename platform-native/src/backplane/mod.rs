//! [`Backplane`] (feature `redis`): keeps the L1 copies of a fleet's
//! instances coherent over Redis pub/sub.

mod message;
mod pending;
mod replay;
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
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::redis_storage::{error as redis_error, io};
use crate::RedisStorage;
use message::{Kind, Message};
use pending::{Change, Pending, Queued};
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
    /// Most keys whose change (or message) waits to be replayed while Redis
    /// cannot be reached. A change of a key not yet queued, once full, is
    /// dropped and counted, and the replay then tells every instance to
    /// empty its L1. Default 10,000.
    pub max_pending: usize,
}

impl Default for BackplaneOptions {
    fn default() -> Self {
        Self {
            channel: "swre:backplane".to_owned(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
            max_pending: 10_000,
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
/// **Gaps and recovery.** When Redis cannot be reached:
///
/// - A change L2 did not take (`set`, `delete`, `expire`, `clear` failing
///   as unavailable) is still made in L1, returned as the error it is, and
///   queued with the highest version this instance had seen Redis assign
///   ([`RedisStorage::observed_version`]); a message that could not be
///   published is queued too. The queue holds one item per key (the newest
///   change wins), at most [`BackplaneOptions::max_pending`] keys; a clear
///   supersedes everything queued before it.
/// - A task replays the queue as soon as Redis answers (tried every 100 ms,
///   backing off to 2 s): each change only if nothing changed the key (or
///   cleared the store) after its version ([`RedisStorage::set_if_unchanged`]
///   and the like), so it never overwrites a newer change another instance
///   made during the gap; a change skipped that way drops this instance's
///   L1 copy instead. A change made is published. Changes older than the
///   store's [`tombstone_ttl`](crate::RedisOptions::tombstone_ttl) are
///   dropped (a delete made elsewhere may no longer be visible), and so is
///   this instance's L1 copy of them.
/// - When the subscription drops, the task listening to it subscribes
///   again (every 50 ms, backing off to 2 s) and then empties this
///   instance's L1: it cannot know what it missed, so every copy from
///   before the gap goes and the next read of each key finds L2.
///
/// All of it is counted in [`stats`](Self::stats). During the gap itself
/// an instance keeps answering from its L1 (it cannot hear of other
/// instances' changes until the subscription is back).
///
/// [`RedisStorage`]: crate::RedisStorage
pub struct Backplane<L1 = MemoryStorage> {
    store: Arc<Tiered<L1, RedisStorage>>,
    publisher: Arc<Publisher>,
    wake_replay: Arc<Notify>,
    subscriber: JoinHandle<()>,
    replayer: JoinHandle<()>,
}

/// What sends messages and queues what could not be sent or written;
/// shared with the replay task.
pub(crate) struct Publisher {
    conn: ConnectionManager,
    channel: Arc<str>,
    instance: u64,
    seq: AtomicU64,
    pub(crate) counters: Arc<Counters>,
    pub(crate) pending: Pending,
}

impl<L1> std::fmt::Debug for Backplane<L1> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("channel", &self.publisher.channel)
            .field(
                "instance",
                &format_args!("{:016x}", self.publisher.instance),
            )
            .field("stats", &self.publisher.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Publishes `kind` of `key` (empty for a clear); whether it was sent.
    pub(crate) async fn send(&self, kind: Kind, key: &str) -> bool {
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
        let mut conn = self.conn.clone();
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&*self.channel)
            .arg(message.encode())
            .query_async(&mut conn)
            .await;
        match sent {
            Ok(_) => {
                Counters::bump(&self.counters.published);
                true
            }
            Err(_) => {
                Counters::bump(&self.counters.publish_errors);
                false
            }
        }
    }

    /// Counts what queueing did.
    fn queued(&self, queued: Queued) {
        match queued {
            Queued::Yes => Counters::bump(&self.counters.queued),
            Queued::Overflow => Counters::bump(&self.counters.overflowed),
        }
    }
}

impl<L1: Storage> Backplane<L1> {
    /// `store` with a backplane on the Redis at `url`, default options.
    pub async fn connect(url: &str, store: Tiered<L1, RedisStorage>) -> Result<Self, StorageError> {
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
        store: Tiered<L1, RedisStorage>,
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
        let stream =
            subscriber::subscribe(&client, &options.channel, options.connection_timeout).await?;
        let store = Arc::new(store);
        let counters = Arc::new(Counters::default());
        let channel: Arc<str> = options.channel.into();
        let publisher = Arc::new(Publisher {
            conn: publisher,
            channel: channel.clone(),
            instance: instance_id(),
            seq: AtomicU64::new(0),
            counters: counters.clone(),
            pending: Pending::new(options.max_pending),
        });
        let wake_replay = Arc::new(Notify::new());
        let listener = subscriber::Listener {
            store: store.clone(),
            client,
            channel,
            instance: publisher.instance,
            counters,
            wake_replay: wake_replay.clone(),
            connection_timeout: options.connection_timeout,
        };
        let subscriber = runtime.spawn(listener.run(stream));
        let max_age = store.l2().tombstone_ttl();
        let replayer = runtime.spawn(replay::run(
            store.clone(),
            publisher.clone(),
            wake_replay.clone(),
            max_age,
        ));
        Ok(Self {
            store,
            publisher,
            wake_replay,
            subscriber,
            replayer,
        })
    }

    /// The wrapped store.
    pub fn tiered(&self) -> &Tiered<L1, RedisStorage> {
        &self.store
    }

    /// This instance's id, as its messages carry it.
    pub fn instance_id(&self) -> u64 {
        self.publisher.instance
    }

    /// The channel it publishes on and listens to.
    pub fn channel(&self) -> &str {
        &self.publisher.channel
    }

    /// What it has published, received, queued and replayed so far.
    pub fn stats(&self) -> BackplaneStats {
        let mut stats = self.publisher.counters.snapshot();
        stats.pending = self.publisher.pending.len() as u64;
        stats
    }

    /// Tells the other instances about a change of `key` (empty for a
    /// clear); one that cannot be sent is queued to be sent again.
    async fn publish(&self, kind: Kind, key: &str) {
        if !self.publisher.send(kind, key).await {
            let queued = self.publisher.pending.notice(key, kind);
            self.publisher.queued(queued);
            self.wake_replay.notify_one();
        }
    }

    /// `result`: published if it is a success; `change` queued (on the
    /// version last seen) if L2 could not be reached.
    async fn settled<T>(
        &self,
        key: &str,
        change: impl FnOnce() -> Option<Change>,
        kind: Kind,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match &result {
            Ok(_) => self.publish(kind, key).await,
            Err(e) if retryable(e.kind()) => {
                if let Some(change) = change() {
                    let since = self.store.l2().observed_version();
                    let queued = self.publisher.pending.change(key, change, since);
                    self.publisher.queued(queued);
                    self.wake_replay.notify_one();
                }
            }
            Err(_) => {}
        }
        result
    }
}

/// Stops the subscriber and replay tasks (and closes the subscription's
/// connection). What is still queued is dropped.
impl<L1> Drop for Backplane<L1> {
    fn drop(&mut self) {
        self.subscriber.abort();
        self.replayer.abort();
    }
}

/// Whether a change that failed with `kind` may succeed later: Redis
/// unreachable, or an I/O failure (the connection failing while it
/// reconnects reads as either). Anything else (a key or value Redis
/// refuses) would fail again.
pub(crate) fn retryable(kind: StorageErrorKind) -> bool {
    matches!(kind, StorageErrorKind::Unavailable | StorageErrorKind::Io)
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

impl<L1: Storage> Storage for Backplane<L1> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.store.get(key).await
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let written = self.store.set(key, entry.clone()).await;
        self.settled(key, || Some(Change::Set(entry)), Kind::Set, written)
            .await
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
        self.settled(key, || Some(Change::Delete), Kind::Delete, deleted)
            .await
    }

    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        let removed = self.store.remove_older(key, written).await;
        // After a write L2 did not take: the queued write (of this entry)
        // stands; otherwise the removal is queued.
        let queued_write = removed.is_err() && self.publisher.pending.holds_write_of(key, written);
        let change = || (!queued_write).then_some(Change::Delete);
        self.settled(key, change, Kind::Delete, removed).await
    }

    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        let expired = self.store.expire(key, now).await;
        self.settled(key, || Some(Change::Expire(now)), Kind::Expire, expired)
            .await
    }

    async fn clear(&self) -> Result<(), StorageError> {
        let since = self.store.l2().observed_version();
        let cleared = self.store.clear().await;
        match &cleared {
            Ok(()) => self.publish(Kind::Clear, "").await,
            Err(e) if retryable(e.kind()) => {
                self.publisher.pending.clear(since);
                Counters::bump(&self.publisher.counters.queued);
                self.wake_replay.notify_one();
            }
            Err(_) => {}
        }
        cleared
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
