//! JsStorage over plain JS objects.

use swre_wasm::testing::conformance;
use swre_wasm::{Clock, Entry, JsStorage, Status, Storage};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common::*;

#[wasm_bindgen_test]
async fn passes_the_conformance_suite_over_a_plain_object() {
    let storage = JsStorage::new(makeMapStore()).unwrap();
    conformance::run_all(&storage).await;
    let (engine, _) = engine_on(storage, |b| b);
    conformance::run_engine_checks(&engine).await;
}

#[wasm_bindgen_test]
async fn values_other_than_intact_envelopes_are_misses() {
    let target = makeMapStore();
    let storage = JsStorage::new(target.clone()).unwrap();
    let map: js_sys::Map = js_sys::Reflect::get(&target, &"map".into()).unwrap().into();
    map.set(&"s".into(), &JsValue::from_str("a string"));
    map.set(&"b".into(), &garbageBytes());
    map.set(&"o".into(), &js_sys::Object::new());
    for k in ["s", "b", "o"] {
        assert_eq!(storage.get(k).await.unwrap(), None, "{k}");
    }
    // Another key's envelope copied under this key is not served.
    storage
        .set("a", Entry::new("v", 4_000_000_000_000, ttl()))
        .await
        .unwrap();
    map.set(&"copy".into(), &map.get(&"a".into()));
    assert_eq!(storage.get("copy").await.unwrap(), None);
}

#[wasm_bindgen_test]
async fn an_object_without_the_methods_is_rejected_by_name() {
    let err = JsStorage::new(js_sys::Object::new().into()).unwrap_err();
    assert!(err.to_string().contains("`get`"), "{err}");
}

#[wasm_bindgen_test]
async fn a_throwing_store_degrades_to_upstream() {
    let storage = JsStorage::new(makeThrowingStore()).unwrap();
    let err = storage.get("k").await.unwrap_err();
    assert!(err.to_string().contains("store is down"), "{err}");
    let (engine, _) = engine_on(storage, |b| b);
    let calls = Calls::default();
    let r = engine.get_or_fetch("k", calls.ok("v")).await.unwrap();
    assert_eq!((r.status, text(&r.value)), (Status::Miss, "v"));
    settle(&engine).await;
    let s = engine.stats();
    // The lookup's read and the call's re-check failed; so did its write and
    // the removal of the older entry it could not replace.
    assert_eq!(
        (
            s.storage_read_errors,
            s.storage_write_errors,
            s.store_cleanup_failures
        ),
        (2, 2, 1)
    );
}

#[wasm_bindgen_test]
async fn the_expiration_ttl_is_counted_on_the_clock_the_store_is_given() {
    // The engine's clock (a ManualClock here) is far behind Date.now(): an
    // entry with an hour to live must be handed over with an hour, not with
    // KV's 60-second minimum.
    let clock = swre_wasm::ManualClock::new(1_000);
    let target = makeMapStore();
    let storage = JsStorage::with_clock(target.clone(), clock.clone()).unwrap();
    let life = swre_wasm::CacheTtl::new(SEC * 1_200, SEC * 1_200, SEC * 1_200);
    let entry = Entry::new("v", clock.now_ms(), life);
    let left_s = (entry.expires_at - clock.now_ms()) / 1_000;
    storage.set("k", entry).await.unwrap();
    let options = js_sys::Reflect::get(&target, &"lastOptions".into()).unwrap();
    let ttl = js_sys::Reflect::get(&options, &"expirationTtl".into())
        .unwrap()
        .as_f64();
    assert_eq!(ttl, Some(left_s as f64));
}
