//! Tags: `invalidate_tag` (absent), `expire_tag` (stale, kept as a
//! fallback) and `clear`, lazily by tag epochs kept in the store (FusionCache
//! `RemoveByTag` / `ExpireByTag` / `Clear`, BentoCache `deleteByTag` /
//! `expireByTag` / `clear`).

use std::sync::Arc;

use swre_core::tags::record::{Kind, RecordKey};
use swre_core::testing::{TestExecutor, TestRuntime};
use swre_core::{
    BreakerConfig, BreakerState, CallOptions, Detail, Engine, Error, Fetched, KeyError,
    MemoryStorage, Status, Storage, TagError,
};

use crate::common::*;

fn set_tagged<S: Storage>(h: &H<S>, key: &str, v: &'static str, tags: &[&str]) {
    let opts = CallOptions::new().tags(tags.iter().copied());
    h.exec
        .block_on(h.engine.with(opts).set(key, v))
        .expect("tagged set");
}

fn names<S: Storage>(h: &H<S>, key: &str) -> Vec<String> {
    let e = h.stored(key).expect("stored");
    e.tags.names().map(String::from).collect()
}

fn record_key(kind: Kind, tag: &str) -> String {
    RecordKey::new(kind, tag).unwrap().as_str().to_owned()
}

#[test]
fn invalidate_tag_makes_every_tagged_entry_absent_and_leaves_the_rest() {
    let h = harness();
    set_tagged(&h, "a", "a1", &["t1"]);
    set_tagged(&h, "b", "b1", &["t1", "t2"]);
    set_tagged(&h, "c", "c1", &["t2"]);
    h.exec.block_on(h.engine.set("d", "d1")).unwrap();
    h.exec.block_on(h.engine.invalidate_tag("t1")).unwrap();
    assert_eq!(h.exec.block_on(h.engine.peek("a")).unwrap(), None);
    assert_eq!(h.exec.block_on(h.engine.peek("b")).unwrap(), None);
    for (k, want) in [("c", "c1"), ("d", "d1")] {
        let r = h.get(k, "refetched").unwrap();
        assert_eq!((value(&r), r.status), (want, Status::Hit), "{k}");
    }
    assert_eq!(h.calls(), 0);
    // Gone with its tags: a refetch gives them again (as callers do).
    let r = h.get("a", "refetched").unwrap();
    assert_eq!((value(&r), r.status), ("refetched", Status::Miss));
    assert!(h.stored("a").unwrap().tags.is_empty());
    let opts = CallOptions::new().tags(["t1", "t2"]);
    let fut = h.engine.with(opts).get_or_fetch("b", h.ok("refetched"));
    let r = h.exec.block_on(fut).unwrap();
    assert_eq!((value(&r), r.status), ("refetched", Status::Miss));
    assert_eq!(h.calls(), 2);
    // Stamped with the new epochs.
    assert_eq!(names(&h, "b"), ["t1", "t2"]);
    let r = h.get("b", "unused").unwrap();
    assert_eq!((value(&r), r.status), ("refetched", Status::Hit));
    // And a second invalidation reaches them again.
    h.exec.block_on(h.engine.invalidate_tag("t2")).unwrap();
    assert_eq!(value(&h.get("b", "third").unwrap()), "third");
    assert_eq!(value(&h.get("c", "third").unwrap()), "third");
    assert_eq!(value(&h.get("a", "unused").unwrap()), "refetched");
    h.exec.block_on(h.engine.invalidate_tag("t1")).unwrap();
    assert_eq!(
        value(&h.get("a", "unused").unwrap()),
        "refetched",
        "untagged now"
    );
}

#[test]
fn an_invalidated_entry_is_no_fallback_but_an_expired_one_is() {
    let h = harness_with(|b| b.fail_safe_throttle(None));
    set_tagged(&h, "gone", "old", &["t"]);
    set_tagged(&h, "kept", "old", &["u"]);
    h.exec.block_on(h.engine.invalidate_tag("t")).unwrap();
    h.exec.block_on(h.engine.expire_tag("u")).unwrap();
    assert!(matches!(h.get_err("gone"), Err(Error::Upstream(_))));
    for _ in 0..2 {
        let r = h.get_err("kept").unwrap();
        assert_eq!((value(&r), r.status), ("old", Status::Stale));
    }
}

