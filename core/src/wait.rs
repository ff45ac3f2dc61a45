//! Small wake-up primitives for `no_std`: a list of parked wakers, a one-shot
//! latch, and a task counter whose zero can be awaited.

use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};

use spin::Mutex;

enum Slot {
    Free,
    Parked(Option<Waker>),
}

/// Wakers parked by futures; each future owns one slot (its token) until it drops.
#[derive(Default)]
pub(crate) struct WaitList {
    slots: Mutex<(Vec<Slot>, Vec<usize>)>,
}

impl WaitList {
    /// Parks `waker` in the slot named by `token`, taking a slot if it has none.
    pub(crate) fn park(&self, token: &mut Option<usize>, waker: &Waker) {
        let mut guard = self.slots.lock();
        let (slots, free) = &mut *guard;
        if let Some(Slot::Parked(w)) = token.and_then(|t| slots.get_mut(t)) {
            match w {
                Some(old) if old.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
            return;
        }
        let slot = Slot::Parked(Some(waker.clone()));
        let t = match free.pop() {
            Some(t) => {
                slots[t] = slot;
                t
            }
            None => {
                slots.push(slot);
                slots.len() - 1
            }
        };
        *token = Some(t);
    }

    /// Gives back the slot named by `token`.
    pub(crate) fn leave(&self, token: &mut Option<usize>) {
        if let Some(t) = token.take() {
            let mut guard = self.slots.lock();
            let (slots, free) = &mut *guard;
            if let Some(s) = slots.get_mut(t) {
                *s = Slot::Free;
                free.push(t);
            }
        }
    }

    /// Wakes every parked waker (slots stay owned by their futures).
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = {
            let mut guard = self.slots.lock();
            guard
                .0
                .iter_mut()
                .filter_map(|s| match s {
                    Slot::Parked(w) => w.take(),
                    Slot::Free => None,
                })
                .collect()
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// A flag that is set once and can be awaited.
#[derive(Default)]
pub(crate) struct Latch {
    set: AtomicBool,
    waiters: WaitList,
}

impl Latch {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.waiters.wake_all();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) fn wait(&self) -> LatchWait<'_> {
        LatchWait {
            latch: self,
            token: None,
        }
    }
}

pub(crate) struct LatchWait<'a> {
    latch: &'a Latch,
    token: Option<usize>,
}

impl Future for LatchWait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.latch.is_set() {
            return Poll::Ready(());
        }
        let latch = self.latch;
        latch.waiters.park(&mut self.token, cx.waker());
        if latch.is_set() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for LatchWait<'_> {
    fn drop(&mut self) {
        self.latch.waiters.leave(&mut self.token);
    }
}

/// Counts running tasks; awaiting zero resolves once none is left.
#[derive(Default)]
pub(crate) struct TaskCount {
    count: AtomicUsize,
    zero: WaitList,
}

impl TaskCount {
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub(crate) fn increment(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Adds one unless `limit` is reached; `true` if it added.
    pub(crate) fn try_increment(&self, limit: usize) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn decrement(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.zero.wake_all();
        }
    }

    pub(crate) fn wait_zero(&self) -> ZeroWait<'_> {
        ZeroWait {
            count: self,
            token: None,
        }
    }
}

pub(crate) struct ZeroWait<'a> {
    count: &'a TaskCount,
    token: Option<usize>,
}

impl Future for ZeroWait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.count.get() == 0 {
            return Poll::Ready(());
        }
        let count = self.count;
        count.zero.park(&mut self.token, cx.waker());
        if count.get() == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for ZeroWait<'_> {
    fn drop(&mut self) {
        self.count.zero.leave(&mut self.token);
    }
}
