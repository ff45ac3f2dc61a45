//! [`ShardLock`]: a memory shard's reader-writer lock, built so that readers
//! on different threads write different cache lines.
//!
//! A reader-count lock such as `spin::RwLock` makes every read write one
//! shared word. Two cores reading different keys of one shard then pass that
//! word's cache line back and forth on almost every read; measured here, a
//! store read on two threads was slower in total than on one. In this lock each
//! reader counts itself in one of [`SLOTS`] padded slots picked by [`stripe`],
//! and a writer raises a flag and then waits until every slot is empty: reads
//! scale, writes pay a scan of the slots. (crossbeam's `ShardedLock` is the
//! same idea, but it needs `std` for thread ids.)
//!
//! Ordering: a reader increments its slot and then reads the flag; a writer
//! sets the flag and then reads every slot. Both sides use `SeqCst`, so at
//! least one sees the other: the reader backs off, or the writer waits. A
//! reader's `Release` decrement and a writer's `Release` clear of the flag
//! order the data accesses of one side before those of the other.

use core::cell::UnsafeCell;
use core::hint::spin_loop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::stripe::stripe;

/// Reader slots per lock (a power of two).
pub(super) const SLOTS: usize = 8;

/// A reader count on a cache-line pair of its own (adjacent-line prefetchers
/// fetch lines in pairs of 64 bytes).
#[repr(align(128))]
struct Slot(AtomicUsize);

/// A reader-writer lock whose readers count themselves in per-thread slots.
/// Like `spin::RwLock`, it spins while it waits, never poisons, and must not
/// be write-locked by a thread that holds a read guard on it.
pub(crate) struct ShardLock<T> {
    readers: [Slot; SLOTS],
    writer: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: as for any reader-writer lock: the value moves between threads with
// the lock (`T: Send`), and readers on several threads share `&T` (`T: Sync`).
// All access to `value` goes through the guards, which uphold the exclusion.
unsafe impl<T: Send> Send for ShardLock<T> {}
// SAFETY: see above.
unsafe impl<T: Send + Sync> Sync for ShardLock<T> {}

impl<T> ShardLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            readers: core::array::from_fn(|_| Slot(AtomicUsize::new(0))),
            writer: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Shared access; waits while a writer holds or waits for the lock.
    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        let slot = &self.readers[stripe(SLOTS)].0;
        loop {
            slot.fetch_add(1, Ordering::SeqCst);
            if !self.writer.load(Ordering::SeqCst) {
                return ReadGuard { lock: self, slot };
            }
            // A writer is in or waiting: step aside so it can get in.
            slot.fetch_sub(1, Ordering::Release);
            self.wait_for_writer();
        }
    }

    /// Exclusive access; waits for the other writer, then for every reader.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        while self
            .writer
            .compare_exchange_weak(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            self.wait_for_writer();
        }
        for slot in &self.readers {
            while slot.0.load(Ordering::SeqCst) != 0 {
                spin_loop();
            }
        }
        WriteGuard { lock: self }
    }

    #[cold]
    fn wait_for_writer(&self) {
        while self.writer.load(Ordering::Relaxed) {
            spin_loop();
        }
    }
}

/// Shared access to a [`ShardLock`]'s value; released on drop.
pub(crate) struct ReadGuard<'a, T> {
    lock: &'a ShardLock<T>,
    /// The slot this reader counted itself in (the one it must leave).
    slot: &'a AtomicUsize,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this reader is counted in a slot and saw no writer after
        // counting itself, so no writer gets in until the guard is dropped.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.slot.fetch_sub(1, Ordering::Release);
    }
}

/// Exclusive access to a [`ShardLock`]'s value; released on drop.
pub(crate) struct WriteGuard<'a, T> {
    lock: &'a ShardLock<T>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the writer flag is ours and every reader slot was empty.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.writer.store(false, Ordering::Release);
    }
}

#[cfg(test)]
impl<T> ShardLock<T> {
    /// Readers counted in the slots now.
    fn readers(&self) -> usize {
        self.readers
            .iter()
            .map(|s| s.0.load(Ordering::SeqCst))
            .sum()
    }
}

#[cfg(test)]
mod tests;