#[test]
fn expire_tag_serves_stale_at_once_refreshes_and_the_refresh_is_fresh() {
    let h = harness();
    set_tagged(&h, "k", "old", &["t"]);
    set_tagged(&h, "other", "o", &["x"]);
    h.exec.block_on(h.engine.expire_tag("t")).unwrap();
    // In the same ms as the expiry.
    let p = h.exec.block_on(h.engine.peek("k")).unwrap().unwrap();
    assert_eq!(p.status, Status::Stale);
    let r = h.get("k", "new").unwrap();
    assert_eq!((value(&r), r.status), ("old", Status::Stale));
    assert_eq!(h.calls(), 1);
    let r = h.get("k", "unused").unwrap();
    assert_eq!((value(&r), r.status), ("new", Status::Hit));
    assert_eq!(names(&h, "k"), ["t"], "the refresh kept the entry's tag");
    let r = h.get("other", "unused").unwrap();
    assert_eq!(r.status, Status::Hit);
    assert_eq!(h.calls(), 1);
}

#[test]
fn tags_come_from_the_call_the_fetch_or_the_entry_replaced() {
    let h = harness();
    let opts = CallOptions::new().tags(["caller", "caller"]);
    let fut = h.engine.with(opts.clone()).get_or_fetch("k", h.ok("v1"));
    h.exec.block_on(fut).unwrap();
    assert_eq!(names(&h, "k"), ["caller"], "deduplicated");
    // A plain refresh keeps them.
    h.advance(15 * SEC);
    assert_eq!(h.get("k", "v2").unwrap().status, Status::Stale);
    h.exec.run_until_stalled();
    assert_eq!(names(&h, "k"), ["caller"]);
    // The fetch's own tags win over the caller's; an empty list clears them.
    h.advance(15 * SEC);
    let fut = h.engine.with(opts).get_or_fetch_with("k", |_| async {
        Ok::<_, Boom>(Fetched::value("v3").tags(["fetch"]))
    });
    h.exec.block_on(fut).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(names(&h, "k"), ["fetch"]);
    h.advance(15 * SEC);
    let fut = h.engine.get_or_fetch_with("k", |_| async {
        Ok::<_, Boom>(Fetched::value("v4").tags(Vec::<String>::new()))
    });
    h.exec.block_on(fut).unwrap();
    h.exec.run_until_stalled();
    assert!(h.stored("k").unwrap().tags.is_empty());
    // A plain set chooses no tags.
    set_tagged(&h, "s", "v", &["t"]);
    h.exec.block_on(h.engine.set("s", "v")).unwrap();
    assert!(h.stored("s").unwrap().tags.is_empty());
}

#[test]
fn not_modified_revalidates_a_tag_expired_entry() {
    let h = harness();
    set_tagged(&h, "k", "body", &["t"]);
    h.exec.block_on(h.engine.expire_tag("t")).unwrap();
    let fut = h.engine.get_or_fetch_with("k", |ctx| async move {
        assert_eq!(ctx.stale.as_deref(), Some(&b"body"[..]));
        Ok::<_, Boom>(Fetched::<&str>::not_modified())
    });
    assert_eq!(h.exec.block_on(fut).unwrap().status, Status::Stale);
    h.exec.run_until_stalled();
    let r = h.get("k", "unused").unwrap();
    assert_eq!((value(&r), r.status), ("body", Status::Hit));
    assert_eq!(names(&h, "k"), ["t"]);
}

