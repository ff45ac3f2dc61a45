//! Sharing between browser contexts: IndexedDbStorage's leases are Web
//! Locks, and `Broadcast` keeps L1 copies coherent over a BroadcastChannel.
//! Several stores on one database in this one page stand for several
//! contexts (locks and channels treat them alike); the JS package's tests
//! (`www/tests/contexts.test.mjs`) use real pages and workers.

use std::time::Duration;

use futures::future::join_all;
use js_sys::Reflect;
use swre_wasm::{
    Broadcast, CacheTtl, Entry, IndexedDbStorage, LeaseToken, MemoryStorage, Status, Storage,
    Tiered,
};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);

async fn two_stores(tag: &str) -> (IndexedDbStorage, IndexedDbStorage) {
    let db = unique(tag);
    let a = IndexedDbStorage::open(&db, "entries").await.unwrap();
    let b = IndexedDbStorage::open(&db, "entries").await.unwrap();
    (a, b)
}

#[wasm_bindgen_test]
async fn a_lease_is_exclusive_across_stores_of_one_database_until_released() {
    let (a, b) = two_stores("lease-exclusive").await;
    let token = a.try_lease("k", LONG).await.unwrap().expect("granted");
    assert_ne!(token, LeaseToken::LOCAL);
    assert_eq!(
        b.try_lease("k", LONG).await.unwrap(),
        None,
        "b while a holds it"
    );
    assert_eq!(
        a.try_lease("k", LONG).await.unwrap(),
        None,
        "a's second grant"
    );
    let other = b.try_lease("other key", LONG).await.unwrap();
    assert!(other.is_some(), "another key is another lock");
    // Another token (a later holder's) releases nothing.
    a.release_lease("k", LeaseToken(token.0 + 1000)).await;
    assert_eq!(b.try_lease("k", LONG).await.unwrap(), None);
    a.release_lease("k", token).await;
    assert!(
        b.try_lease("k", LONG).await.unwrap().is_some(),
        "b after the release"
    );
    // Another database is another set of locks.
    let (c, _) = two_stores("lease-exclusive-other").await;
    assert!(c.try_lease("k", LONG).await.unwrap().is_some());
    let (sa, sb) = (a.lease_stats(), b.lease_stats());
    assert_eq!(
        (sa.lease_grants, sa.lease_refusals, sa.lease_errors),
        (1, 1, 0)
    );
    assert_eq!(
        (sb.lease_grants, sb.lease_refusals, sb.lease_errors),
        (2, 2, 0)
    );
}

#[wasm_bindgen_test]
async fn a_lease_ends_by_itself_after_its_ttl() {
    let (a, b) = two_stores("lease-ttl").await;
    let first = a
        .try_lease("k", Duration::from_millis(50))
        .await
        .unwrap()
        .expect("granted");
    assert_eq!(b.try_lease("k", LONG).await.unwrap(), None);
    sleep_ms(120).await;
    let second = b
        .try_lease("k", LONG)
        .await
        .unwrap()
        .expect("after the TTL");
    // The first holder's late release does not free the second's lock.
    a.release_lease("k", first).await;
    assert_eq!(a.try_lease("k", LONG).await.unwrap(), None);
    b.release_lease("k", second).await;
}

#[wasm_bindgen_test]
async fn a_store_dropped_while_holding_a_lease_lets_it_go() {
    let (a, b) = two_stores("lease-drop").await;
    let _token = a.try_lease("k", LONG).await.unwrap().expect("granted");
    drop(a);
    sleep_ms(5).await;
    assert!(b.try_lease("k", LONG).await.unwrap().is_some());
}

#[wasm_bindgen_test]
async fn engines_on_two_stores_of_one_database_make_one_upstream_call() {
    let (a, b) = two_stores("lease-engines").await;
    let (ea, _) = engine_on(a, |e| e);
    let (eb, _) = engine_on(b, |e| e);
    let calls = Calls::default();
    let lookups = (0..20).map(|i| {
        let engine = if i % 2 == 0 { &ea } else { &eb };
        engine.get_or_fetch("cold", calls.after(200, Ok("fetched once")))
    });
    let results = join_all(lookups).await;
    assert_eq!(calls.get(), 1, "upstream calls");
    for r in results {
        assert_eq!(text(&r.unwrap().value), "fetched once");
    }
    let waited = ea.stats().lease_waits + eb.stats().lease_waits;
    assert_eq!(waited, 1, "the other engine's call waited for the lease");
}

type Shared = Broadcast<MemoryStorage, IndexedDbStorage>;

