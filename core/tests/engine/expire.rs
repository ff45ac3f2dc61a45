//! `expire`: the entry becomes stale at once and stays as a fallback
//! (FusionCache `Expire`, BentoCache `expire`), beside `invalidate` (gone).

use swre_core::{Detail, FailSafeThrottle, MemoryStorage, Status, Storage, Tiered};

use crate::common::*;

#[test]
fn an_expired_fresh_entry_is_served_stale_and_refreshed() {
    let h = harness();
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(SEC);
    h.exec.block_on(h.engine.expire("k")).unwrap();
    let stored = h.stored("k").expect("kept");
    assert_eq!(
        stored.fresh_until,
        START + 1_000,
        "fresh until the expiry's ms"
    );
    assert_eq!(stored.stale_until, START + 30_000, "the stale phase stays");
    let r = h.get("k", "new").unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Stale));
    assert_eq!(h.calls(), 1);
    let r = h.get("k", "unused").unwrap();
    assert_eq!((value(&r), r.status), ("new", Status::Hit));
}

#[test]
fn an_expired_entry_stays_as_the_fallback_while_upstream_fails() {
    let h = harness_with(|b| b.fail_safe_throttle(None));
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.exec.block_on(h.engine.expire("k")).unwrap();
    for _ in 0..3 {
        let r = h.get_err("k").unwrap();
        assert_eq!((value(&r), r.status), ("old", Status::Stale));
    }
    // After invalidate there is nothing to fall back on.
    h.exec.block_on(h.engine.invalidate("k")).unwrap();
    assert!(h.get_err("k").is_err());
}

#[test]
fn expiring_a_missing_or_already_stale_key_changes_nothing() {
    let h = harness();
    h.exec.block_on(h.engine.expire("nothing")).unwrap();
    assert_eq!(h.stored("nothing"), None);
    h.exec.block_on(h.engine.set("k", "v")).unwrap();
    h.advance(15 * SEC);
    let before = h.stored("k");
    h.exec.block_on(h.engine.expire("k")).unwrap();
    assert_eq!(h.stored("k"), before);
    assert!(
        h.exec.block_on(h.engine.expire("")).is_err(),
        "an invalid key is rejected"
    );
}

#[test]
fn a_refresh_running_across_an_expire_does_not_store_over_it() {
    let h = harness();
    h.exec.block_on(h.engine.set("k", "v1")).unwrap();
    h.advance(15 * SEC);
    let (tx, fetch) = h.gated();
    let r = h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
    assert_eq!(r.status, Status::Stale);
    h.exec.block_on(h.engine.expire("k")).unwrap();
    tx.send(Ok("fetched before the expiry")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(
        value(&h.get("k", "v2").unwrap()),
        "v1",
        "served stale, refresh started"
    );
    assert_eq!(value(&h.get("k", "unused").unwrap()), "v2");
}

#[test]
fn expire_ends_the_fail_safe_throttle_window() {
    let h = harness_with(|b| {
        b.fail_safe_throttle(Some(FailSafeThrottle {
            base: 60 * SEC,
            max: 60 * SEC,
        }))
    });
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.advance(11 * SEC);
    h.get_err("k").unwrap();
    assert_eq!(h.get_err("k").unwrap().detail, Detail::Throttled);
    assert_eq!(h.calls(), 1);
    h.exec.block_on(h.engine.expire("k")).unwrap();
    let r = h.get("k", "new").unwrap();
    assert_eq!((r.status, r.detail), (Status::Stale, Detail::None));
    assert_eq!(h.calls(), 2, "the expire let the next refresh start");
}

#[test]
fn tiered_expires_both_tiers() {
    let h = harness_on(
        Tiered::new(MemoryStorage::new(), MemoryStorage::new()),
        |b| b,
    );
    h.exec.block_on(h.engine.set("k", "old")).unwrap();
    h.exec.block_on(h.engine.expire("k")).unwrap();
    let s = h.engine.storage();
    for (tier, e) in [
        ("L1", h.exec.block_on(s.l1().get("k"))),
        ("L2", h.exec.block_on(s.l2().get("k"))),
    ] {
        assert_eq!(e.unwrap().unwrap().fresh_until, START, "{tier}");
    }
    let r = h.get("k", "new").unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Stale));
}
