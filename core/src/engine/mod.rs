//! [`Engine`]: the public face of the cache — lookups, writes, stats, shutdown.
//!
//! The engine's middle runs one way: this module (the public API) →
//! `batch` → `batch_plan` (batch lookups) → `lookup` → `decide` (the phase
//! table) → `admission` → `batch_task` → `task` (the spawned call) →
//! `ticket` (what a call holds) → `shared` (the state, with its own
//! methods). Each imports only modules after it (and the data modules
//! `cached` and `config`).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::pin;

use futures::future::{select, Either};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::breaker::BreakerState;
use crate::bytes::Bytes;
use crate::codec::{Codec, Postcard};
use crate::entry::{CacheTtl, Entry};
use crate::error::{CodecError, Error, FetchError, UpstreamError};
use crate::stats::{bump, Stats};
use crate::storage::Storage;
use crate::sync::MaybeSend;
use crate::tags::fence::Change;
use crate::tags::record::Kind;
use crate::tags::{check_name, TagNames};
use crate::{metrics::StorageOp, runtime::Runtime};

mod admission;
mod batch;
mod batch_plan;
mod batch_task;
mod builder;
mod cached;
mod config;
mod decide;
mod decoded;
mod fetch;
mod lookup;
mod shared;
mod tag_epochs;
mod task;
mod ticket;

pub use batch::BatchResults;
pub use builder::EngineBuilder;
pub use cached::Cached;
use config::checked_ttl;
pub use config::{DEFAULT_MAX_VALUE_BYTES, DEFAULT_REFRESH_TIMEOUT};
use decide::{decide, Decision};
pub use fetch::{FetchContext, Fetched};
use shared::Shared;

/// Options for one call, given through [`Engine::with`]; the default is the
/// engine's own settings.
///
/// ```
/// use core::time::Duration;
/// use swre_core::{CacheTtl, CallOptions};
///
/// let ttl = CacheTtl::new(Duration::from_secs(60), Duration::from_secs(600), Duration::ZERO);
/// assert_eq!(CallOptions::new().ttl(ttl).ttl, Some(ttl));
/// assert_eq!(CallOptions::default().ttl, None);
/// assert_eq!(CallOptions::new().tags(["user:1", "users"]).tags.unwrap().len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// The TTL of the value this call fetches or writes, instead of the
    /// engine's default and policy. It sticks to the entry: refreshes keep
    /// it until a later write or call chooses another. A TTL totalling under
    /// 5 s is rejected with [`Error::Config`] before anything is read.
    pub ttl: Option<CacheTtl>,
    /// The tags of the value this call fetches or writes (see
    /// [`Engine::invalidate_tag`]), unless a fetch given to
    /// `get_or_fetch_with` chooses its own. They stick to the entry:
    /// refreshes keep them until a later write or call chooses others. More
    /// than [`MAX_TAGS`](crate::tags::MAX_TAGS), or an empty or over-long
    /// name, is rejected with [`Error::InvalidTag`] before anything is read.
    pub tags: Option<TagNames>,
}

impl CallOptions {
    /// The engine's own settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`ttl`](Self::ttl).
    pub fn ttl(mut self, ttl: CacheTtl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets [`tags`](Self::tags).
    pub fn tags<I, N>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.tags = Some(TagNames::new(tags));
        self
    }

    /// "Bad input changes nothing": the TTL and the tags.
    pub(crate) fn check(&self) -> Result<(), Error> {
        checked_ttl(self.ttl)?;
        match &self.tags {
            Some(t) => t.check().map_err(Error::InvalidTag),
            None => Ok(()),
        }
    }
}

/// The stale-while-revalidate cache engine.
///
/// Generic over its [`Storage`], its platform [`Runtime`] and the [`Codec`]
/// used by typed calls (`*_as`). Cloning is cheap and shares everything.
///
/// Bytes and typed calls pair up by suffix: [`get_or_fetch`](Self::get_or_fetch)
/// / [`get_or_fetch_as`](Self::get_or_fetch_as), [`set`](Self::set) /
/// [`set_as`](Self::set_as), [`peek`](Self::peek) / [`peek_as`](Self::peek_as);
/// per-call options go through [`with`](Self::with).
///
/// The fetch is `'static`: it runs in a spawned task that outlives a caller
/// who stops waiting ("callers never cancel the call"), so it must own what
/// it uses (clone an `Arc`, move an id in).
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
///
/// (`swre-native`'s crate docs show the same on tokio.)
pub struct Engine<S, R, C = Postcard> {
    shared: Arc<Shared<S, R, C>>,
}

