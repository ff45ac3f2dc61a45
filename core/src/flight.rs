//! Singleflight: one in-flight upstream call per key, shared by every caller.
//!
//! A [`Flight`] holds the call's eventual result; [`FlightTable`] maps keys to
//! the flights in progress, in shards so that callers of different keys rarely
//! meet on a lock. The call itself runs in a spawned task (see `task.rs`), so a
//! caller that stops waiting only leaves the waiter list.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::hash::BuildHasher;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};

use hashbrown::{DefaultHashBuilder, HashMap};
use spin::Mutex;

use crate::entry::Entry;
use crate::error::Error;
use crate::wait::WaitList;

/// The shared result of one upstream call.
pub(crate) type FlightResult = Result<Entry, Error>;

/// One upstream call's rendezvous: its result once known, and who waits for it.
#[derive(Default)]
pub(crate) struct Flight {
    result: Mutex<Option<FlightResult>>,
    /// Set once `result` holds the result, so a look at a running call's
    /// value takes no lock.
    done: AtomicBool,
    waiters: WaitList,
    /// Set when the result came from storage (another call had just stored
    /// it), not from an upstream call made for this flight.
    from_storage: AtomicBool,
}

impl Flight {
    /// Records the result and wakes every waiter; the first result wins.
    pub(crate) fn complete(&self, result: FlightResult) -> bool {
        {
            let mut slot = self.result.lock();
            if slot.is_some() {
                return false;
            }
            *slot = Some(result);
            self.done.store(true, Ordering::Release);
        }
        self.waiters.wake_all();
        true
    }

    /// Completes with an entry found in storage rather than fetched.
    pub(crate) fn complete_from_storage(&self, entry: Entry) {
        self.from_storage.store(true, Ordering::Release);
        self.complete(Ok(entry));
    }

    /// Whether the result was found in storage rather than fetched.
    pub(crate) fn came_from_storage(&self) -> bool {
        self.from_storage.load(Ordering::Acquire)
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.result.lock().is_some()
    }

    /// A future for the result; dropping it only stops this caller waiting.
    pub(crate) fn wait(self: &Arc<Self>) -> FlightWait {
        FlightWait {
            flight: self.clone(),
            token: None,
        }
    }

    /// The value, if the call has completed successfully.
    #[inline]
    pub(crate) fn completed_value(&self) -> Option<Entry> {
        if !self.done.load(Ordering::Acquire) {
            return None;
        }
        match &*self.result.lock() {
            Some(Ok(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn peek(&self) -> Option<FlightResult> {
        self.result.lock().clone()
    }
}

pub(crate) struct FlightWait {
    flight: Arc<Flight>,
    token: Option<usize>,
}

impl Future for FlightWait {
    type Output = FlightResult;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FlightResult> {
        if let Some(r) = self.flight.peek() {
            return Poll::Ready(r);
        }
        let this = &mut *self;
        this.flight.waiters.park(&mut this.token, cx.waker());
        match this.flight.peek() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl Drop for FlightWait {
    fn drop(&mut self) {
        self.flight.waiters.leave(&mut self.token);
    }
}

const SHARDS: usize = 16;

/// The flights in progress, by key.
pub(crate) struct FlightTable {
    shards: [Mutex<HashMap<Box<str>, Arc<Flight>>>; SHARDS],
    hasher: DefaultHashBuilder,
}

impl Default for FlightTable {
    fn default() -> Self {
        Self {
            shards: core::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

/// Whether [`FlightTable::join_or_start`] joined a running flight or started one.
pub(crate) enum Joined {
    Running(Arc<Flight>),
    Started(Arc<Flight>),
}

impl FlightTable {
    fn shard(&self, key: &str) -> &Mutex<HashMap<Box<str>, Arc<Flight>>> {
        let i = (self.hasher.hash_one(key) >> 40) as usize % SHARDS;
        &self.shards[i]
    }

    /// The running flight for `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Flight>> {
        self.shard(key).lock().get(key).cloned()
    }

    /// Whether a flight for `key` is in the table and, if so, its value if it
    /// has completed with one: [`Flight::completed_value`] without taking a
    /// reference to the flight (the stale-hit path).
    #[inline(always)]
    pub(crate) fn running_value(&self, key: &str) -> Option<Option<Entry>> {
        self.shard(key).lock().get(key).map(|f| f.completed_value())
    }

    /// Joins the flight for `key`, or registers a new one.
    // On wasm32 upstream errors need not be `Send`, so neither is `Flight`;
    // there is one thread there, and native builds require `Send + Sync`.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub(crate) fn join_or_start(&self, key: &str) -> Joined {
        let mut map = self.shard(key).lock();
        if let Some(f) = map.get(key) {
            return Joined::Running(f.clone());
        }
        let f = Arc::new(Flight::default());
        map.insert(Box::from(key), f.clone());
        Joined::Started(f)
    }

    /// Registers a new flight for `key` unless one is running.
    pub(crate) fn start(&self, key: &str) -> Option<Arc<Flight>> {
        match self.join_or_start(key) {
            Joined::Started(f) => Some(f),
            Joined::Running(_) => None,
        }
    }

    /// Removes `key`'s entry if it is still `flight`.
    pub(crate) fn remove(&self, key: &str, flight: &Arc<Flight>) {
        let mut map = self.shard(key).lock();
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(key);
        }
    }

    /// The number of flights in progress.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// The keys in flight (diagnostics and tests).
    #[allow(dead_code)]
    pub(crate) fn keys(&self) -> Vec<Box<str>> {
        self.shards
            .iter()
            .flat_map(|s| s.lock().keys().cloned().collect::<Vec<_>>())
            .collect()
    }
}
