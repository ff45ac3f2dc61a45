//! Singleflight: one live upstream call per key, shared by every caller.
//!
//! A [`Flight`] holds the call's eventual result, the deadline it must end by,
//! what it claimed from the engine ([`Claims`]) and where its store stands;
//! [`FlightTable`] maps keys to the flights in progress, in shards so that
//! callers of different keys rarely meet on a lock. The call itself runs in a
//! spawned task (see `engine/task.rs`), so a caller that stops waiting only
//! leaves the waiter list.
//!
//! A flight past its deadline is abandoned: the next lookup takes its place in
//! the table ("one deadline per call") and fences it, so if its task ever
//! resumes, it stores nothing ("the latest write wins").

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::hash::BuildHasher;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};

use core::task::{Context, Poll};
use portable_atomic::AtomicU64;

use hashbrown::hash_table::Entry as Slot;
use hashbrown::{DefaultHashBuilder, HashTable};
use spin::Mutex;

use crate::breaker::Permit;
use crate::entry::Entry;
use crate::error::Error;
use crate::key::same_key;
use crate::marks::RefreshMarks;
use crate::storage::LeaseToken;
use crate::wait::{Latch, WaitList};

/// The shared result of one upstream call.
pub(crate) type FlightResult = Result<Entry, Error>;

/// What one upstream call holds from the engine. Given back exactly once: by
/// the call's ticket when it ends, or by the lookup that takes over the call
/// when it is abandoned (whichever takes them from the flight first).
#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// The breaker's passage for this call.
    pub(crate) permit: Option<Permit>,
    /// One of `max_concurrent_refreshes` slots (background refreshes only).
    pub(crate) refresh_slot: bool,
    /// One count in the engine's running tasks.
    pub(crate) task: bool,
    /// The fleet-wide lease, once taken.
    pub(crate) lease: Option<LeaseToken>,
}

/// Where a flight's write to storage stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    /// Not started; the flight may still store.
    Open,
    /// Storing now; a later write waits until it has settled.
    Storing,
    /// A later write (or a takeover) superseded the flight: it stores nothing.
    Fenced,
}

/// One upstream call's rendezvous: its result once known, and who waits for it.
pub(crate) struct Flight {
    result: Mutex<Option<FlightResult>>,
    /// Set once `result` holds the result, so a look at a running call's
    /// value takes no lock.
    done: AtomicBool,
    waiters: WaitList,
    /// Set when the result came from storage (another call had just stored
    /// it), not from an upstream call made for this flight.
    from_storage: AtomicBool,
    /// Set when a later write or a takeover fenced the flight: it stores
    /// nothing and no new caller joins it.
    fenced: AtomicBool,
    /// Set once the write that fenced the flight has landed (or a takeover
    /// abandoned it): its value is no longer the newest, so it is never served
    /// from the flight again; a flight fenced before it stored waits for it.
    overwritten: Latch,
    write: Mutex<Write>,
    /// Set when the flight's task has ended (or was abandoned): nothing of it
    /// will be written any more.
    settled: Latch,
    claims: Mutex<Option<Claims>>,
    generation: u64,
    deadline_ms: u64,
    /// The refresh mark this flight set, cleared before it completes.
    mark: Option<(Arc<RefreshMarks>, u64)>,
}

impl Flight {
    fn new(
        generation: u64,
        deadline_ms: u64,
        claims: Claims,
        mark: Option<(Arc<RefreshMarks>, u64)>,
    ) -> Self {
        Self {
            result: Mutex::new(None),
            done: AtomicBool::new(false),
            waiters: WaitList::default(),
            from_storage: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            overwritten: Latch::default(),
            write: Mutex::new(Write::Open),
            settled: Latch::default(),
            claims: Mutex::new(Some(claims)),
            generation,
            deadline_ms,
            mark,
        }
    }

    /// The wall-clock time (Unix ms) by which the call must have ended.
    pub(crate) fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// The flight's number: later flights of a key have higher ones.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the call is past its deadline at `now`: abandoned, to be taken over.
    pub(crate) fn is_abandoned(&self, now: u64) -> bool {
        now >= self.deadline_ms
    }

    /// Records the result and wakes every waiter; the first result wins.
    pub(crate) fn complete(&self, result: FlightResult) -> bool {
        // Before the result exists: a lookup that still sees the mark ran
        // before there was a value to hand it (see `marks.rs`).
        if let Some((marks, tag)) = &self.mark {
            marks.clear(*tag);
        }
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
        self.done.load(Ordering::Acquire)
    }

