//! The engine rules through the public API, each test named for the rule it
//! checks (the breaker: breaker.rs; shutdown: shutdown.rs; deadlines:
//! deadlines.rs; the latest write wins: latest_write.rs).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swre_core::{
    BreakerScope, BreakerState, Compressed, Engine, Error, Json, KeyError, MemoryStorage, Metrics,
    Status, Storage, UpstreamOutcome,
};

use crate::common::*;

#[test]
fn one_call_per_key_two_hundred_concurrent_callers_share_one_upstream_call() {
    let h = harness();
    let (tx, fetch) = h.gated();
    let mut fetch = Some(fetch);
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let engine = h.engine.clone();
            if i == 0 {
                let f = fetch.take().unwrap();
                h.exec
                    .spawn(async move { engine.get_or_fetch("cold", f).await })
            } else {
                let f = h.ok("must not be called");
                h.exec
                    .spawn(async move { engine.get_or_fetch("cold", f).await })
            }
        })
        .collect();
    h.exec.run_until_stalled();
    assert_eq!(h.calls(), 1);
    assert_eq!(h.engine.stats().in_flight, 1);
    tx.send(Ok("shared")).unwrap();
    h.exec.run_until_stalled();
    for handle in handles {
        let r = handle.try_take().expect("every caller answered").unwrap();
        assert_eq!((r.status, value(&r)), (Status::Miss, "shared"));
    }
    assert_eq!(h.calls(), 1);
    assert_eq!(h.engine.stats().in_flight, 0);
}

#[test]
fn one_call_per_key_every_waiter_gets_the_same_error() {
    let h = harness();
    let (tx, fetch) = h.gated();
    let first = {
        let engine = h.engine.clone();
        h.exec
            .spawn(async move { engine.get_or_fetch("k", fetch).await })
    };
    let others: Vec<_> = (0..10)
        .map(|_| {
            let engine = h.engine.clone();
            let f = h.ok("unused");
            h.exec
                .spawn(async move { engine.get_or_fetch("k", f).await })
        })
        .collect();
    h.exec.run_until_stalled();
    tx.send(Err(Boom("shared failure"))).unwrap();
    h.exec.run_until_stalled();
    for handle in std::iter::once(first).chain(others) {
        match handle.try_take().unwrap() {
            Err(Error::Upstream(e)) => assert_eq!(e.to_string(), "boom: shared failure"),
            other => panic!("expected the upstream error, got {other:?}"),
        }
    }
    assert_eq!(h.calls(), 1);
    assert_eq!(h.engine.stats().errors, 11);
}

