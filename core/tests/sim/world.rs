//! The simulated world: a seeded executor that picks which woken task runs
//! next (and keeps some engine tasks without ever polling them), a faulty
//! store, a faulty upstream, and a recorder of breaker transitions.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::{waker_ref, ArcWake};
use swre_core::testing::ManualTimer;
use swre_core::{
    BreakerScope, BreakerState, Clock, ManualClock, MemoryStorage, Metrics, Spawn, Storage,
    StorageError, StorageErrorKind, Timer,
};

type StoredEntry = swre_core::Entry;

/// splitmix64: small, seedable, good enough to pick interleavings.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The world's one random source, shared by everything that makes choices.
pub type SharedRng = Arc<Mutex<Rng>>;

fn roll(rng: &SharedRng, percent: u64) -> bool {
    rng.lock().unwrap().chance(percent)
}

fn pick(rng: &SharedRng, n: u64) -> u64 {
    rng.lock().unwrap().below(n)
}

type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Task {
    future: Mutex<Option<BoxedTask>>,
    woken: AtomicBool,
    /// Kept, never polled: what Workers do to work not handed to `waitUntil`.
    held: bool,
    engine: bool,
}

struct Flag(Arc<Task>);

/// A task and the waker flag it is polled with.
type Entry = (Arc<Task>, Arc<Flag>);

impl ArcWake for Flag {
    fn wake_by_ref(f: &Arc<Self>) {
        f.0.woken.store(true, Ordering::SeqCst);
    }
}

/// Tasks of the world; the simulator decides which woken one runs.
#[derive(Clone, Default)]
pub struct Exec {
    tasks: Arc<Mutex<Vec<Entry>>>,
    pub panics: Arc<AtomicU64>,
}

impl Exec {
    fn push(&self, future: BoxedTask, held: bool, engine: bool) {
        let task = Arc::new(Task {
            future: Mutex::new(Some(future)),
            woken: AtomicBool::new(true),
            held,
            engine,
        });
        let flag = Arc::new(Flag(task.clone()));
        self.tasks.lock().unwrap().push((task, flag));
    }

    /// Spawns a client (a caller of the engine); clients are always polled.
    pub fn client(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.push(Box::pin(future), false, false);
    }

    /// Polls one woken task chosen by `rng`; `false` if none is woken.
    pub fn step(&self, rng: &SharedRng) -> bool {
        let ready: Vec<Entry> = {
            let mut tasks = self.tasks.lock().unwrap();
            tasks.retain(|(t, _)| t.future.lock().unwrap().is_some());
            tasks
                .iter()
                .filter(|(t, _)| !t.held && t.woken.load(Ordering::SeqCst))
                .cloned()
                .collect()
        };
        if ready.is_empty() {
            return false;
        }
        let (task, flag) = &ready[pick(rng, ready.len() as u64) as usize];
        task.woken.store(false, Ordering::SeqCst);
        let waker = waker_ref(flag);
        let mut cx = Context::from_waker(&waker);
        let mut slot = task.future.lock().unwrap();
        if let Some(fut) = slot.as_mut() {
            match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(())) => *slot = None,
                Err(_) => {
                    self.panics.fetch_add(1, Ordering::SeqCst);
                    *slot = None;
                }
            }
        }
        true
    }

    /// Runs woken tasks until none is left (bounded, in case of a livelock).
    pub fn settle(&self, rng: &SharedRng) -> Result<(), String> {
        for _ in 0..100_000 {
            if !self.step(rng) {
                return Ok(());
            }
        }
        Err("livelock: tasks kept waking each other for 100,000 polls".into())
    }

    /// Engine tasks not finished and not held.
    pub fn live_engine_tasks(&self) -> usize {
        self.tasks
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.engine && !t.held && t.future.lock().unwrap().is_some())
            .count()
    }
}

