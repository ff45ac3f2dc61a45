//! The fail-safe throttle: after a failed refresh of a key with an old value,
//! the old value is served without calling upstream for a window that
//! doubles with consecutive failures (FusionCache `FailSafeThrottleDuration`,
//! BentoCache `graceBackoff`); and the [`Detail`] each answer carries.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use swre_core::{BreakerConfig, Detail, ExpiredMode, FailSafeThrottle, Status};

use crate::common::*;

const MS: Duration = Duration::from_millis(1);

/// A breaker that stays out of the way of these tests.
fn patient_breaker() -> BreakerConfig {
    BreakerConfig::default()
        .failure_threshold(1_000)
        .global_failure_keys(1_000)
}

/// Base 2 s, doubling up to 10 s.
fn throttled() -> H {
    harness_with(|b| {
        b.breaker(patient_breaker())
            .fail_safe_throttle(Some(FailSafeThrottle {
                base: 2 * SEC,
                max: 10 * SEC,
            }))
    })
}

/// A lookup with a failing fetch: its status and detail.
fn failing(h: &H, key: &str) -> (Status, Detail) {
    let r = h.get_err(key).expect("an old value is served");
    (r.status, r.detail)
}

#[test]
fn a_failed_refresh_holds_the_next_one_back_to_the_exact_ms() {
    let h = throttled();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC); // stale
    assert_eq!(failing(&h, "k"), (Status::Stale, Detail::None));
    assert_eq!(h.calls(), 1, "the refresh ran and failed");
    for _ in 0..50 {
        assert_eq!(failing(&h, "k"), (Status::Stale, Detail::Throttled));
    }
    h.advance(2 * SEC - MS);
    assert_eq!(failing(&h, "k"), (Status::Stale, Detail::Throttled));
    assert_eq!(h.calls(), 1, "no call inside the window");
    assert_eq!(h.engine.stats().throttled, 51);
    h.advance(MS);
    assert_eq!(failing(&h, "k"), (Status::Stale, Detail::None));
    assert_eq!(h.calls(), 2, "at the window's end the next refresh starts");
}

#[test]
fn consecutive_failures_double_the_window_up_to_its_cap_and_a_success_resets_it() {
    let h = throttled();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC);
    for (round, window) in [2, 4, 8, 10, 10].into_iter().enumerate() {
        failing(&h, "k");
        assert_eq!(h.calls(), round + 1);
        h.advance(window * SEC - MS);
        assert_eq!(failing(&h, "k").1, Detail::Throttled, "round {round}");
        h.advance(MS);
    }
    // 45 s on, the entry has expired: a lookup revalidates it, and the
    // success ends the throttle: the next failure opens the base window.
    let r = h.get("k", "new").unwrap();
    assert_eq!(
        (value(&r), r.status, r.detail),
        ("new", Status::Miss, Detail::None)
    );
    h.advance(11 * SEC);
    failing(&h, "k");
    let calls = h.calls();
    h.advance(2 * SEC);
    failing(&h, "k");
    assert_eq!(h.calls(), calls + 1, "back to the 2 s window");
}

#[test]
fn an_expired_entry_whose_revalidation_failed_is_served_at_once_in_the_window() {
    let h = throttled();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(31 * SEC); // expired: revalidate, fall back on failure
    assert_eq!(failing(&h, "k"), (Status::Fallback, Detail::UpstreamError));
    assert_eq!(failing(&h, "k"), (Status::Fallback, Detail::Throttled));
    assert_eq!(h.calls(), 1);
    h.advance(2 * SEC);
    assert_eq!(failing(&h, "k"), (Status::Fallback, Detail::UpstreamError));
    assert_eq!(h.calls(), 2);
    // Past `expires_at` nothing is served, throttle or not.
    h.advance(30 * SEC);
    assert!(h.get_err("k").is_err());
}

#[test]
fn serve_stale_mode_marks_expired_answers_as_throttled_too() {
    let h = harness_with(|b| b.expired_mode(ExpiredMode::ServeStale));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(31 * SEC);
    assert_eq!(failing(&h, "k"), (Status::Expired, Detail::None));
    assert_eq!(failing(&h, "k"), (Status::Expired, Detail::Throttled));
    assert_eq!(h.calls(), 1);
}

