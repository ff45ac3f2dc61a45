use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use portable_atomic::{AtomicU64, Ordering};
use spin::Mutex;

use crate::time::{duration_ms, Timer};

#[derive(Default)]
struct Shared {
    now: AtomicU64,
    next_id: AtomicU64,
    sleepers: Mutex<Vec<(u64, u64, Waker)>>,
}

/// A [`Timer`] on virtual time that moves only when told to.
///
/// It is independent of [`ManualClock`](crate::ManualClock), so a test can
/// freeze the wall clock and still let timeouts fire ("timeouts come from timers").
///
/// ```
/// use core::future::Future;
/// use core::time::Duration;
/// use swre_core::Timer;
/// use swre_core::testing::ManualTimer;
///
/// let timer = ManualTimer::new();
/// let mut sleep = Box::pin(timer.sleep(Duration::from_secs(1)));
/// let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
/// assert!(sleep.as_mut().poll(&mut cx).is_pending());
/// timer.advance(Duration::from_secs(1));
/// assert!(sleep.as_mut().poll(&mut cx).is_ready());
/// ```
#[derive(Clone, Default)]
pub struct ManualTimer {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for ManualTimer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ManualTimer")
            .field("now_ms", &self.now_ms())
            .field("pending", &self.pending())
            .finish()
    }
}

impl ManualTimer {
    /// A timer at virtual time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Virtual milliseconds elapsed.
    pub fn now_ms(&self) -> u64 {
        self.shared.now.load(Ordering::Acquire)
    }

    /// Moves virtual time forward and wakes every sleep that is due.
    pub fn advance(&self, d: Duration) {
        let now = self
            .shared
            .now
            .fetch_add(duration_ms(d), Ordering::AcqRel)
            .saturating_add(duration_ms(d));
        let due: Vec<Waker> = {
            let mut sleepers = self.shared.sleepers.lock();
            let mut due = Vec::new();
            sleepers.retain(|(_, deadline, w)| {
                if *deadline <= now {
                    due.push(w.clone());
                    false
                } else {
                    true
                }
            });
            due
        };
        for w in due {
            w.wake();
        }
    }

    /// Sleeps parked and not yet due.
    pub fn pending(&self) -> usize {
        self.shared.sleepers.lock().len()
    }
}

impl Timer for ManualTimer {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + crate::MaybeSend + 'static {
        Sleep {
            deadline: self.now_ms().saturating_add(duration_ms(d)),
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            shared: self.shared.clone(),
        }
    }
}

/// The future returned by [`ManualTimer`]'s `sleep`.
pub struct Sleep {
    shared: Arc<Shared>,
    deadline: u64,
    id: u64,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.now.load(Ordering::Acquire) >= self.deadline {
            return Poll::Ready(());
        }
        let mut sleepers = self.shared.sleepers.lock();
        // Re-check under the lock: `advance` may have run in between.
        if self.shared.now.load(Ordering::Acquire) >= self.deadline {
            return Poll::Ready(());
        }
        match sleepers.iter_mut().find(|(id, _, _)| *id == self.id) {
            Some(slot) => slot.2 = cx.waker().clone(),
            None => sleepers.push((self.id, self.deadline, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.shared
            .sleepers
            .lock()
            .retain(|(id, _, _)| *id != self.id);
    }
}
