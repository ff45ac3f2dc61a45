//! Fault injection beyond `common`: a store whose every operation can be
//! delayed on the manual timer (and whose leases are tracked), and a runtime
//! that can keep spawned tasks without ever polling them (as Workers do with
//! work not handed to `waitUntil`).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swre_core::testing::{ManualTimer, TestExecutor, TestRuntime};
use swre_core::{
    Clock, Engine, EngineBuilder, Entry, LeaseToken, MemoryStorage, Spawn, Storage, StorageError,
    StorageErrorKind, Timer,
};

use crate::common::{harness_from, ttl, H, SEC, START};

/// Delays per call, in order; calls past the script take no time.
#[derive(Default)]
pub struct Script(Mutex<VecDeque<u64>>);

impl Script {
    pub fn push(&self, ms: &[u64]) {
        self.0.lock().unwrap().extend(ms.iter().copied());
    }
    fn next(&self) -> u64 {
        self.0.lock().unwrap().pop_front().unwrap_or(0)
    }
}

/// A memory store whose operations take scripted (manual) time, whose writes
/// can fail, and whose fleet leases are granted, refused and tracked.
pub struct Scripted {
    pub inner: MemoryStorage,
    pub timer: ManualTimer,
    pub get_delays: Script,
    pub set_delays: Script,
    pub lease_delays: Script,
    pub release_delays: Script,
    pub fail_set: AtomicBool,
    pub refuse_leases: AtomicBool,
    next_token: AtomicU64,
    /// Tokens granted and not yet released.
    pub leases: Mutex<HashSet<u64>>,
}

impl Scripted {
    pub fn new(timer: ManualTimer) -> Self {
        Self {
            inner: MemoryStorage::new(),
            timer,
            get_delays: Script::default(),
            set_delays: Script::default(),
            lease_delays: Script::default(),
            release_delays: Script::default(),
            fail_set: AtomicBool::new(false),
            refuse_leases: AtomicBool::new(false),
            next_token: AtomicU64::new(1),
            leases: Mutex::new(HashSet::new()),
        }
    }

    pub fn leases_held(&self) -> usize {
        self.leases.lock().unwrap().len()
    }

    async fn wait(&self, script: &Script) {
        let ms = script.next();
        if ms > 0 {
            self.timer.sleep(Duration::from_millis(ms)).await;
        }
    }
}

impl Storage for Scripted {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.wait(&self.get_delays).await;
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.wait(&self.set_delays).await;
        if self.fail_set.load(Ordering::SeqCst) {
            return Err(StorageError::new(
                StorageErrorKind::Io,
                "injected write fault",
            ));
        }
        self.inner.set(key, entry).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }

    async fn try_lease(&self, _: &str, _: Duration) -> Result<Option<LeaseToken>, StorageError> {
        self.wait(&self.lease_delays).await;
        if self.refuse_leases.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let t = self.next_token.fetch_add(1, Ordering::SeqCst);
        self.leases.lock().unwrap().insert(t);
        Ok(Some(LeaseToken(t)))
    }

    async fn release_lease(&self, _: &str, token: LeaseToken) {
        self.wait(&self.release_delays).await;
        self.leases.lock().unwrap().remove(&token.0);
    }
}

type Held = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A [`TestRuntime`] that, while `hold` is set, keeps spawned tasks without
/// ever polling them.
#[derive(Clone)]
pub struct Stuck {
    pub rt: TestRuntime,
    pub hold: Arc<AtomicBool>,
    pub held: Arc<Mutex<Vec<Held>>>,
}

impl Stuck {
    pub fn new(rt: TestRuntime) -> Self {
        Self {
            rt,
            hold: Arc::new(AtomicBool::new(false)),
            held: Arc::default(),
        }
    }
}

impl Clock for Stuck {
    fn now_ms(&self) -> u64 {
        self.rt.now_ms()
    }
}

impl Timer for Stuck {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.rt.sleep(d)
    }
}

impl Spawn for Stuck {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if self.hold.load(Ordering::SeqCst) {
            self.held.lock().unwrap().push(Box::pin(task));
        } else {
            self.rt.spawn(task);
        }
    }
}

/// A harness over a [`Scripted`] store on the harness's own timer.
pub fn scripted(
    f: impl FnOnce(EngineBuilder<Scripted, TestRuntime>) -> EngineBuilder<Scripted, TestRuntime>,
) -> H<Scripted> {
    harness_from(|rt| Scripted::new(rt.timer.clone()), f)
}

/// An engine over memory on a [`Stuck`] runtime, with the test TTL,
/// `refresh_timeout` 2 s, and `f` applied to its builder.
pub fn stuck_engine(
    f: impl FnOnce(EngineBuilder<MemoryStorage, Stuck>) -> EngineBuilder<MemoryStorage, Stuck>,
) -> (
    TestExecutor,
    TestRuntime,
    Stuck,
    Engine<MemoryStorage, Stuck>,
) {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, START);
    let stuck = Stuck::new(rt.clone());
    let engine = f(Engine::builder(MemoryStorage::new(), stuck.clone())
        .ttl(ttl())
        .refresh_timeout(2 * SEC))
    .build()
    .expect("valid test configuration");
    (exec, rt, stuck, engine)
}
