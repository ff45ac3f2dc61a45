//! "Breaker guards upstream only": the circuit breaker guards upstream calls only.

use swre_core::{BreakerConfig, BreakerState, Error, NotCounted, Status};

use crate::common::*;

fn cfg() -> BreakerConfig {
    BreakerConfig::default()
        .failure_threshold(3)
        .global_failure_keys(3)
        .success_threshold(2)
        .open_for(10 * SEC)
        .first_open_for(10 * SEC)
        .max_half_open(2)
        .max_key_breakers(3)
}

fn breaker_harness() -> H {
    harness_with(|b| b.breaker(cfg()))
}

fn open_key(h: &H, key: &str) {
    for _ in 0..3 {
        assert!(matches!(h.get_err(key), Err(Error::Upstream(_))));
    }
    assert_eq!(h.engine.key_breaker_state(key), BreakerState::Open);
}

fn open_global(h: &H) {
    for k in ["down-1", "down-2", "down-3"] {
        assert!(h.get_err(k).is_err());
    }
    assert_eq!(h.engine.breaker_state(), BreakerState::Open);
}

#[test]
fn a_key_opens_after_consecutive_failures_and_rejects_without_calling() {
    let h = breaker_harness();
    open_key(&h, "k");
    let calls = h.calls();
    assert!(matches!(h.get("k", "v"), Err(Error::CircuitOpen)));
    assert_eq!(h.calls(), calls, "no upstream call while open");
    assert_eq!(h.engine.stats().breaker_rejections, 1);
    assert_eq!(
        h.engine.breaker_state(),
        BreakerState::Closed,
        "one key does not open the global breaker"
    );
    assert_eq!(
        h.get("other", "v").unwrap().status,
        Status::Miss,
        "per-key isolation"
    );
}

#[test]
fn an_open_breaker_never_blocks_hits_and_degrades_stale_and_expired() {
    let h = breaker_harness();
    h.get("good", "v1").unwrap();
    open_global(&h);
    let calls = h.calls();
    assert_eq!(h.get("good", "x").unwrap().status, Status::Hit);
    h.advance(10 * SEC);
    // The open period has passed with the same advance; re-open for the next checks.
    open_global_again(&h);
    let calls_before = h.calls();
    let r = h.get("good", "x").unwrap();
    assert_eq!((r.status, value(&r)), (Status::Stale, "v1"));
    assert_eq!(h.calls(), calls_before, "stale served without a refresh");
    h.advance(20 * SEC);
    open_global_again(&h);
    let calls_before = h.calls();
    let r = h.get("good", "x").unwrap();
    assert_eq!((r.status, value(&r)), (Status::Fallback, "v1"));
    assert_eq!(h.calls(), calls_before, "expired falls back without a call");
    assert!(matches!(h.get("new", "x"), Err(Error::CircuitOpen)));
    assert!(h.calls() >= calls);
}

fn open_global_again(h: &H) {
    if h.engine.breaker_state() != BreakerState::Open {
        // Half-open after open_for: one failing trial re-opens it.
        assert!(h.get_err("trial-fail").is_err());
    }
    assert_eq!(h.engine.breaker_state(), BreakerState::Open);
}

#[test]
fn half_open_after_open_for_then_closed_after_successes() {
    let h = breaker_harness();
    open_key(&h, "k");
    h.advance(10 * SEC - std::time::Duration::from_millis(1));
    assert!(matches!(h.get("k", "v"), Err(Error::CircuitOpen)));
    h.advance(std::time::Duration::from_millis(1));
    assert_eq!(h.engine.key_breaker_state("k"), BreakerState::HalfOpen);
    assert_eq!(h.get("k", "v").unwrap().status, Status::Miss);
    assert_eq!(
        h.engine.key_breaker_state("k"),
        BreakerState::HalfOpen,
        "one success of two"
    );
    h.exec.block_on(h.engine.invalidate("k")).unwrap();
    assert_eq!(h.get("k", "v").unwrap().status, Status::Miss);
    assert_eq!(h.engine.key_breaker_state("k"), BreakerState::Closed);
    assert_eq!(
        h.engine.stats().key_breakers,
        0,
        "a healed key is forgotten"
    );
}

#[test]
fn a_half_open_failure_reopens_for_a_whole_period() {
    let h = breaker_harness();
    open_key(&h, "k");
    h.advance(10 * SEC);
    let calls = h.calls();
    assert!(matches!(h.get_err("k"), Err(Error::Upstream(_))));
    assert_eq!(h.calls(), calls + 1, "the trial reached upstream");
    assert_eq!(h.engine.key_breaker_state("k"), BreakerState::Open);
    h.advance(9 * SEC);
    assert!(matches!(h.get("k", "v"), Err(Error::CircuitOpen)));
    h.advance(SEC);
    assert_eq!(h.get("k", "v").unwrap().status, Status::Miss);
}

#[test]
fn half_open_lets_at_most_max_half_open_trials_through() {
    let h = breaker_harness();
    open_global(&h);
    h.advance(10 * SEC);
    let calls = h.calls();
    let mut gates = Vec::new();
    let mut tasks = Vec::new();
    for k in ["t1", "t2", "t3"] {
        let (tx, fetch) = h.gated();
        gates.push(tx);
        let engine = h.engine.clone();
        tasks.push(
            h.exec
                .spawn(async move { engine.get_or_fetch(k, fetch).await }),
        );
    }
    h.exec.run_until_stalled();
    assert_eq!(h.calls(), calls + 2, "two trials reach upstream");
    assert!(matches!(tasks[2].try_take(), Some(Err(Error::CircuitOpen))));
    for tx in gates {
        let _ = tx.send(Ok("ok"));
    }
    h.exec.run_until_stalled();
    for t in &tasks[..2] {
        assert_eq!(t.try_take().unwrap().unwrap().status, Status::Miss);
    }
    assert_eq!(h.engine.breaker_state(), BreakerState::Closed);
}