/// A window (60 s) longer than the whole test, so only what ends it can.
fn long_window() -> H {
    harness_with(|b| {
        b.breaker(patient_breaker())
            .fail_safe_throttle(Some(FailSafeThrottle {
                base: 60 * SEC,
                max: 60 * SEC,
            }))
    })
}

#[test]
fn a_set_or_an_invalidate_ends_the_window() {
    for end in ["set", "invalidate"] {
        let h = long_window();
        h.exec.block_on(h.engine.set("k", "old")).unwrap();
        h.advance(11 * SEC);
        failing(&h, "k");
        assert_eq!(failing(&h, "k").1, Detail::Throttled);
        match end {
            "set" => h.exec.block_on(h.engine.set("k", "newer")).unwrap(),
            _ => {
                h.exec.block_on(h.engine.invalidate("k")).unwrap();
                assert_eq!(h.get("k", "refetched").unwrap().status, Status::Miss);
            }
        }
        let calls = h.calls();
        h.advance(11 * SEC); // stale again, well inside the old window
        assert_eq!(
            failing(&h, "k"),
            (Status::Stale, Detail::None),
            "after {end}"
        );
        assert_eq!(
            h.calls(),
            calls + 1,
            "after {end}: a call, not the throttle"
        );
    }
}

#[test]
fn a_success_resets_the_consecutive_failures() {
    // Base 2 s, cap 64 s: without the reset the failure after the success
    // would open a 16 s window (its fourth in a row).
    let h = harness_with(|b| {
        b.breaker(patient_breaker())
            .fail_safe_throttle(Some(FailSafeThrottle {
                base: 2 * SEC,
                max: 64 * SEC,
            }))
    });
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC);
    for window in [2, 4, 8] {
        failing(&h, "k");
        h.advance(window * SEC);
    }
    // The refresh at the end of the third window succeeds.
    assert_eq!(h.get("k", "new").unwrap().detail, Detail::None);
    assert_eq!(value(&h.get("k", "unused").unwrap()), "new");
    h.advance(11 * SEC);
    failing(&h, "k");
    let calls = h.calls();
    h.advance(2 * SEC);
    failing(&h, "k");
    assert_eq!(h.calls(), calls + 1, "the window is the base one again");
}

#[test]
fn a_call_a_write_superseded_does_not_reopen_the_window_when_it_fails() {
    for write in ["set", "expire"] {
        let h = long_window();
        h.exec.block_on(h.engine.set("k", "v1")).unwrap();
        h.advance(11 * SEC);
        let (tx, fetch) = h.gated();
        let r = h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
        assert_eq!(r.status, Status::Stale, "{write}");
        match write {
            "set" => h.exec.block_on(h.engine.set("k", "v2")).unwrap(),
            _ => h.exec.block_on(h.engine.expire("k")).unwrap(),
        }
        tx.send(Err(Boom("late failure"))).unwrap();
        h.exec.run_until_stalled();
        if write == "set" {
            h.advance(11 * SEC);
        }
        let calls = h.calls();
        assert_eq!(
            failing(&h, "k"),
            (Status::Stale, Detail::None),
            "after {write}"
        );
        assert_eq!(
            h.calls(),
            calls + 1,
            "after {write}: the superseded call's failure throttled"
        );
        assert_eq!(h.engine.stats().throttled, 0, "{write}");
    }
}

#[test]
fn the_throttle_holds_when_its_marks_are_overwritten() {
    // One allowed refresh: the smallest mark table (64 slots) for 300 keys.
    let h = harness_with(|b| {
        b.max_concurrent_refreshes(1)
            .breaker(patient_breaker())
            .fail_safe_throttle(Some(FailSafeThrottle {
                base: 5 * SEC,
                max: 5 * SEC,
            }))
    });
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    for k in &keys {
        h.exec.block_on(h.engine.set(k, "old")).unwrap();
    }
    h.advance(11 * SEC);
    for k in &keys {
        failing(&h, k);
    }
    assert_eq!(h.calls(), 300);
    for _ in 0..3 {
        for k in &keys {
            assert_eq!(failing(&h, k), (Status::Stale, Detail::Throttled), "{k}");
        }
    }
    assert_eq!(h.calls(), 300, "no key called again inside its window");
}

