//! Tags under races: tag operations against record creation, refreshes,
//! "not modified", other engines and refused clears (found by a review;
//! each failed before its fix), on a store whose operations can be held.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;
use swre_core::tags::record::{Kind, RecordKey};
use swre_core::testing::{TestExecutor, TestRuntime};
use swre_core::{
    CacheTtl, CallOptions, Engine, Entry, Fetched, MemoryStorage, Status, Storage, StorageError,
};

use crate::common::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Get,
    Set,
}

/// Memory behind an awaited interface: an operation on a gated (key, op)
/// waits for its gate (once); with `yield_all`, every operation yields once
/// before it runs (as any store that must be awaited does).
pub struct Gated {
    pub inner: MemoryStorage,
    pub yield_all: AtomicBool,
    gates: Mutex<Vec<(String, Op, oneshot::Receiver<()>)>>,
}

impl Gated {
    pub fn new() -> Self {
        Self {
            inner: MemoryStorage::new(),
            yield_all: AtomicBool::new(false),
            gates: Mutex::new(Vec::new()),
        }
    }

    pub fn gate(&self, key: &str, op: Op) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        self.gates.lock().unwrap().push((key.to_owned(), op, rx));
        tx
    }

    async fn pass(&self, key: &str, op: Op) {
        let rx = {
            let mut g = self.gates.lock().unwrap();
            g.iter()
                .position(|(k, o, _)| k == key && *o == op)
                .map(|i| g.remove(i).2)
        };
        if let Some(rx) = rx {
            let _ = rx.await;
        }
        if self.yield_all.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
    }
}

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl Storage for Gated {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.pass(key, Op::Get).await;
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.pass(key, Op::Set).await;
        self.inner.set(key, entry).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.inner.clear().await
    }
}

fn record_key(kind: Kind, tag: &str) -> String {
    RecordKey::new(kind, tag).unwrap().as_str().to_owned()
}

fn tagged(tags: &[&str]) -> CallOptions {
    CallOptions::new().tags(tags.iter().copied())
}

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// `stamp_tags` renews a record that would expire before the entry by
/// writing back the epoch it read (tag_epochs.rs, the `(Some(r), _)` arm).
/// An `invalidate_tag` landing between that read and that write is undone:
/// the old epoch is back, and every entry stamped with it is valid again.
/// A tagged write whose store lands after an `invalidate_tag` carries the
/// epoch from before it, and reads as invalidated.
#[test]
fn a_tagged_write_landing_after_invalidate_tag_reads_as_invalidated() {
    let h = harness_on(Gated::new(), |b| b);
    h.exec
        .block_on(h.engine.with(tagged(&["t"])).set("seed", "s"))
        .unwrap();
    let gate = h.engine.storage().gate("k", Op::Set);
    let engine = h.engine.clone();
    let writing = h
        .exec
        .spawn(async move { engine.with(tagged(&["t"])).set("k", "v").await });
    h.exec.run_until_stalled();
    assert!(!writing.is_finished(), "held in the store");
    h.exec.block_on(h.engine.invalidate_tag("t")).unwrap();
    gate.send(()).unwrap();
    h.exec.run_until_stalled();
    assert!(writing.try_take().expect("landed").is_ok());
    assert!(h.stored("k").is_some(), "in the store");
    assert_eq!(h.exec.block_on(h.engine.peek("k")).unwrap(), None);
}

/// Records are never renewed (they live a century), so no write of a
/// record's old epoch can race an operation: a write long after the records
/// were made, outliving them by far, leaves them alone.
#[test]
fn writing_long_after_a_tag_s_records_were_made_never_rewrites_them() {
    let h = harness_on(Gated::new(), |b| b);
    h.exec
        .block_on(h.engine.with(tagged(&["t"])).set("a", "old"))
        .unwrap();
    let before = h.stored(&record_key(Kind::Hard, "t")).expect("record");
    h.advance(YEAR - 100 * SEC);
    let long = CacheTtl::new(300 * SEC, 3_000 * SEC, Duration::ZERO);
    h.exec
        .block_on(h.engine.with(tagged(&["t"]).ttl(long)).set("b", "b"))
        .unwrap();
    assert_eq!(h.stored(&record_key(Kind::Hard, "t")), Some(before));
    h.exec.block_on(h.engine.invalidate_tag("t")).unwrap();
    assert_eq!(h.exec.block_on(h.engine.peek("b")).unwrap(), None);
}

