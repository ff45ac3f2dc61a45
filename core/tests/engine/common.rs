//! Shared test fixtures: a deterministic engine harness, counted and gated
//! fetches, and a fault-injecting storage.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use swre_core::testing::{TestExecutor, TestRuntime};
use swre_core::{
    CacheTtl, Engine, EngineBuilder, Entry, MemoryStorage, Storage, StorageError, StorageErrorKind,
};

pub const START: u64 = 1_700_000_000_000;
pub const SEC: Duration = Duration::from_secs(1);

/// Fresh 10 s, stale 20 s, expired 30 s: boundaries at +10 s, +30 s, +60 s.
pub fn ttl() -> CacheTtl {
    CacheTtl::new(10 * SEC, 20 * SEC, 30 * SEC)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boom(pub &'static str);

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}

impl std::error::Error for Boom {}

pub type TestEngine<S = MemoryStorage> = Engine<S, TestRuntime>;

pub struct H<S: Storage = MemoryStorage> {
    pub exec: TestExecutor,
    pub rt: TestRuntime,
    pub engine: TestEngine<S>,
    pub calls: Arc<AtomicUsize>,
}

pub fn harness() -> H {
    harness_with(|b| b)
}

pub fn harness_with(
    f: impl FnOnce(
        EngineBuilder<MemoryStorage, TestRuntime>,
    ) -> EngineBuilder<MemoryStorage, TestRuntime>,
) -> H {
    harness_on(MemoryStorage::new(), f)
}

pub fn harness_on<S: Storage>(
    storage: S,
    f: impl FnOnce(EngineBuilder<S, TestRuntime>) -> EngineBuilder<S, TestRuntime>,
) -> H<S> {
    harness_from(|_| storage, f)
}

/// A harness whose storage is made from its runtime (e.g. to share its timer).
pub fn harness_from<S: Storage>(
    storage: impl FnOnce(&TestRuntime) -> S,
    f: impl FnOnce(EngineBuilder<S, TestRuntime>) -> EngineBuilder<S, TestRuntime>,
) -> H<S> {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, START);
    let engine = f(Engine::builder(storage(&rt), rt.clone()).ttl(ttl()))
        .build()
        .expect("valid test configuration");
    H {
        exec,
        rt,
        engine,
        calls: Arc::new(AtomicUsize::new(0)),
    }
}

impl<S: Storage> H<S> {
    /// A fetch that counts its call and returns `v`.
    pub fn ok(
        &self,
        v: &'static str,
    ) -> impl FnOnce() -> std::future::Ready<Result<&'static str, Boom>> + Send + 'static {
        let calls = self.calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(v))
        }
    }

    /// A fetch that counts its call and fails.
    pub fn err(
        &self,
        why: &'static str,
    ) -> impl FnOnce() -> std::future::Ready<Result<&'static str, Boom>> + Send + 'static {
        let calls = self.calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err(Boom(why)))
        }
    }

    /// A fetch that counts its call and never finishes; `dropped` turns true
    /// when its future is dropped.
    pub fn hang(&self, dropped: Arc<AtomicBool>) -> impl FnOnce() -> Hang + Send + 'static {
        let calls = self.calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Hang(dropped)
        }
    }

    /// A fetch that counts its call and finishes when the returned sender sends.
    #[allow(clippy::type_complexity)]
    pub fn gated(
        &self,
    ) -> (
        oneshot::Sender<Result<&'static str, Boom>>,
        impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<&'static str, Boom>> + Send>>
            + Send
            + 'static,
    ) {
        let (tx, rx) = oneshot::channel();
        let calls = self.calls.clone();
        let fetch = move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { rx.await.unwrap_or(Err(Boom("gate dropped"))) })
                as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
        };
        (tx, fetch)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Runs a lookup to completion with a fetch returning `v`.
    pub fn get(
        &self,
        key: &str,
        v: &'static str,
    ) -> Result<swre_core::Cached<swre_core::Bytes>, swre_core::Error> {
        let fut = self.engine.get_or_fetch(key, self.ok(v));
        let r = self.exec.block_on(fut);
        self.exec.run_until_stalled();
        r
    }

    /// Runs a lookup to completion with a failing fetch.
    pub fn get_err(
        &self,
        key: &str,
    ) -> Result<swre_core::Cached<swre_core::Bytes>, swre_core::Error> {
        let fut = self.engine.get_or_fetch(key, self.err("upstream down"));
        let r = self.exec.block_on(fut);
        self.exec.run_until_stalled();
        r
    }

    pub fn stored(&self, key: &str) -> Option<Entry> {
        self.exec
            .block_on(self.engine.storage().get(key))
            .ok()
            .flatten()
    }

    pub fn advance(&self, d: Duration) {
        self.rt.advance(d);
        self.exec.run_until_stalled();
    }
}

pub struct Hang(pub Arc<AtomicBool>);

impl Future for Hang {
    type Output = Result<&'static str, Boom>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Pending
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub fn value(r: &swre_core::Cached<swre_core::Bytes>) -> &str {
    std::str::from_utf8(&r.value).expect("utf-8 test value")
}

/// A storage wrapper for fault injection: fails reads and/or writes on demand.
pub struct Faulty<S> {
    pub inner: S,
    pub fail_get: AtomicBool,
    pub fail_set: AtomicBool,
    pub gets: AtomicUsize,
}

impl<S> Faulty<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            fail_get: AtomicBool::new(false),
            fail_set: AtomicBool::new(false),
            gets: AtomicUsize::new(0),
        }
    }
}

fn injected() -> StorageError {
    StorageError::new(StorageErrorKind::Unavailable, "injected fault")
}

impl<S: Storage> Storage for Faulty<S> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if self.fail_get.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        if self.fail_set.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.set(key, entry).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
}