#[test]
fn callers_never_cancel_the_call_a_dropped_waiter_does_not_cancel_the_shared_fetch() {
    let h = harness();
    let (tx, fetch) = h.gated();
    {
        let fut = h.engine.get_or_fetch("k", fetch);
        let mut fut = Box::pin(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        h.exec.run_until_stalled();
        // The caller gives up here.
    }
    assert_eq!(h.engine.stats().in_flight, 1, "the call keeps running");
    // A second caller joins the same call.
    let joined = {
        let engine = h.engine.clone();
        let f = h.ok("unused");
        h.exec
            .spawn(async move { engine.get_or_fetch("k", f).await })
    };
    h.exec.run_until_stalled();
    tx.send(Ok("done")).unwrap();
    h.exec.run_until_stalled();
    let r = joined.try_take().unwrap().unwrap();
    assert_eq!((value(&r), h.calls()), ("done", 1));
    assert_eq!(h.stored("k").unwrap().value.as_slice(), b"done");
    assert_eq!(h.engine.stats().in_flight, 0);
}

#[test]
fn callers_never_cancel_the_call_timeout_ends_the_call_and_releases_its_slot() {
    let h = harness_with(|b| b.refresh_timeout(2 * SEC));
    let dropped = Arc::new(AtomicBool::new(false));
    let task = {
        let engine = h.engine.clone();
        let f = h.hang(dropped.clone());
        h.exec
            .spawn(async move { engine.get_or_fetch("k", f).await })
    };
    h.exec.run_until_stalled();
    h.rt.timer.advance(2 * SEC);
    h.exec.run_until_stalled();
    match task.try_take().unwrap() {
        Err(Error::Timeout { after }) => assert_eq!(after, 2 * SEC),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(dropped.load(Ordering::SeqCst));
    let s = h.engine.stats();
    assert_eq!(
        (s.in_flight, s.tasks_running, s.upstream_timeouts),
        (0, 0, 1)
    );
    // The slot is free: the next lookup calls upstream again.
    assert_eq!(h.get("k", "v").unwrap().status, Status::Miss);
    assert_eq!(h.calls(), 2);
}

#[test]
fn bounded_refresh_refreshes_are_bounded_and_skips_are_counted() {
    let h = harness_with(|b| b.max_concurrent_refreshes(2));
    for k in ["a", "b", "c", "d", "e"] {
        h.get(k, "v1").unwrap();
    }
    h.rt.advance(10 * SEC);
    let mut gates = Vec::new();
    for k in ["a", "b", "c", "d", "e"] {
        let (tx, fetch) = h.gated();
        gates.push(tx);
        let r = h.exec.block_on(h.engine.get_or_fetch(k, fetch)).unwrap();
        assert_eq!(
            (r.status, value(&r)),
            (Status::Stale, "v1"),
            "stale still served for {k}"
        );
    }
    let s = h.engine.stats();
    assert_eq!(
        (
            s.refreshes_started,
            s.refreshes_skipped,
            s.refreshes_running
        ),
        (2, 3, 2)
    );
    for tx in gates {
        let _ = tx.send(Ok("v2"));
    }
    h.exec.run_until_stalled();
    assert_eq!(h.engine.stats().refreshes_running, 0);
    assert_eq!(h.calls(), 5 + 2);
}

#[test]
fn bounded_refresh_zero_refreshes_turns_background_refresh_off() {
    let h = harness_with(|b| b.max_concurrent_refreshes(0));
    h.get("k", "v1").unwrap();
    h.advance(10 * SEC);
    assert_eq!(h.get("k", "v2").unwrap().status, Status::Stale);
    assert_eq!(h.calls(), 1);
    assert_eq!(h.engine.stats().refreshes_skipped, 1);
}

#[test]
fn storage_failures_degrade_read_errors_are_misses_and_write_errors_still_return_the_value() {
    let h = harness_on(Faulty::new(MemoryStorage::new()), |b| b);
    h.engine.storage().fail_get.store(true, Ordering::SeqCst);
    h.engine.storage().fail_set.store(true, Ordering::SeqCst);
    for i in 1..=3 {
        let r = h.get("k", "from upstream").unwrap();
        assert_eq!((r.status, value(&r)), (Status::Miss, "from upstream"));
        assert_eq!(h.calls(), i);
    }
    let s = h.engine.stats();
    assert_eq!(
        (s.storage_read_errors, s.storage_write_errors, s.errors),
        (6, 3, 0)
    );
    // The store recovers: values are kept again.
    h.engine.storage().fail_get.store(false, Ordering::SeqCst);
    h.engine.storage().fail_set.store(false, Ordering::SeqCst);
    h.get("k", "v").unwrap();
    assert_eq!(h.get("k", "other").unwrap().status, Status::Hit);
}

#[test]
fn storage_failures_degrade_an_undecodable_entry_is_a_miss_and_is_overwritten() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct User {
        id: u32,
        name: String,
    }
    let h = harness_with(|b| b);
    h.exec
        .block_on(h.engine.set("user", &b"\xff\xff not postcard"[..]))
        .unwrap();
    let calls = h.calls.clone();
    let r = h
        .exec
        .block_on(
            h.engine
                .get_or_fetch_as::<User, _, _, _, Boom>("user", move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok(User {
                            id: 7,
                            name: "Ada".into(),
                        })
                    }
                }),
        )
        .unwrap();
    h.exec.run_until_stalled();
    assert_eq!((r.status, r.value.id), (Status::Miss, 7));
    assert_eq!(h.engine.stats().decode_errors, 1);
    let again = h
        .exec
        .block_on(
            h.engine
                .get_or_fetch_as::<User, _, _, _, Boom>("user", || async {
                    Err(Boom("not called"))
                }),
        )
        .unwrap();
    assert_eq!(
        (again.status, again.value.name.as_str()),
        (Status::Hit, "Ada")
    );
}

