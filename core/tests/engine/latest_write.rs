//! "The latest write wins": a `set` or `invalidate` is never undone by a call
//! that started before it, no caller is handed a value older than one already
//! handed out, and a caller's TTL sticks to the entry.

use std::time::Duration;

use swre_core::{CacheTtl, CallOptions, ExpiredMode, Status};

use crate::common::*;
use crate::fixtures::scripted;

fn stored_value<S: swre_core::Storage>(h: &H<S>, key: &str) -> Option<String> {
    h.stored(key)
        .map(|e| String::from_utf8(e.value.to_vec()).expect("utf-8"))
}

#[test]
fn a_set_after_a_lookup_returned_is_not_overwritten_by_that_lookups_store() {
    let h = scripted(|b| b);
    // The call's store takes 1 s; the caller's own set is instant and made
    // the moment its lookup returns.
    h.engine.storage().set_delays.push(&[1_000]);
    let engine = h.engine.clone();
    let f = h.ok("fetched");
    let lookup = h
        .exec
        .spawn(async move { engine.get_or_fetch("k", f).await });
    h.exec.run_until_stalled();
    for _ in 0..20 {
        if lookup.is_finished() {
            break;
        }
        h.advance(Duration::from_millis(100));
    }
    let r = lookup.try_take().expect("answered").unwrap();
    assert_eq!((value(&r), r.status), ("fetched", Status::Miss));
    h.exec.block_on(h.engine.set("k", "mine")).unwrap();
    h.advance(Duration::from_secs(2));
    assert_eq!(stored_value(&h, "k").as_deref(), Some("mine"));
    assert_eq!(value(&h.get("k", "unused").unwrap()), "mine");
}

#[test]
fn an_invalidate_during_a_refresh_is_not_undone_by_it() {
    let h = harness();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(15 * SEC); // stale
    let (tx, fetch) = h.gated();
    let r = h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
    assert_eq!(r.status, Status::Stale);
    h.exec.block_on(h.engine.invalidate("k")).unwrap();
    tx.send(Ok("refreshed")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(
        stored_value(&h, "k"),
        None,
        "the refresh undid the invalidate"
    );
    assert_eq!(h.engine.stats().in_flight, 0);
    // A lookup after the invalidate fetches anew.
    let r = h.get("k", "after").unwrap();
    assert_eq!((value(&r), r.status), ("after", Status::Miss));
}

#[test]
fn a_set_during_a_refresh_is_not_overwritten_by_it() {
    let h = harness();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(15 * SEC);
    let (tx, fetch) = h.gated();
    h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(h.calls(), 1, "the refresh is calling upstream");
    h.exec.block_on(h.engine.set("k", "mine")).unwrap();
    tx.send(Ok("refreshed")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(stored_value(&h, "k").as_deref(), Some("mine"));
}

#[test]
fn serve_stale_lookups_and_peek_agree_on_the_newest_value() {
    let h = scripted(|b| b.expired_mode(ExpiredMode::ServeStale));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(35 * SEC); // expired
                         // The refresh's store takes 1 s.
    h.engine.storage().set_delays.push(&[1_000]);
    let r = h.get("k", "new").unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Expired));
    // Until the refreshed value is stored it is handed to nobody: peek and
    // lookups both still see the old one, never one then the other.
    let peeked = h.exec.block_on(h.engine.peek("k")).unwrap().unwrap();
    let r = h.get("k", "unused").unwrap();
    assert_eq!(
        (&*peeked.value, peeked.status),
        (&b"old"[..], Status::Expired)
    );
    assert_eq!((value(&r), r.status), ("old", Status::Expired));
    h.advance(Duration::from_secs(1));
    let peeked = h.exec.block_on(h.engine.peek("k")).unwrap().unwrap();
    assert_eq!(&*peeked.value, b"new");
    let r = h.get("k", "unused").unwrap();
    assert_eq!((value(&r), r.status), ("new", Status::Hit));
}

#[test]
fn a_per_call_ttl_sticks_to_the_entry_through_refreshes() {
    let h = harness();
    let custom = CacheTtl::new(SEC, 60 * SEC, Duration::ZERO);
    let r = h
        .exec
        .block_on(
            h.engine
                .with(CallOptions::new().ttl(custom))
                .get_or_fetch("k", h.ok("v1")),
        )
        .unwrap();
    assert_eq!(r.fresh_until - r.created_at, 1_000);
    h.advance(2 * SEC); // stale under the custom TTL (fresh 10 s by default)
    let r = h.get("k", "v2").unwrap();
    assert_eq!(r.status, Status::Stale);
    let e = h.stored("k").unwrap();
    assert_eq!(e.value.as_slice(), b"v2", "the refresh stored");
    assert_eq!(e.ttl(), custom, "the refresh kept the caller's TTL");
    // A later write without a TTL chooses the default again.
    h.exec.block_on(h.engine.set("k", "v3")).unwrap();
    assert_eq!(h.stored("k").unwrap().ttl(), ttl());
}

#[test]
fn a_value_the_store_refuses_removes_the_older_entry() {
    let h = harness_with(|b| b.max_value_bytes(8));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(35 * SEC); // expired: the lookup waits for the refresh
    let r = h.get("k", "far too large").unwrap();
    assert_eq!((value(&r), r.status), ("far too large", Status::Miss));
    assert_eq!(
        stored_value(&h, "k"),
        None,
        "the older entry was left behind"
    );
    let r = h.get("k", "again").unwrap();
    assert_eq!((value(&r), r.status), ("again", Status::Miss));
    assert_eq!(h.engine.stats().oversized_values, 1);
}

#[test]
fn a_value_whose_write_fails_removes_the_older_entry() {
    let h = scripted(|b| b);
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(15 * SEC); // stale
    h.engine
        .storage()
        .fail_set
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = h.get("k", "new").unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Stale));
    h.exec.run_until_stalled();
    assert_eq!(stored_value(&h, "k"), None);
    let s = h.engine.stats();
    assert_eq!((s.storage_write_errors, s.store_cleanup_failures), (1, 0));
}

#[test]
fn a_delete_from_elsewhere_while_a_call_releases_its_lease_is_not_undone() {
    // Found by the conformance suite's engine checks on Redis: the call had
    // stored and handed out its value, and stayed joinable while its lease
    // release took a round trip; a lookup after another process deleted the
    // key joined it and got the deleted value back.
    let h = scripted(|b| b);
    h.engine.storage().release_delays.push(&[1_000]);
    assert_eq!(value(&h.get("k", "fetched").unwrap()), "fetched");
    assert_eq!(
        h.engine.storage().leases_held(),
        1,
        "the release is under way"
    );
    // Another process deletes the key straight from the shared store.
    h.engine.storage().inner.delete_now("k");
    let r = h.get("k", "after the delete").unwrap();
    assert_eq!((value(&r), r.status), ("after the delete", Status::Miss));
    h.advance(Duration::from_secs(2));
    assert_eq!(h.engine.storage().leases_held(), 0);
}
