use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swre_native::{
    CacheTtl, Clock, Engine, EngineBuilder, Entry, ManualClock, MemoryStorage, Storage,
    StorageError, StorageErrorKind, SystemClock, TokioRuntime,
};

pub const SEC: Duration = Duration::from_secs(1);

pub fn ttl() -> CacheTtl {
    CacheTtl::new(10 * SEC, 20 * SEC, 30 * SEC)
}

#[derive(Debug, Clone)]
pub struct Boom;
impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream failed")
    }
}
impl std::error::Error for Boom {}

pub type Rt = TokioRuntime<ManualClock>;

/// An engine on tokio with a manual clock starting at the real time.
pub fn engine_on<S: Storage>(
    storage: S,
    f: impl FnOnce(EngineBuilder<S, Rt>) -> EngineBuilder<S, Rt>,
) -> (Engine<S, Rt>, ManualClock) {
    let clock = ManualClock::new(SystemClock.now_ms());
    let engine = f(Engine::builder(storage, TokioRuntime::with_clock(clock.clone())).ttl(ttl()))
        .build()
        .expect("valid configuration");
    (engine, clock)
}

pub fn engine_with(
    f: impl FnOnce(EngineBuilder<MemoryStorage, Rt>) -> EngineBuilder<MemoryStorage, Rt>,
) -> (Engine<MemoryStorage, Rt>, ManualClock) {
    engine_on(MemoryStorage::new(), f)
}

/// Counts upstream calls.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<AtomicUsize>);

impl Calls {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    pub fn ok(
        &self,
        v: &'static str,
    ) -> impl FnOnce() -> std::future::Ready<Result<&'static str, Boom>> + Send + 'static {
        let c = self.0.clone();
        move || {
            c.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(v))
        }
    }

    pub fn err(
        &self,
    ) -> impl FnOnce() -> std::future::Ready<Result<&'static str, Boom>> + Send + 'static {
        let c = self.0.clone();
        move || {
            c.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err(Boom))
        }
    }

    /// Sleeps `d` on tokio's timer, then returns `v`.
    pub fn slow(
        &self,
        d: Duration,
        v: &'static str,
    ) -> impl FnOnce() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<&'static str, Boom>> + Send>,
    > + Send
           + 'static {
        let c = self.0.clone();
        move || {
            c.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(d).await;
                Ok(v)
            })
        }
    }
}

/// Waits (yielding to tokio) until no upstream call is in flight.
pub async fn settle<S: Storage, C: swre_native::Codec + Clone>(engine: &Engine<S, Rt, C>) {
    for _ in 0..10_000 {
        let s = engine.stats();
        if s.in_flight == 0 && s.tasks_running == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("engine did not settle: {:?}", engine.stats());
}

pub fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).expect("utf-8")
}

/// A store whose every operation fails (fault injection).
pub struct Broken;

impl Storage for Broken {
    async fn get(&self, _: &str) -> Result<Option<Entry>, StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unavailable,
            "injected read failure",
        ))
    }
    async fn set(&self, _: &str, _: Entry) -> Result<(), StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unavailable,
            "injected write failure",
        ))
    }
    async fn delete(&self, _: &str) -> Result<(), StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unavailable,
            "injected delete failure",
        ))
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "swre-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
