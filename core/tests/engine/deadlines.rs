//! "One deadline per call" and "shutdown is final": every step of an upstream
//! call (re-read, lease, waiting on another process, fetch, store) is bounded
//! by one deadline; an abandoned call is taken over; after shutdown's grace
//! period no fetch starts; what a call holds is always given back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swre_core::{Error, Status, Timer};

use crate::common::*;
use crate::fixtures::{scripted, stuck_engine};

const MS: Duration = Duration::from_millis(1);

/// Advances both clocks in `step`s, `n` times, running tasks after each.
fn tick<S: swre_core::Storage>(h: &H<S>, step: Duration, n: u32) {
    for _ in 0..n {
        h.rt.advance(step);
        h.exec.run_until_stalled();
    }
}

#[test]
fn no_fetch_starts_after_shutdown_aborts_a_call_still_re_reading_storage() {
    let h = scripted(|b| b.shutdown_timeout(SEC));
    // The lookup's own read answers at once; the call's re-read takes 10 s.
    h.engine.storage().get_delays.push(&[0, 10_000]);
    let engine = h.engine.clone();
    let f = h.ok("v");
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    h.exec.run_until_stalled();
    let engine = h.engine.clone();
    let shutdown = h.exec.spawn(async move { engine.shutdown().await });
    tick(&h, 100 * MS, 25);
    assert!(
        shutdown.is_finished(),
        "shutdown ends once the call stopped"
    );
    assert_eq!(h.calls(), 0, "a fetch started after the grace period");
    assert!(matches!(waiter.try_take(), Some(Err(Error::Shutdown))));
    let s = h.engine.stats();
    assert_eq!((s.in_flight, s.tasks_running, s.upstream_calls), (0, 0, 0));
}

#[test]
fn no_fetch_starts_after_shutdown_aborts_a_call_still_taking_its_lease() {
    let h = scripted(|b| b.shutdown_timeout(SEC));
    h.engine.storage().lease_delays.push(&[10_000]);
    let engine = h.engine.clone();
    let f = h.ok("v");
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    h.exec.run_until_stalled();
    let engine = h.engine.clone();
    let _shutdown = h.exec.spawn(async move { engine.shutdown().await });
    tick(&h, 100 * MS, 25);
    assert_eq!(h.calls(), 0, "a fetch started after the grace period");
    assert!(matches!(waiter.try_take(), Some(Err(Error::Shutdown))));
    assert!(h.stored("k").is_none());
}

#[test]
fn one_deadline_bounds_re_read_lease_and_fetch_together() {
    // Each step alone fits in the 1 s timeout; together they do not. The
    // expired entry's waiter falls back at 1 s, not after the sum.
    let h = scripted(|b| b.refresh_timeout(SEC));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.rt.advance(35 * SEC); // expired
    let s = h.engine.storage();
    s.get_delays.push(&[0, 600]);
    s.lease_delays.push(&[600]);
    let engine = h.engine.clone();
    let f = h.ok("new");
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    h.exec.run_until_stalled();
    tick(&h, 100 * MS, 9);
    assert!(!waiter.is_finished(), "answered before the deadline");
    tick(&h, 100 * MS, 1);
    let r = waiter
        .try_take()
        .expect("answered at the deadline")
        .unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Fallback));
    assert_eq!(h.calls(), 0, "the deadline passed during the lease");
    assert_eq!(h.engine.stats().in_flight, 0);
}

#[test]
fn a_slow_fetch_after_slow_steps_is_cut_at_the_same_deadline() {
    let h = scripted(|b| b.refresh_timeout(SEC));
    h.engine.storage().get_delays.push(&[0, 500]);
    let timer = h.rt.timer.clone();
    let calls = h.calls.clone();
    let fetch = move || {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            timer.sleep(Duration::from_millis(800)).await;
            Ok::<_, Boom>("late")
        }
    };
    let engine = h.engine.clone();
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", fetch).await });
    h.exec.run_until_stalled();
    tick(&h, 100 * MS, 10);
    assert_eq!(h.calls(), 1);
    assert!(matches!(
        waiter.try_take(),
        Some(Err(Error::Timeout { .. }))
    ));
    assert_eq!(h.engine.stats().upstream_timeouts, 1);
}