#[test]
fn a_tag_invalidated_while_a_refresh_of_a_tagged_key_runs_is_not_undone() {
    for kind in [Kind::Hard, Kind::Soft] {
        let h = harness();
        set_tagged(&h, "k", "v1", &["t"]);
        h.advance(15 * SEC);
        let (tx, fetch) = h.gated();
        let r = h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
        assert_eq!(r.status, Status::Stale);
        h.exec.run_until_stalled();
        assert_eq!(h.calls(), 1, "the fetch has begun");
        match kind {
            Kind::Hard => h.exec.block_on(h.engine.invalidate_tag("t")).unwrap(),
            Kind::Soft => h.exec.block_on(h.engine.expire_tag("t")).unwrap(),
        }
        tx.send(Ok("fetched before the tag changed")).unwrap();
        h.exec.run_until_stalled();
        assert_eq!(h.engine.stats().tag_fenced, 1, "{kind:?}");
        let r = h.get("k", "v2").unwrap();
        match kind {
            // Not stored: the next lookup fetches.
            Kind::Hard => assert_eq!((value(&r), r.status), ("v2", Status::Miss)),
            // Stored stale (it predates the expiry): served while refreshed.
            Kind::Soft => assert_eq!(
                (value(&r), r.status),
                ("fetched before the tag changed", Status::Stale)
            ),
        }
        h.exec.run_until_stalled();
        assert_eq!(value(&h.get("k", "unused").unwrap()), "v2", "{kind:?}");
    }
}

#[test]
fn a_refresh_running_across_another_tag_s_invalidation_stores_its_value() {
    let h = harness();
    set_tagged(&h, "k", "v1", &["t"]);
    h.advance(15 * SEC);
    let (tx, fetch) = h.gated();
    h.exec.block_on(h.engine.get_or_fetch("k", fetch)).unwrap();
    h.exec.run_until_stalled();
    h.exec
        .block_on(h.engine.invalidate_tag("unrelated"))
        .unwrap();
    tx.send(Ok("v2")).unwrap();
    h.exec.run_until_stalled();
    assert_eq!(h.engine.stats().tag_fenced, 0);
    let r = h.get("k", "unused").unwrap();
    assert_eq!((value(&r), r.status), ("v2", Status::Hit));
}

#[test]
fn clear_empties_the_store_and_a_call_running_across_it_stores_nothing() {
    let h = harness_with(|b| b.negative_ttl(60 * SEC));
    h.exec.block_on(h.engine.set("a", "a1")).unwrap();
    set_tagged(&h, "b", "b1", &["t"]);
    assert!(h.get_err("failing").is_err());
    let (tx, fetch) = h.gated();
    let engine = h.engine.clone();
    let waiting = h
        .exec
        .spawn(async move { engine.get_or_fetch("c", fetch).await });
    h.exec.run_until_stalled();
    assert!(!waiting.is_finished());
    h.exec.block_on(h.engine.clear()).unwrap();
    tx.send(Ok("fetched before the clear")).unwrap();
    h.exec.run_until_stalled();
    let r = waiting.try_take().expect("settled").unwrap();
    assert_eq!(value(&r), "fetched before the clear", "its caller gets it");
    assert_eq!(h.stored("a"), None);
    assert_eq!(h.stored("b"), None);
    assert_eq!(h.stored("c"), None, "not stored over the clear");
    // The remembered error went too.
    assert_eq!(value(&h.get("failing", "now fine").unwrap()), "now fine");
}

#[test]
fn a_missing_hard_record_invalidates_and_a_missing_soft_record_expires() {
    let h = harness();
    set_tagged(&h, "hard", "v", &["h"]);
    set_tagged(&h, "soft", "v", &["s"]);
    let store = h.engine.storage();
    h.exec
        .block_on(store.delete(&record_key(Kind::Hard, "h")))
        .unwrap();
    h.exec
        .block_on(store.delete(&record_key(Kind::Soft, "s")))
        .unwrap();
    let r = h.get("hard", "refetched").unwrap();
    assert_eq!((value(&r), r.status), ("refetched", Status::Miss));
    let r = h.get("soft", "refreshed").unwrap();
    assert_eq!((value(&r), r.status), ("v", Status::Stale));
    // A record holding something else is no record either.
    set_tagged(&h, "bad", "v", &["b"]);
    h.exec
        .block_on(h.engine.storage().set(
            &record_key(Kind::Hard, "b"),
            swre_core::Entry::new("not a record", START, ttl()),
        ))
        .unwrap();
    assert_eq!(h.get("bad", "refetched").unwrap().status, Status::Miss);
}

