//! Every row of the phase table, both expired modes, TTL override and policy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swre_core::{CacheTtl, CallOptions, Error, ExpiredMode, Phase, Status};

use crate::common::*;

#[test]
fn gone_no_entry_is_a_miss_that_fetches_and_stores() {
    let h = harness();
    let r = h.get("k", "v1").unwrap();
    assert_eq!((r.status, value(&r), h.calls()), (Status::Miss, "v1", 1));
    assert_eq!(r.created_at, START);
    assert_eq!(r.fresh_until, START + 10_000);
    let stored = h.stored("k").expect("stored after a miss");
    assert_eq!(stored.value.as_slice(), b"v1");
    assert_eq!(
        (stored.stale_until, stored.expires_at),
        (START + 30_000, START + 60_000)
    );
}

#[test]
fn fresh_is_a_hit_without_upstream() {
    let h = harness();
    h.get("k", "v1").unwrap();
    h.advance(9 * SEC);
    let r = h.get("k", "v2").unwrap();
    assert_eq!((r.status, value(&r), h.calls()), (Status::Hit, "v1", 1));
    assert_eq!(r.age, 9 * SEC);
}

#[test]
fn stale_serves_at_once_and_refreshes_once_in_background() {
    let h = harness();
    h.get("k", "v1").unwrap();
    h.rt.advance(10 * SEC);
    // The lookup returns before the refresh runs: poll it without running tasks.
    let (tx, fetch) = h.gated();
    let r = h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
    assert_eq!((r.status, value(&r)), (Status::Stale, "v1"));
    assert_eq!(h.engine.stats().refreshes_running, 1);
    // More stale lookups while the refresh runs start nothing new.
    for _ in 0..5 {
        let r = h.get("k", "never").unwrap();
        assert_eq!(r.status, Status::Stale);
    }
    assert_eq!(h.calls(), 2, "one initial fetch and one refresh");
    tx.send(Ok("v2")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(h.stored("k").unwrap().value.as_slice(), b"v2");
    let r = h.get("k", "never").unwrap();
    assert_eq!((r.status, value(&r), h.calls()), (Status::Hit, "v2", 2));
    let s = h.engine.stats();
    assert_eq!(
        (s.refreshes_started, s.refreshes_running, s.in_flight),
        (1, 0, 0)
    );
}

#[test]
fn expired_revalidate_waits_for_the_refresh() {
    let h = harness();
    h.get("k", "v1").unwrap();
    h.advance(30 * SEC);
    let r = h.get("k", "v2").unwrap();
    assert_eq!((r.status, value(&r), h.calls()), (Status::Miss, "v2", 2));
    assert_eq!(r.created_at, START + 30_000);
}

#[test]
fn expired_revalidate_falls_back_on_upstream_error() {
    let h = harness();
    h.get("k", "v1").unwrap();
    h.advance(59 * SEC);
    let r = h.get_err("k").unwrap();
    assert_eq!(
        (r.status, value(&r), h.calls()),
        (Status::Fallback, "v1", 2)
    );
    assert_eq!(h.engine.stats().fallbacks, 1);
}

#[test]
fn expired_revalidate_falls_back_on_timeout() {
    let h = harness_with(|b| b.refresh_timeout(5 * SEC));
    h.get("k", "v1").unwrap();
    h.advance(30 * SEC);
    let dropped = Arc::new(AtomicBool::new(false));
    let task = h.exec.spawn({
        let engine = h.engine.clone();
        let fetch = h.hang(dropped.clone());
        async move { engine.get_or_fetch("k", fetch).await }
    });
    h.exec.run_until_stalled();
    assert!(!task.is_finished(), "waits while the refresh runs");
    h.rt.timer.advance(5 * SEC);
    h.exec.run_until_stalled();
    let r = task.try_take().unwrap().unwrap();
    assert_eq!((r.status, value(&r)), (Status::Fallback, "v1"));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the timed-out fetch is dropped"
    );
    assert_eq!(h.engine.stats().upstream_timeouts, 1);
}

#[test]
fn expired_serve_stale_returns_at_once_and_refreshes() {
    let h = harness_with(|b| b.expired_mode(ExpiredMode::ServeStale));
    h.get("k", "v1").unwrap();
    h.rt.advance(30 * SEC);
    let (tx, fetch) = h.gated();
    let r = h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
    assert_eq!((r.status, value(&r)), (Status::Expired, "v1"));
    tx.send(Ok("v2")).unwrap();
    h.exec.run_until_stalled();
    let r = h.get("k", "never").unwrap();
    assert_eq!((r.status, value(&r), h.calls()), (Status::Hit, "v2", 2));
}

#[test]
fn past_expires_at_is_gone() {
    let h = harness();
    h.get("k", "v1").unwrap();
    h.advance(60 * SEC);
    let r = h.get_err("k");
    assert!(
        matches!(r, Err(Error::Upstream(_))),
        "no fallback once gone: {r:?}"
    );
    let r = h.get("k", "v2").unwrap();
    assert_eq!((r.status, value(&r)), (Status::Miss, "v2"));
}

