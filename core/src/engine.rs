//! [`Engine`]: the public face of the cache — lookups, writes, stats, shutdown.

use alloc::sync::Arc;
use core::future::Future;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use futures::future::{select, Either};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::breaker::{Breaker, BreakerState};
use crate::builder::{Config, EngineBuilder};
use crate::bytes::Bytes;
use crate::codec::{Codec, Postcard};
use crate::entry::{CacheTtl, Entry};
use crate::error::{ConfigError, Error, FetchError, KeyError, UpstreamError};
use crate::flight::FlightTable;
use crate::metrics::{Metrics, StorageOp};
use crate::negative::NegativeCache;
use crate::phase::{Phase, Status};
use crate::policy::TtlPolicy;
use crate::runtime::Runtime;
use crate::stats::{bump, Counters, Stats};
use crate::storage::Storage;
use crate::sync::MaybeSend;
use crate::wait::{Latch, TaskCount};

/// A value returned by a lookup, with how it was obtained and the times of the
/// entry it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached<V> {
    /// The value.
    pub value: V,
    /// What the lookup did.
    pub status: Status,
    /// How old the value is (zero if the clock reads earlier than its creation).
    pub age: Duration,
    /// When the value was fetched (Unix ms).
    pub created_at: u64,
    /// End of its fresh phase (Unix ms).
    pub fresh_until: u64,
    /// End of its stale phase (Unix ms).
    pub stale_until: u64,
    /// When it is gone (Unix ms).
    pub expires_at: u64,
}

impl<V> Cached<V> {
    pub(crate) fn new(value: V, status: Status, entry: &Entry, now: u64) -> Self {
        Self {
            value,
            status,
            age: entry.age(now),
            created_at: entry.created_at,
            fresh_until: entry.fresh_until,
            stale_until: entry.stale_until,
            expires_at: entry.expires_at,
        }
    }
}

/// Shared state of one engine; the engine and its tasks hold it by `Arc`.
pub(crate) struct Inner<S, R, C> {
    pub(crate) storage: S,
    pub(crate) runtime: R,
    pub(crate) codec: C,
    pub(crate) cfg: Config,
    pub(crate) flights: FlightTable,
    pub(crate) breaker: Breaker,
    pub(crate) negatives: NegativeCache,
    pub(crate) counters: Counters,
    pub(crate) metrics: Option<Arc<dyn Metrics>>,
    pub(crate) ttl_policy: Option<Arc<dyn TtlPolicy>>,
    /// Every spawned upstream call.
    pub(crate) tasks: TaskCount,
    /// Background refreshes, bounded by `max_concurrent_refreshes`.
    pub(crate) refreshes: TaskCount,
    pub(crate) stopping: AtomicBool,
    /// Set when the shutdown grace period ends: running calls are dropped.
    pub(crate) abort: Latch,
}

/// The stale-while-revalidate cache engine.
///
/// Generic over its [`Storage`], its platform [`Runtime`] and the [`Codec`]
/// used by typed lookups. Cloning is cheap and shares everything.
///
/// ```
/// use core::time::Duration;
/// use swre_core::{CacheTtl, Engine, MemoryStorage, Status};
/// use swre_core::testing::{TestExecutor, TestRuntime};
///
/// let exec = TestExecutor::new();
/// let rt = TestRuntime::new(&exec, 1_700_000_000_000);
/// let engine = Engine::builder(MemoryStorage::new(), rt.clone())
///     .ttl(CacheTtl::new(Duration::from_secs(5), Duration::from_secs(60), Duration::from_secs(3600)))
///     .build()
///     .unwrap();
///
/// let first = exec.block_on(engine.get_or_fetch("user:1", || async {
///     Ok::<_, core::fmt::Error>("Ada")
/// })).unwrap();
/// assert_eq!((first.status, &*first.value), (Status::Miss, &b"Ada"[..]));
///
/// let second = exec.block_on(engine.get_or_fetch("user:1", || async {
///     Ok::<_, core::fmt::Error>("never called")
/// })).unwrap();
/// assert_eq!((second.status, &*second.value), (Status::Hit, &b"Ada"[..]));
/// ```
pub struct Engine<S, R, C = Postcard> {
    pub(crate) inner: Arc<Inner<S, R, C>>,
}