impl<S, R, C> Clone for Engine<S, R, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// An engine borrowed with options for the calls made through it
/// ([`Engine::with`]).
#[derive(Clone)]
pub struct WithOptions<'a, S, R, C> {
    engine: &'a Engine<S, R, C>,
    opts: CallOptions,
}

impl<S: Storage, R: Runtime, C: Codec + Clone> Engine<S, R, C> {
    pub(crate) fn from_shared(shared: Shared<S, R, C>) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// This engine with `opts` for the calls made through the returned view.
    ///
    /// ```
    /// # use core::time::Duration;
    /// # use swre_core::{CacheTtl, CallOptions, Engine, MemoryStorage};
    /// # use swre_core::testing::{TestExecutor, TestRuntime};
    /// # let exec = TestExecutor::new();
    /// # let engine = Engine::builder(MemoryStorage::new(), TestRuntime::new(&exec, 0)).build().unwrap();
    /// let day = CacheTtl::new(Duration::from_secs(86_400), Duration::from_secs(3_600), Duration::ZERO);
    /// let r = exec.block_on(engine.with(CallOptions::new().ttl(day)).get_or_fetch("config", || async {
    ///     Ok::<_, core::fmt::Error>("v1")
    /// })).unwrap();
    /// assert_eq!(r.fresh_until - r.created_at, 86_400_000);
    /// ```
    pub fn with(&self, opts: CallOptions) -> WithOptions<'_, S, R, C> {
        WithOptions { engine: self, opts }
    }

    /// The value under `key` as bytes, fetched with `fetch` when there is no
    /// usable one (see the phase table in the crate docs).
    ///
    /// `fetch` runs at most once per key at a time across all callers, in a
    /// spawned task: dropping this future never cancels it. Its value may be
    /// anything `Into<Bytes>` (`Vec<u8>`, `&'static [u8]`, `&'static str`,
    /// `String`); its error anything [`FetchError`] accepts (`std` errors,
    /// `anyhow::Error`, `Box<dyn Error + Send + Sync>`, `String`).
    ///
    /// A fresh hit completes on the first poll, without allocating.
    #[inline]
    pub fn get_or_fetch<'a, K, F, Fut, T, E>(
        &'a self,
        key: K,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
    where
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<T, E>> + MaybeSend + 'static,
        T: Into<Bytes>,
        E: FetchError,
    {
        lookup::lookup(&self.shared, key, None, bytes_job(fetch), lookup::TakeBytes)
    }

    /// The value under `key` decoded with the engine's codec, fetched with
    /// `fetch` (and encoded) when there is no usable one. A stored value that
    /// does not decode as `V` is treated as absent and overwritten.
    ///
    /// The value comes as an `Arc<V>`, decoded once per stored version and
    /// shared by every hit on it (see
    /// [`EngineBuilder::decoded_values`](crate::EngineBuilder::decoded_values)):
    /// a fresh typed hit is a reference-count bump, without decoding or
    /// allocating. Use `(*cached.value).clone()` for a `V` of your own.
    /// Every hit on one stored version shares that `Arc`: a `V` with interior
    /// mutability (a `Mutex`, a `Cell`) changed by one caller is what the
    /// next caller sees, so treat the value as read-only. One stored
    /// version read as two types in turn is decoded on each switch.
    pub fn get_or_fetch_as<'a, V, K, F, Fut, E>(
        &'a self,
        key: K,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Arc<V>>, Error>> + MaybeSend + 'a
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
        E: FetchError,
    {
        get_typed(&self.shared, key, None, typed_job(&self.shared, fetch))
    }

    /// [`get_or_fetch`](Self::get_or_fetch) with a fetch that is told what
    /// the cache holds and answers more than a value (FusionCache's
    /// adaptive caching and conditional refresh): it receives a
    /// [`FetchContext`] (the value held for the key, if any, and when it was
    /// fetched) and returns a [`Fetched`]: a value, or "not modified" (the
    /// held value stays, its phases starting again), with an optional TTL for
    /// this entry and "do not store".
    ///
    /// ```
    /// # use swre_core::testing::{TestExecutor, TestRuntime};
    /// # use swre_core::{Engine, Fetched, MemoryStorage};
    /// # let exec = TestExecutor::new();
    /// # let engine = Engine::builder(MemoryStorage::new(), TestRuntime::new(&exec, 0)).build().unwrap();
    /// let r = exec.block_on(engine.get_or_fetch_with("page", |ctx| async move {
    ///     match ctx.stale {
    ///         Some(_) => Ok::<_, core::fmt::Error>(Fetched::not_modified()),
    ///         None => Ok(Fetched::value("body")),
    ///     }
    /// })).unwrap();
    /// assert_eq!(&*r.value, b"body");
    /// ```
    pub fn get_or_fetch_with<'a, K, F, Fut, T, E>(
        &'a self,
        key: K,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
    where
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce(FetchContext) -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<Fetched<T>, E>> + MaybeSend + 'static,
        T: Into<Bytes>,
        E: FetchError,
    {
        lookup::lookup(&self.shared, key, None, context_job(fetch), clone_value)
    }

    /// The values under `keys`, fetched together: fresh keys are served,
    /// and every stale or missing key goes to one call of `fetch` (sturdyc's
    /// `GetOrFetchBatch`, BentoCache's `getMany`). Each key is answered as
    /// [`get_or_fetch`](Self::get_or_fetch) would answer it, with its own
    /// status and detail, in the order of `keys` and beside its key.
    ///
    /// - `fetch` gets the keys to fetch (each once, in input order) and
    ///   answers with any `IntoIterator` of `(key, value)` pairs — a `Vec`,
    ///   a `HashMap`. It is called at most once, in a spawned task (dropping
    ///   this future never cancels it), and not at all when no key needs it.
    /// - Stale keys are served at once and refreshed in that call, in
    ///   background; missing (and, in `Revalidate` mode, expired) keys are
    ///   waited for. With no missing key, this returns at once.
    /// - Per key, as for single lookups: a key already in flight (a single
    ///   lookup's call, another batch's) is joined, not sent again; a key
    ///   whose circuit breaker is open is not sent (stale: served with
    ///   [`Detail::BreakerOpen`](crate::Detail::BreakerOpen); missing:
    ///   [`Error::CircuitOpen`]); a throttled key is served its old value,
    ///   not sent; a remembered error is returned without a call; a `set` or
    ///   `invalidate` of one key while the call runs keeps that key's
    ///   fetched value out of the store, and only that key's.
    /// - A key the answer lacks fails with [`MissingFromBatch`](crate::MissingFromBatch)
    ///   (not found: it never moves a breaker); keys not asked for are
    ///   ignored; a key answered twice keeps its first value.
    /// - A failed call fails every key it carried (each key's breaker,
    ///   throttle and negative cache hear of it; the global breaker counts
    ///   one failure). Its deadline is the one `refresh_timeout`.
    /// - An invalid key gets [`Error::InvalidKey`], the others proceed; a
    ///   key given twice is answered twice and fetched once; no keys, no call.
    ///
    /// ```
    /// # use swre_core::testing::{TestExecutor, TestRuntime};
    /// # use swre_core::{Engine, MemoryStorage, Status};
    /// # let exec = TestExecutor::new();
    /// # let engine = Engine::builder(MemoryStorage::new(), TestRuntime::new(&exec, 0)).build().unwrap();
    /// exec.block_on(engine.set("user:1", "Ada")).unwrap();
    /// let found = exec.block_on(engine.get_many_or_fetch(["user:1", "user:2"], |keys| async move {
    ///     assert_eq!(keys, ["user:2"]); // user:1 is fresh
    ///     Ok::<_, core::fmt::Error>(keys.into_iter().map(|k| (k, "Grace")).collect::<Vec<_>>())
    /// }));
    /// let statuses: Vec<_> = found.iter().map(|(k, r)| (*k, r.as_ref().unwrap().status)).collect();
    /// assert_eq!(statuses, [("user:1", Status::Hit), ("user:2", Status::Miss)]);
    /// ```
    pub fn get_many_or_fetch<'a, K, F, Fut, M, MK, T, E>(
        &'a self,
        keys: impl IntoIterator<Item = K>,
        fetch: F,
    ) -> impl Future<Output = BatchResults<K, Bytes>> + MaybeSend + 'a
    where
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce(Vec<String>) -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<M, E>> + MaybeSend + 'static,
        M: IntoIterator<Item = (MK, T)>,
        MK: Into<String>,
        T: Into<Bytes>,
        E: FetchError,
    {
        let keys = keys.into_iter().collect();
        batch::get_many_bytes(&self.shared, keys, CallOptions::default(), fetch)
    }

    /// [`get_many_or_fetch`](Self::get_many_or_fetch) with values of a serde
    /// type, encoded with the engine's codec and served as `Arc<V>`s as
    /// [`get_or_fetch_as`](Self::get_or_fetch_as) serves them. A value that
    /// does not encode fails its key only.
    ///
    /// ```
    /// # use swre_core::testing::{TestExecutor, TestRuntime};
    /// # use swre_core::{Engine, MemoryStorage};
    /// # let exec = TestExecutor::new();
    /// # let engine = Engine::builder(MemoryStorage::new(), TestRuntime::new(&exec, 0)).build().unwrap();
    /// let found = exec.block_on(engine.get_many_or_fetch_as(["a", "bb"], |keys| async move {
    ///     let lengths = keys.into_iter().map(|k| { let n = k.len() as u32; (k, n) });
    ///     Ok::<_, core::fmt::Error>(lengths.collect::<std::collections::HashMap<_, _>>())
    /// }));
    /// assert_eq!(*found[1].1.as_ref().unwrap().value, 2);
    /// ```
    pub fn get_many_or_fetch_as<'a, V, K, F, Fut, M, MK, E>(
        &'a self,
        keys: impl IntoIterator<Item = K>,
        fetch: F,
    ) -> impl Future<Output = BatchResults<K, Arc<V>>> + MaybeSend + 'a
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce(Vec<String>) -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<M, E>> + MaybeSend + 'static,
        M: IntoIterator<Item = (MK, V)>,
        MK: Into<String>,
        E: FetchError,
    {
        let keys = keys.into_iter().collect();
        batch::get_many_typed(&self.shared, keys, CallOptions::default(), fetch)
    }

    /// The stored value under `key` and its status (`Hit`, `Stale` or
    /// `Expired`) without fetching or refreshing; `None` if there is none or
    /// it is gone. A storage read error reads as `None` (and is counted).
    pub async fn peek(&self, key: impl AsRef<str>) -> Result<Option<Cached<Bytes>>, Error> {
        let key = key.as_ref();
        self.shared.check_key(key)?;
        let now = self.shared.now();
        let stored = self.shared.read(key).await;
        // A call that has completed but not yet stored its value knows better.
        let newer = match &stored {
            Some(e) if decide(Some(e), now, self.shared.cfg().expired_mode) == Decision::Serve => {
                None
            }
            _ => self.shared.flights().running_value(key, now).flatten(),
        };
        let Some(entry) = newer.or(stored) else {
            return Ok(None);
        };
        let status = match decide(Some(&entry), now, self.shared.cfg().expired_mode) {
            Decision::Serve => crate::phase::Status::Hit,
            Decision::ServeAndRefresh(status) => status,
            Decision::Revalidate => crate::phase::Status::Expired,
            Decision::Fetch => return Ok(None),
        };
        Ok(Some(Cached::new(entry.value.clone(), status, &entry, now)))
    }

    /// [`peek`](Self::peek) decoded with the engine's codec (shared, as
    /// [`get_or_fetch_as`](Self::get_or_fetch_as) does); a value that does
    /// not decode as `V` reads as `None` (and is counted).
    pub async fn peek_as<V: DeserializeOwned + Send + Sync + 'static>(
        &self,
        key: impl AsRef<str>,
    ) -> Result<Option<Cached<Arc<V>>>, Error> {
        let Some(found) = self.peek(key).await? else {
            return Ok(None);
        };
        let codec = self.shared.codec();
        let decoded = self
            .shared
            .decoded()
            .get_or_decode(&found.value, || codec.decode::<V>(&found.value));
        match decoded {
            Ok(v) => Ok(Some(found.map(|_| v))),
            Err(_) => {
                bump(&self.shared.counters().decode_errors);
                Ok(None)
            }
        }
    }

    /// Stores `value` under `key` with the default TTL (or the policy's).
    /// It supersedes any call for `key` still running: that call's value is
    /// never stored over this one ("the latest write wins").
    pub async fn set(&self, key: impl AsRef<str>, value: impl Into<Bytes>) -> Result<(), Error> {
        self.with(CallOptions::default()).set(key, value).await
    }

    /// Stores `value` encoded with the engine's codec under `key`.
    pub async fn set_as<V: Serialize + ?Sized>(
        &self,
        key: impl AsRef<str>,
        value: &V,
    ) -> Result<(), Error> {
        self.with(CallOptions::default()).set_as(key, value).await
    }

    /// Makes `key`'s entry stale at once, keeping it as a fallback (FusionCache
    /// `Expire`, BentoCache `expire`): the next lookup serves it as `Stale`
    /// and starts a refresh (or, past its stale phase, as before). Unlike
    /// [`invalidate`](Self::invalidate), a failing upstream still has the
    /// value to fall back on. A call for `key` still running never stores its
    /// value over the expiry (it may have fetched what the expiry is about);
    /// the key's fail-safe throttle window ends. An absent key is left alone.
    pub async fn expire(&self, key: impl AsRef<str>) -> Result<(), Error> {
        let key = key.as_ref();
        let shared = &self.shared;
        shared.check_key(key)?;
        shared.throttle().forget(key);
        let superseded = shared.supersede(key).await;
        let expired = shared.storage().expire(key, shared.now()).await;
        if let Some(flight) = superseded {
            flight.hide();
        }
        match expired {
            Ok(entry) => {
                // A throttle mark on this very entry would hold its refresh back.
                if let Some(e) = entry {
                    let marks = shared.flights().marks();
                    marks.clear(marks.tag(key, e.created_at));
                }
                Ok(())
            }
            Err(e) => {
                shared.storage_error(StorageOp::Set);
                Err(Error::Storage(e))
            }
        }
    }

    /// Removes `key` from storage and forgets any remembered error (and
    /// fail-safe throttle window) for it. A call for `key` still running
    /// never stores its value over the removal.
    pub async fn invalidate(&self, key: impl AsRef<str>) -> Result<(), Error> {
        let key = key.as_ref();
        let shared = &self.shared;
        shared.check_key(key)?;
        shared.negatives().remove(key);
        shared.throttle().forget(key);
        let superseded = shared.supersede(key).await;
        let deleted = shared.storage().delete(key).await;
        if let Some(flight) = superseded {
            flight.hide();
        }
        deleted.map_err(|e| {
            shared.storage_error(StorageOp::Delete);
            Error::Storage(e)
        })
    }

    /// Invalidates every entry written with `tag` (FusionCache
    /// `RemoveByTag`, BentoCache `deleteByTag`): from now on they read as
    /// absent, so the next lookup of each fetches, and none is a fallback.
    /// O(1) in the number of entries: the tag gets a new epoch in the store
    /// (see [`tags`](crate::tags)), which a restart or another engine on the
    /// same store sees too. A call running now never stores a value with
    /// `tag` over it (it may have fetched what the invalidation is about).
    pub async fn invalidate_tag(&self, tag: impl AsRef<str>) -> Result<(), Error> {
        self.change_tag(tag.as_ref(), Kind::Hard).await
    }

    /// Expires every entry written with `tag` (FusionCache `ExpireByTag`
    /// in its soft form, BentoCache `expireByTag`): from now on they read as
    /// stale, so the next lookup of each serves it and refreshes it, and a
    /// failing upstream still has it to fall back on. O(1) as
    /// [`invalidate_tag`](Self::invalidate_tag) is.
    pub async fn expire_tag(&self, tag: impl AsRef<str>) -> Result<(), Error> {
        self.change_tag(tag.as_ref(), Kind::Soft).await
    }

    async fn change_tag(&self, tag: &str, kind: Kind) -> Result<(), Error> {
        check_name(tag).map_err(Error::InvalidTag)?;
        self.shared
            .change_epoch(tag, kind)
            .await
            .map_err(Error::Storage)
    }

    /// Removes every entry from the store (`Storage::clear`; a store that
    /// cannot clear says so, and keeps what it holds), and forgets
    /// remembered errors and fail-safe throttle windows. A call running now
    /// stores nothing over the clear (nor over a refused one). With a store that other engines share, theirs
    /// are cleared too.
    pub async fn clear(&self) -> Result<(), Error> {
        let shared = &self.shared;
        shared.tag_fence().record(None, Change::Hard);
        // As a write of every key: running calls store nothing after it
        // (even if the store refuses to clear: they may have fetched what
        // the clear was meant to drop).
        let superseded = shared.supersede_all().await;
        let cleared = shared.storage().clear().await;
        shared.tag_fence().record(None, Change::Hard);
        for flight in superseded {
            flight.hide();
        }
        if cleared.is_ok() {
            shared.negatives().clear();
            shared.throttle().clear();
        }
        cleared.map_err(|e| {
            shared.storage_error(StorageOp::Delete);
            Error::Storage(e)
        })
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The global circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.shared.breaker().global_state(self.shared.now())
    }

    /// `key`'s circuit breaker state now (`Closed` when none is kept).
    pub fn key_breaker_state(&self, key: impl AsRef<str>) -> BreakerState {
        self.shared
            .breaker()
            .key_state(key.as_ref(), self.shared.now())
    }

    /// Closes every circuit breaker and forgets per-key breakers.
    pub fn reset_breaker(&self) {
        self.shared.breaker().reset();
    }

    /// Stops new upstream calls, waits up to `shutdown_timeout` for running
    /// ones, then stops those still running (no fetch starts after that;
    /// their waiters get [`Error::Shutdown`]) and waits up to
    /// `shutdown_timeout` again for their tasks to end ("shutdown is final").
    /// Lookups keep answering from storage afterwards.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.stop();
        let grace = shared.cfg().shutdown_timeout;
        for abort in [false, true] {
            // Calls past their deadline may never run again: not waited for.
            shared.reclaim_abandoned();
            if shared.tasks_running() == 0 {
                return;
            }
            if abort {
                shared.abort();
            }
            let zero = pin!(shared.tasks_done());
            let timeout = pin!(shared.runtime().sleep(grace));
            if let Either::Left(_) = select(zero, timeout).await {
                return;
            }
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_stopping()
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        self.shared.storage()
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        self.shared.runtime()
    }
}

