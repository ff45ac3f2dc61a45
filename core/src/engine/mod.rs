//! [`Engine`]: the public face of the cache — lookups, writes, stats, shutdown.
//!
//! The engine's middle runs one way: this module (the public API) →
//! `lookup` → `decide` (the phase table) → `admission` → `task` (the
//! spawned call) → `ticket` (what a call holds) → `shared` (the state, with
//! its own methods). Each imports only modules after it (and the data
//! modules `cached` and `config`).

use alloc::sync::Arc;
use core::future::Future;
use core::pin::pin;

use futures::future::{select, Either};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::breaker::BreakerState;
use crate::bytes::Bytes;
use crate::codec::{Codec, Postcard};
use crate::entry::{CacheTtl, Entry};
use crate::error::{Error, FetchError, UpstreamError};
use crate::stats::{bump, Stats};
use crate::storage::Storage;
use crate::sync::MaybeSend;
use crate::{metrics::StorageOp, runtime::Runtime};

mod admission;
mod builder;
mod cached;
mod config;
mod decide;
mod decoded;
mod fetch;
mod lookup;
mod shared;
mod task;
mod ticket;

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
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// The TTL of the value this call fetches or writes, instead of the
    /// engine's default and policy. It sticks to the entry: refreshes keep
    /// it until a later write or call chooses another. A TTL totalling under
    /// 5 s is rejected with [`Error::Config`] before anything is read.
    pub ttl: Option<CacheTtl>,
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
#[derive(Clone, Copy)]
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
        get_bytes(&self.shared, key, None, fetch)
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
        get_typed(&self.shared, key, None, fetch)
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
        get_with(&self.shared, key, None, fetch)
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
        get_bytes(&self.engine.shared, key, self.opts.ttl, fetch)
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
        get_typed(&self.engine.shared, key, self.opts.ttl, fetch)
    }

    /// [`Engine::get_or_fetch_with`] with these options: the caller's TTL
    /// applies unless the fetch chooses one ([`Fetched::ttl`]).
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
        get_with(&self.engine.shared, key, self.opts.ttl, fetch)
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

#[inline(always)]
fn get_bytes<'a, S, R, C, K, F, Fut, T, E>(
    shared: &'a Arc<Shared<S, R, C>>,
    key: K,
    ttl: Option<CacheTtl>,
    fetch: F,
) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
where
    S: Storage,
    R: Runtime,
    C: Codec + Clone,
    K: AsRef<str> + MaybeSend + 'a,
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
    lookup::lookup(shared, key, ttl, job, |e: &mut Entry| {
        Ok(core::mem::take(&mut e.value))
    })
}

fn get_with<'a, S, R, C, K, F, Fut, T, E>(
    shared: &'a Arc<Shared<S, R, C>>,
    key: K,
    ttl: Option<CacheTtl>,
    fetch: F,
) -> impl Future<Output = Result<Cached<Bytes>, Error>> + MaybeSend + 'a
where
    S: Storage,
    R: Runtime,
    C: Codec + Clone,
    K: AsRef<str> + MaybeSend + 'a,
    F: FnOnce(FetchContext) -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<Fetched<T>, E>> + MaybeSend + 'static,
    T: Into<Bytes>,
    E: FetchError,
{
    let job = task::WithContext(move |ctx| async move {
        match fetch(ctx).await {
            Ok(f) => Ok(task::Produced {
                value: f.value.map(Into::into),
                ttl: f.ttl,
                store: f.store,
            }),
            Err(e) => Err(Error::Upstream(UpstreamError::new(e))),
        }
    });
    // Cloned, not moved out of the entry as `get_bytes` does: the entry goes
    // on to the call as what the fetch is told is held.
    lookup::lookup(shared, key, ttl, job, |e: &mut Entry| Ok(e.value.clone()))
}

fn get_typed<'a, S, R, C, V, K, F, Fut, E>(
    shared: &'a Arc<Shared<S, R, C>>,
    key: K,
    ttl: Option<CacheTtl>,
    fetch: F,
) -> impl Future<Output = Result<Cached<Arc<V>>, Error>> + MaybeSend + 'a
where
    S: Storage,
    R: Runtime,
    C: Codec + Clone,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
    K: AsRef<str> + MaybeSend + 'a,
    F: FnOnce() -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
    E: FetchError,
{
    let codec = shared.codec().clone();
    let job = move || async move {
        let v = fetch()
            .await
            .map_err(|e| Error::Upstream(UpstreamError::new(e)))?;
        codec.encode(&v).map(Bytes::from).map_err(Error::Codec)
    };
    let codec = shared.codec();
    let decoded = shared.decoded();
    lookup::lookup(shared, key, ttl, job, move |e: &mut Entry| {
        decoded.get_or_decode(&e.value, || codec.decode::<V>(&e.value))
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
    checked_ttl(opts.ttl)?;
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
    let entry = match opts.ttl {
        Some(ttl) => Entry::new(value, now, ttl).pinned(true),
        None => {
            let ttl = shared.default_ttl(key, &value);
            Entry::new(value, now, ttl)
        }
    };
    let written = entry.clone();
    let stored = shared.storage().set(key, entry).await;
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
