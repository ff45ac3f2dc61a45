//! Batch lookups (`get_many_or_fetch`, sturdyc's `GetOrFetchBatch`,
//! BentoCache's `getMany`): fresh keys served, every stale and missing key in
//! one batch call, and each engine rule held per key — one call per key
//! across overlapping batches and single lookups, the breaker, the negative
//! cache, the throttle, the latest write, shutdown and the one deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::oneshot;
use swre_core::{
    BreakerConfig, BreakerState, Bytes, CacheTtl, Cached, CallOptions, EarlyRefresh, Error,
    ExpiredMode, FailSafeThrottle, MissingFromBatch, Status, Storage,
};

use crate::common::*;
use crate::fixtures::scripted;

const MS: Duration = Duration::from_millis(1);

type Answer = Vec<(String, String)>;
type BatchFuture = Pin<Box<dyn Future<Output = Result<Answer, Boom>> + Send>>;
type Results = Vec<(&'static str, Result<Cached<Bytes>, Error>)>;

/// The keys of every batch call made, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Vec<String>>>>);

impl Log {
    fn calls(&self) -> Vec<Vec<String>> {
        self.0.lock().unwrap().clone()
    }

    fn record(&self, keys: &[String]) {
        self.0.lock().unwrap().push(keys.to_vec());
    }

    /// A batch fetch answering each key asked with `<key>@<tag>`.
    fn ok(&self, tag: &'static str) -> impl FnOnce(Vec<String>) -> BatchFuture + Send + 'static {
        self.answering(tag, &[])
    }

    /// [`ok`](Self::ok) leaving out `skip` and adding a key nobody asked for.
    fn answering(
        &self,
        tag: &'static str,
        skip: &'static [&'static str],
    ) -> impl FnOnce(Vec<String>) -> BatchFuture + Send + 'static {
        let log = self.clone();
        move |keys| {
            log.record(&keys);
            let mut answer: Answer = keys
                .into_iter()
                .filter(|k| !skip.contains(&k.as_str()))
                .map(|k| {
                    let v = format!("{k}@{tag}");
                    (k, v)
                })
                .collect();
            answer.push(("not-asked".into(), "extra".into()));
            Box::pin(std::future::ready(Ok(answer)))
        }
    }

    /// A batch fetch that fails.
    fn err(&self) -> impl FnOnce(Vec<String>) -> BatchFuture + Send + 'static {
        let log = self.clone();
        move |keys| {
            log.record(&keys);
            Box::pin(std::future::ready(Err(Boom("batch down"))))
        }
    }

    /// A batch fetch that answers when the sender sends.
    fn gated(
        &self,
    ) -> (
        oneshot::Sender<Result<Answer, Boom>>,
        impl FnOnce(Vec<String>) -> BatchFuture + Send + 'static,
    ) {
        let (tx, rx) = oneshot::channel();
        let log = self.clone();
        let fetch = move |keys: Vec<String>| {
            log.record(&keys);
            Box::pin(async move { rx.await.unwrap_or(Err(Boom("gate dropped"))) }) as BatchFuture
        };
        (tx, fetch)
    }

    /// A batch fetch that never finishes; `dropped` turns true when its
    /// future is dropped.
    fn hang(
        &self,
        dropped: Arc<AtomicBool>,
    ) -> impl FnOnce(Vec<String>) -> BatchFuture + Send + 'static {
        let log = self.clone();
        move |keys| {
            log.record(&keys);
            let hang = Hang(dropped);
            Box::pin(async move {
                hang.await.ok();
                Err(Boom("unreachable"))
            })
        }
    }
}

fn keys(v: &[&str]) -> Vec<Vec<String>> {
    vec![v.iter().map(|k| k.to_string()).collect()]
}

/// Each result as `key status detail value`, or `key error`.
fn show(results: &Results) -> Vec<String> {
    results
        .iter()
        .map(|(k, r)| match r {
            Ok(c) => format!("{k} {} {} {}", c.status, c.detail, value(c)),
            Err(e) => format!("{k} {}", kind(e)),
        })
        .collect()
}

fn kind(e: &Error) -> String {
    match e {
        Error::Upstream(u) if u.inner().is::<MissingFromBatch>() => "missing".into(),
        Error::Upstream(u) => format!("upstream({u})"),
        Error::Timeout { .. } => "timeout".into(),
        Error::CircuitOpen => "circuit-open".into(),
        Error::InvalidKey(_) => "invalid-key".into(),
        Error::Shutdown => "shutdown".into(),
        e => format!("{e:?}"),
    }
}