impl<S, R, C> Clone for Engine<S, R, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Storage, R: Runtime> Engine<S, R, Postcard> {
    /// A builder over `storage` and `runtime`, with every option at its default.
    pub fn builder(storage: S, runtime: R) -> EngineBuilder<S, R, Postcard> {
        EngineBuilder::new(storage, runtime)
    }
}

impl<S: Storage, R: Runtime, C: Codec + Clone> Engine<S, R, C> {
    pub(crate) fn from_parts(
        storage: S,
        runtime: R,
        codec: C,
        cfg: Config,
        metrics: Option<Arc<dyn Metrics>>,
        ttl_policy: Option<Arc<dyn TtlPolicy>>,
    ) -> Self {
        let breaker = Breaker::new(cfg.breaker);
        Self {
            inner: Arc::new(Inner {
                storage,
                runtime,
                codec,
                cfg,
                flights: FlightTable::default(),
                breaker,
                negatives: NegativeCache::default(),
                counters: Counters::default(),
                metrics,
                ttl_policy,
                tasks: TaskCount::default(),
                refreshes: TaskCount::default(),
                stopping: AtomicBool::new(false),
                abort: Latch::default(),
            }),
        }
    }

    /// The value under `key` as bytes, fetched with `fetch` when there is no
    /// usable one (see the phase table in the crate docs).
    ///
    /// `fetch` runs at most once per key at a time across all callers, in a
    /// spawned task: dropping this future never cancels it. Its value may be
    /// anything `Into<Bytes>` (`Vec<u8>`, `&'static [u8]`, `&'static str`, `String`).
    ///
    /// A fresh hit completes on the first poll, without allocating.
    pub fn get_or_fetch<'a, F, Fut, T, E>(
        &'a self,
        key: &'a str,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
    where
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<T, E>> + MaybeSend + 'static,
        T: Into<Bytes>,
        E: FetchError,
    {
        self.get_bytes(key, None, fetch)
    }

    /// [`get_or_fetch`](Self::get_or_fetch) with a TTL for this call's fetched
    /// value instead of the engine's default and policy. A TTL totalling under
    /// 5 s is rejected with [`Error::Config`] before anything is read.
    pub fn get_or_fetch_with_ttl<'a, F, Fut, T, E>(
        &'a self,
        key: &'a str,
        ttl: CacheTtl,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
    where
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<T, E>> + MaybeSend + 'static,
        T: Into<Bytes>,
        E: FetchError,
    {
        self.get_bytes(key, Some(ttl), fetch)
    }

    fn get_bytes<'a, F, Fut, T, E>(
        &'a self,
        key: &'a str,
        ttl: Option<CacheTtl>,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
    where
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<T, E>> + MaybeSend + 'static,
        T: Into<Bytes>,
        E: FetchError,
    {
        let job = move || async move {
            match fetch().await {
                Ok(v) => Ok(v.into()),
                Err(e) => Err(Error::Upstream(UpstreamError::new(e))),
            }
        };
        // The bytes move out of the entry: no second reference-count bump.
        self.lookup(key, ttl, job, |e: &mut Entry| {
            Ok(core::mem::take(&mut e.value))
        })
    }

    /// The value under `key` decoded with the engine's codec, fetched with
    /// `fetch` (and encoded) when there is no usable one. A stored value that
    /// does not decode as `V` is treated as absent and overwritten.
    pub fn get<'a, V, F, Fut, E>(
        &'a self,
        key: &'a str,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<V>, Error>> + MaybeSend + 'a
    where
        V: Serialize + DeserializeOwned + MaybeSend + 'static,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
        E: FetchError,
    {
        self.get_typed(key, None, fetch)
    }