async fn two_contexts(tag: &str) -> (Shared, Shared) {
    let (a, b) = two_stores(tag).await;
    let channel = unique(tag);
    (
        Broadcast::new(Tiered::new(MemoryStorage::new(), a), &channel),
        Broadcast::new(Tiered::new(MemoryStorage::new(), b), &channel),
    )
}

fn entry(v: &'static str) -> Entry {
    Entry::new(v, js_sys::Date::now() as u64, CacheTtl::default())
}

async fn value_in(s: &Shared, key: &str) -> Option<String> {
    s.get(key).await.unwrap().map(|e| text(&e.value).to_owned())
}

#[wasm_bindgen_test]
async fn a_change_in_one_context_drops_the_others_memory_copy() {
    let (a, b) = two_contexts("broadcast").await;
    assert!(a.is_connected() && b.is_connected());
    a.set("k", entry("v1")).await.unwrap();
    // The message arrives a moment later (and drops nothing: b has no copy).
    sleep_ms(20).await;
    assert_eq!(value_in(&b, "k").await.as_deref(), Some("v1"));
    assert!(
        b.tiered().l1().get("k").await.unwrap().is_some(),
        "b holds a copy"
    );
    a.set("k", entry("v2")).await.unwrap();
    sleep_ms(20).await;
    assert_eq!(b.tiered().l1().get("k").await.unwrap(), None);
    assert_eq!(value_in(&b, "k").await.as_deref(), Some("v2"));
    a.delete("k").await.unwrap();
    sleep_ms(20).await;
    assert_eq!(value_in(&b, "k").await, None);
    // A clear empties every other L1.
    a.set("x", entry("x")).await.unwrap();
    a.set("y", entry("y")).await.unwrap();
    sleep_ms(20).await;
    assert!(value_in(&b, "x").await.is_some() && value_in(&b, "y").await.is_some());
    assert!(
        b.tiered().l1().get("y").await.unwrap().is_some(),
        "b holds a copy"
    );
    a.clear().await.unwrap();
    sleep_ms(20).await;
    assert_eq!(
        (value_in(&b, "x").await, value_in(&b, "y").await),
        (None, None)
    );
    // b's own changes reach a, never b itself.
    b.set("z", entry("z1")).await.unwrap();
    sleep_ms(20).await;
    assert_eq!(value_in(&a, "z").await.as_deref(), Some("z1"));
    b.set("z", entry("z2")).await.unwrap();
    sleep_ms(20).await;
    assert_eq!(value_in(&a, "z").await.as_deref(), Some("z2"));
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.broadcasts_sent, sa.broadcasts_received), (6, 2));
    assert_eq!((sb.broadcasts_sent, sb.broadcasts_received), (2, 6));
    assert_eq!(sa.broadcasts_unsent + sb.broadcasts_unsent, 0);
}

#[wasm_bindgen_test]
async fn without_broadcast_channel_changes_are_made_and_counted_as_unsent() {
    let global = js_sys::global();
    let name = JsValue::from_str("BroadcastChannel");
    let saved = Reflect::get(&global, &name).unwrap();
    Reflect::set(&global, &name, &JsValue::UNDEFINED).unwrap();
    let (a, b) = two_contexts("no-broadcast").await;
    Reflect::set(&global, &name, &saved).unwrap();
    assert!(!a.is_connected());
    a.set("k", entry("v1")).await.unwrap();
    sleep_ms(20).await;
    assert_eq!(value_in(&b, "k").await.as_deref(), Some("v1"));
    a.set("k", entry("v2")).await.unwrap();
    sleep_ms(20).await;
    // b serves its copy until it stops being fresh.
    assert_eq!(value_in(&b, "k").await.as_deref(), Some("v1"));
    assert_eq!(a.stats().broadcasts_unsent, 2);
    assert_eq!(b.stats().broadcasts_received, 0);
}

#[wasm_bindgen_test]
async fn an_engine_over_a_broadcast_store_sees_another_contexts_delete() {
    let (a, b) = two_contexts("broadcast-engine").await;
    let (ea, _) = engine_on(a, |e| e);
    let (eb, _) = engine_on(b, |e| e);
    let calls = Calls::default();
    ea.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    settle(&ea).await;
    let hit = eb.get_or_fetch("k", calls.ok("other")).await.unwrap();
    assert_eq!((hit.status, text(&hit.value)), (Status::Hit, "v1"));
    ea.invalidate("k").await.unwrap();
    sleep_ms(20).await;
    let after = eb.get_or_fetch("k", calls.ok("v2")).await.unwrap();
    assert_eq!((after.status, text(&after.value)), (Status::Miss, "v2"));
    assert_eq!(calls.get(), 2);
}
