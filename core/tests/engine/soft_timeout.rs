//! The soft timeout: a caller waiting on the refresh of an expired entry gets
//! the old value once it passes, while the call runs on to the hard deadline
//! and stores its value (FusionCache `FactorySoftTimeout`, background
//! completion).

use std::time::Duration;

use swre_core::{Detail, Error, Status};

use crate::common::*;

const MS: Duration = Duration::from_millis(1);

/// Soft 500 ms, hard 3 s.
fn soft() -> H {
    harness_with(|b| b.soft_timeout(500 * MS).refresh_timeout(3 * SEC))
}

#[test]
fn past_the_soft_timeout_the_caller_gets_the_old_value_and_the_call_stores_its_own() {
    let h = soft();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(31 * SEC); // expired: a lookup waits for the revalidation
    let (tx, fetch) = h.gated();
    let engine = h.engine.clone();
    let lookup = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", fetch).await });
    h.exec.run_until_stalled();
    h.advance(499 * MS);
    assert!(!lookup.is_finished(), "answered before the soft timeout");
    h.advance(MS);
    let r = lookup
        .try_take()
        .expect("answered at the soft timeout")
        .unwrap();
    assert_eq!(
        (value(&r), r.status, r.detail),
        ("old", Status::Fallback, Detail::SoftTimeout)
    );
    assert_eq!(h.engine.stats().soft_timeouts, 1);
    assert_eq!(h.engine.stats().in_flight, 1, "the call runs on");
    // Another caller in the meantime joins the same call: no second one.
    let engine = h.engine.clone();
    let f = h.ok("second");
    let joined = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    h.exec.run_until_stalled();
    h.advance(500 * MS);
    assert_eq!(
        joined.try_take().unwrap().unwrap().detail,
        Detail::SoftTimeout
    );
    // The call completes before its hard deadline and stores its value.
    tx.send(Ok("new")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(h.calls(), 1);
    let r = h.get("k", "unused").unwrap();
    assert_eq!((value(&r), r.status), ("new", Status::Hit));
}

#[test]
fn a_call_that_answers_within_the_soft_timeout_is_waited_for() {
    let h = soft();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(31 * SEC);
    let (tx, fetch) = h.gated();
    let engine = h.engine.clone();
    let lookup = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", fetch).await });
    h.exec.run_until_stalled();
    h.advance(499 * MS);
    tx.send(Ok("new")).unwrap();
    h.exec.run_until_stalled();
    let r = lookup.try_take().expect("answered").unwrap();
    assert_eq!(
        (value(&r), r.status, r.detail),
        ("new", Status::Miss, Detail::None)
    );
    assert_eq!(h.engine.stats().soft_timeouts, 0);
}

#[test]
fn without_an_old_value_only_the_hard_deadline_applies() {
    let h = soft();
    let (_tx, fetch) = h.gated();
    let engine = h.engine.clone();
    let lookup = h
        .exec
        .spawn(async move { engine.get_or_fetch("cold", fetch).await });
    h.exec.run_until_stalled();
    h.advance(3 * SEC - MS);
    assert!(
        !lookup.is_finished(),
        "a cold key waits past the soft timeout"
    );
    h.advance(MS);
    assert!(matches!(
        lookup.try_take().expect("answered at the hard deadline"),
        Err(Error::Timeout { .. })
    ));
}

#[test]
fn a_call_that_fails_after_the_soft_timeout_opens_the_throttle() {
    let h = soft();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(31 * SEC);
    let (tx, fetch) = h.gated();
    let engine = h.engine.clone();
    let lookup = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", fetch).await });
    h.exec.run_until_stalled();
    h.advance(500 * MS);
    assert_eq!(
        lookup.try_take().unwrap().unwrap().detail,
        Detail::SoftTimeout
    );
    tx.send(Err(Boom("late failure"))).unwrap();
    h.exec.run_until_stalled();
    let r = h.get_err("k").unwrap();
    assert_eq!((r.status, r.detail), (Status::Fallback, Detail::Throttled));
    assert_eq!(h.calls(), 1);
}

#[test]
fn bad_soft_timeouts_are_rejected() {
    for (soft, hard) in [
        (Duration::ZERO, 3 * SEC),
        (3 * SEC, 3 * SEC),
        (4 * SEC, 3 * SEC),
    ] {
        let exec = swre_core::testing::TestExecutor::new();
        let err = swre_core::Engine::builder(
            swre_core::MemoryStorage::new(),
            swre_core::testing::TestRuntime::new(&exec, START),
        )
        .soft_timeout(soft)
        .refresh_timeout(hard)
        .build()
        .err()
        .expect("rejected");
        assert!(err.to_string().contains("soft_timeout"), "{err}");
    }
}