    /// [`get`](Self::get) with a TTL for this call's fetched value.
    pub fn get_with_ttl<'a, V, F, Fut, E>(
        &'a self,
        key: &'a str,
        ttl: CacheTtl,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<V>, Error>> + MaybeSend + 'a
    where
        V: Serialize + DeserializeOwned + MaybeSend + 'static,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
        E: FetchError,
    {
        self.get_typed(key, Some(ttl), fetch)
    }

    fn get_typed<'a, V, F, Fut, E>(
        &'a self,
        key: &'a str,
        ttl: Option<CacheTtl>,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<V>, Error>> + MaybeSend + 'a
    where
        V: Serialize + DeserializeOwned + MaybeSend + 'static,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
        E: FetchError,
    {
        let codec = self.inner.codec.clone();
        let job = move || async move {
            let v = fetch()
                .await
                .map_err(|e| Error::Upstream(UpstreamError::new(e)))?;
            codec.encode(&v).map(Bytes::from).map_err(Error::Codec)
        };
        let codec = &self.inner.codec;
        self.lookup(key, ttl, job, move |e: &mut Entry| {
            codec.decode::<V>(&e.value)
        })
    }

    /// The stored value under `key` and its status (`Hit`, `Stale` or
    /// `Expired`) without fetching or refreshing; `None` if there is none or
    /// it is gone. A storage read error reads as `None` (and is counted).
    pub async fn peek(&self, key: &str) -> Result<Option<Cached<Bytes>>, Error> {
        self.check_key(key)?;
        let now = self.inner.runtime.now_ms();
        let stored = self.read(key).await;
        // A call that has completed but not yet stored its value knows better.
        let newer = match &stored {
            Some(e) if Phase::of(Some(e), now) == Phase::Fresh => None,
            _ => self
                .inner
                .flights
                .get(key)
                .and_then(|f| f.completed_value()),
        };
        let Some(entry) = newer.or(stored) else {
            return Ok(None);
        };
        let status = match Phase::of(Some(&entry), now) {
            Phase::Fresh => Status::Hit,
            Phase::Stale => Status::Stale,
            Phase::Expired => Status::Expired,
            Phase::Gone => return Ok(None),
        };
        let value = entry.value.clone();
        Ok(Some(Cached::new(value, status, &entry, now)))
    }

    /// Stores `value` under `key` with the default TTL (or the policy's).
    pub async fn set(&self, key: &str, value: impl Into<Bytes>) -> Result<(), Error> {
        self.write(key, value.into(), None).await
    }

    /// Stores `value` under `key` with `ttl`.
    pub async fn set_with_ttl(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        ttl: CacheTtl,
    ) -> Result<(), Error> {
        let ttl = checked_ttl(ttl)?;
        self.write(key, value.into(), Some(ttl)).await
    }