/// Records are created by a blind write of a new random epoch when missing
/// (`stamp_tags`, the `(None, _)` arm). Two stampings of one new tag that
/// overlap — every key of a batch, stamped concurrently by `settle`, on any
/// store that must be awaited — each create one; the last write wins and
/// the other keys' entries read as invalidated at once.
#[test]
fn a_batch_with_a_new_tag_on_an_awaited_store_keeps_every_key_valid() {
    let h = harness_on(Gated::new(), |b| b);
    h.engine.storage().yield_all.store(true, Ordering::SeqCst);
    let engine = h.engine.clone();
    let got = h.exec.spawn(async move {
        engine
            .with(tagged(&["new-tag"]))
            .get_many_or_fetch(["x", "y"], |keys| async move {
                Ok::<_, Boom>(keys.into_iter().map(|k| (k, "v")).collect::<Vec<_>>())
            })
            .await
    });
    h.exec.run_until_stalled();
    let got = got.try_take().expect("settled");
    assert!(got.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(h.engine.stats().tag_fenced, 0);
    h.engine.storage().yield_all.store(false, Ordering::SeqCst);
    for k in ["x", "y"] {
        assert!(h
            .engine
            .storage()
            .inner
            .get_ready(k)
            .unwrap()
            .unwrap()
            .is_some());
        let p = h.exec.block_on(h.engine.peek(k)).unwrap();
        assert_eq!(
            p.map(|c| c.status),
            Some(Status::Hit),
            "{k}: just stored by the batch, but its stamp's epoch was overwritten by another key's"
        );
    }
}

/// The same race between two single calls of the same new tag.
#[test]
fn two_calls_with_a_new_tag_on_an_awaited_store_both_stay_valid() {
    let h = harness_on(Gated::new(), |b| b);
    h.engine.storage().yield_all.store(true, Ordering::SeqCst);
    let (e1, e2) = (h.engine.clone(), h.engine.clone());
    let a = h
        .exec
        .spawn(async move { e1.with(tagged(&["new-tag"])).set("x", "vx").await });
    let b = h
        .exec
        .spawn(async move { e2.with(tagged(&["new-tag"])).set("y", "vy").await });
    h.exec.run_until_stalled();
    a.try_take().expect("settled").unwrap();
    b.try_take().expect("settled").unwrap();
    h.engine.storage().yield_all.store(false, Ordering::SeqCst);
    for k in ["x", "y"] {
        let p = h.exec.block_on(h.engine.peek(k)).unwrap();
        assert_eq!(p.map(|c| c.status), Some(Status::Hit), "{k}");
    }
}

/// A stale hit starts a refresh with what it read as `seen`; the refresh's
/// `FetchStart` is taken only after its re-read, and its re-read's verdict
/// (invalidated) is not applied to `seen`. An `invalidate_tag` between the
/// lookup and the task's start is thus missed: the fetch is told the
/// invalidated value (`ctx.stale`), and a "not modified" answer stores it
/// again, fresh, stamped with the new epochs.
#[test]
fn invalidate_tag_before_a_refresh_task_runs_is_not_undone_by_not_modified() {
    let h = harness();
    h.exec
        .block_on(h.engine.with(tagged(&["t"])).set("k", "old"))
        .unwrap();
    h.advance(15 * SEC);
    let told_stale = Arc::new(AtomicBool::new(false));
    let told = told_stale.clone();
    let fut = h.engine.get_or_fetch_with("k", move |ctx| async move {
        told.store(ctx.stale.is_some(), Ordering::SeqCst);
        Ok::<_, Boom>(Fetched::<&str>::not_modified())
    });
    let r = h.exec.block_on(fut).unwrap();
    assert_eq!(r.status, Status::Stale);
    // The refresh task is spawned and not yet polled.
    h.exec.block_on(h.engine.invalidate_tag("t")).unwrap();
    h.exec.run_until_stalled();
    let p = h.exec.block_on(h.engine.peek("k")).unwrap();
    assert_eq!(
        p.map(|c| (String::from_utf8(c.value.to_vec()).unwrap(), c.status)),
        None,
        "the invalidated value is back as a fresh hit (fetch told stale: {})",
        told_stale.load(Ordering::SeqCst)
    );
}

/// Same, for a plain fetch: the FetchContext hands the fetch an invalidated
/// value as `stale` (an invalidated entry is "gone with its tags").
#[test]
fn a_fetch_started_after_invalidate_tag_is_not_told_the_invalidated_value() {
    let h = harness();
    h.exec
        .block_on(h.engine.with(tagged(&["t"])).set("k", "old"))
        .unwrap();
    h.advance(15 * SEC);
    let told_stale = Arc::new(Mutex::new(None));
    let told = told_stale.clone();
    let fut = h.engine.get_or_fetch_with("k", move |ctx| async move {
        *told.lock().unwrap() = Some(ctx.stale.is_some());
        Ok::<_, Boom>(Fetched::value("new"))
    });
    h.exec.block_on(fut).unwrap();
    h.exec.block_on(h.engine.invalidate_tag("t")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(*told_stale.lock().unwrap(), Some(false));
}

/// `tag_entry` stores when `changed <= started.at`: another engine's
/// invalidation in the same millisecond as (and after) the fetch's start
/// is not seen, and the value fetched before it is stored as valid.
#[test]
fn another_engine_s_invalidation_in_the_fetch_s_millisecond_is_not_undone() {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, START);
    let store = Arc::new(MemoryStorage::new());
    let engine = || {
        Engine::builder(store.clone(), rt.clone())
            .ttl(ttl())
            .build()
            .unwrap()
    };
    let (a, b) = (engine(), engine());
    exec.block_on(a.with(tagged(&["t"])).set("k", "v1"))
        .unwrap();
    rt.advance(15 * SEC);
    let (tx, rx) = oneshot::channel::<&'static str>();
    let fetch = move || async move { Ok::<_, Boom>(rx.await.unwrap_or("gate dropped")) };
    assert_eq!(
        exec.block_on(a.get_or_fetch("k", fetch)).unwrap().status,
        Status::Stale
    );
    exec.run_until_stalled();
    // The fetch has begun; b invalidates within the same millisecond.
    exec.block_on(b.invalidate_tag("t")).unwrap();
    tx.send("fetched before b's invalidation").unwrap();
    exec.run_until_stalled();
    assert_eq!(a.stats().tag_fenced, 1);
    assert_eq!(exec.block_on(a.peek("k")).unwrap(), None);
}

/// `expire_tag` keeps entries "as a fallback", but a refresh running across
/// it is tag-fenced and its `store(.., write = false, ..)` removes the older
/// entry: the expired value is gone, and a failing upstream has nothing to
/// fall back on (`expire(key)` in the same situation keeps it).
#[test]
fn expire_tag_during_a_refresh_keeps_the_entry_as_a_fallback() {
    let h = harness_with(|b| b.fail_safe_throttle(None));
    h.exec
        .block_on(h.engine.with(tagged(&["t"])).set("k", "old"))
        .unwrap();
    h.advance(15 * SEC);
    let (tx, fetch) = h.gated();
    assert_eq!(
        h.exec
            .block_on(h.engine.get_or_fetch("k", fetch))
            .unwrap()
            .status,
        Status::Stale
    );
    h.exec.run_until_stalled();
    h.exec.block_on(h.engine.expire_tag("t")).unwrap();
    tx.send(Ok("fetched before the expiry")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(h.engine.stats().tag_fenced, 1);
    let p = h.exec.block_on(h.engine.peek("k")).unwrap();
    assert!(
        p.is_some(),
        "expire_tag's entry, kept as a fallback, was deleted by the fenced refresh"
    );
    let r = h.get_err("k");
    assert!(r.is_ok(), "no fallback: {r:?}");
}

/// Compare: `expire(key)` in the same situation (passes).
#[test]
fn expire_key_during_a_refresh_keeps_the_entry_as_a_fallback() {
    let h = harness_with(|b| b.fail_safe_throttle(None));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(15 * SEC);
    let (tx, fetch) = h.gated();
    h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
    h.exec.run_until_stalled();
    h.exec.block_on(h.engine.expire("k")).unwrap();
    tx.send(Ok("fetched before the expiry")).unwrap();
    h.exec.run_until_stalled();
    assert!(h.exec.block_on(h.engine.peek("k")).unwrap().is_some());
}

/// A store that cannot clear says so, and remembered errors stay.
#[test]
fn a_clear_the_store_refuses_changes_nothing() {
    let h = harness_on(Faulty::new(MemoryStorage::new()), |b| {
        b.negative_ttl(60 * SEC)
    });
    assert!(h.get_err("failing").is_err());
    let calls = h.calls();
    assert!(h.exec.block_on(h.engine.clear()).is_err());
    let r = h.get("failing", "now fine");
    assert!(r.is_err(), "the remembered error was forgotten: {r:?}");
    assert_eq!(h.calls(), calls);
}

/// A call running across a refused clear hands its value out but does not
/// store it (it may have fetched what the clear was meant to drop).
#[test]
fn a_call_running_across_a_refused_clear_hands_its_value_out_unstored() {
    let h = harness_on(Faulty::new(MemoryStorage::new()), |b| b);
    let (tx, fetch) = h.gated();
    let engine = h.engine.clone();
    let waiting = h
        .exec
        .spawn(async move { engine.get_or_fetch("c", fetch).await });
    h.exec.run_until_stalled();
    assert!(h.exec.block_on(h.engine.clear()).is_err());
    tx.send(Ok("v")).unwrap();
    h.exec.run_until_stalled();
    assert!(waiting.try_take().unwrap().is_ok());
    assert_eq!(h.stored("c"), None);
}