/// A batch run to completion.
fn batch<S: Storage>(
    h: &H<S>,
    ks: &[&'static str],
    fetch: impl FnOnce(Vec<String>) -> BatchFuture + Send + 'static,
) -> Vec<String> {
    let r = h
        .exec
        .block_on(h.engine.get_many_or_fetch(ks.to_vec(), fetch));
    h.exec.run_until_stalled();
    show(&r)
}

/// A batch spawned, to be driven by the test.
fn spawn_batch(
    h: &H,
    ks: &[&'static str],
    fetch: impl FnOnce(Vec<String>) -> BatchFuture + Send + 'static,
) -> swre_core::testing::JoinHandle<Results> {
    let engine = h.engine.clone();
    let ks = ks.to_vec();
    let handle = h
        .exec
        .spawn(async move { engine.get_many_or_fetch(ks, fetch).await });
    h.exec.run_until_stalled();
    handle
}

fn stored_value<S: Storage>(h: &H<S>, key: &str) -> Option<String> {
    h.stored(key)
        .map(|e| String::from_utf8(e.value.to_vec()).expect("utf-8"))
}

fn gauges<S: Storage>(h: &H<S>) -> (u64, u64, u64) {
    let s = h.engine.stats();
    (s.in_flight, s.refreshes_running, s.tasks_running)
}

fn set<S: Storage>(h: &H<S>, key: &str, v: &'static str) {
    h.exec.block_on(h.engine.set(key, v)).unwrap();
}

#[test]
fn one_call_carries_exactly_the_stale_expired_and_missing_keys() {
    let h = harness();
    let log = Log::default();
    set(&h, "expired", "e0");
    h.advance(20 * SEC);
    set(&h, "stale", "s0");
    h.advance(11 * SEC);
    set(&h, "fresh", "f0");
    let r = batch(
        &h,
        &["fresh", "stale", "expired", "cold", "cold2"],
        log.ok("new"),
    );
    assert_eq!(
        r,
        [
            "fresh hit none f0",
            "stale stale none s0",
            "expired miss none expired@new",
            "cold miss none cold@new",
            "cold2 miss none cold2@new",
        ]
    );
    assert_eq!(log.calls(), keys(&["stale", "expired", "cold", "cold2"]));
    assert_eq!(stored_value(&h, "stale").as_deref(), Some("stale@new"));
    assert_eq!(
        stored_value(&h, "not-asked"),
        None,
        "extra keys are ignored"
    );
    let s = h.engine.stats();
    assert_eq!((s.batch_calls, s.upstream_calls), (1, 1));
    assert_eq!((s.hits, s.stale, s.misses), (1, 1, 3));
    assert_eq!(gauges(&h), (0, 0, 0));
}

#[test]
fn stale_keys_alone_are_answered_at_once_and_refreshed_in_background() {
    let h = harness();
    let log = Log::default();
    set(&h, "a", "a0");
    set(&h, "b", "b0");
    h.advance(11 * SEC);
    let (tx, fetch) = log.gated();
    let done = spawn_batch(&h, &["a", "b"], fetch);
    let r = done
        .try_take()
        .expect("answered without waiting for the call");
    assert_eq!(show(&r), ["a stale none a0", "b stale none b0"]);
    assert_eq!(log.calls(), keys(&["a", "b"]));
    assert_eq!(h.engine.stats().refreshes_running, 2);
    tx.send(Ok(vec![
        ("a".into(), "a1".into()),
        ("b".into(), "b1".into()),
    ]))
    .unwrap();
    h.exec.run_until_stalled();
    assert_eq!(stored_value(&h, "a").as_deref(), Some("a1"));
    assert_eq!(stored_value(&h, "b").as_deref(), Some("b1"));
    assert_eq!(gauges(&h), (0, 0, 0));
}

#[test]
fn stale_keys_are_served_at_once_while_the_caller_waits_for_the_missing_ones() {
    let h = harness();
    let log = Log::default();
    set(&h, "stale", "s0");
    h.advance(11 * SEC);
    let (tx, fetch) = log.gated();
    let done = spawn_batch(&h, &["stale", "cold"], fetch);
    assert!(!done.is_finished(), "waits for the missing key");
    assert_eq!(log.calls(), keys(&["stale", "cold"]), "one call for both");
    tx.send(Ok(vec![
        ("stale".into(), "s1".into()),
        ("cold".into(), "c1".into()),
    ]))
    .unwrap();
    h.exec.run_until_stalled();
    let r = done.try_take().expect("answered");
    assert_eq!(show(&r), ["stale stale none s0", "cold miss none c1"]);
}

#[test]
fn fresh_keys_only_and_no_keys_make_no_call() {
    let h = harness();
    let log = Log::default();
    set(&h, "a", "a0");
    set(&h, "b", "b0");
    assert_eq!(
        batch(&h, &["a", "b"], log.ok("x")),
        ["a hit none a0", "b hit none b0"]
    );
    assert_eq!(batch(&h, &[], log.ok("x")), Vec::<String>::new());
    assert!(log.calls().is_empty());
    assert_eq!(h.engine.stats().upstream_calls, 0);
}

#[test]
fn duplicate_keys_are_answered_each_time_and_fetched_once() {
    let h = harness();
    let log = Log::default();
    let r = batch(&h, &["a", "b", "a", "a"], log.ok("v"));
    assert_eq!(
        r,
        [
            "a miss none a@v",
            "b miss none b@v",
            "a miss none a@v",
            "a miss none a@v"
        ]
    );
    assert_eq!(log.calls(), keys(&["a", "b"]));
}

#[test]
fn an_invalid_key_fails_alone_and_the_others_proceed() {
    let h = harness();
    let log = Log::default();
    let long: &'static str = Box::leak("k".repeat(100_000).into_boxed_str());
    let r = batch(&h, &["", "a", long], log.ok("v"));
    assert_eq!(r[0], " invalid-key");
    assert_eq!(r[1], "a miss none a@v");
    assert!(r[2].ends_with(" invalid-key"));
    assert_eq!(log.calls(), keys(&["a"]));
    assert_eq!(h.engine.stats().invalid_keys, 2);
}

#[test]
fn a_refused_ttl_fails_every_key_and_makes_no_call() {
    let h = harness();
    let log = Log::default();
    let short = CacheTtl::new(SEC, SEC, SEC);
    let r = h.exec.block_on(
        h.engine
            .with(CallOptions::new().ttl(short))
            .get_many_or_fetch(["a", "b"], log.ok("v")),
    );
    assert!(r.iter().all(|(_, r)| matches!(r, Err(Error::Config(_)))));
    assert!(log.calls().is_empty());
}

#[test]
fn a_per_call_ttl_sticks_to_every_key_of_the_batch() {
    let h = harness();
    let log = Log::default();
    let day = CacheTtl::new(86_400 * SEC, SEC, Duration::ZERO);
    let r = h.exec.block_on(
        h.engine
            .with(CallOptions::new().ttl(day))
            .get_many_or_fetch(["a", "b"], log.ok("v")),
    );
    for (_, r) in &r {
        let c = r.as_ref().unwrap();
        assert_eq!(c.fresh_until - c.created_at, 86_400_000);
    }
    assert!(h.stored("b").unwrap().pinned_ttl);
}

#[test]
fn a_key_the_answer_lacks_fails_as_not_found_and_moves_no_breaker() {
    let h = harness_with(|b| b.breaker(BreakerConfig::default().failure_threshold(2)));
    let log = Log::default();
    for round in 0..3 {
        let r = batch(&h, &["a", "gone"], log.answering("v", &["gone"]));
        let expect_a = if round == 0 {
            "a miss none a@v"
        } else {
            "a hit none a@v"
        };
        assert_eq!(r, [expect_a, "gone missing"], "round {round}");
    }
    assert_eq!(log.calls().len(), 3);
    assert_eq!(h.engine.key_breaker_state("gone"), BreakerState::Closed);
    let s = h.engine.stats();
    assert_eq!((s.batch_keys_missing, s.upstream_errors), (3, 0));
    assert_eq!(gauges(&h), (0, 0, 0));
}

#[test]
fn a_failed_call_fails_every_key_it_carried_and_the_global_breaker_counts_it_once() {
    let h = harness_with(|b| {
        b.breaker(
            BreakerConfig::default()
                .failure_threshold(2)
                .global_failure_keys(2)
                .open_for(60 * SEC)
                .first_open_for(60 * SEC),
        )
        .fail_safe_throttle(None)
    });
    let log = Log::default();
    set(&h, "stale", "s0");
    h.advance(11 * SEC);
    let r = batch(&h, &["a", "b", "c", "stale"], log.err());
    assert_eq!(
        r,
        [
            "a upstream(boom: batch down)",
            "b upstream(boom: batch down)",
            "c upstream(boom: batch down)",
            "stale stale none s0",
        ]
    );
    assert_eq!(
        h.engine.breaker_state(),
        BreakerState::Closed,
        "four keys failing in one call are one failure to the global breaker"
    );
    let s = h.engine.stats();
    assert_eq!((s.upstream_calls, s.upstream_errors), (1, 1));
    // A second failure of each key opens each key's breaker.
    batch(&h, &["a", "b", "c", "stale"], log.err());
    for k in ["a", "b", "c", "stale"] {
        assert_eq!(h.engine.key_breaker_state(k), BreakerState::Open, "{k}");
    }
    // A call for other keys failing once more opens the global breaker.
    batch(&h, &["x"], log.err());
    assert_eq!(h.engine.breaker_state(), BreakerState::Open);
}

#[test]
fn a_key_whose_breaker_is_open_is_not_sent_and_fails_alone() {
    let h = harness_with(|b| {
        b.breaker(
            BreakerConfig::default()
                .failure_threshold(3)
                .open_for(60 * SEC)
                .first_open_for(60 * SEC),
        )
    });
    let log = Log::default();
    for k in ["bad", "stale-bad"] {
        for _ in 0..3 {
            assert!(h.get_err(k).is_err());
        }
        assert_eq!(h.engine.key_breaker_state(k), BreakerState::Open);
    }
    set(&h, "stale-bad", "old");
    set(&h, "stale-good", "old");
    h.advance(11 * SEC);
    let r = batch(&h, &["bad", "stale-bad", "good", "stale-good"], log.ok("v"));
    assert_eq!(
        r,
        [
            "bad circuit-open",
            "stale-bad stale breaker-open old",
            "good miss none good@v",
            "stale-good stale none old",
        ]
    );
    assert_eq!(log.calls(), keys(&["good", "stale-good"]));
    assert_eq!(h.engine.stats().breaker_rejections, 2);
    assert_eq!(gauges(&h), (0, 0, 0));
}

#[test]
fn remembered_errors_are_returned_per_key_without_sending_it() {
    let h = harness_with(|b| b.negative_ttl(5 * SEC));
    let log = Log::default();
    assert_eq!(
        batch(&h, &["a"], log.err()),
        ["a upstream(boom: batch down)"]
    );
    assert_eq!(
        batch(&h, &["b", "gone"], log.answering("v", &["gone"])),
        ["b miss none b@v", "gone missing"]
    );
    let r = batch(&h, &["a", "gone", "c"], log.ok("v"));
    assert_eq!(
        r,
        [
            "a upstream(boom: batch down)",
            "gone missing",
            "c miss none c@v"
        ]
    );
    assert_eq!(log.calls().last(), Some(&vec!["c".to_string()]));
    assert_eq!(h.engine.stats().negative_hits, 2);
    h.advance(5 * SEC);
    assert_eq!(
        batch(&h, &["a", "gone"], log.ok("w")),
        ["a miss none a@w", "gone miss none gone@w"]
    );
}

#[test]
fn a_throttled_key_is_served_its_old_value_and_not_sent() {
    let h = harness_with(|b| {
        b.fail_safe_throttle(Some(FailSafeThrottle {
            base: 2 * SEC,
            max: 10 * SEC,
        }))
    });
    let log = Log::default();
    set(&h, "stale", "s0");
    set(&h, "expired", "e0");
    h.advance(31 * SEC);
    set(&h, "stale", "s0");
    h.advance(11 * SEC); // "stale" stale, "expired" expired
    assert_eq!(
        batch(&h, &["stale", "expired"], log.err()),
        ["stale stale none s0", "expired fallback upstream-error e0"]
    );
    let r = batch(&h, &["stale", "expired", "cold"], log.ok("v"));
    assert_eq!(
        r,
        [
            "stale stale throttled s0",
            "expired fallback throttled e0",
            "cold miss none cold@v",
        ]
    );
    assert_eq!(log.calls().last(), Some(&vec!["cold".to_string()]));
    h.advance(2 * SEC);
    batch(&h, &["stale", "expired"], log.ok("v"));
    assert_eq!(
        log.calls().last(),
        Some(&vec!["stale".into(), "expired".into()])
    );
}

#[test]
fn two_overlapping_batches_fetch_each_key_once() {
    let h = harness();
    let log = Log::default();
    let (tx1, f1) = log.gated();
    let (tx2, f2) = log.gated();
    let first = spawn_batch(&h, &["a", "b", "c"], f1);
    let second = spawn_batch(&h, &["b", "c", "d"], f2);
    // A single lookup of each key too: all join.
    let single = {
        let engine = h.engine.clone();
        let f = h.ok("single");
        h.exec
            .spawn(async move { engine.get_or_fetch("d", f).await })
    };
    h.exec.run_until_stalled();
    assert_eq!(log.calls(), [keys(&["a", "b", "c"]), keys(&["d"])].concat());
    tx2.send(Ok(vec![("d".into(), "d2".into())])).unwrap();
    h.exec.run_until_stalled();
    assert!(!second.is_finished(), "still waits for b and c");
    assert_eq!(value(&single.try_take().unwrap().unwrap()), "d2");
    tx1.send(Ok(vec![
        ("a".into(), "a1".into()),
        ("b".into(), "b1".into()),
        ("c".into(), "c1".into()),
    ]))
    .unwrap();
    h.exec.run_until_stalled();
    assert_eq!(
        show(&first.try_take().unwrap()),
        ["a miss none a1", "b miss none b1", "c miss none c1"]
    );
    assert_eq!(
        show(&second.try_take().unwrap()),
        ["b miss none b1", "c miss none c1", "d miss none d2"]
    );
    assert_eq!(h.calls(), 0, "the single lookup joined the batch");
    let mut per_key = std::collections::HashMap::new();
    for k in log.calls().concat() {
        *per_key.entry(k).or_insert(0) += 1;
    }
    assert!(per_key.values().all(|&n| n == 1), "{per_key:?}");
    assert_eq!(h.engine.stats().upstream_calls, 2);
    assert_eq!(gauges(&h), (0, 0, 0));
}

#[test]
fn a_batch_joins_a_single_lookup_in_flight_and_leaves_its_key_out() {
    let h = harness();
    let log = Log::default();
    let (tx, fetch) = h.gated();
    let single = {
        let engine = h.engine.clone();
        h.exec
            .spawn(async move { engine.get_or_fetch("a", fetch).await })
    };
    h.exec.run_until_stalled();
    let done = spawn_batch(&h, &["a", "b"], log.ok("batch"));
    assert_eq!(log.calls(), keys(&["b"]));
    assert!(!done.is_finished(), "waits for the single lookup's call");
    tx.send(Ok("single")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(
        show(&done.try_take().unwrap()),
        ["a miss none single", "b miss none b@batch"]
    );
    assert_eq!(value(&single.try_take().unwrap().unwrap()), "single");
    assert_eq!(h.calls(), 1);
}

#[test]
fn a_single_lookup_joins_a_batch_in_flight() {
    let h = harness();
    let log = Log::default();
    let (tx, fetch) = log.gated();
    let done = spawn_batch(&h, &["a", "b"], fetch);
    let single = {
        let engine = h.engine.clone();
        let f = h.ok("single");
        h.exec
            .spawn(async move { engine.get_or_fetch("b", f).await })
    };
    h.exec.run_until_stalled();
    tx.send(Ok(vec![
        ("a".into(), "a1".into()),
        ("b".into(), "b1".into()),
    ]))
    .unwrap();
    h.exec.run_until_stalled();
    let r = single.try_take().unwrap().unwrap();
    assert_eq!((value(&r), r.status), ("b1", Status::Miss));
    assert_eq!(h.calls(), 0);
    assert!(done.is_finished());
}

#[test]
fn an_invalidate_during_the_call_keeps_that_key_out_of_the_store_only() {
    for write in ["invalidate", "set"] {
        let h = harness();
        let log = Log::default();
        let (tx, fetch) = log.gated();
        let done = spawn_batch(&h, &["a", "b"], fetch);
        match write {
            "invalidate" => h.exec.block_on(h.engine.invalidate("a")).unwrap(),
            _ => set(&h, "a", "mine"),
        }
        tx.send(Ok(vec![
            ("a".into(), "a1".into()),
            ("b".into(), "b1".into()),
        ]))
        .unwrap();
        h.exec.run_until_stalled();
        let expect = if write == "set" { Some("mine") } else { None };
        assert_eq!(stored_value(&h, "a").as_deref(), expect, "{write}");
        assert_eq!(stored_value(&h, "b").as_deref(), Some("b1"), "{write}");
        // The callers that waited get what their call fetched, as single
        // lookups do; the next lookup sees the write.
        assert_eq!(
            show(&done.try_take().unwrap()),
            ["a miss none a1", "b miss none b1"]
        );
        let after = h.get("a", "after").unwrap();
        assert_eq!(value(&after), expect.unwrap_or("after"), "{write}");
        assert_eq!(gauges(&h), (0, 0, 0));
    }
}

#[test]
fn shutdown_during_the_call_ends_it_and_every_waiting_key_gets_shutdown() {
    let h = harness_with(|b| b.shutdown_timeout(SEC).refresh_timeout(3600 * SEC));
    let log = Log::default();
    set(&h, "stale", "s0");
    h.advance(11 * SEC);
    let dropped = Arc::new(AtomicBool::new(false));
    let done = spawn_batch(&h, &["a", "b", "stale"], log.hang(dropped.clone()));
    assert_eq!(log.calls(), keys(&["a", "b", "stale"]));
    let shutdown = {
        let engine = h.engine.clone();
        h.exec.spawn(async move { engine.shutdown().await })
    };
    h.exec.run_until_stalled();
    h.rt.timer.advance(SEC - MS);
    h.exec.run_until_stalled();
    assert!(!done.is_finished() && !dropped.load(Ordering::SeqCst));
    h.rt.timer.advance(MS);
    h.exec.run_until_stalled();
    assert!(shutdown.is_finished());
    assert!(dropped.load(Ordering::SeqCst), "the call was dropped");
    assert_eq!(
        show(&done.try_take().unwrap()),
        ["a shutdown", "b shutdown", "stale stale none s0"]
    );
    assert_eq!(gauges(&h), (0, 0, 0));
    // Afterwards no call starts; stored values are still served.
    let r = batch(&h, &["stale", "c"], log.ok("late"));
    assert_eq!(r, ["stale stale shutdown s0", "c shutdown"]);
    assert_eq!(log.calls().len(), 1);
}

#[test]
fn a_call_that_never_answers_times_out_per_key_at_its_one_deadline() {
    let h = harness_with(|b| b.refresh_timeout(2 * SEC).fail_safe_throttle(None));
    let log = Log::default();
    set(&h, "expired", "e0");
    h.advance(31 * SEC);
    let dropped = Arc::new(AtomicBool::new(false));
    let done = spawn_batch(&h, &["a", "b", "expired"], log.hang(dropped.clone()));
    assert_eq!(
        gauges(&h),
        (3, 0, 3),
        "one flight and one task count per key"
    );
    h.advance(2 * SEC - MS);
    assert!(!done.is_finished());
    h.advance(MS);
    assert_eq!(
        show(&done.try_take().expect("answered at the deadline")),
        ["a timeout", "b timeout", "expired fallback timeout e0"]
    );
    assert!(dropped.load(Ordering::SeqCst), "the call was dropped");
    let s = h.engine.stats();
    assert_eq!((s.upstream_calls, s.upstream_timeouts), (1, 1));
    assert_eq!(gauges(&h), (0, 0, 0));
    assert!(h.exec.live_tasks() == 0, "the batch task ended");
}

#[test]
fn a_stuck_batch_task_is_taken_over_per_key_at_its_deadline() {
    let (exec, rt, stuck, engine) = crate::fixtures::stuck_engine(|b| b);
    let log = Log::default();
    stuck.hold.store(true, Ordering::SeqCst);
    let done = {
        let engine = engine.clone();
        exec.spawn(async move { engine.get_many_or_fetch(["a", "b"], log.ok("never")).await })
    };
    exec.run_until_stalled();
    assert_eq!(
        stuck.held.lock().unwrap().len(),
        1,
        "the batch call is one task"
    );
    stuck.hold.store(false, Ordering::SeqCst);
    rt.advance(2 * SEC);
    exec.run_until_stalled();
    let r = done.try_take().expect("answered at the deadline");
    assert!(r
        .iter()
        .all(|(_, r)| matches!(r, Err(Error::Timeout { .. }))));
    // The next lookup takes the flights over and calls again.
    let r = exec.block_on(engine.get_or_fetch("a", || async { Ok::<_, Boom>("again") }));
    assert_eq!(r.unwrap().status, Status::Miss);
    exec.run_until_stalled();
    exec.block_on(engine.shutdown());
    let s = engine.stats();
    assert_eq!((s.in_flight, s.tasks_running), (0, 0));
    assert_eq!(s.flights_taken_over, 2);
}

#[test]
fn keys_another_process_is_fetching_are_waited_for_not_sent() {
    let h = scripted(|b| b.refresh_timeout(2 * SEC));
    let log = Log::default();
    h.engine
        .storage()
        .refuse_leases
        .store(true, Ordering::SeqCst);
    let engine = h.engine.clone();
    let fetch = log.ok("here");
    let done = h
        .exec
        .spawn(async move { engine.get_many_or_fetch(["a", "b"], fetch).await });
    h.exec.run_until_stalled();
    // Another process stores "a".
    let other = swre_core::Entry::new("a-elsewhere", START, ttl());
    h.exec
        .block_on(h.engine.storage().inner.set("a", other))
        .unwrap();
    h.advance(100 * MS);
    assert!(!done.is_finished(), "b is still awaited");
    h.advance(2 * SEC - 100 * MS);
    assert_eq!(
        show(&done.try_take().expect("answered by the deadline")),
        ["a hit none a-elsewhere", "b timeout"]
    );
    assert!(log.calls().is_empty(), "no key was sent");
    let s = h.engine.stats();
    assert_eq!((s.lease_waits, s.upstream_calls), (2, 0));
    assert_eq!(gauges(&h), (0, 0, 0));
}

#[test]
fn leases_are_taken_per_key_and_released() {
    let h = scripted(|b| b);
    let log = Log::default();
    assert_eq!(
        batch(&h, &["a", "b"], log.ok("v")),
        ["a miss none a@v", "b miss none b@v"]
    );
    assert_eq!(h.engine.storage().leases_held(), 0);
}

#[test]
fn a_soft_timeout_answers_expired_keys_with_their_old_value_and_lets_the_call_run_on() {
    let h = harness_with(|b| b.soft_timeout(100 * MS));
    let log = Log::default();
    set(&h, "expired", "e0");
    h.advance(31 * SEC);
    let (tx, fetch) = log.gated();
    let done = spawn_batch(&h, &["expired", "cold"], fetch);
    h.advance(100 * MS);
    assert!(!done.is_finished(), "the missing key has no old value");
    tx.send(Ok(vec![
        ("expired".into(), "e1".into()),
        ("cold".into(), "c1".into()),
    ]))
    .unwrap();
    h.exec.run_until_stalled();
    assert_eq!(
        show(&done.try_take().unwrap()),
        ["expired fallback soft-timeout e0", "cold miss none c1"]
    );
    assert_eq!(stored_value(&h, "expired").as_deref(), Some("e1"));
}

#[test]
fn a_value_that_expires_while_the_batch_waits_is_made_again_from_its_refresh() {
    // Found by the simulator: served at once, handed out only when the
    // missing key is answered, and by then past `expires_at`.
    let h = harness_with(|b| b.expired_mode(ExpiredMode::ServeStale));
    let log = Log::default();
    set(&h, "old", "o0");
    h.advance(59 * SEC); // expired, served at once in ServeStale mode
    let (tx, fetch) = log.gated();
    let done = spawn_batch(&h, &["old", "cold"], fetch);
    assert_eq!(log.calls(), keys(&["old", "cold"]));
    h.advance(2 * SEC); // "old" is gone now
    tx.send(Ok(vec![
        ("old".into(), "o1".into()),
        ("cold".into(), "c1".into()),
    ]))
    .unwrap();
    h.exec.run_until_stalled();
    assert_eq!(
        show(&done.try_take().unwrap()),
        ["old miss none o1", "cold miss none c1"]
    );
}

#[test]
fn a_value_that_expires_while_the_batch_waits_without_a_refresh_fails() {
    let h = harness_with(|b| {
        b.expired_mode(ExpiredMode::ServeStale)
            .max_concurrent_refreshes(0)
    });
    let log = Log::default();
    set(&h, "old", "o0");
    h.advance(59 * SEC);
    let (tx, fetch) = log.gated();
    let done = spawn_batch(&h, &["old", "cold"], fetch);
    assert_eq!(log.calls(), keys(&["cold"]), "no refresh may start");
    h.advance(2 * SEC);
    tx.send(Ok(vec![("cold".into(), "c1".into())])).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(
        show(&done.try_take().unwrap()),
        ["old timeout", "cold miss none c1"]
    );
}

#[test]
fn a_fresh_key_due_for_an_early_refresh_rides_in_the_call() {
    let h = harness_with(|b| b.early_refresh(EarlyRefresh::Threshold(0.5)));
    let log = Log::default();
    set(&h, "early", "e0");
    set(&h, "fresh", "f0");
    h.advance(5 * SEC);
    set(&h, "fresh", "f0");
    let r = batch(&h, &["early", "fresh", "cold"], log.ok("v"));
    assert_eq!(
        r,
        [
            "early hit early-refresh e0",
            "fresh hit none f0",
            "cold miss none cold@v"
        ]
    );
    assert_eq!(log.calls(), keys(&["early", "cold"]));
    assert_eq!(stored_value(&h, "early").as_deref(), Some("early@v"));
    assert_eq!(h.engine.stats().early_refreshes, 1);
}

#[test]
fn the_refresh_bound_holds_per_key() {
    let h = harness_with(|b| b.max_concurrent_refreshes(1));
    let log = Log::default();
    set(&h, "a", "a0");
    set(&h, "b", "b0");
    h.advance(11 * SEC);
    let (_tx, fetch) = log.gated();
    let r = spawn_batch(&h, &["a", "b"], fetch);
    assert_eq!(
        show(&r.try_take().unwrap()),
        ["a stale none a0", "b stale refresh-skipped b0"]
    );
    assert_eq!(log.calls(), keys(&["a"]));
    assert_eq!(h.engine.stats().refreshes_skipped, 1);
}

#[test]
fn typed_batches_encode_each_value_and_share_decoded_hits() {
    let h = harness();
    let fetch = |keys: Vec<String>| async move {
        let answer: std::collections::HashMap<String, u32> = keys
            .into_iter()
            .map(|k| (k.clone(), k.len() as u32))
            .collect();
        Ok::<_, Boom>(answer)
    };
    let r = h
        .exec
        .block_on(h.engine.get_many_or_fetch_as(["a", "bbb"], fetch));
    let got: Vec<_> = r
        .iter()
        .map(|(k, r)| (*k, *r.as_ref().unwrap().value, r.as_ref().unwrap().status))
        .collect();
    assert_eq!(got, [("a", 1, Status::Miss), ("bbb", 3, Status::Miss)]);
    let hit = h.exec.block_on(
        h.engine
            .get_many_or_fetch_as::<u32, _, _, _, _, _, _>(["bbb"], |_| async {
                Ok::<_, Boom>(Vec::<(String, u32)>::new())
            }),
    );
    assert_eq!(*hit[0].1.as_ref().unwrap().value, 3);
    let peeked = h
        .exec
        .block_on(h.engine.peek_as::<u32>("bbb"))
        .unwrap()
        .unwrap();
    assert!(Arc::ptr_eq(
        &peeked.value,
        &hit[0].1.as_ref().unwrap().value
    ));
}

#[test]
fn the_batch_future_is_send_and_dropping_it_never_cancels_the_call() {
    fn is_send<T: Send>(_: &T) {}
    let h = harness();
    let log = Log::default();
    let (tx, fetch) = log.gated();
    let fut = h.engine.get_many_or_fetch(vec![String::from("a")], fetch);
    is_send(&fut);
    let mut fut = Box::pin(fut);
    let waker = futures::task::noop_waker();
    let _ = fut
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&waker));
    drop(fut);
    h.exec.run_until_stalled();
    tx.send(Ok(vec![("a".into(), "a1".into())])).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(stored_value(&h, "a").as_deref(), Some("a1"));
    assert_eq!(gauges(&h), (0, 0, 0));
}
