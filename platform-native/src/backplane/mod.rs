//! [`Backplane`] (feature `redis`): keeps the L1 copies of a fleet's
//! instances coherent over Redis pub/sub.

mod message;
mod pending;
mod replay;
mod stats;
mod subscriber;

use std::future::Future;
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
    /// Most bytes of values that queued writes may hold (a write that would
    /// go over it is dropped, as when `max_pending` is reached). Default
    /// 64 MiB.
    pub max_pending_bytes: usize,
    /// How often the subscription's connection is checked with a `PING`
    /// (answered within `response_timeout`, or the connection counts as
    /// lost and is replaced): a connection that died silently (a network
    /// partition, a NAT's idle timeout) would otherwise never end, and every
    /// other instance's change would be missed. Default 1 s.
    pub heartbeat: Duration,
}

impl Default for BackplaneOptions {
    fn default() -> Self {
        Self {
            channel: "swre:backplane".to_owned(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
            max_pending: 10_000,
            max_pending_bytes: 64 << 20,
            heartbeat: Duration::from_secs(1),
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
/// - A change L2 did not take (`set`, `delete`, `expire`, `remove_older`,
///   `clear` failing as unavailable or with an I/O error) is still made in
///   L1, returned as the error it is, and queued; a message that could not
///   be published is queued too. Each change runs in a task of its own, so
///   a caller that stops waiting (a deadline) never leaves it unpublished
///   or unqueued. The queue holds one item per key (the newest change
///   wins), at most [`BackplaneOptions::max_pending`] keys and
///   [`BackplaneOptions::max_pending_bytes`] of values; when full, a new
///   write is dropped, an invalidation takes a queued write's place (or,
///   with none left, the queue becomes a clear), and every instance is
///   told to empty its L1 once Redis answers. A clear supersedes
///   everything queued before it.
/// - A task replays the queue as soon as Redis answers (tried every 100 ms,
///   backing off to 1 s). A write is made only if nothing changed the key,
///   or cleared the store, after the version this instance had seen
///   ([`RedisStorage::set_if_unchanged`], on [`RedisStorage::observed_version`]
///   as it was just before the write failed; the counter is read at each
///   heartbeat), and not after Redis lost its history (a restart without
///   data): so it never overwrites a newer change another instance made
///   during the gap. A write skipped that way, or older than the store's
///   [`tombstone_ttl`](crate::RedisOptions::tombstone_ttl), drops this
///   instance's L1 copy instead. Invalidations (deletes, expiries, clears)
///   are made whatever happened since: over a newer write they cost a fetch
///   again, while left unmade they would leave old data served. A tag
///   record's write that cannot be made deletes the record (the tag's
///   entries are then invalid). Each change made is published, and this
///   instance's own L1 copy of it dropped.
/// - The task listening to the subscription pings its connection every
///   [`BackplaneOptions::heartbeat`]; when the subscription ends or a ping
///   goes unanswered (a connection that died silently), it subscribes
///   again (every 50 ms, backing off to 500 ms) and then empties this
///   instance's L1: it cannot know what it missed, so every copy from
///   before the gap goes and the next read of each key finds L2.
///
/// All of it is counted in [`stats`](Self::stats). During the gap itself
/// an instance keeps answering from its L1 (it cannot hear of other
/// instances' changes until the subscription is back). Dropping the
/// backplane drops what is still queued.
///
/// [`RedisStorage`]: crate::RedisStorage
pub struct Backplane<L1 = MemoryStorage> {
    store: Arc<Tiered<L1, RedisStorage>>,
    publisher: Arc<Publisher>,
    wake_replay: Arc<Notify>,
    runtime: tokio::runtime::Handle,
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

impl<L1: Storage + 'static> Backplane<L1> {
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
        if options.heartbeat < Duration::from_millis(10) {
            return Err(StorageError::new(
                StorageErrorKind::Other,
                format!(
                    "backplane heartbeat must be at least 10 ms (got {:?}): the subscription is pinged that often",
                    options.heartbeat
                ),
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
            pending: Pending::new(options.max_pending, options.max_pending_bytes),
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
            heartbeat: options.heartbeat,
            ping_timeout: options.response_timeout,
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
            runtime,
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

    /// Runs `op` (a change of `key` in the store, answering its result
    /// and what to queue if Redis could not take it) and settles it in a
    /// task of its own: published when made, queued when Redis could not be
    /// reached. Dropping the caller's future (a deadline) then never leaves
    /// a change made in Redis unpublished, nor one it refused unqueued. The
    /// version a queued write is conditional on is read before the change
    /// is tried: a write another instance makes while it fails gets a
    /// higher one.
    async fn detached<T, F, Fut>(&self, key: &str, kind: Kind, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Tiered<L1, RedisStorage>>, Arc<str>) -> Fut + Send + 'static,
        Fut: Future<Output = (Result<T, StorageError>, Option<Change>)> + Send + 'static,
    {
        let since = self.store.l2().observed_version();
        let (store, publisher, wake) = (
            self.store.clone(),
            self.publisher.clone(),
            self.wake_replay.clone(),
        );
        let key: Arc<str> = key.into();
        let task = self.runtime.spawn(async move {
            let (result, change) = op(store, key.clone()).await;
            match &result {
                Ok(_) => {
                    if !publisher.send(kind, &key).await {
                        publisher.queued(publisher.pending.notice(&key, kind));
                        wake.notify_one();
                    }
                }
                Err(e) if retryable(e.kind()) => {
                    if kind == Kind::Clear {
                        publisher.pending.clear();
                        Counters::bump(&publisher.counters.queued);
                    } else if let Some(change) = change {
                        publisher.queued(publisher.pending.change(&key, change, since));
                    }
                    wake.notify_one();
                }
                Err(_) => {}
            }
            result
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(StorageError::new(
                StorageErrorKind::Other,
                format!("backplane: the change's task ended without an answer: {e}"),
            )),
        }
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

impl<L1: Storage + 'static> Storage for Backplane<L1> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.store.get(key).await
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.detached(key, Kind::Set, |store, key| async move {
            let written = store.set(&key, entry.clone()).await;
            (written, Some(Change::Set(entry)))
        })
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
        self.detached(key, Kind::Delete, |store, key| async move {
            (store.delete(&key).await, Some(Change::Delete))
        })
        .await
    }

    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        let written = written.clone();
        let publisher = self.publisher.clone();
        self.detached(key, Kind::Delete, |store, key| async move {
            let removed = store.remove_older(&key, &written).await;
            // After a write L2 did not take: the queued write (of this
            // entry) stands; otherwise the removal is queued.
            let queued_write = removed.is_err() && publisher.pending.holds_write_of(&key, &written);
            (removed, (!queued_write).then_some(Change::Delete))
        })
        .await
    }

    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        self.detached(key, Kind::Expire, move |store, key| async move {
            (store.expire(&key, now).await, Some(Change::Expire(now)))
        })
        .await
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.detached("", Kind::Clear, |store, _| async move {
            (store.clear().await, None)
        })
        .await
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
