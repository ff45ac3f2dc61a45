//! "Shutdown is final": shutdown stops new calls, waits (bounded) for running ones,
//! and releases every slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use swre_core::{Error, Status};

use crate::common::*;

#[test]
fn shutdown_waits_for_a_running_call_to_finish() {
    let h = harness();
    let (tx, fetch) = h.gated();
    let waiter = {
        let engine = h.engine.clone();
        h.exec
            .spawn(async move { engine.get_or_fetch("k", fetch).await })
    };
    h.exec.run_until_stalled();
    let shutdown = {
        let engine = h.engine.clone();
        h.exec.spawn(async move { engine.shutdown().await })
    };
    h.exec.run_until_stalled();
    assert!(!shutdown.is_finished(), "waits for the running call");
    tx.send(Ok("finished")).unwrap();
    h.exec.run_until_stalled();
    assert!(shutdown.is_finished());
    assert_eq!(value(&waiter.try_take().unwrap().unwrap()), "finished");
    assert_eq!(h.stored("k").unwrap().value.as_slice(), b"finished");
}

#[test]
fn shutdown_drops_a_hanging_call_after_the_grace_period_and_frees_its_slot() {
    let h = harness_with(|b| b.shutdown_timeout(5 * SEC).refresh_timeout(3600 * SEC));
    let dropped = Arc::new(AtomicBool::new(false));
    let waiter = {
        let engine = h.engine.clone();
        let f = h.hang(dropped.clone());
        h.exec
            .spawn(async move { engine.get_or_fetch("k", f).await })
    };
    h.exec.run_until_stalled();
    let shutdown = {
        let engine = h.engine.clone();
        h.exec.spawn(async move { engine.shutdown().await })
    };
    h.exec.run_until_stalled();
    h.rt.timer.advance(4 * SEC);
    h.exec.run_until_stalled();
    assert!(
        !shutdown.is_finished() && !dropped.load(Ordering::SeqCst),
        "still within the grace period"
    );
    h.rt.timer.advance(SEC);
    h.exec.run_until_stalled();
    assert!(shutdown.is_finished());
    assert!(
        dropped.load(Ordering::SeqCst),
        "the fetch future was dropped"
    );
    assert!(matches!(waiter.try_take(), Some(Err(Error::Shutdown))));
    let s = h.engine.stats();
    assert_eq!(
        (s.in_flight, s.tasks_running, s.upstream_abandoned),
        (0, 0, 1)
    );
    assert_eq!(h.exec.live_tasks(), 0, "no task left behind");
}

#[test]
fn after_shutdown_hits_are_served_and_no_new_call_starts() {
    let h = harness();
    h.get("k", "v1").unwrap();
    h.exec.block_on(h.engine.shutdown());
    assert!(h.engine.is_shutting_down());
    assert_eq!(h.get("k", "x").unwrap().status, Status::Hit);
    h.advance(10 * SEC);
    let r = h.get("k", "x").unwrap();
    assert_eq!((r.status, value(&r)), (Status::Stale, "v1"));
    h.advance(20 * SEC);
    assert_eq!(h.get("k", "x").unwrap().status, Status::Fallback);
    assert!(matches!(h.get("new", "x"), Err(Error::Shutdown)));
    assert_eq!(h.calls(), 1);
    assert_eq!(h.engine.stats().refreshes_started, 0);
}

#[test]
fn a_background_refresh_running_at_shutdown_completes_and_is_stored() {
    let h = harness();
    h.get("k", "v1").unwrap();
    h.rt.advance(10 * SEC);
    let (tx, fetch) = h.gated();
    assert_eq!(
        h.exec
            .block_on(h.engine.get_or_fetch("k", fetch))
            .unwrap()
            .status,
        Status::Stale
    );
    h.exec.run_until_stalled();
    let shutdown = {
        let engine = h.engine.clone();
        h.exec.spawn(async move { engine.shutdown().await })
    };
    h.exec.run_until_stalled();
    assert!(!shutdown.is_finished());
    tx.send(Ok("v2")).unwrap();
    h.exec.run_until_stalled();
    assert!(shutdown.is_finished());
    assert_eq!(h.stored("k").unwrap().value.as_slice(), b"v2");
    assert_eq!(h.engine.stats().refreshes_running, 0);
}