#[test]
fn typed_lookups_round_trip_through_json_and_compressed_codecs() {
    let exec = swre_core::testing::TestExecutor::new();
    let rt = swre_core::testing::TestRuntime::new(&exec, START);
    let engine = Engine::builder(MemoryStorage::new(), rt.clone())
        .codec(Compressed::new(Json, 16))
        .build()
        .unwrap();
    let long: Vec<String> = (0..50).map(|i| format!("item {i}")).collect();
    let expected = long.clone();
    let r =
        exec.block_on(engine.get_or_fetch_as::<Vec<String>, _, _, _, Boom>(
            "list",
            move || async move { Ok(long) },
        ))
        .unwrap();
    exec.run_until_stalled();
    assert_eq!(*r.value, expected);
    let stored = exec
        .block_on(engine.storage().get("list"))
        .unwrap()
        .unwrap();
    assert_eq!(stored.value[0], 1, "large enough to be deflated");
    let plain = miniz_oxide::inflate::decompress_to_vec(&stored.value[1..]).unwrap();
    assert_eq!(
        serde_json::from_slice::<Vec<String>>(&plain).unwrap(),
        expected
    );
}

#[test]
fn bad_input_changes_nothing_bad_keys_are_rejected_and_change_nothing() {
    let h = harness_with(|b| b.max_key_bytes(16));
    match h.get("", "v") {
        Err(Error::InvalidKey(KeyError::Empty)) => {}
        other => panic!("expected an empty-key error, got {other:?}"),
    }
    let long = "k".repeat(17);
    match h.get(&long, "v") {
        Err(Error::InvalidKey(KeyError::TooLong { len: 17, max: 16 })) => {}
        other => panic!("expected a too-long error, got {other:?}"),
    }
    assert!(h.exec.block_on(h.engine.set(&long, "v")).is_err());
    assert!(h.exec.block_on(h.engine.peek("")).is_err());
    assert_eq!(h.calls(), 0);
    assert!(h.engine.storage().is_empty());
    assert_eq!(h.engine.stats().invalid_keys, 4);
    assert!(
        h.get(&"k".repeat(16), "v").is_ok(),
        "a key at the limit is fine"
    );
}