    /// A future for the result; dropping it only stops this caller waiting.
    pub(crate) fn wait(self: &Arc<Self>) -> FlightWait {
        FlightWait {
            flight: self.clone(),
            token: None,
        }
    }

    /// The value, if the call has completed successfully and no later write
    /// has landed over it.
    #[inline]
    pub(crate) fn completed_value(&self) -> Option<Entry> {
        if !self.done.load(Ordering::Acquire) || self.overwritten.is_set() {
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

    /// Takes what the call claimed, if nobody has yet.
    pub(crate) fn take_claims(&self) -> Option<Claims> {
        self.claims.lock().take()
    }

    /// Runs `f` on the claims if they are still held by the flight.
    pub(crate) fn with_claims<T>(&self, f: impl FnOnce(&mut Claims) -> T) -> Option<T> {
        self.claims.lock().as_mut().map(f)
    }

    /// Starts the flight's store: `false` if a later write fenced it first.
    pub(crate) fn begin_store(&self) -> bool {
        let mut w = self.write.lock();
        match *w {
            Write::Open => {
                *w = Write::Storing;
                true
            }
            Write::Storing | Write::Fenced => false,
        }
    }

    /// Hides the flight's value: the write that fenced it has landed.
    pub(crate) fn hide(&self) {
        self.overwritten.set();
    }

    /// Resolves once the write that fenced the flight has landed.
    pub(crate) fn overwritten(&self) -> impl Future<Output = ()> + '_ {
        self.overwritten.wait()
    }

    /// Supersedes the flight: it will store nothing more and no new caller
    /// joins it (its value is still served until [`hide`](Self::hide)).
    /// Returns `true` if a store is in progress, which the caller must let
    /// settle ([`settled`](Self::settled)) before writing.
    pub(crate) fn fence(&self) -> bool {
        self.fenced.store(true, Ordering::Release);
        let mut w = self.write.lock();
        match *w {
            Write::Open | Write::Fenced => {
                *w = Write::Fenced;
                false
            }
            Write::Storing => !self.settled.is_set(),
        }
    }

    /// Whether a caller at `now` may join the flight rather than start
    /// another: it is within its deadline and either not fenced, or fenced by
    /// a write still in progress while its own store was already under way
    /// (the write lands after it; a second call would race that store) or
    /// while it holds a value (newer than what the store holds until that
    /// write lands).
    pub(crate) fn is_joinable(&self, now: u64) -> bool {
        !self.is_abandoned(now)
            && (!self.is_fenced()
                || *self.write.lock() == Write::Storing
                || self.completed_value().is_some())
    }

    /// Whether a later write or a takeover fenced the flight.
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Marks the flight's writes as over and wakes writers waiting for that.
    pub(crate) fn settle(&self) {
        self.settled.set();
    }

    /// Resolves once the flight's writes are over.
    pub(crate) fn settled(&self) -> impl Future<Output = ()> + '_ {
        self.settled.wait()
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

/// One shard's flights. A `HashTable` rather than a `HashMap`: the key's one
/// hash picks the shard and the bucket, so a probe hashes the key once.
type Shard = Mutex<HashTable<(Box<str>, Arc<Flight>)>>;

/// The flights in progress, by key.
pub(crate) struct FlightTable {
    shards: [Shard; SHARDS],
    hasher: DefaultHashBuilder,
    marks: Arc<RefreshMarks>,
    generations: AtomicU64,
    /// Fenced flights a newer one replaced in the table while they still
    /// ran: kept so that one abandoned later is still taken over.
    superseded: Mutex<Vec<(Box<str>, Arc<Flight>)>>,
}

impl FlightTable {
    /// An empty table, with marks for about `refreshes` background refreshes.
    pub(crate) fn new(refreshes: usize) -> Self {
        let hasher = DefaultHashBuilder::default();
        Self {
            shards: core::array::from_fn(|_| Mutex::new(HashTable::new())),
            marks: Arc::new(RefreshMarks::new(
                refreshes,
                hasher.hash_one(0x7377_7265_u64),
            )),
            hasher,
            generations: AtomicU64::new(1),
            superseded: Mutex::new(Vec::new()),
        }
    }
}

/// What [`FlightTable::register`] did.
pub(crate) enum Registered {
    /// A live flight was running: join it (the claims come back unused).
    Running(Arc<Flight>, Claims),
    /// A new flight holds the claims; `replaced` is the abandoned flight it
    /// took the place of, if any.
    Started {
        flight: Arc<Flight>,
        replaced: Option<Arc<Flight>>,
    },
}

impl FlightTable {
    /// The marks of the running background refreshes.
    #[inline(always)]
    pub(crate) fn marks(&self) -> &RefreshMarks {
        &self.marks
    }

    /// The key's hash and its shard.
    #[inline(always)]
    fn shard(&self, key: &str) -> (u64, &Shard) {
        let hash = self.hasher.hash_one(key);
        (hash, &self.shards[(hash >> 40) as usize % SHARDS])
    }

    /// The flight for `key`, if any (live or abandoned).
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Flight>> {
        let (hash, shard) = self.shard(key);
        shard
            .lock()
            .find(hash, |(k, _)| same_key(k, key))
            .map(|(_, f)| f.clone())
    }

    /// Whether a live flight for `key` is in the table at `now` (one a caller
    /// may join: a flight fenced by a later write, which will store nothing,
    /// does not count) and, if so,
    /// its value if it has completed with one: [`Flight::completed_value`]
    /// without taking a reference to the flight (the stale-hit path).
    #[inline(always)]
    pub(crate) fn running_value(&self, key: &str, now: u64) -> Option<Option<Entry>> {
        let (hash, shard) = self.shard(key);
        shard
            .lock()
            .find(hash, |(k, _)| same_key(k, key))
            .filter(|(_, f)| f.is_joinable(now))
            .map(|(_, f)| f.completed_value())
    }

    /// Registers a new flight for `key` holding `claims`, unless a live one
    /// is running; a flight past its deadline at `now`, or fenced by a later
    /// write, is replaced. A new flight sets `mark`, a tag of the
    /// [`RefreshMarks`], until it completes.
    // On wasm32 upstream errors need not be `Send`, so neither is `Flight`;
    // there is one thread there, and native builds require `Send + Sync`.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub(crate) fn register(
        &self,
        key: &str,
        now: u64,
        deadline_ms: u64,
        claims: Claims,
        mark: Option<u64>,
    ) -> Registered {
        let (hash, shard) = self.shard(key);
        let mut map = shard.lock();
        let hasher = |(k, _): &(Box<str>, Arc<Flight>)| self.hasher.hash_one(&**k);
        let slot = map.entry(hash, |(k, _)| same_key(k, key), hasher);
        let replaced = match &slot {
            Slot::Occupied(o) if o.get().1.is_joinable(now) => {
                return Registered::Running(o.get().1.clone(), claims)
            }
            Slot::Occupied(o) => Some(o.get().1.clone()),
            Slot::Vacant(_) => None,
        };
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let mark = mark.map(|tag| (self.marks.clone(), tag));
        let flight = Arc::new(Flight::new(generation, deadline_ms, claims, mark));
        match slot {
            Slot::Occupied(mut o) => o.get_mut().1 = flight.clone(),
            Slot::Vacant(v) => {
                v.insert((Box::from(key), flight.clone()));
            }
        }
        if let Some((_, tag)) = &flight.mark {
            self.marks.mark(*tag, deadline_ms);
        }
        drop(map);
        if let Some(old) = replaced.as_ref().filter(|f| !f.is_abandoned(now)) {
            let mut superseded = self.superseded.lock();
            superseded.retain(|(_, f)| !f.settled.is_set());
            superseded.push((Box::from(key), old.clone()));
        }
        Registered::Started { flight, replaced }
    }

    /// The flights past their deadline at `now`, with their keys (those in
    /// the table, and superseded ones that still ran).
    pub(crate) fn abandoned(&self, now: u64) -> Vec<(Box<str>, Arc<Flight>)> {
        let mut found = Vec::new();
        self.superseded.lock().retain(|(k, f)| {
            if f.settled.is_set() {
                return false;
            }
            if f.is_abandoned(now) {
                found.push((k.clone(), f.clone()));
                return false;
            }
            true
        });
        for shard in &self.shards {
            let map = shard.lock();
            found.extend(
                map.iter()
                    .filter(|(_, f)| f.is_abandoned(now))
                    .map(|(k, f)| (k.clone(), f.clone())),
            );
        }
        found
    }

    /// Every flight in the table (for `clear`, which supersedes them all).
    pub(crate) fn all(&self) -> Vec<Arc<Flight>> {
        let mut found = Vec::new();
        for shard in &self.shards {
            found.extend(shard.lock().iter().map(|(_, f)| f.clone()));
        }
        found
    }

    /// Removes `key`'s entry if it is still `flight`.
    pub(crate) fn remove(&self, key: &str, flight: &Arc<Flight>) {
        let (hash, shard) = self.shard(key);
        let mut map = shard.lock();
        if let Ok(o) = map.find_entry(hash, |(k, f)| same_key(k, key) && Arc::ptr_eq(f, flight)) {
            o.remove();
        }
    }

    /// The number of flights in the table.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