impl<'a, S: Storage, R: Runtime, C: Codec + Clone> WithOptions<'a, S, R, C> {
    /// [`Engine::get_or_fetch`] with these options.
    pub fn get_or_fetch<K, F, Fut, T, E>(
        self,
        key: K,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
    where
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<T, E>> + MaybeSend + 'static,
        T: Into<Bytes>,
        E: FetchError,
    {
        let shared = &self.engine.shared;
        let (ttl, job) = (self.opts.ttl, bytes_job(fetch));
        with_options(self.opts, job, move |job| {
            lookup::lookup(shared, key, ttl, job, lookup::TakeBytes)
        })
    }

    /// [`Engine::get_or_fetch_as`] with these options.
    pub fn get_or_fetch_as<V, K, F, Fut, E>(
        self,
        key: K,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Arc<V>>, Error>> + MaybeSend + 'a
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
        E: FetchError,
    {
        let shared = &self.engine.shared;
        let (ttl, job) = (self.opts.ttl, typed_job(shared, fetch));
        with_options(self.opts, job, move |job| get_typed(shared, key, ttl, job))
    }

    /// [`Engine::get_or_fetch_with`] with these options (the fetch's own
    /// TTL and tags, if it gives them, win over these).
    pub fn get_or_fetch_with<K, F, Fut, T, E>(
        self,
        key: K,
        fetch: F,
    ) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
    where
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce(FetchContext) -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<Fetched<T>, E>> + MaybeSend + 'static,
        T: Into<Bytes>,
        E: FetchError,
    {
        let shared = &self.engine.shared;
        let (ttl, job) = (self.opts.ttl, context_job(fetch));
        with_options(self.opts, job, move |job| {
            lookup::lookup(shared, key, ttl, job, clone_value)
        })
    }

    /// [`Engine::get_many_or_fetch`] with these options.
    pub fn get_many_or_fetch<K, F, Fut, M, MK, T, E>(
        self,
        keys: impl IntoIterator<Item = K>,
        fetch: F,
    ) -> impl Future<Output = BatchResults<K, Bytes>> + MaybeSend + 'a
    where
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce(Vec<String>) -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<M, E>> + MaybeSend + 'static,
        M: IntoIterator<Item = (MK, T)>,
        MK: Into<String>,
        T: Into<Bytes>,
        E: FetchError,
    {
        let keys = keys.into_iter().collect();
        batch::get_many_bytes(&self.engine.shared, keys, self.opts, fetch)
    }

    /// [`Engine::get_many_or_fetch_as`] with these options.
    pub fn get_many_or_fetch_as<V, K, F, Fut, M, MK, E>(
        self,
        keys: impl IntoIterator<Item = K>,
        fetch: F,
    ) -> impl Future<Output = BatchResults<K, Arc<V>>> + MaybeSend + 'a
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
        K: AsRef<str> + MaybeSend + 'a,
        F: FnOnce(Vec<String>) -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<M, E>> + MaybeSend + 'static,
        M: IntoIterator<Item = (MK, V)>,
        MK: Into<String>,
        E: FetchError,
    {
        let keys = keys.into_iter().collect();
        batch::get_many_typed(&self.engine.shared, keys, self.opts, fetch)
    }

    /// [`Engine::set`] with these options.
    pub async fn set(self, key: impl AsRef<str>, value: impl Into<Bytes>) -> Result<(), Error> {
        write(&self.engine.shared, key.as_ref(), value.into(), self.opts).await
    }

    /// [`Engine::set_as`] with these options.
    pub async fn set_as<V: Serialize + ?Sized>(
        self,
        key: impl AsRef<str>,
        value: &V,
    ) -> Result<(), Error> {
        let shared = &self.engine.shared;
        let bytes = shared.codec().encode(value).map_err(Error::Codec)?;
        write(shared, key.as_ref(), Bytes::from(bytes), self.opts).await
    }
}

/// A plain fetch as the engine calls it.
#[inline(always)]
fn bytes_job<F, Fut, T, E>(fetch: F) -> impl task::Job
where
    F: FnOnce() -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<T, E>> + MaybeSend + 'static,
    T: Into<Bytes>,
    E: FetchError,
{
    move || async move {
        match fetch().await {
            Ok(v) => Ok(v.into()),
            Err(e) => Err(Error::Upstream(UpstreamError::new(e))),
        }
    }
}

/// A typed fetch as the engine calls it: its value encoded.
fn typed_job<S, R, C, V, F, Fut, E>(shared: &Shared<S, R, C>, fetch: F) -> impl task::Job
where
    C: Codec + Clone,
    V: Serialize + Send + Sync + 'static,
    F: FnOnce() -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
    E: FetchError,
{
    let codec = shared.codec().clone();
    move || async move {
        let v = fetch()
            .await
            .map_err(|e| Error::Upstream(UpstreamError::new(e)))?;
        codec.encode(&v).map(Bytes::from).map_err(Error::Codec)
    }
}

/// A fetch with a context as the engine calls it.
fn context_job<F, Fut, T, E>(fetch: F) -> impl task::Job
where
    F: FnOnce(FetchContext) -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<Fetched<T>, E>> + MaybeSend + 'static,
    T: Into<Bytes>,
    E: FetchError,
{
    task::WithContext(move |ctx| async move {
        match fetch(ctx).await {
            Ok(f) => Ok(task::Produced {
                value: f.value.map(Into::into),
                ttl: f.ttl,
                tags: f.tags,
                store: f.store,
            }),
            Err(e) => Err(Error::Upstream(UpstreamError::new(e))),
        }
    })
}

/// Cloned, not moved out of the entry: the entry goes on to the call as
/// what the fetch is told is held.
fn clone_value(v: &mut Bytes) -> Result<Bytes, CodecError> {
    Ok(v.clone())
}

/// A lookup with per-call options: refused before anything is read if they
/// are bad ("bad input changes nothing"); with tags, its job stores them.
fn with_options<'a, J, V, L>(
    opts: CallOptions,
    job: J,
    lookup: impl FnOnce(task::Tagged<J>) -> L + MaybeSend + 'a,
) -> impl Future<Output = Result<Cached<V>, Error>> + MaybeSend + 'a
where
    J: task::Job,
    L: Future<Output = Result<Cached<V>, Error>> + MaybeSend + 'a,
    V: 'a,
{
    let checked = opts.check();
    let tags = opts.tags;
    async move {
        checked?;
        lookup(task::Tagged { job, tags }).await
    }
}

fn get_typed<'a, S, R, C, V, K>(
    shared: &'a Arc<Shared<S, R, C>>,
    key: K,
    ttl: Option<CacheTtl>,
    job: impl task::Job,
) -> impl Future<Output = Result<Cached<Arc<V>>, Error>> + MaybeSend + 'a
where
    S: Storage,
    R: Runtime,
    C: Codec + Clone,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
    K: AsRef<str> + MaybeSend + 'a,
{
    let codec = shared.codec();
    let decoded = shared.decoded();
    lookup::lookup(shared, key, ttl, job, move |v: &mut Bytes| {
        decoded.get_or_decode(v, || codec.decode::<V>(v))
    })
}

