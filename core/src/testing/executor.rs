use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::future::Future;
use core::pin::{pin, Pin};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use futures::task::{waker_ref, ArcWake};
use spin::Mutex;

use super::timer::ManualTimer;
use crate::runtime::Spawn;
use crate::time::{Clock, ManualClock, Timer};

type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Task {
    future: Mutex<Option<BoxedTask>>,
    queued: AtomicBool,
    queue: Arc<Queue>,
}

#[derive(Default)]
struct Queue {
    ready: Mutex<VecDeque<Arc<Task>>>,
    live: AtomicUsize,
    polls: AtomicUsize,
    panics: AtomicUsize,
}

impl ArcWake for Task {
    fn wake_by_ref(task: &Arc<Self>) {
        if !task.queued.swap(true, Ordering::AcqRel) {
            task.queue.ready.lock().push_back(task.clone());
        }
    }
}

/// A deterministic single-threaded executor for tests: spawned tasks run only
/// inside [`run_until_stalled`](Self::run_until_stalled) or
/// [`block_on`](Self::block_on), in wake-up order.
#[derive(Clone, Default)]
pub struct TestExecutor {
    queue: Arc<Queue>,
}

impl core::fmt::Debug for TestExecutor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TestExecutor")
            .field("live_tasks", &self.live_tasks())
            .finish()
    }
}

impl TestExecutor {
    /// An executor with no tasks.
    pub fn new() -> Self {
        Self::default()
    }

    /// A [`Spawn`] handle onto this executor.
    pub fn spawner(&self) -> TestSpawner {
        TestSpawner {
            queue: self.queue.clone(),
        }
    }

    /// Spawned tasks that have not finished (nor been dropped).
    pub fn live_tasks(&self) -> usize {
        self.queue.live.load(Ordering::Acquire)
    }

    /// Tasks that panicked and were dropped (feature `std`).
    pub fn panics(&self) -> usize {
        self.queue.panics.load(Ordering::Acquire)
    }

    /// Total task polls so far.
    pub fn polls(&self) -> usize {
        self.queue.polls.load(Ordering::Acquire)
    }

    /// Polls woken tasks until none is ready; returns how many polls it made.
    pub fn run_until_stalled(&self) -> usize {
        let mut n = 0;
        loop {
            let next = self.queue.ready.lock().pop_front();
            let Some(task) = next else { return n };
            task.queued.store(false, Ordering::Release);
            n += 1;
            self.queue.polls.fetch_add(1, Ordering::Relaxed);
            let mut slot = task.future.lock();
            if let Some(fut) = slot.as_mut() {
                let waker = waker_ref(&task);
                let mut cx = Context::from_waker(&waker);
                #[cfg(feature = "std")]
                let finished = {
                    let polled = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
                        fut.as_mut().poll(&mut cx)
                    }));
                    // A task that panicked is dropped, as tokio does.
                    polled.map_or_else(
                        |_| {
                            self.queue.panics.fetch_add(1, Ordering::Relaxed);
                            true
                        },
                        |p| p.is_ready(),
                    )
                };
                #[cfg(not(feature = "std"))]
                let finished = fut.as_mut().poll(&mut cx).is_ready();
                if finished {
                    *slot = None;
                    self.queue.live.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Drives `fut` (and every task it depends on) to completion.
    ///
    /// Makes no allocation of its own. Panics if `fut` is pending and no task
    /// can make progress: the test must advance a timer or clock first.
    pub fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            if self.run_until_stalled() == 0 {
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return v;
                }
                panic!("block_on: the future is stalled and no task is ready (advance the timer, or complete what it waits for)");
            }
        }
    }

    /// Spawns `fut` and returns a handle to its output.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.spawner().spawn_boxed(Box::pin(async move {
            let v = fut.await;
            *out.lock() = Some(v);
        }));
        JoinHandle { slot }
    }
}

/// The output slot of a task spawned with [`TestExecutor::spawn`].
pub struct JoinHandle<T> {
    slot: Arc<Mutex<Option<T>>>,
}

impl<T> JoinHandle<T> {
    /// The output, once the task has finished (taken once).
    pub fn try_take(&self) -> Option<T> {
        self.slot.lock().take()
    }

    /// Whether the output is waiting to be taken.
    pub fn is_finished(&self) -> bool {
        self.slot.lock().is_some()
    }
}

/// Spawns onto a [`TestExecutor`].
#[derive(Clone)]
pub struct TestSpawner {
    queue: Arc<Queue>,
}

impl TestSpawner {
    fn spawn_boxed(&self, future: BoxedTask) {
        self.queue.live.fetch_add(1, Ordering::AcqRel);
        let task = Arc::new(Task {
            future: Mutex::new(Some(future)),
            queued: AtomicBool::new(true),
            queue: self.queue.clone(),
        });
        self.queue.ready.lock().push_back(task);
    }
}

impl Spawn for TestSpawner {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_boxed(Box::pin(task));
    }
}

/// A deterministic [`Runtime`](crate::Runtime): [`ManualClock`] for the wall
/// clock, [`ManualTimer`] for timeouts and a [`TestExecutor`] for tasks.
#[derive(Clone)]
pub struct TestRuntime {
    /// The wall clock the engine reads.
    pub clock: ManualClock,
    /// The timer the engine sleeps on.
    pub timer: ManualTimer,
    spawner: TestSpawner,
}

impl TestRuntime {
    /// A runtime whose clock reads `start_ms`, spawning onto `exec`.
    pub fn new(exec: &TestExecutor, start_ms: u64) -> Self {
        Self {
            clock: ManualClock::new(start_ms),
            timer: ManualTimer::new(),
            spawner: exec.spawner(),
        }
    }

    /// Moves both the clock and the timer forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
        self.timer.advance(d);
    }
}

impl Clock for TestRuntime {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

impl Timer for TestRuntime {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.timer.sleep(d)
    }
}

impl Spawn for TestRuntime {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawner.spawn(task);
    }
}