#[test]
fn without_the_throttle_each_stale_hit_after_a_failure_may_call_again() {
    let h = harness_with(|b| b.fail_safe_throttle(None));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC);
    for _ in 0..5 {
        assert_eq!(failing(&h, "k"), (Status::Stale, Detail::None));
    }
    assert_eq!(h.calls(), 5);
    assert_eq!(h.engine.stats().throttled, 0);
}

#[test]
fn bad_throttle_settings_are_rejected_by_name() {
    for (t, option) in [
        (
            FailSafeThrottle {
                base: Duration::ZERO,
                max: SEC,
            },
            "fail_safe_throttle.base",
        ),
        (
            FailSafeThrottle {
                base: 2 * SEC,
                max: SEC,
            },
            "fail_safe_throttle.max",
        ),
    ] {
        let err = swre_core::Engine::builder(
            swre_core::MemoryStorage::new(),
            swre_core::testing::TestRuntime::new(&swre_core::testing::TestExecutor::new(), START),
        )
        .fail_safe_throttle(Some(t))
        .build()
        .err()
        .expect("rejected");
        assert!(err.to_string().contains(option), "{err}");
    }
}

#[test]
fn fallbacks_say_why() {
    let h = harness_with(|b| {
        b.refresh_timeout(2 * SEC).fail_safe_throttle(None).breaker(
            BreakerConfig::default()
                .failure_threshold(2)
                .global_failure_keys(100),
        )
    });
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(31 * SEC);
    assert_eq!(failing(&h, "k"), (Status::Fallback, Detail::UpstreamError));
    // A timeout: the fetch hangs past `refresh_timeout`.
    let engine = h.engine.clone();
    let f = h.hang(Arc::new(AtomicBool::new(false)));
    let lookup = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    h.exec.run_until_stalled();
    h.advance(2 * SEC);
    let r = lookup
        .try_take()
        .expect("answered at the deadline")
        .unwrap();
    assert_eq!((r.status, r.detail), (Status::Fallback, Detail::Timeout));
    // Two failures opened the key's breaker: a fallback without a call.
    let calls = h.calls();
    assert_eq!(failing(&h, "k"), (Status::Fallback, Detail::BreakerOpen));
    assert_eq!(h.calls(), calls);
}

#[test]
fn stale_hits_say_why_no_refresh_started() {
    let h = harness_with(|b| b.max_concurrent_refreshes(0));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC);
    assert_eq!(failing(&h, "k"), (Status::Stale, Detail::RefreshSkipped));
    let h = harness_with(|b| {
        b.fail_safe_throttle(None).breaker(
            BreakerConfig::default()
                .failure_threshold(1)
                .global_failure_keys(100),
        )
    });
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC);
    failing(&h, "k");
    assert_eq!(failing(&h, "k"), (Status::Stale, Detail::BreakerOpen));
    assert_eq!(h.calls(), 1);
    // Fresh hits and plain stale hits say nothing more.
    h.exec.block_on(h.engine.set("j", "v")).unwrap();
    assert_eq!(h.get("j", "unused").unwrap().detail, Detail::None);
}

#[test]
fn the_throttle_and_the_negative_cache_keep_to_their_own_keys() {
    // The throttle holds back calls for keys with an old value; the negative
    // cache remembers errors for keys without one. Neither takes the other's.
    let h = harness_with(|b| {
        b.breaker(patient_breaker())
            .negative_ttl(5 * SEC)
            .fail_safe_throttle(Some(FailSafeThrottle {
                base: 60 * SEC,
                max: 60 * SEC,
            }))
    });
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC);
    failing(&h, "k");
    assert_eq!(failing(&h, "k"), (Status::Stale, Detail::Throttled));
    assert_eq!(
        h.engine.stats().negative_hits,
        0,
        "an error with a fallback is not remembered"
    );
    // Without an old value the throttle has nothing to serve: the negative
    // cache answers for the cold key instead.
    h.exec.block_on(h.engine.invalidate("k")).unwrap();
    assert!(h.get_err("k").is_err());
    let calls = h.calls();
    assert!(h.get_err("k").is_err());
    assert_eq!(h.calls(), calls, "the remembered error, no call");
    assert_eq!(h.engine.stats().negative_hits, 1);
    assert_eq!(h.engine.stats().throttled, 1);
    h.advance(5 * SEC);
    assert_eq!(h.get("k", "back").unwrap().status, Status::Miss);
}