#[test]
fn a_refresh_whose_task_is_never_polled_is_taken_over_after_its_deadline() {
    let (exec, rt, stuck, engine) = stuck_engine(|b| b);
    exec.block_on(engine.set("k", "old")).unwrap();
    rt.advance(15 * SEC); // stale
    stuck.hold.store(true, Ordering::SeqCst);
    let r = exec
        .block_on(engine.get_or_fetch("k", || async { Ok::<_, Boom>("never runs") }))
        .unwrap();
    assert_eq!(r.status, Status::Stale);
    assert_eq!(
        stuck.held.lock().unwrap().len(),
        1,
        "the refresh was kept, not run"
    );
    let s = engine.stats();
    assert_eq!((s.in_flight, s.refreshes_running), (1, 1));
    stuck.hold.store(false, Ordering::SeqCst);
    // Within the deadline the refresh counts as running: no second one.
    rt.advance(SEC);
    let r = exec
        .block_on(engine.get_or_fetch("k", || async { Ok::<_, Boom>("second") }))
        .unwrap();
    assert_eq!((&*r.value, r.status), (&b"old"[..], Status::Stale));
    assert_eq!(engine.stats().refreshes_started, 1);
    // Past its deadline it is abandoned: the next lookup takes over.
    rt.advance(20 * SEC); // expired now
    let r = exec
        .block_on(engine.get_or_fetch("k", || async { Ok::<_, Boom>("fresh") }))
        .unwrap();
    assert_eq!((&*r.value, r.status), (&b"fresh"[..], Status::Miss));
    exec.run_until_stalled();
    let s = engine.stats();
    assert_eq!(
        (
            s.in_flight,
            s.refreshes_running,
            s.tasks_running,
            s.flights_taken_over
        ),
        (0, 0, 0, 1)
    );
    // If the abandoned task ever runs, it is fenced: it stores nothing.
    let held: Vec<_> = std::mem::take(&mut *stuck.held.lock().unwrap());
    for task in held {
        exec.spawn(task);
    }
    exec.run_until_stalled();
    let stored = exec.block_on(swre_core::Storage::get(engine.storage(), "k"));
    assert_eq!(stored.unwrap().unwrap().value.as_slice(), b"fresh");
    assert_eq!(engine.stats().tasks_running, 0);
}

#[test]
fn an_expired_lookup_on_a_never_polled_call_settles_by_the_deadline() {
    let (exec, rt, stuck, engine) = stuck_engine(|b| b);
    exec.block_on(engine.set("k", "old")).unwrap();
    rt.advance(35 * SEC); // expired
    stuck.hold.store(true, Ordering::SeqCst);
    let e = engine.clone();
    let waiter = exec.spawn(async move {
        e.get_or_fetch("k", || async { Ok::<_, Boom>("never runs") })
            .await
    });
    exec.run_until_stalled();
    assert!(!waiter.is_finished());
    rt.advance(2 * SEC);
    exec.run_until_stalled();
    let r = waiter.try_take().expect("settled at the deadline").unwrap();
    assert_eq!((&*r.value, r.status), (&b"old"[..], Status::Fallback));
}

#[test]
fn a_panicking_fetch_releases_its_lease() {
    let h = scripted(|b| b);
    let calls = h.calls.clone();
    let fetch = move || {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if calls.load(Ordering::SeqCst) > 0 {
                panic!("fetch panicked on purpose");
            }
            Ok::<_, Boom>("unreachable")
        }
    };
    let r = h.exec.block_on(h.engine.get_or_fetch("k", fetch));
    h.exec.run_until_stalled();
    assert!(matches!(r, Err(Error::Abandoned)), "{r:?}");
    assert_eq!(h.exec.panics(), 1);
    assert_eq!(h.engine.storage().leases_held(), 0, "the lease leaked");
    let s = h.engine.stats();
    assert_eq!(
        (s.in_flight, s.tasks_running, s.upstream_abandoned),
        (0, 0, 1)
    );
}

#[test]
fn shutdown_releases_the_lease_of_a_call_it_stops_even_when_release_takes_time() {
    let h = scripted(|b| b.shutdown_timeout(SEC));
    h.engine.storage().release_delays.push(&[300]);
    let dropped = Arc::new(AtomicBool::new(false));
    let engine = h.engine.clone();
    let f = h.hang(dropped.clone());
    let waiter = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    h.exec.run_until_stalled();
    assert_eq!(h.engine.storage().leases_held(), 1);
    let engine = h.engine.clone();
    let _shutdown = h.exec.spawn(async move { engine.shutdown().await });
    tick(&h, 100 * MS, 30);
    assert!(dropped.load(Ordering::SeqCst));
    assert!(matches!(waiter.try_take(), Some(Err(Error::Shutdown))));
    assert_eq!(h.engine.storage().leases_held(), 0, "the lease leaked");
}

#[test]
fn never_polled_refreshes_cannot_hold_the_refresh_bound_past_their_deadline() {
    let (exec, rt, stuck, engine) = stuck_engine(|b| b.max_concurrent_refreshes(2));
    for k in ["a", "b", "c"] {
        exec.block_on(engine.set(k, "old")).unwrap();
    }
    rt.advance(15 * SEC); // all stale
    stuck.hold.store(true, Ordering::SeqCst);
    for k in ["a", "b"] {
        let r = exec
            .block_on(engine.get_or_fetch(k, || async { Ok::<_, Boom>("never runs") }))
            .unwrap();
        assert_eq!(r.status, Status::Stale);
    }
    stuck.hold.store(false, Ordering::SeqCst);
    let fresh = || async { Ok::<_, Boom>("new") };
    // Within their deadline the two held refreshes fill the bound.
    exec.block_on(engine.get_or_fetch("c", fresh)).unwrap();
    exec.run_until_stalled();
    assert_eq!(engine.stats().refreshes_skipped, 1);
    // Past it, the bound takes them over and refreshes "c".
    rt.advance(2 * SEC);
    exec.block_on(engine.get_or_fetch("c", fresh)).unwrap();
    exec.run_until_stalled();
    let s = engine.stats();
    assert_eq!((s.refreshes_started, s.flights_taken_over), (3, 2));
    assert_eq!(
        (s.refreshes_running, s.in_flight, s.tasks_running),
        (0, 0, 0)
    );
    let stored = exec.block_on(swre_core::Storage::get(engine.storage(), "c"));
    assert_eq!(stored.unwrap().unwrap().value.as_slice(), b"new");
}
