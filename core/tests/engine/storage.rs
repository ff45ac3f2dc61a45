//! The storage conformance suite against the core storages, and Tiered's own rules.

use swre_core::storage::memory::MemoryLimits;
use swre_core::testing::{conformance, JoinHandle, TestExecutor};
use swre_core::{Bytes, CacheTtl, Cached, Entry, Error, MemoryStorage, Status, Storage, Tiered};

use crate::common::*;

#[test]
fn memory_storage_passes_the_conformance_suite() {
    let exec = TestExecutor::new();
    exec.block_on(conformance::run_all(&MemoryStorage::new()));
    let one_shard = MemoryStorage::with_limits(MemoryLimits {
        max_bytes: 8 << 20,
        max_entries: 1000,
        shards: 1,
    });
    exec.block_on(conformance::run_all(&one_shard));
}

/// The suite's engine checks (the decoded tier's coherence) on an engine
/// over `storage`.
fn engine_checks<S: Storage>(storage: S) {
    let exec = TestExecutor::new();
    let rt = swre_core::testing::TestRuntime::new(&exec, START);
    let engine = swre_core::Engine::builder(storage, rt)
        .build()
        .expect("valid configuration");
    exec.block_on(conformance::run_engine_checks(&engine));
}

#[test]
fn memory_and_tiered_pass_the_suites_engine_checks() {
    engine_checks(MemoryStorage::new());
    engine_checks(MemoryStorage::with_limits(MemoryLimits {
        max_bytes: 8 << 20,
        max_entries: 1000,
        shards: 1,
    }));
    engine_checks(Tiered::new(MemoryStorage::new(), MemoryStorage::new()));
}

#[test]
fn memory_storage_limits_hold_under_churn() {
    let exec = TestExecutor::new();
    for shards in [1, 4] {
        let limits = MemoryLimits {
            max_bytes: 40_000,
            max_entries: 30,
            shards,
        };
        let store = MemoryStorage::with_limits(limits);
        exec.block_on(conformance::limits_hold_under_churn(
            &store,
            200,
            500,
            |s: &MemoryStorage| s.len() <= limits.max_entries && s.bytes() <= limits.max_bytes,
        ));
    }
}

#[test]
fn tiered_limits_hold_under_churn() {
    let exec = TestExecutor::new();
    let small = |max_entries| {
        MemoryStorage::with_limits(MemoryLimits {
            max_bytes: 60_000,
            max_entries,
            shards: 2,
        })
    };
    let tiered = Tiered::new(small(10), small(40));
    exec.block_on(conformance::limits_hold_under_churn(
        &tiered,
        200,
        500,
        |t: &Tiered<MemoryStorage, MemoryStorage>| {
            t.l1().len() <= 10 && t.l2().len() <= 40 && t.l2().bytes() <= 60_000
        },
    ));
}

#[test]
fn tiered_passes_the_conformance_suite() {
    let exec = TestExecutor::new();
    exec.block_on(conformance::run_all(&Tiered::new(
        MemoryStorage::new(),
        MemoryStorage::new(),
    )));
}