#[test]
fn bad_input_changes_nothing_oversized_values_are_returned_but_not_stored() {
    let h = harness_with(|b| b.max_value_bytes(4));
    let r = h.get("k", "too long").unwrap();
    assert_eq!((r.status, value(&r)), (Status::Miss, "too long"));
    assert!(h.stored("k").is_none());
    assert_eq!(h.engine.stats().oversized_values, 1);
    match h.exec.block_on(h.engine.set("k", "12345")) {
        Err(Error::ValueTooLarge { len: 5, max: 4 }) => {}
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert!(h.stored("k").is_none());
}

#[test]
fn bad_input_changes_nothing_the_builder_names_each_rejected_option() {
    use swre_core::{BreakerConfig, CacheTtl};
    let exec = swre_core::testing::TestExecutor::new();
    let rt = swre_core::testing::TestRuntime::new(&exec, START);
    let b = || Engine::builder(MemoryStorage::new(), rt.clone());
    let bc = BreakerConfig::default();
    let cases: Vec<(&str, Result<_, Error>)> = vec![
        (
            "ttl",
            b().ttl(CacheTtl::new(SEC, SEC, SEC)).build().map(|_| ()),
        ),
        (
            "refresh_timeout",
            b().refresh_timeout(Duration::ZERO).build().map(|_| ()),
        ),
        (
            "breaker.failure_threshold",
            b().breaker(bc.failure_threshold(0)).build().map(|_| ()),
        ),
        (
            "breaker.success_threshold",
            b().breaker(bc.success_threshold(0)).build().map(|_| ()),
        ),
        (
            "breaker.max_half_open",
            b().breaker(bc.max_half_open(1).success_threshold(2))
                .build()
                .map(|_| ()),
        ),
        (
            "breaker.open_for",
            b().breaker(bc.open_for(Duration::ZERO)).build().map(|_| ()),
        ),
        (
            "breaker.max_key_breakers",
            b().breaker(bc.max_key_breakers(0)).build().map(|_| ()),
        ),
        (
            "max_value_bytes",
            b().max_value_bytes(0).build().map(|_| ()),
        ),
        ("max_key_bytes", b().max_key_bytes(0).build().map(|_| ())),
        (
            "negative_ttl",
            b().negative_ttl(Duration::ZERO).build().map(|_| ()),
        ),
    ];
    for (option, result) in cases {
        match result {
            Err(Error::Config(e)) => {
                assert_eq!(e.option, option);
                assert!(Error::Config(e).to_string().contains(option));
            }
            Err(other) => panic!("{option}: unexpected error {other:?}"),
            Ok(()) => panic!("{option}: accepted"),
        }
    }
    assert!(b().build().is_ok(), "defaults are valid");
}

#[test]
fn errors_can_be_remembered_negative_caching_is_off_by_default() {
    let h = harness();
    assert!(h.get_err("k").is_err());
    assert!(h.get_err("k").is_err());
    assert_eq!(h.calls(), 2);
}

#[test]
fn errors_can_be_remembered_negative_caching_remembers_errors_for_its_window() {
    let h = harness_with(|b| b.negative_ttl(5 * SEC));
    assert!(h.get_err("k").is_err());
    h.advance(4 * SEC);
    match h.get("k", "would succeed") {
        Err(Error::Upstream(e)) => assert_eq!(e.to_string(), "boom: upstream down"),
        other => panic!("expected the remembered error, got {other:?}"),
    }
    assert_eq!(h.calls(), 1);
    assert_eq!(h.engine.stats().negative_hits, 1);
    h.advance(SEC);
    assert_eq!(h.get("k", "ok now").unwrap().status, Status::Miss);
    assert_eq!(h.calls(), 2);
    // An invalidate forgets a remembered error.
    h.advance(60 * SEC);
    assert!(h.get_err("k").is_err());
    h.exec.block_on(h.engine.invalidate("k")).unwrap();
    assert_eq!(h.get("k", "fresh").unwrap().status, Status::Miss);
}

/// A call that an `invalidate` superseded, failing afterwards, is no news
/// about the key: its error is not remembered over the invalidation.
#[test]
fn errors_can_be_remembered_not_from_a_call_a_later_write_superseded() {
    let h = harness_with(|b| b.negative_ttl(60 * SEC));
    let (tx, fetch) = h.gated();
    let engine = h.engine.clone();
    let waiting = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", fetch).await });
    h.exec.run_until_stalled();
    h.exec.block_on(h.engine.invalidate("k")).unwrap();
    tx.send(Err(Boom("failed after the invalidate"))).unwrap();
    h.exec.run_until_stalled();
    assert!(
        waiting.try_take().expect("settled").is_err(),
        "its caller gets it"
    );
    let r = h.get("k", "fresh");
    assert_eq!(
        r.map(|c| c.status).ok(),
        Some(Status::Miss),
        "not remembered"
    );
    assert_eq!(h.engine.stats().negative_hits, 0);
}

#[test]
fn errors_can_be_remembered_errors_with_a_fallback_are_not_remembered() {
    // Without the fail-safe throttle, which would serve the fallback again.
    let h = harness_with(|b| b.negative_ttl(5 * SEC).fail_safe_throttle(None));
    h.get("k", "v1").unwrap();
    h.advance(30 * SEC);
    assert_eq!(h.get_err("k").unwrap().status, Status::Fallback);
    assert_eq!(h.get("k", "v2").unwrap().status, Status::Miss);
}

#[test]
fn timeouts_come_from_timers_timeouts_fire_on_the_timer_while_the_clock_is_frozen() {
    let h = harness_with(|b| b.refresh_timeout(3 * SEC));
    let dropped = Arc::new(AtomicBool::new(false));
    let task = {
        let engine = h.engine.clone();
        let f = h.hang(dropped.clone());
        h.exec
            .spawn(async move { engine.get_or_fetch("k", f).await })
    };
    h.exec.run_until_stalled();
    // Like Workers' Date.now() during CPU work: the wall clock does not move.
    h.rt.timer.advance(3 * SEC);
    h.exec.run_until_stalled();
    assert!(matches!(task.try_take(), Some(Err(Error::Timeout { .. }))));
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn timeouts_come_from_timers_advancing_only_the_clock_never_times_out_a_call() {
    let h = harness_with(|b| b.refresh_timeout(3 * SEC));
    let dropped = Arc::new(AtomicBool::new(false));
    let task = {
        let engine = h.engine.clone();
        let f = h.hang(dropped.clone());
        h.exec
            .spawn(async move { engine.get_or_fetch("k", f).await })
    };
    h.exec.run_until_stalled();
    h.rt.clock.advance(Duration::from_secs(3600));
    h.exec.run_until_stalled();
    assert!(!task.is_finished());
    assert!(!dropped.load(Ordering::SeqCst));
}

#[derive(Default)]
struct Recorder {
    lookups: Mutex<Vec<Status>>,
    errors: AtomicUsize,
    upstream: Mutex<Vec<UpstreamOutcome>>,
    breaker: Mutex<Vec<(BreakerScope, BreakerState)>>,
    skipped: AtomicUsize,
}

impl Metrics for Recorder {
    fn lookup(&self, status: Status) {
        self.lookups.lock().unwrap().push(status);
    }
    fn lookup_error(&self, _: &Error) {
        self.errors.fetch_add(1, Ordering::SeqCst);
    }
    fn upstream(&self, outcome: UpstreamOutcome, _: Duration) {
        self.upstream.lock().unwrap().push(outcome);
    }
    fn refresh_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::SeqCst);
    }
    fn breaker(&self, scope: BreakerScope, state: BreakerState) {
        self.breaker.lock().unwrap().push((scope, state));
    }
}