#[test]
fn key_breakers_are_bounded() {
    let h = harness_with(|b| b.breaker(cfg().failure_threshold(100)));
    for i in 0..10 {
        assert!(h.get_err(&format!("k{i}")).is_err());
        assert!(h.engine.stats().key_breakers <= 3);
    }
    assert_eq!(h.engine.stats().key_breakers, 3);
}

#[test]
fn reset_closes_every_breaker() {
    let h = breaker_harness();
    open_key(&h, "k");
    open_global(&h);
    h.engine.reset_breaker();
    assert_eq!(h.engine.breaker_state(), BreakerState::Closed);
    assert_eq!(h.engine.key_breaker_state("k"), BreakerState::Closed);
    assert_eq!(h.get("k", "v").unwrap().status, Status::Miss);
}

#[test]
fn not_found_errors_never_move_a_breaker() {
    let h = harness();
    for i in 0..50 {
        let r = h
            .exec
            .block_on(h.engine.get_or_fetch(format!("user:{i}"), || async {
                Err::<&str, _>(NotCounted::new("no such user"))
            }));
        match r {
            Err(Error::Upstream(e)) => {
                assert!(!e.counts_against_breaker());
                assert_eq!(e.to_string(), "no such user");
            }
            other => panic!("expected the upstream error, got {other:?}"),
        }
    }
    assert_eq!(h.engine.breaker_state(), BreakerState::Closed);
    assert_eq!(h.engine.key_breaker_state("user:0"), BreakerState::Closed);
    assert_eq!(h.engine.stats().key_breakers, 0);
    let r = h.get("user:ok", "Ada").unwrap();
    assert_eq!((value(&r), r.status), ("Ada", Status::Miss));
}

#[test]
fn a_handful_of_bad_keys_does_not_open_the_global_breaker() {
    // Default settings: five keys failing (say, unknown ids a client asked
    // for, with errors the fetch did not mark) open their own breakers only.
    let h = harness();
    for i in 0..5 {
        for _ in 0..5 {
            assert!(h.get_err(&format!("bad:{i}")).is_err());
        }
    }
    assert_eq!(h.engine.key_breaker_state("bad:0"), BreakerState::Open);
    assert_eq!(h.engine.breaker_state(), BreakerState::Closed);
    let r = h.get("cold", "v").unwrap();
    assert_eq!((value(&r), r.status), ("v", Status::Miss));
    // Failures spread over ten keys in a row mean upstream is down.
    for i in 5..14 {
        assert!(h.get_err(&format!("down:{i}")).is_err());
    }
    assert_eq!(h.engine.breaker_state(), BreakerState::Closed);
    assert!(h.get_err("down:14").is_err());
    assert_eq!(h.engine.breaker_state(), BreakerState::Open);
}

#[test]
fn after_an_outage_misses_succeed_again_within_the_first_opening() {
    // Defaults but thresholds: the first opening lasts 1 s, each re-opening
    // 1 s longer, up to `open_for` (30 s).
    let h = harness_with(|b| {
        b.breaker(
            BreakerConfig::default()
                .failure_threshold(3)
                .global_failure_keys(3),
        )
    });
    for k in ["down-1", "down-2", "down-3"] {
        assert!(h.get_err(k).is_err());
    }
    assert_eq!(h.engine.breaker_state(), BreakerState::Open);
    assert!(matches!(h.get("cold", "v"), Err(Error::CircuitOpen)));
    // The origin is back: within a second a miss goes through again.
    h.advance(SEC);
    assert_eq!(h.get("cold", "v").unwrap().status, Status::Miss);
    assert_eq!(h.get("cold-2", "v").unwrap().status, Status::Miss);
    assert_eq!(h.engine.breaker_state(), BreakerState::Closed);
    // An origin still down: each failed trial makes the opening 1 s longer.
    for k in ["down-4", "down-5", "down-6"] {
        assert!(h.get_err(k).is_err());
    }
    let ms = std::time::Duration::from_millis(1);
    let mut window = SEC;
    for _ in 0..7 {
        h.advance(window - ms);
        assert!(
            matches!(h.get("cold-3", "v"), Err(Error::CircuitOpen)),
            "open until {window:?}"
        );
        h.advance(ms);
        assert!(
            matches!(h.get_err("trial"), Err(Error::Upstream(_))),
            "a trial at {window:?}"
        );
        window = (window + SEC).min(30 * SEC);
    }
}

#[test]
fn a_short_open_for_brings_the_first_opening_down_with_it() {
    let h = harness_with(|b| {
        b.breaker(
            BreakerConfig::default()
                .failure_threshold(1)
                .open_for(std::time::Duration::from_millis(500)),
        )
    });
    assert!(h.get_err("k").is_err());
    assert!(matches!(h.get("k", "v"), Err(Error::CircuitOpen)));
    h.advance(std::time::Duration::from_millis(500));
    assert_eq!(h.get("k", "v").unwrap().status, Status::Miss);
}