/// A write through the engine: checked ("bad input changes nothing"), then
/// stored after any running call for the key is superseded ("the latest
/// write wins").
async fn write<S, R, C>(
    shared: &Arc<Shared<S, R, C>>,
    key: &str,
    value: Bytes,
    opts: CallOptions,
) -> Result<(), Error>
where
    S: Storage,
    R: Runtime,
    C: Codec + Clone,
{
    shared.check_key(key)?;
    opts.check()?;
    let max = shared.cfg().max_value_bytes;
    if value.len() > max {
        bump(&shared.counters().oversized_values);
        return Err(Error::ValueTooLarge {
            len: value.len(),
            max,
        });
    }
    shared.negatives().remove(key);
    shared.throttle().forget(key);
    let superseded = shared.supersede(key).await;
    let now = shared.now();
    let mut entry = match opts.ttl {
        Some(ttl) => Entry::new(value, now, ttl).pinned(true),
        None => {
            let ttl = shared.default_ttl(key, &value);
            Entry::new(value, now, ttl)
        }
    };
    let stored = match opts.tags.filter(|t| !t.is_empty()) {
        // Stamped after the supersede: a tag operation before this write is
        // older than it, so the value is valid under the epochs it finds.
        Some(names) => shared
            .stamp_tags(&names, None)
            .await
            .map(|(tags, _)| entry.tags = tags),
        None => Ok(()),
    };
    let written = entry.clone();
    let stored = match stored {
        Ok(()) => shared.storage().set(key, entry).await,
        Err(e) => Err(e),
    };
    if stored.is_err() {
        // The store may hold an older value than one a superseded call
        // already handed out: remove it (best effort, as a call would).
        shared.storage_error(StorageOp::Set);
        if shared.storage().remove_older(key, &written).await.is_err() {
            bump(&shared.counters().store_cleanup_failures);
        }
    }
    if let Some(flight) = superseded {
        flight.hide();
    }
    stored.map_err(Error::Storage)
}
