//! Early refresh: a fresh hit starts a background refresh before the entry
//! goes stale (FusionCache eager refresh; XFetch, Vattani et al., VLDB 2015).

use std::sync::Arc;
use std::time::Duration;

use swre_core::{Detail, EarlyRefresh, MemoryStorage, Status, Tiered};

use crate::common::*;

const MS: Duration = Duration::from_millis(1);

#[test]
fn off_by_default_a_fresh_hit_never_refreshes() {
    let h = harness();
    h.exec.block_on(h.engine.set("k", "v")).unwrap();
    h.advance(10 * SEC - MS);
    let r = h.get("k", "new").unwrap();
    assert_eq!(
        (value(&r), r.status, r.detail),
        ("v", Status::Hit, Detail::None)
    );
    assert_eq!(h.calls(), 0);
    assert_eq!(h.engine.stats().early_refreshes, 0);
}

#[test]
fn a_threshold_refreshes_from_its_fraction_of_the_fresh_phase_once() {
    let h = harness_with(|b| b.early_refresh(EarlyRefresh::Threshold(0.9)));
    h.exec.block_on(h.engine.set("k", "v1")).unwrap();
    h.advance(9 * SEC - MS);
    assert_eq!(h.get("k", "v2").unwrap().detail, Detail::None);
    assert_eq!(h.calls(), 0, "before 90 % of the fresh phase");
    h.advance(MS);
    // A burst at the threshold: one refresh, started by the first hit.
    let (tx, fetch) = h.gated();
    let first = h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
    assert_eq!(
        (value(&first), first.status, first.detail),
        ("v1", Status::Hit, Detail::EarlyRefresh)
    );
    for _ in 0..100 {
        let r = h.get("k", "never").unwrap();
        assert_eq!(
            (value(&r), r.status, r.detail),
            ("v1", Status::Hit, Detail::None)
        );
    }
    assert_eq!(h.calls(), 1);
    tx.send(Ok("v2")).unwrap();
    h.exec.run_until_stalled();
    let r = h.get("k", "never").unwrap();
    assert_eq!((value(&r), r.status), ("v2", Status::Hit));
    assert_eq!(
        r.fresh_until,
        START + 19_000,
        "the new value's fresh phase starts at the refresh"
    );
    assert_eq!(h.engine.stats().early_refreshes, 1);
    assert_eq!(h.engine.stats().stale, 0, "never served stale");
}

#[test]
fn xfetch_never_refreshes_far_from_expiry_and_does_near_it() {
    let h = harness_with(|b| b.early_refresh(EarlyRefresh::XFetch { beta: 1.0 }));
    // A fetch that takes 200 ms by the clock: the key's δ.
    let (tx, fetch) = h.gated();
    let engine = h.engine.clone();
    let lookup = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", fetch).await });
    h.exec.run_until_stalled();
    h.advance(200 * MS);
    tx.send(Ok("v1")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(lookup.try_take().unwrap().unwrap().status, Status::Miss);
    assert_eq!(h.stored("k").unwrap().fetch_ms, 200);
    // 37 δ (7.4 s) or more before expiry no draw can refresh.
    h.advance(2_500 * MS); // 7.5 s left
    for _ in 0..10_000 {
        assert_eq!(h.get("k", "never").unwrap().detail, Detail::None);
    }
    assert_eq!(h.calls(), 1);
    // 20 ms before expiry (a tenth of δ) a hit refreshes with chance
    // e^-0.1 ≈ 0.9: one of the first twenty does (all failing: 1e-20).
    h.advance(7_480 * MS);
    let mut hits = 0;
    while h.calls() == 1 && hits < 20 {
        hits += 1;
        let r = h.get("k", "v2").unwrap();
        assert_eq!((value(&r), r.status), ("v1", Status::Hit));
    }
    assert_eq!(h.calls(), 2, "no early refresh in {hits} hits");
    assert_eq!(h.engine.stats().early_refreshes, 1);
    let r = h.get("k", "never").unwrap();
    assert_eq!((value(&r), r.detail), ("v2", Detail::None));
    assert_eq!(
        h.stored("k").unwrap().fetch_ms,
        100,
        "δ averaged: (200 + 1) / 2"
    );
}

#[test]
fn an_early_refresh_takes_a_value_another_instance_stored_instead_of_calling() {
    // Two instances, each with its own L1, over one shared L2.
    let shared = Arc::new(MemoryStorage::new());
    let a = harness_on(Tiered::new(MemoryStorage::new(), shared.clone()), |b| b);
    let b = harness_on(Tiered::new(MemoryStorage::new(), shared.clone()), |b| {
        b.early_refresh(EarlyRefresh::Threshold(0.5))
    });
    b.exec.block_on(b.engine.set("k", "v1")).unwrap();
    assert_eq!(value(&b.get("k", "never").unwrap()), "v1");
    // Instance A stores a newer value in the shared store.
    a.rt.advance(4 * SEC);
    a.exec.block_on(a.engine.set("k", "from A")).unwrap();
    // B's L1 copy passes half its fresh phase: B refreshes early, re-reads
    // the shared store first and takes A's value without calling upstream.
    b.advance(5 * SEC);
    let r = b.get("k", "from upstream").unwrap();
    assert_eq!((value(&r), r.detail), ("v1", Detail::EarlyRefresh));
    assert_eq!(b.calls(), 0, "no upstream call: A's value was there");
    assert_eq!(value(&b.get("k", "never").unwrap()), "from A");
}

#[test]
fn bad_early_refresh_settings_are_rejected() {
    for bad in [
        EarlyRefresh::XFetch { beta: 0.0 },
        EarlyRefresh::XFetch { beta: f64::NAN },
        EarlyRefresh::Threshold(0.0),
        EarlyRefresh::Threshold(1.0),
    ] {
        let exec = swre_core::testing::TestExecutor::new();
        let err = swre_core::Engine::builder(
            MemoryStorage::new(),
            swre_core::testing::TestRuntime::new(&exec, START),
        )
        .early_refresh(bad)
        .build()
        .err()
        .expect("rejected");
        assert!(err.to_string().contains("early_refresh"), "{bad:?}: {err}");
    }
}

#[test]
fn early_refresh_works_over_a_store_that_answers_later() {
    // `Faulty` has no synchronous read: its hits take the lookup's other path.
    let h = harness_on(Faulty::new(MemoryStorage::new()), |b| {
        b.early_refresh(EarlyRefresh::Threshold(0.5))
    });
    h.exec.block_on(h.engine.set("k", "v1")).unwrap();
    h.advance(9 * SEC);
    let r = h.get("k", "v2").unwrap();
    assert_eq!(
        (value(&r), r.status, r.detail),
        ("v1", Status::Hit, Detail::EarlyRefresh)
    );
    assert_eq!(h.calls(), 1);
    assert_eq!(value(&h.get("k", "never").unwrap()), "v2");
}