    /// Stores `value` encoded with the engine's codec under `key`.
    pub async fn set_typed<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
    ) -> Result<(), Error> {
        let bytes = self.inner.codec.encode(value).map_err(Error::Codec)?;
        self.write(key, Bytes::from(bytes), None).await
    }

    async fn write(&self, key: &str, value: Bytes, ttl: Option<CacheTtl>) -> Result<(), Error> {
        self.check_key(key)?;
        let max = self.inner.cfg.max_value_bytes;
        if value.len() > max {
            bump(&self.inner.counters.oversized_values);
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        let now = self.inner.runtime.now_ms();
        let ttl = self.inner.ttl_for(key, &value, ttl);
        self.inner.negatives.remove(key);
        self.inner
            .storage
            .set(key, Entry::new(value, now, ttl))
            .await
            .map_err(Error::Storage)
    }

    /// Removes `key` from storage and forgets any remembered error for it.
    pub async fn invalidate(&self, key: &str) -> Result<(), Error> {
        self.check_key(key)?;
        self.inner.negatives.remove(key);
        self.inner.storage.delete(key).await.map_err(|e| {
            self.inner
                .storage_error(StorageOp::Delete, &self.inner.counters.storage_write_errors);
            Error::Storage(e)
        })
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        Stats {
            in_flight: i.flights.len() as u64,
            refreshes_running: i.refreshes.get() as u64,
            tasks_running: i.tasks.get() as u64,
            key_breakers: i.breaker.key_count() as u64,
            ..i.counters.snapshot()
        }
    }

    /// The global circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.global_state(self.inner.runtime.now_ms())
    }

    /// `key`'s circuit breaker state now (`Closed` when none is kept).
    pub fn key_breaker_state(&self, key: &str) -> BreakerState {
        self.inner
            .breaker
            .key_state(key, self.inner.runtime.now_ms())
    }

    /// Closes every circuit breaker and forgets per-key breakers.
    pub fn reset_breaker(&self) {
        self.inner.breaker.reset();
    }

    /// Stops new upstream calls, waits up to `shutdown_timeout` for running
    /// ones, then drops those still running (their waiters get
    /// [`Error::Shutdown`]) and waits up to `shutdown_timeout` again for their
    /// tasks to end. Lookups keep answering from storage afterwards.
    pub async fn shutdown(&self) {
        let i = &self.inner;
        i.stopping.store(true, Ordering::Release);
        let grace = i.cfg.shutdown_timeout;
        for abort in [false, true] {
            if i.tasks.get() == 0 {
                return;
            }
            if abort {
                i.abort.set();
            }
            let zero = core::pin::pin!(i.tasks.wait_zero());
            let timeout = core::pin::pin!(i.runtime.sleep(grace));
            if let Either::Left(_) = select(zero, timeout).await {
                return;
            }
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.inner.storage
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    #[inline]
    pub(crate) fn check_key(&self, key: &str) -> Result<(), Error> {
        let max = self.inner.cfg.max_key_bytes;
        let err = if key.is_empty() {
            KeyError::Empty
        } else if key.len() > max {
            KeyError::TooLong {
                len: key.len(),
                max,
            }
        } else {
            return Ok(());
        };
        bump(&self.inner.counters.invalid_keys);
        Err(Error::InvalidKey(err))
    }

    /// A storage read degraded per rule 5: an error reads as absent.
    #[inline]
    pub(crate) async fn read(&self, key: &str) -> Option<Entry> {
        match self.inner.storage.get(key).await {
            Ok(e) => e,
            Err(_) => {
                self.inner
                    .storage_error(StorageOp::Get, &self.inner.counters.storage_read_errors);
                None
            }
        }
    }
}

impl<S, R: Runtime, C> Inner<S, R, C> {
    /// The TTL for a value: the call's override, else the policy's valid
    /// answer, else the default.
    pub(crate) fn ttl_for(&self, key: &str, value: &[u8], call: Option<CacheTtl>) -> CacheTtl {
        call.or_else(|| {
            self.ttl_policy
                .as_ref()
                .and_then(|p| p.ttl_for(key, value))
                .filter(CacheTtl::is_valid)
        })
        .unwrap_or(self.cfg.ttl)
    }

    pub(crate) fn storage_error(&self, op: StorageOp, counter: &portable_atomic::AtomicU64) {
        bump(counter);
        if let Some(m) = &self.metrics {
            m.storage_error(op);
        }
    }
}

pub(crate) fn checked_ttl(ttl: CacheTtl) -> Result<CacheTtl, Error> {
    if ttl.is_valid() {
        Ok(ttl)
    } else {
        Err(Error::Config(ConfigError {
            option: "ttl",
            reason: "must total at least 5 s (fresh + stale + expired)",
        }))
    }
}