/// Two engines over one store: what one does to a tag, the other sees (as a
/// restarted process would).
#[test]
fn tag_operations_reach_another_engine_on_the_same_store() {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, START);
    let store = Arc::new(MemoryStorage::new());
    let engine = |store: &Arc<MemoryStorage>| {
        Engine::builder(store.clone(), rt.clone())
            .ttl(ttl())
            .build()
            .unwrap()
    };
    let (a, b) = (engine(&store), engine(&store));
    let opts = CallOptions::new().tags(["t"]);
    exec.block_on(a.with(opts).set("k", "v1")).unwrap();
    let fetch = || async { Ok::<_, Boom>("from b") };
    let r = exec.block_on(b.get_or_fetch("k", fetch)).unwrap();
    assert_eq!((&*r.value, r.status), (&b"v1"[..], Status::Hit));
    exec.block_on(a.invalidate_tag("t")).unwrap();
    // (In a's millisecond, b could not tell a's operation from one made
    // during its fetch, and would not store what it fetched.)
    rt.advance(std::time::Duration::from_millis(1));
    let tagged = b.with(CallOptions::new().tags(["t"]));
    let r = exec.block_on(tagged.get_or_fetch("k", fetch)).unwrap();
    assert_eq!((&*r.value, r.status), (&b"from b"[..], Status::Miss));
    exec.run_until_stalled();
    // b refetched it with the tag: a's next expiry reaches it.
    exec.block_on(a.expire_tag("t")).unwrap();
    let r = exec.block_on(b.get_or_fetch("k", fetch)).unwrap();
    assert_eq!(r.status, Status::Stale);
    // A restarted engine on the store sees the same.
    exec.run_until_stalled();
    exec.block_on(b.invalidate_tag("t")).unwrap();
    let c = engine(&store);
    assert_eq!(exec.block_on(c.peek("k")).unwrap(), None);
}

/// Another process changed the tag while this one's refresh ran: its
/// fence log cannot know, the record's time does.
#[test]
fn a_tag_invalidated_by_another_engine_during_a_refresh_is_not_undone() {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, START);
    let store = Arc::new(MemoryStorage::new());
    let engine = || {
        Engine::builder(store.clone(), rt.clone())
            .ttl(ttl())
            .build()
            .unwrap()
    };
    let (a, b) = (engine(), engine());
    exec.block_on(a.with(CallOptions::new().tags(["t"])).set("k", "v1"))
        .unwrap();
    rt.advance(15 * SEC);
    let (tx, rx) = futures::channel::oneshot::channel::<&'static str>();
    let fetch = move || async move { Ok::<_, Boom>(rx.await.unwrap_or("gate dropped")) };
    assert_eq!(
        exec.block_on(a.get_or_fetch("k", fetch)).unwrap().status,
        Status::Stale
    );
    exec.run_until_stalled();
    rt.advance(std::time::Duration::from_millis(1));
    exec.block_on(b.invalidate_tag("t")).unwrap();
    tx.send("fetched before b's invalidation").unwrap();
    exec.run_until_stalled();
    assert_eq!(a.stats().tag_fenced, 1);
    assert_eq!(exec.block_on(a.peek("k")).unwrap(), None);
}