/// The engine's runtime: the manual clock and timer, and spawning into
/// [`Exec`], keeping `hold_percent` of tasks without ever polling them.
#[derive(Clone)]
pub struct SimRuntime {
    pub clock: ManualClock,
    pub timer: ManualTimer,
    pub exec: Exec,
    pub rng: SharedRng,
    pub hold_percent: u64,
}

impl Clock for SimRuntime {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

impl Timer for SimRuntime {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.timer.sleep(d)
    }
}

impl Spawn for SimRuntime {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let held = roll(&self.rng, self.hold_percent);
        self.exec.push(Box::pin(task), held, true);
    }
}

/// A memory store whose reads and writes fail, stall or (writes) are lost —
/// a lost write drops the key, as an evicting store may; a store never goes
/// back to an older value by itself. Deletes always succeed, so a value the
/// engine removes is gone (its best-effort removal is not under test here).
pub struct FaultyStore {
    inner: MemoryStorage,
    /// Read errors injected, per key.
    read_faults: Mutex<HashMap<String, u64>>,
    timer: ManualTimer,
    rng: SharedRng,
    pub fault_percent: u64,
}

impl FaultyStore {
    pub fn new(timer: ManualTimer, rng: SharedRng, fault_percent: u64) -> Self {
        Self {
            inner: MemoryStorage::new(),
            read_faults: Mutex::default(),
            timer,
            rng,
            fault_percent,
        }
    }