#[test]
fn a_clock_that_went_backwards_never_makes_an_entry_older() {
    let h = harness();
    h.get("k", "v1").unwrap();
    h.rt.clock.set(START - 3_600_000);
    let r = h.get("k", "v2").unwrap();
    assert_eq!((r.status, value(&r), h.calls()), (Status::Hit, "v1", 1));
    assert_eq!(r.age, std::time::Duration::ZERO);
}

#[test]
fn peek_reports_the_phase_without_fetching() {
    let h = harness();
    assert!(h.exec.block_on(h.engine.peek("k")).unwrap().is_none());
    h.get("k", "v1").unwrap();
    for (advance, want) in [
        (0, Some(Status::Hit)),
        (10, Some(Status::Stale)),
        (20, Some(Status::Expired)),
        (30, None),
    ] {
        h.advance(advance * SEC);
        let got = h
            .exec
            .block_on(h.engine.peek("k"))
            .unwrap()
            .map(|c| c.status);
        assert_eq!(got, want, "after +{advance}s");
    }
    assert_eq!(h.calls(), 1);
    assert_eq!(h.engine.stats().refreshes_started, 0);
}

#[test]
fn per_call_ttl_override_sets_the_entry_times() {
    let h = harness();
    let custom = CacheTtl::new(SEC, 2 * SEC, 3 * SEC);
    let r = h
        .exec
        .block_on(
            h.engine
                .with(CallOptions::new().ttl(custom))
                .get_or_fetch("k", h.ok("v")),
        )
        .unwrap();
    assert_eq!(
        (r.fresh_until, r.stale_until, r.expires_at),
        (START + 1_000, START + 3_000, START + 6_000)
    );
    h.advance(SEC);
    assert_eq!(h.get("k", "x").unwrap().status, Status::Stale);
}

#[test]
fn an_invalid_ttl_override_is_rejected_before_any_call() {
    let h = harness();
    let bad = CacheTtl::new(SEC, SEC, SEC);
    let r = h.exec.block_on(
        h.engine
            .with(CallOptions::new().ttl(bad))
            .get_or_fetch("k", h.ok("v")),
    );
    match r {
        Err(Error::Config(e)) => assert_eq!(e.option, "ttl"),
        other => panic!("expected a ttl config error, got {other:?}"),
    }
    assert_eq!(h.calls(), 0);
    assert!(h.stored("k").is_none());
}

#[test]
fn ttl_policy_chooses_from_key_and_value() {
    let long = CacheTtl::new(100 * SEC, Duration::ZERO, Duration::ZERO);
    let h = harness_with(|b| {
        b.ttl_policy(move |key: &str, value: &[u8]| {
            if key.starts_with("long/") {
                Some(long)
            } else if value == b"tiny" {
                Some(CacheTtl::new(SEC, SEC, SEC)) // invalid: the default applies
            } else {
                None
            }
        })
    });
    let r = h.get("long/a", "v").unwrap();
    assert_eq!(r.fresh_until - r.created_at, 100_000);
    assert_eq!(r.expires_at, r.fresh_until);
    let r = h.get("short/b", "tiny").unwrap();
    assert_eq!(
        r.fresh_until - r.created_at,
        10_000,
        "invalid policy output falls back to the default"
    );
    // A per-call override beats the policy.
    let r = h
        .exec
        .block_on(
            h.engine
                .with(CallOptions::new().ttl(CacheTtl::new(5 * SEC, SEC, SEC)))
                .get_or_fetch("long/c", h.ok("v")),
        )
        .unwrap();
    assert_eq!(r.fresh_until - r.created_at, 5_000);
}

#[test]
fn phase_function_matches_lookups_at_every_boundary() {
    // The status a lookup reports agrees with Phase::of at each boundary.
    for (offset, phase) in [
        (9_999, Phase::Fresh),
        (10_000, Phase::Stale),
        (29_999, Phase::Stale),
        (30_000, Phase::Expired),
        (59_999, Phase::Expired),
        (60_000, Phase::Gone),
    ] {
        let h = harness_with(|b| b.expired_mode(ExpiredMode::ServeStale));
        h.get("k", "v1").unwrap();
        let entry = h.stored("k").unwrap();
        h.rt.advance(std::time::Duration::from_millis(offset));
        assert_eq!(Phase::of(Some(&entry), START + offset), phase);
        let r = h.get("k", "v2").unwrap();
        let want = match phase {
            Phase::Fresh => Status::Hit,
            Phase::Stale => Status::Stale,
            Phase::Expired => Status::Expired,
            Phase::Gone => Status::Miss,
        };
        assert_eq!(r.status, want, "at +{offset} ms");
    }
}