#[test]
fn tags_work_on_a_store_that_must_be_awaited() {
    let h = harness_on(Faulty::new(MemoryStorage::new()), |b| b);
    set_tagged(&h, "k", "v1", &["t"]);
    assert_eq!(h.get("k", "unused").unwrap().status, Status::Hit);
    h.exec.block_on(h.engine.expire_tag("t")).unwrap();
    assert_eq!(h.get("k", "v2").unwrap().status, Status::Stale);
    assert_eq!(h.get("k", "unused").unwrap().status, Status::Hit);
    h.exec.block_on(h.engine.invalidate_tag("t")).unwrap();
    let r = h.get("k", "v3").unwrap();
    assert_eq!((value(&r), r.status), ("v3", Status::Miss));
}

#[test]
fn a_store_that_fails_tag_records_degrades_to_refetching_never_to_stale_data() {
    let h = harness_on(Faulty::new(MemoryStorage::new()), |b| b);
    set_tagged(&h, "k", "v1", &["t"]);
    // Records unreadable: the tagged entry is not trusted.
    h.engine
        .storage()
        .fail_get
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(h.exec.block_on(h.engine.peek("k")).unwrap().is_none());
    h.engine
        .storage()
        .fail_get
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // Records unwritable: a tagged value is handed out, not stored untagged.
    h.exec.block_on(h.engine.invalidate("k")).unwrap();
    h.engine
        .storage()
        .fail_set
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let opts = CallOptions::new().tags(["new-tag"]);
    let fut = h.engine.with(opts.clone()).get_or_fetch("k", h.ok("v2"));
    assert_eq!(value(&h.exec.block_on(fut).unwrap()), "v2");
    assert_eq!(h.stored("k"), None);
    assert_eq!(h.engine.stats().tag_fenced, 1);
    let set = h.exec.block_on(h.engine.with(opts).set("k", "v3"));
    assert!(matches!(set, Err(Error::Storage(_))));
    assert_eq!(h.stored("k"), None);
    assert!(matches!(
        h.exec.block_on(h.engine.invalidate_tag("t")),
        Err(Error::Storage(_))
    ));
}

#[test]
fn bad_tags_and_reserved_keys_change_nothing() {
    let h = harness();
    let too_long = "x".repeat(swre_core::tags::MAX_TAG_BYTES + 1);
    let too_many: Vec<String> = (0..=swre_core::tags::MAX_TAGS)
        .map(|i| format!("t{i}"))
        .collect();
    for (tags, want) in [
        (vec![String::new()], TagError::Empty),
        (
            vec![too_long.clone()],
            TagError::TooLong {
                len: too_long.len(),
                max: swre_core::tags::MAX_TAG_BYTES,
            },
        ),
        (
            too_many.clone(),
            TagError::TooMany {
                count: too_many.len(),
                max: swre_core::tags::MAX_TAGS,
            },
        ),
    ] {
        let opts = CallOptions::new().tags(tags);
        let set = h.exec.block_on(h.engine.with(opts.clone()).set("k", "v"));
        assert!(
            matches!(set, Err(Error::InvalidTag(ref e)) if *e == want),
            "{set:?}"
        );
        let get = h
            .exec
            .block_on(h.engine.with(opts).get_or_fetch("k", h.ok("v")));
        assert!(matches!(get, Err(Error::InvalidTag(ref e)) if *e == want));
    }
    assert!(matches!(
        h.exec.block_on(h.engine.invalidate_tag("")),
        Err(Error::InvalidTag(TagError::Empty))
    ));
    assert!(matches!(
        h.exec.block_on(h.engine.expire_tag(&too_long)),
        Err(Error::InvalidTag(TagError::TooLong { .. }))
    ));
    // A fetch that answers bad tags fails its call and stores nothing.
    let fut = h.engine.get_or_fetch_with("k", |_| async {
        Ok::<_, Boom>(Fetched::value("v").tags([""]))
    });
    assert!(matches!(
        h.exec.block_on(fut),
        Err(Error::InvalidTag(TagError::Empty))
    ));
    assert_eq!(h.calls(), 0);
    assert_eq!(h.stored("k"), None);
    // Keys under the reserved prefix are the engine's.
    let reserved = record_key(Kind::Hard, "t");
    assert!(matches!(
        h.exec.block_on(h.engine.set(&reserved, "forged")),
        Err(Error::InvalidKey(KeyError::Reserved))
    ));
    assert!(matches!(
        h.get(&reserved, "v"),
        Err(Error::InvalidKey(KeyError::Reserved))
    ));
    assert_eq!(h.stored(&reserved), None);
}