#[test]
fn tiered_l1_hits_never_touch_l2_and_l2_hits_fill_l1() {
    let exec = TestExecutor::new();
    let tiered = Tiered::new(MemoryStorage::new(), Faulty::new(MemoryStorage::new()));
    let e = Entry::new("v", START, CacheTtl::default());
    exec.block_on(tiered.l2().inner.set("k", e.clone()))
        .unwrap();
    assert_eq!(exec.block_on(tiered.get("k")).unwrap(), Some(e.clone()));
    assert_eq!(
        tiered.l2().gets.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    for _ in 0..10 {
        assert_eq!(exec.block_on(tiered.get("k")).unwrap(), Some(e.clone()));
    }
    assert_eq!(
        tiered.l2().gets.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "L1 hits do not read L2"
    );
}

#[test]
fn tiered_reports_an_l2_write_error_but_keeps_serving_from_l1() {
    let exec = TestExecutor::new();
    let tiered = Tiered::new(MemoryStorage::new(), Faulty::new(MemoryStorage::new()));
    tiered
        .l2()
        .fail_set
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let e = Entry::new("v", START, CacheTtl::default());
    assert!(exec.block_on(tiered.set("k", e.clone())).is_err());
    assert_eq!(exec.block_on(tiered.get("k")).unwrap(), Some(e));
}

#[test]
fn with_l2_refusing_writes_the_engine_keeps_serving_what_it_fetched_from_l1() {
    // L2 (a shared store, down for writes) holds an older value: the fetched
    // value is served from L1 without a second upstream call, and L2's older
    // value is removed so it is never served in its place.
    let l2 = Faulty::new(MemoryStorage::new());
    let old = Entry::new("old", START - 100_000, ttl());
    let exec = TestExecutor::new();
    exec.block_on(l2.inner.set("k", old)).unwrap();
    let h = harness_on(Tiered::new(MemoryStorage::new(), l2), |b| b);
    h.engine
        .storage()
        .l2()
        .fail_set
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // The old entry is expired by the engine's clock, so the lookup fetches.
    let r = h
        .exec
        .block_on(h.engine.get_or_fetch("k", h.ok("new")))
        .unwrap();
    h.exec.run_until_stalled();
    assert_eq!((r.status, value(&r)), (Status::Miss, "new"));
    for _ in 0..3 {
        let r = h
            .exec
            .block_on(h.engine.get_or_fetch("k", h.ok("again")))
            .unwrap();
        assert_eq!((r.status, value(&r)), (Status::Hit, "new"));
    }
    assert_eq!(h.calls(), 1, "one upstream call while L2 refuses writes");
    assert_eq!(h.engine.stats().storage_write_errors, 1);
    assert_eq!(
        h.exec
            .block_on(h.engine.storage().l2().inner.get("k"))
            .unwrap(),
        None,
        "L2's older value was left to be served after L1 drops the key"
    );
}

#[test]
fn an_engine_over_tiered_storage_serves_hits_from_memory() {
    let h = harness_on(
        Tiered::new(MemoryStorage::new(), Faulty::new(MemoryStorage::new())),
        |b| b,
    );
    let r = h
        .exec
        .block_on(h.engine.get_or_fetch("k", h.ok("v")))
        .unwrap();
    h.exec.run_until_stalled();
    assert_eq!(r.status, Status::Miss);
    let reads = h
        .engine
        .storage()
        .l2()
        .gets
        .load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        let r = h
            .exec
            .block_on(h.engine.get_or_fetch("k", h.ok("x")))
            .unwrap();
        assert_eq!(r.status, Status::Hit);
    }
    assert_eq!(
        h.engine
            .storage()
            .l2()
            .gets
            .load(std::sync::atomic::Ordering::SeqCst),
        reads
    );
}

/// A memory store shared by handle, so a test can write to it from elsewhere.
#[derive(Clone, Default)]
struct SharedMemory(std::sync::Arc<MemoryStorage>);

impl Storage for SharedMemory {
    async fn get(&self, key: &str) -> Result<Option<Entry>, swre_core::StorageError> {
        self.0.get(key).await
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), swre_core::StorageError> {
        self.0.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), swre_core::StorageError> {
        self.0.delete(key).await
    }
}

/// An L2 whose read races a write of a newer entry into L1.
struct RacingL2 {
    old: Entry,
    l1: SharedMemory,
    newer: Entry,
}

impl Storage for RacingL2 {
    async fn get(&self, key: &str) -> Result<Option<Entry>, swre_core::StorageError> {
        self.l1.set(key, self.newer.clone()).await?;
        Ok(Some(self.old.clone()))
    }
    async fn set(&self, _: &str, _: Entry) -> Result<(), swre_core::StorageError> {
        Ok(())
    }
    async fn delete(&self, _: &str) -> Result<(), swre_core::StorageError> {
        Ok(())
    }
}

#[test]
fn tiered_never_fills_l1_over_a_newer_entry() {
    let exec = TestExecutor::new();
    let l1 = SharedMemory::default();
    let old = Entry::new("old", START, CacheTtl::default());
    let newer = Entry::new("newer", START + 1_000, CacheTtl::default());
    let tiered = Tiered::new(
        l1.clone(),
        RacingL2 {
            old,
            l1: l1.clone(),
            newer: newer.clone(),
        },
    );
    assert_eq!(exec.block_on(tiered.get("k")).unwrap(), Some(newer.clone()));
    assert_eq!(exec.block_on(l1.get("k")).unwrap(), Some(newer));
}

/// A store whose refresh lease "another process" holds until `held` is
/// cleared.
struct LeaseHeldElsewhere {
    inner: MemoryStorage,
    held: std::sync::atomic::AtomicBool,
}

