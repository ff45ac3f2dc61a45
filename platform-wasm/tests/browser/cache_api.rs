//! CacheApiStorage against the browser's real Cache API.

use swre_wasm::testing::conformance;
use swre_wasm::{CacheApiStorage, Clock, Status, Storage};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common::*;

#[wasm_bindgen_test]
async fn passes_the_conformance_suite() {
    let storage = CacheApiStorage::open(&unique("cache-conformance"))
        .await
        .unwrap();
    conformance::run_all(&storage).await;
    let (engine, _) = engine_on(storage, |b| b);
    conformance::run_engine_checks(&engine).await;
}

#[wasm_bindgen_test]
async fn a_garbage_body_is_a_miss_and_is_overwritten() {
    let name = unique("cache-garbage");
    let storage = CacheApiStorage::open(&name).await.unwrap();
    let url = format!(
        "https://swre.cache/k-{}",
        String::from(js_sys::encode_uri_component("k"))
    );
    cachePutRaw(&name, &url, &JsValue::from_str("garbage body"))
        .await
        .expect("raw put");
    assert_eq!(storage.get("k").await.unwrap(), None);
    cachePutRaw(&name, &url, &garbageBytes())
        .await
        .expect("raw put");
    assert_eq!(storage.get("k").await.unwrap(), None);
    let (engine, _) = engine_on(storage, |b| b);
    let calls = Calls::default();
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("clean"))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
    settle(&engine).await;
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("x"))
            .await
            .unwrap()
            .status,
        Status::Hit
    );
}

#[wasm_bindgen_test]
async fn clear_empties_the_cache() {
    let storage = CacheApiStorage::open(&unique("cache-clear")).await.unwrap();
    storage
        .set("k", swre_wasm::Entry::new("v", 4_000_000_000_000, ttl()))
        .await
        .unwrap();
    storage.clear().await.unwrap();
    assert_eq!(storage.get("k").await.unwrap(), None);
    storage
        .set("k", swre_wasm::Entry::new("v", 4_000_000_000_000, ttl()))
        .await
        .unwrap();
    assert!(storage.get("k").await.unwrap().is_some());
}

#[wasm_bindgen_test]
async fn max_age_is_counted_on_the_clock_the_store_is_given() {
    // The engine's clock (a ManualClock here) is far behind Date.now(): an
    // entry with an hour to live must say so, not `max-age=1`.
    let clock = swre_wasm::ManualClock::new(1_000);
    let name = unique("cache-clock");
    let storage = CacheApiStorage::open_with_clock(&name, clock.clone())
        .await
        .unwrap();
    let life = swre_wasm::CacheTtl::new(SEC * 1_200, SEC * 1_200, SEC * 1_200);
    let entry = swre_wasm::Entry::new("v", clock.now_ms(), life);
    let left_s = (entry.expires_at - clock.now_ms()) / 1_000;
    storage.set("k", entry).await.unwrap();
    let url = format!(
        "https://swre.cache/k-{}",
        String::from(js_sys::encode_uri_component("k"))
    );
    let header = cacheHeader(&name, &url, "cache-control").await.as_string();
    assert_eq!(header, Some(format!("max-age={left_s}")));
}