#[test]
fn with_the_breaker_open_a_tag_expired_entry_is_served_and_an_invalidated_one_is_not() {
    let cfg = BreakerConfig::default()
        .failure_threshold(1)
        .global_failure_keys(100)
        .open_for(60 * SEC)
        .first_open_for(60 * SEC);
    let h = harness_with(|b| b.breaker(cfg).fail_safe_throttle(None));
    set_tagged(&h, "k", "old", &["t"]);
    set_tagged(&h, "gone", "old", &["g"]);
    // Expired by tag, then its refresh fails: the key's breaker opens.
    h.exec.block_on(h.engine.expire_tag("t")).unwrap();
    assert_eq!(h.get_err("k").unwrap().status, Status::Stale);
    assert_eq!(h.engine.key_breaker_state("k"), BreakerState::Open);
    let r = h.get("k", "unused").unwrap();
    assert_eq!(
        (value(&r), r.status, r.detail),
        ("old", Status::Stale, Detail::BreakerOpen)
    );
    // Invalidated, and its breaker open: nothing to serve.
    h.exec.block_on(h.engine.expire("gone")).unwrap();
    assert_eq!(h.get_err("gone").unwrap().status, Status::Stale);
    assert_eq!(h.engine.key_breaker_state("gone"), BreakerState::Open);
    h.exec.block_on(h.engine.invalidate_tag("g")).unwrap();
    assert!(matches!(h.get("gone", "unused"), Err(Error::CircuitOpen)));
}

#[test]
fn with_the_negative_cache_an_invalidated_key_s_failure_is_remembered() {
    let h = harness_with(|b| b.negative_ttl(30 * SEC));
    set_tagged(&h, "k", "old", &["t"]);
    h.exec.block_on(h.engine.invalidate_tag("t")).unwrap();
    assert!(matches!(h.get_err("k"), Err(Error::Upstream(_))));
    let calls = h.calls();
    assert!(matches!(h.get_err("k"), Err(Error::Upstream(_))));
    assert_eq!(h.calls(), calls, "remembered, no call");
}

