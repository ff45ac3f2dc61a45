//! Stale hits and the background refresh they start: a stale hit finds the
//! refresh its key's earlier stale hits started without the flight table
//! (the refresh marks, `core/src/marks.rs`), and these tests hold the marks
//! to what the flight table would have answered ("one call per key", "one
//! deadline per call").

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use swre_core::{Bytes, Status};

use crate::common::*;

/// Looks `key` up with a fetch that hangs, and asserts a stale hit.
fn stale_hit_with_hanging_refresh(h: &H, key: &str) {
    let fetch = h.hang(Arc::new(AtomicBool::new(false)));
    let r = h.exec.block_on(h.engine.get_or_fetch(key, fetch)).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(r.status, Status::Stale, "{key}");
}

#[test]
fn stale_hits_while_a_refresh_runs_make_one_call_however_many() {
    let h = harness();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(15 * SEC);
    for _ in 0..1_000 {
        stale_hit_with_hanging_refresh(&h, "k");
    }
    assert_eq!(h.calls(), 1);
    assert_eq!(h.engine.stats().refreshes_started, 1);
}

#[test]
fn after_a_failed_refresh_the_next_stale_hit_starts_another() {
    // Without the fail-safe throttle, which holds the next refresh back.
    let h = harness_with(|b| b.fail_safe_throttle(None));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(15 * SEC);
    let r = h.get_err("k").unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Stale));
    assert_eq!(
        h.calls(),
        1,
        "the first stale hit started a refresh, which failed"
    );
    let r = h.get("k", "new").unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Stale));
    assert_eq!(h.calls(), 2, "the failed refresh still counted as running");
    assert_eq!(value(&h.get("k", "unused").unwrap()), "new");
}

#[test]
fn a_refresh_hung_past_its_deadline_is_taken_over_by_the_next_stale_hit() {
    let h = harness_with(|b| b.refresh_timeout(2 * SEC));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC);
    stale_hit_with_hanging_refresh(&h, "k");
    h.rt.advance(SEC);
    stale_hit_with_hanging_refresh(&h, "k");
    assert_eq!(h.calls(), 1, "inside the deadline the refresh still runs");
    h.rt.advance(SEC);
    let r = h.get("k", "new").unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Stale));
    assert_eq!(
        h.calls(),
        2,
        "at the deadline the next stale hit takes over"
    );
    assert_eq!(value(&h.get("k", "unused").unwrap()), "new");
}

#[test]
fn keys_sharing_one_value_and_write_time_refresh_each_their_own() {
    let h = harness();
    // One allocation written to many keys in the same millisecond.
    let shared = Bytes::from("same");
    let keys: Vec<String> = (0..200).map(|i| format!("user:{i:08}:profile")).collect();
    for k in &keys {
        h.exec.block_on(h.engine.set(k, shared.clone())).unwrap();
    }
    h.advance(15 * SEC);
    for k in &keys {
        stale_hit_with_hanging_refresh(&h, k);
    }
    assert_eq!(h.calls(), keys.len(), "one refresh per key, none skipped");
    for k in &keys {
        stale_hit_with_hanging_refresh(&h, k);
    }
    assert_eq!(h.calls(), keys.len(), "and still one per key");
}

#[test]
fn a_refresh_of_a_newer_write_is_not_hidden_by_the_older_ones_mark() {
    let h = harness();
    h.exec.block_on(h.engine.set("k", "v1")).unwrap();
    h.advance(15 * SEC);
    stale_hit_with_hanging_refresh(&h, "k");
    // A write lands while the refresh of v1 runs, and goes stale in turn.
    h.exec.block_on(h.engine.set("k", "v2")).unwrap();
    h.advance(15 * SEC);
    let r = h.get("k", "v3").unwrap();
    assert_eq!((value(&r), r.status), ("v2", Status::Stale));
    assert_eq!(h.calls(), 2, "v2's stale hit started its own refresh");
    assert_eq!(value(&h.get("k", "unused").unwrap()), "v3");
}