#[test]
fn nothing_per_hit_but_a_counter_metrics_and_stats_see_every_event() {
    let rec = Arc::new(Recorder::default());
    let h = harness_with({
        let rec = rec.clone();
        move |b| {
            b.metrics(rec).max_concurrent_refreshes(0).breaker(
                swre_core::BreakerConfig::default()
                    .failure_threshold(1)
                    .global_failure_keys(1)
                    .success_threshold(1)
                    .max_half_open(1),
            )
        }
    });
    h.get("a", "v").unwrap(); // miss
    h.get("a", "v").unwrap(); // hit
    h.advance(10 * SEC);
    h.get("a", "v").unwrap(); // stale, refresh skipped
    assert!(h.get_err("b").is_err()); // upstream error opens key breaker "b"
    assert_eq!(
        *rec.lookups.lock().unwrap(),
        vec![Status::Miss, Status::Hit, Status::Stale]
    );
    assert_eq!(rec.errors.load(Ordering::SeqCst), 1);
    assert_eq!(
        *rec.upstream.lock().unwrap(),
        vec![UpstreamOutcome::Success, UpstreamOutcome::Error]
    );
    assert_eq!(rec.skipped.load(Ordering::SeqCst), 1);
    assert_eq!(
        *rec.breaker.lock().unwrap(),
        vec![
            (BreakerScope::Key, BreakerState::Open),
            (BreakerScope::Global, BreakerState::Open)
        ],
        "a first failure at threshold 1 opens the key's breaker and the global one"
    );
    let s = h.engine.stats();
    assert_eq!(
        (
            s.hits,
            s.stale,
            s.misses,
            s.errors,
            s.upstream_calls,
            s.upstream_errors
        ),
        (1, 1, 1, 1, 2, 1)
    );
    assert_eq!((s.refreshes_skipped, s.breaker_opened), (1, 2));
}

#[test]
fn a_finished_lookup_polled_again_stays_pending() {
    use std::task::{Context, Poll, Waker};
    let h = harness();
    // A cold key: the lookup finishes in its boxed slow path.
    let mut fut = std::pin::pin!(h.engine.get_or_fetch("k", h.ok("v")));
    let mut cx = Context::from_waker(Waker::noop());
    let r = loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            break r;
        }
        assert!(h.exec.run_until_stalled() > 0, "stalled");
    };
    assert_eq!(value(&r.unwrap()), "v");
    for _ in 0..3 {
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
}