#[test]
fn a_batch_stores_its_tags_and_a_tag_invalidated_during_it_keeps_its_values_out() {
    let h = harness();
    let opts = CallOptions::new().tags(["batch"]);
    let fut = h
        .engine
        .with(opts.clone())
        .get_many_or_fetch(["x", "y"], |keys| async move {
            Ok::<_, Boom>(keys.into_iter().map(|k| (k, "v1")).collect::<Vec<_>>())
        });
    let got = h.exec.block_on(fut);
    assert!(got.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(names(&h, "x"), ["batch"]);
    h.exec.block_on(h.engine.invalidate_tag("batch")).unwrap();
    assert_eq!(h.exec.block_on(h.engine.peek("y")).unwrap(), None);
    // Invalidated while the batch call runs: handed out, not stored.
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let engine = h.engine.clone();
    let waiting = h.exec.spawn(async move {
        engine
            .with(opts)
            .get_many_or_fetch(["x", "y"], |keys| async move {
                let _ = rx.await;
                Ok::<_, Boom>(keys.into_iter().map(|k| (k, "v2")).collect::<Vec<_>>())
            })
            .await
    });
    h.exec.run_until_stalled();
    h.exec.block_on(h.engine.invalidate_tag("batch")).unwrap();
    tx.send(()).unwrap();
    h.exec.run_until_stalled();
    let got = waiting.try_take().expect("settled");
    assert!(got
        .iter()
        .all(|(_, r)| r.as_ref().is_ok_and(|c| &*c.value == b"v2")));
    assert_eq!(h.engine.stats().tag_fenced, 2);
    assert_eq!(h.exec.block_on(h.engine.peek("x")).unwrap(), None);
    assert_eq!(h.exec.block_on(h.engine.peek("y")).unwrap(), None);
}

/// Two instances, each with its own memory in front of one shared store
/// (`Tiered`): an operation by one reaches entries the other holds in its
/// front copy, and what the other refetches afterwards hits again.
#[test]
fn tag_operations_reach_another_instance_s_front_copies() {
    use swre_core::Tiered;
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, START);
    let shared = Arc::new(MemoryStorage::new());
    let engine = || {
        Engine::builder(
            Tiered::new(MemoryStorage::new(), shared.clone()),
            rt.clone(),
        )
        .ttl(ttl())
        .build()
        .unwrap()
    };
    let (a, b) = (engine(), engine());
    let opts = CallOptions::new().tags(["t"]);
    exec.block_on(a.with(opts.clone()).set("k", "v1")).unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let get = |engine: &Engine<Tiered<MemoryStorage, Arc<MemoryStorage>>, TestRuntime>| {
        let calls = calls.clone();
        let fut = engine
            .with(opts.clone())
            .get_or_fetch("k", move || async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, Boom>("refetched")
            });
        let r = exec.block_on(fut).unwrap();
        exec.run_until_stalled();
        (String::from_utf8(r.value.to_vec()).unwrap(), r.status)
    };
    assert_eq!(get(&b), ("v1".into(), Status::Hit), "b holds it in front");
    rt.advance(std::time::Duration::from_millis(1));
    exec.block_on(a.invalidate_tag("t")).unwrap();
    rt.advance(std::time::Duration::from_millis(1));
    assert_eq!(get(&b), ("refetched".into(), Status::Miss));
    assert_eq!(get(&b), ("refetched".into(), Status::Hit), "and hits again");
    exec.block_on(a.expire_tag("t")).unwrap();
    assert_eq!(get(&b).1, Status::Stale);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A shared store that answers only through futures (as Redis does): no
/// `get_ready`, so tag records are read through `Tiered::get_shared`.
struct AwaitedOnly(Arc<MemoryStorage>);

impl Storage for AwaitedOnly {
    async fn get(&self, key: &str) -> Result<Option<swre_core::Entry>, swre_core::StorageError> {
        self.0.get(key).await
    }
    async fn set(&self, key: &str, entry: swre_core::Entry) -> Result<(), swre_core::StorageError> {
        self.0.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), swre_core::StorageError> {
        self.0.delete(key).await
    }
}

/// The same, over a shared store read only through futures and with the
/// clock standing still: a record rewritten in the same millisecond (or by
/// an instance whose clock is behind) is not newer by `created_at` than the
/// other instance's front copy of it, and must still be the one read.
/// Found by the backplane's control test on Redis.
#[test]
fn a_tag_operation_in_the_same_millisecond_reaches_another_instance() {
    use swre_core::Tiered;
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, START);
    let shared = Arc::new(MemoryStorage::new());
    let engine = || {
        Engine::builder(
            Tiered::new(MemoryStorage::new(), AwaitedOnly(shared.clone())),
            rt.clone(),
        )
        .ttl(ttl())
        .build()
        .unwrap()
    };
    let (a, b) = (engine(), engine());
    let opts = CallOptions::new().tags(["t"]);
    exec.block_on(a.with(opts.clone()).set("k", "v1")).unwrap();
    let read = |engine: &Engine<Tiered<MemoryStorage, AwaitedOnly>, TestRuntime>| {
        let r = exec
            .block_on(engine.get_or_fetch("k", || async { Ok::<_, Boom>("refetched") }))
            .unwrap();
        exec.run_until_stalled();
        String::from_utf8(r.value.to_vec()).unwrap()
    };
    assert_eq!(read(&b), "v1", "b holds the entry and the records in front");
    exec.block_on(a.invalidate_tag("t")).unwrap();
    assert_eq!(read(&b), "refetched", "the invalidation reached b");
}