    /// Read errors injected for `key` so far.
    pub fn read_faults(&self, key: &str) -> u64 {
        self.read_faults
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// What the store holds, read without faults.
    pub fn peek(&self, key: &str) -> Option<StoredEntry> {
        futures::executor::block_on(self.inner.get(key))
            .ok()
            .flatten()
    }

    async fn stall(&self) {
        if roll(&self.rng, self.fault_percent) {
            let ms = 1 + pick(&self.rng, MAX_STORE_STALL_MS);
            self.timer.sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// The longest a store operation stalls.
pub const MAX_STORE_STALL_MS: u64 = 400;

fn fault() -> StorageError {
    StorageError::new(StorageErrorKind::Unavailable, "simulated fault")
}

impl Storage for FaultyStore {
    /// Half the reads answer at once, as a memory store's do (without
    /// faults), so both of the engine's read paths run.
    fn get_ready(&self, key: &str) -> Option<Result<Option<StoredEntry>, StorageError>> {
        if roll(&self.rng, 50) {
            self.inner.get_ready(key)
        } else {
            None
        }
    }

    async fn get(&self, key: &str) -> Result<Option<StoredEntry>, StorageError> {
        self.stall().await;
        if roll(&self.rng, self.fault_percent / 2) {
            *self
                .read_faults
                .lock()
                .unwrap()
                .entry(key.to_owned())
                .or_default() += 1;
            return Err(fault());
        }
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, entry: StoredEntry) -> Result<(), StorageError> {
        self.stall().await;
        if roll(&self.rng, self.fault_percent / 2) {
            return Err(fault());
        }
        if roll(&self.rng, self.fault_percent / 3) {
            return self.inner.delete(key).await; // lost
        }
        self.inner.set(key, entry).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.stall().await;
        self.inner.delete(key).await
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.stall().await;
        if roll(&self.rng, self.fault_percent / 2) {
            return Err(fault());
        }
        self.inner.clear().await
    }
}

/// How one upstream call behaves.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    Ok,
    Slow(u64),
    Fail,
    NotFound,
    Hang,
    Panic,
}

/// The upstream: hands out versions in call order and counts live calls.
#[derive(Default)]
pub struct Upstream {
    next: AtomicU64,
    /// key → calls running now, with their start times (timer ms).
    pub running: Mutex<HashMap<String, Vec<(u64, u64)>>>,
    pub started: AtomicU64,
}

impl Upstream {
    /// The next version (also the value written by `set`s).
    pub fn version(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// The value bytes for `version`.
pub fn encode(version: u64) -> Vec<u8> {
    version.to_be_bytes().to_vec()
}

/// The version in `bytes`.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A fetch of `key` behaving as `b`, on `timer`.
/// The future of one simulated upstream call.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, swre_core::BoxError>> + Send>>;

pub fn fetch(
    up: &Arc<Upstream>,
    timer: &ManualTimer,
    key: &str,
    b: Behaviour,
) -> impl FnOnce() -> FetchFuture + Send + 'static {
    let up = up.clone();
    let timer = timer.clone();
    let key = key.to_owned();
    move || {
        let version = up.version();
        if std::env::var_os("SWRE_SIM_TRACE").is_some() {
            eprintln!("  upstream call of {key:?} -> version {version}, {b:?}");
        }
        up.started.fetch_add(1, Ordering::SeqCst);
        let id = version;
        up.running
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .push((id, timer.now_ms()));
        let guard = Running {
            up: up.clone(),
            key,
            id,
        };
        Box::pin(async move {
            let _guard = guard;
            match b {
                Behaviour::Ok => Ok(encode(version)),
                Behaviour::Slow(ms) => {
                    timer.sleep(Duration::from_millis(ms)).await;
                    Ok(encode(version))
                }
                Behaviour::Fail => Err("upstream down".into()),
                Behaviour::NotFound => Err(swre_core::NotCounted::new("not found").into()),
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Panic => std::panic::panic_any(PANIC),
            }
        })
    }
}

/// The payload of a fetch that panics on purpose.
pub const PANIC: &str = "simulated fetch panic";

/// Marks a call as no longer running when its future ends or is dropped.
struct Running {
    up: Arc<Upstream>,
    key: String,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(v) = self.up.running.lock().unwrap().get_mut(&self.key) {
            v.retain(|(id, _)| *id != self.id);
        }
    }
}

/// Records global breaker transitions, in order.
#[derive(Default)]
pub struct Transitions(pub Mutex<Vec<BreakerState>>);

impl Metrics for Transitions {
    fn breaker(&self, scope: BreakerScope, state: BreakerState) {
        if scope == BreakerScope::Global {
            self.0.lock().unwrap().push(state);
        }
    }
}

/// The future of one simulated batch call.
pub type BatchFuture =
    Pin<Box<dyn Future<Output = Result<Vec<(String, Vec<u8>)>, swre_core::BoxError>> + Send>>;

/// A batch fetch behaving as `b` for every key it is asked for, each key
/// counted as a call of its own (for the one-call-per-key invariant); with
/// `omit`, its answer leaves out the last key asked. It also answers a key
/// nobody asked for, which the engine must ignore.
pub fn batch_fetch(
    up: &Arc<Upstream>,
    timer: &ManualTimer,
    b: Behaviour,
    omit: bool,
) -> impl FnOnce(Vec<String>) -> BatchFuture + Send + 'static {
    let up = up.clone();
    let timer = timer.clone();
    move |keys| {
        let mut guards = Vec::new();
        let mut answer = Vec::new();
        for key in keys {
            let version = up.version();
            if std::env::var_os("SWRE_SIM_TRACE").is_some() {
                eprintln!("  batch upstream call of {key:?} -> version {version}, {b:?}");
            }
            up.started.fetch_add(1, Ordering::SeqCst);
            up.running
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .push((version, timer.now_ms()));
            guards.push(Running {
                up: up.clone(),
                key: key.clone(),
                id: version,
            });
            answer.push((key, encode(version)));
        }
        if omit {
            answer.pop();
        }
        answer.push(("not-asked".to_owned(), encode(u64::MAX)));
        Box::pin(async move {
            let _guards = guards;
            match b {
                Behaviour::Ok => Ok(answer),
                Behaviour::Slow(ms) => {
                    timer.sleep(Duration::from_millis(ms)).await;
                    Ok(answer)
                }
                Behaviour::Fail => Err("upstream down".into()),
                Behaviour::NotFound => Err(swre_core::NotCounted::new("not found").into()),
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Panic => std::panic::panic_any(PANIC),
            }
        })
    }
}