impl LeaseHeldElsewhere {
    fn new() -> Self {
        Self {
            inner: MemoryStorage::new(),
            held: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl Storage for LeaseHeldElsewhere {
    async fn get(&self, key: &str) -> Result<Option<Entry>, swre_core::StorageError> {
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), swre_core::StorageError> {
        self.inner.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), swre_core::StorageError> {
        self.inner.delete(key).await
    }
    async fn try_lease(
        &self,
        _: &str,
        _: core::time::Duration,
    ) -> Result<Option<swre_core::LeaseToken>, swre_core::StorageError> {
        let held = self.held.load(std::sync::atomic::Ordering::SeqCst);
        Ok((!held).then_some(swre_core::LeaseToken(7)))
    }
}

/// An engine whose store reports the lease held elsewhere, and a lookup of
/// the cold key `"k"` (whose own fetch would return "mine") spawned on it.
fn miss_while_the_lease_is_held(
    refresh_timeout: core::time::Duration,
) -> (
    H<LeaseHeldElsewhere>,
    JoinHandle<Result<Cached<Bytes>, Error>>,
) {
    let h = harness_on(LeaseHeldElsewhere::new(), |b| {
        b.refresh_timeout(refresh_timeout)
    });
    let engine = h.engine.clone();
    let f = h.ok("mine");
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    (h, waiter)
}

#[test]
fn a_miss_waits_for_the_lease_holders_value_instead_of_calling_upstream() {
    let (h, waiter) = miss_while_the_lease_is_held(10 * SEC);
    h.exec.run_until_stalled();
    h.rt.timer.advance(core::time::Duration::from_millis(100));
    h.exec.run_until_stalled();
    assert!(!waiter.is_finished(), "still waiting for the other process");
    // The other process stores its value.
    let theirs = Entry::new("theirs", START, ttl());
    h.exec
        .block_on(h.engine.storage().inner.set("k", theirs))
        .unwrap();
    h.rt.timer.advance(SEC);
    h.exec.run_until_stalled();
    let r = waiter.try_take().expect("answered").unwrap();
    assert_eq!((value(&r), r.status, h.calls()), ("theirs", Status::Hit, 0));
    assert_eq!(h.engine.stats().lease_waits, 1);
}

#[test]
fn without_the_holders_value_a_miss_times_out_at_its_one_deadline() {
    // "One deadline per call": waiting on another process's lease is part of
    // the call, so it ends at `refresh_timeout` — no second full timeout for
    // a fetch of our own after it.
    let (h, waiter) = miss_while_the_lease_is_held(2 * SEC);
    h.exec.run_until_stalled();
    for _ in 0..19 {
        h.rt.advance(core::time::Duration::from_millis(100));
        h.exec.run_until_stalled();
    }
    assert!(!waiter.is_finished(), "still within the deadline at 1.9 s");
    h.rt.advance(core::time::Duration::from_millis(100));
    h.exec.run_until_stalled();
    let r = waiter.try_take().expect("answered at the deadline");
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert_eq!(h.calls(), 0, "the lease holder fetches, not us");
    let s = h.engine.stats();
    assert_eq!((s.in_flight, s.tasks_running), (0, 0));
}

#[test]
fn a_holder_that_ends_without_a_value_hands_the_lease_to_a_waiting_miss() {
    // The holder failed, or what it stored was removed straight from the
    // store (found by the conformance suite on Redis): the waiter takes the
    // lease as soon as it is free and fetches, rather than waiting out its
    // deadline for a value that will never come.
    let h = harness_on(LeaseHeldElsewhere::new(), |b| b.refresh_timeout(10 * SEC));
    let engine = h.engine.clone();
    let f = h.ok("mine");
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    for _ in 0..5 {
        h.rt.advance(core::time::Duration::from_millis(100));
        h.exec.run_until_stalled();
    }
    assert!(!waiter.is_finished(), "waiting while the lease is held");
    assert_eq!(h.calls(), 0);
    h.engine
        .storage()
        .held
        .store(false, std::sync::atomic::Ordering::SeqCst);
    h.rt.advance(SEC);
    h.exec.run_until_stalled();
    let r = waiter
        .try_take()
        .expect("answered once the lease was free")
        .unwrap();
    assert_eq!((value(&r), r.status, h.calls()), ("mine", Status::Miss, 1));
    assert_eq!(h.engine.stats().lease_waits, 1);
}

#[test]
fn a_lease_wait_is_told_to_metrics_once_per_call() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    #[derive(Default)]
    struct Waits(AtomicUsize);
    impl swre_core::Metrics for Waits {
        fn lease_wait(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let waits = std::sync::Arc::new(Waits::default());
    let h = harness_on(LeaseHeldElsewhere::new(), |b| {
        b.refresh_timeout(10 * SEC).metrics(waits.clone())
    });
    let engine = h.engine.clone();
    let f = h.ok("mine");
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    // Several polls of the store while the lease is held: one wait.
    for _ in 0..5 {
        h.rt.advance(core::time::Duration::from_millis(100));
        h.exec.run_until_stalled();
    }
    assert_eq!(waits.0.load(Ordering::SeqCst), 1);
    h.engine.storage().held.store(false, Ordering::SeqCst);
    h.rt.advance(SEC);
    h.exec.run_until_stalled();
    assert!(waiter.try_take().expect("answered").is_ok());
    assert_eq!(
        (waits.0.load(Ordering::SeqCst), h.engine.stats().lease_waits),
        (1, 1)
    );
}

/// A store whose lease holder stores its value and lets the lease go just
/// before the waiter's second request for it (the gap between its read and
/// its lease request).
struct StoredThenFreed {
    inner: MemoryStorage,
    asks: std::sync::atomic::AtomicUsize,
    released: std::sync::atomic::AtomicUsize,
}

impl Storage for StoredThenFreed {
    async fn get(&self, key: &str) -> Result<Option<Entry>, swre_core::StorageError> {
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), swre_core::StorageError> {
        self.inner.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), swre_core::StorageError> {
        self.inner.delete(key).await
    }
    async fn try_lease(
        &self,
        key: &str,
        _: core::time::Duration,
    ) -> Result<Option<swre_core::LeaseToken>, swre_core::StorageError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.asks.fetch_add(1, SeqCst) < 2 {
            return Ok(None);
        }
        let theirs = Entry::new("theirs", START + 100, ttl());
        self.inner.set(key, theirs).await?;
        Ok(Some(swre_core::LeaseToken(9)))
    }
    async fn release_lease(&self, _: &str, token: swre_core::LeaseToken) {
        assert_eq!(token, swre_core::LeaseToken(9));
        self.released
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_lease_granted_just_after_the_holder_stored_gives_the_holders_value() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let store = StoredThenFreed {
        inner: MemoryStorage::new(),
        asks: AtomicUsize::new(0),
        released: AtomicUsize::new(0),
    };
    let h = harness_on(store, |b| b.refresh_timeout(10 * SEC));
    let engine = h.engine.clone();
    let f = h.ok("mine");
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    for _ in 0..20 {
        h.rt.advance(core::time::Duration::from_millis(100));
        h.exec.run_until_stalled();
    }
    let r = waiter.try_take().expect("answered").unwrap();
    assert_eq!(
        (value(&r), h.calls()),
        ("theirs", 0),
        "no second upstream call"
    );
    assert_eq!(
        h.engine.storage().released.load(SeqCst),
        1,
        "the lease given back"
    );
}

/// A store whose lease is granted on the third request, after which every
/// read hangs: the waiter's re-read after the grant never ends.
struct GrantedThenStuck {
    inner: MemoryStorage,
    asks: std::sync::atomic::AtomicUsize,
    released: std::sync::atomic::AtomicUsize,
}

impl Storage for GrantedThenStuck {
    async fn get(&self, key: &str) -> Result<Option<Entry>, swre_core::StorageError> {
        if self.asks.load(std::sync::atomic::Ordering::SeqCst) > 2 {
            core::future::pending::<()>().await;
        }
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), swre_core::StorageError> {
        self.inner.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), swre_core::StorageError> {
        self.inner.delete(key).await
    }
    async fn try_lease(
        &self,
        _: &str,
        _: core::time::Duration,
    ) -> Result<Option<swre_core::LeaseToken>, swre_core::StorageError> {
        let asked = self.asks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok((asked >= 2).then_some(swre_core::LeaseToken(11)))
    }
    async fn release_lease(&self, _: &str, token: swre_core::LeaseToken) {
        assert_eq!(token, swre_core::LeaseToken(11));
        self.released
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_lease_granted_to_a_waiter_whose_call_then_ends_is_given_back() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let store = GrantedThenStuck {
        inner: MemoryStorage::new(),
        asks: AtomicUsize::new(0),
        released: AtomicUsize::new(0),
    };
    let h = harness_on(store, |b| b.refresh_timeout(SEC));
    let engine = h.engine.clone();
    let f = h.ok("mine");
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    for _ in 0..30 {
        h.rt.advance(core::time::Duration::from_millis(100));
        h.exec.run_until_stalled();
    }
    assert!(
        h.engine.storage().asks.load(SeqCst) > 2,
        "the lease was granted"
    );
    assert!(
        waiter.try_take().expect("answered").is_err(),
        "the call timed out"
    );
    assert_eq!(h.calls(), 0);
    assert_eq!(
        h.engine.storage().released.load(SeqCst),
        1,
        "the lease given back when the call ended, not left for its TTL"
    );
}

#[test]
fn a_stale_lookup_does_not_refresh_while_another_process_holds_the_lease() {
    let h = harness_on(LeaseHeldElsewhere::new(), |b| b.refresh_timeout(SEC));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.rt.advance(10 * SEC);
    let r = h
        .exec
        .block_on(h.engine.get_or_fetch("k", h.ok("new")))
        .unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Stale));
    for _ in 0..20 {
        h.rt.timer.advance(core::time::Duration::from_millis(100));
        h.exec.run_until_stalled();
    }
    assert_eq!(h.calls(), 0, "the lease holder refreshes, not us");
    let s = h.engine.stats();
    assert_eq!((s.lease_waits, s.in_flight, s.refreshes_running), (1, 0, 0));
}

/// An L2 whose first read takes its value at once, then waits for `open`.
struct Gated {
    inner: MemoryStorage,
    gate: std::sync::Mutex<Option<futures::channel::oneshot::Receiver<()>>>,
}

impl Gated {
    fn new() -> (Self, futures::channel::oneshot::Sender<()>) {
        let (open, gate) = futures::channel::oneshot::channel();
        (
            Self {
                inner: MemoryStorage::new(),
                gate: std::sync::Mutex::new(Some(gate)),
            },
            open,
        )
    }
}

impl Storage for Gated {
    async fn get(&self, key: &str) -> Result<Option<Entry>, swre_core::StorageError> {
        let found = self.inner.get(key).await?;
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        Ok(found)
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), swre_core::StorageError> {
        self.inner.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), swre_core::StorageError> {
        self.inner.delete(key).await
    }
}

/// Starts a `get("k")` that reads `old` from L2 and parks there; `race`
/// then runs to completion; the read finishes; returns what it returned
/// and what a read afterwards sees.
fn tiered_read_raced_by(
    race: impl FnOnce(&TestExecutor, &Tiered<MemoryStorage, Gated>),
) -> (Option<Entry>, Option<Entry>) {
    let exec = TestExecutor::new();
    let (l2, open) = Gated::new();
    let tiered = std::sync::Arc::new(Tiered::new(MemoryStorage::new(), l2));
    let old = Entry::new("old", START, CacheTtl::default());
    exec.block_on(tiered.l2().inner.set("k", old)).unwrap();
    let t = tiered.clone();
    let read: JoinHandle<Option<Entry>> = exec.spawn(async move { t.get("k").await.unwrap() });
    exec.run_until_stalled();
    assert!(!read.is_finished(), "the read did not wait at the gate");
    race(&exec, &tiered);
    open.send(()).unwrap();
    exec.run_until_stalled();
    let raced = read.try_take().expect("the read finished");
    let after = exec.block_on(tiered.get("k")).unwrap();
    (raced, after)
}

#[test]
fn tiered_fill_never_undoes_a_delete_that_raced_its_l2_read() {
    let (raced, after) = tiered_read_raced_by(|exec, t| exec.block_on(t.delete("k")).unwrap());
    assert_eq!(
        raced.map(|e| e.value),
        Some(Bytes::from("old")),
        "the read is older than the delete"
    );
    assert_eq!(
        after, None,
        "the read's fill brought the deleted value back"
    );
}

#[test]
fn tiered_fill_never_replaces_a_write_that_raced_its_l2_read() {
    // The newer write is stamped no later than the old one (a clock step
    // back, or another process's clock): only the race decides.
    let newer = Entry::new("new", START - 1_000, CacheTtl::default());
    let (_, after) =
        tiered_read_raced_by(|exec, t| exec.block_on(t.set("k", newer.clone())).unwrap());
    assert_eq!(after.map(|e| e.value), Some(Bytes::from("new")));
}

#[test]
fn tiered_fills_racing_writes_on_two_threads_never_leave_an_older_value_in_l1() {
    use std::sync::{Arc, Barrier};
    let tiered = Arc::new(Tiered::new(MemoryStorage::new(), MemoryStorage::new()));
    let exec = TestExecutor::new();
    for round in 0..20_000u64 {
        let key = format!("k{}", round % 64);
        let old = Entry::new(format!("old{round}"), START + round, CacheTtl::default());
        let new = Entry::new(format!("new{round}"), START + round, CacheTtl::default());
        exec.block_on(tiered.l1().delete(&key)).unwrap();
        exec.block_on(tiered.l2().set(&key, old)).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let (t, b, k) = (tiered.clone(), barrier.clone(), key.clone());
        let reader = std::thread::spawn(move || {
            b.wait();
            futures::executor::block_on(t.get(&k)).unwrap();
        });
        barrier.wait();
        exec.block_on(tiered.set(&key, new.clone())).unwrap();
        reader.join().unwrap();
        let l1 = exec.block_on(tiered.l1().get(&key)).unwrap();
        assert!(
            l1.is_none() || l1 == Some(new.clone()),
            "round {round}: L1 holds {l1:?} after the write of {new:?}"
        );
    }
}

#[test]
fn a_store_that_cannot_clear_says_so() {
    let (store, _open) = Gated::new();
    let exec = TestExecutor::new();
    exec.block_on(store.set("k", Entry::new("v", START, CacheTtl::default())))
        .unwrap();
    let e = exec.block_on(store.clear()).unwrap_err();
    assert_eq!(e.kind(), swre_core::StorageErrorKind::Other);
    assert!(e.to_string().contains("cannot clear"), "{e}");
}

#[test]
fn a_fleet_over_tiered_storage_refreshes_once_not_once_per_instance() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let exec = TestExecutor::new();
    let rt = swre_core::testing::TestRuntime::new(&exec, START);
    // One store shared by two engines, as a Redis behind each instance's memory.
    let l2 = SharedMemory::default();
    let engine = |l2: SharedMemory| {
        swre_core::Engine::builder(Tiered::new(MemoryStorage::new(), l2), rt.clone())
            .ttl(ttl())
            .build()
            .unwrap()
    };
    let (a, b) = (engine(l2.clone()), engine(l2));
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let fetch = |v: &'static str| {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, Boom>(v))
        }
    };
    // Both instances hold v1 in memory.
    exec.block_on(a.get_or_fetch("k", fetch("v1"))).unwrap();
    let r = exec.block_on(b.get_or_fetch("k", fetch("v1"))).unwrap();
    assert_eq!(r.status, Status::Hit);
    // Stale everywhere: A refreshes and stores v2 in the shared store.
    rt.advance(ttl().fresh + std::time::Duration::from_millis(1));
    let r = exec.block_on(a.get_or_fetch("k", fetch("v2"))).unwrap();
    assert_eq!(r.status, Status::Stale);
    exec.run_until_stalled();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // B still holds v1 (stale) in memory; its refresh must find v2 first.
    let r = exec.block_on(b.get_or_fetch("k", fetch("v3"))).unwrap();
    assert_eq!(r.status, Status::Stale);
    exec.run_until_stalled();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "B called upstream although the fleet had just refreshed"
    );
    let r = exec.block_on(b.get_or_fetch("k", fetch("v3"))).unwrap();
    assert_eq!((r.status, &r.value[..]), (Status::Hit, &b"v2"[..]));
}

#[test]
fn a_value_too_large_for_l1_does_not_leave_l1_serving_the_older_one() {
    let l1 = MemoryStorage::with_limits(MemoryLimits {
        max_bytes: 4_096,
        max_entries: 100,
        shards: 1,
    });
    let h = harness_on(Tiered::new(l1, MemoryStorage::new()), |b| b);
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    let big = "n".repeat(10_000);
    h.exec.block_on(h.engine.set("k", big.clone())).unwrap();
    let r = h
        .exec
        .block_on(h.engine.get_or_fetch("k", h.ok("upstream")))
        .unwrap();
    assert_eq!(
        (r.status, value(&r).len()),
        (Status::Hit, big.len()),
        "served {:?} after a successful set of a newer value",
        value(&r)
    );
}
