//! IndexedDbStorage against the browser's real IndexedDB.

use std::cell::Cell;

use swre_wasm::testing::conformance;
use swre_wasm::{IndexedDbStorage, MemoryStorage, Status, Storage, Tiered};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common::*;

#[wasm_bindgen_test]
async fn passes_the_conformance_suite() {
    let db = unique("idb-conformance");
    let storage = IndexedDbStorage::open(&db, "entries").await.unwrap();
    conformance::run_all(&storage).await;
    let (engine, _) = engine_on(storage, |b| b);
    conformance::run_engine_checks(&engine).await;
}

#[wasm_bindgen_test]
async fn survives_a_close_and_reopen_like_a_page_reload() {
    let db = unique("idb-reload");
    let calls = Calls::default();
    {
        let storage = IndexedDbStorage::open(&db, "entries").await.unwrap();
        let (engine, _) = engine_on(storage.clone(), |b| b);
        engine
            .get_or_fetch("user:1", calls.ok("Ada"))
            .await
            .unwrap();
        settle(&engine).await;
        storage.close();
    }
    let storage = IndexedDbStorage::open(&db, "entries").await.unwrap();
    let (engine, _) = engine_on(storage, |b| b);
    let r = engine
        .get_or_fetch("user:1", calls.ok("other"))
        .await
        .unwrap();
    assert_eq!(
        (r.status, text(&r.value), calls.get()),
        (Status::Hit, "Ada", 1)
    );
}

#[wasm_bindgen_test]
async fn garbage_in_the_object_store_is_a_miss_and_is_overwritten() {
    let db = unique("idb-garbage");
    let storage = IndexedDbStorage::open(&db, "entries").await.unwrap();
    let garbage: [(&str, JsValue); 3] = [
        ("as-string", JsValue::from_str("not an envelope")),
        ("as-bytes", garbageBytes()),
        ("as-number", JsValue::from_f64(42.0)),
    ];
    for (key, value) in garbage.iter() {
        idbPutRaw(&db, "entries", key, value)
            .await
            .expect("raw put");
        assert_eq!(storage.get(key).await.unwrap(), None, "{key}");
    }
    let (engine, _) = engine_on(storage.clone(), |b| b);
    let calls = Calls::default();
    for (key, _) in garbage.iter() {
        assert_eq!(
            engine
                .get_or_fetch(key, calls.ok("clean"))
                .await
                .unwrap()
                .status,
            Status::Miss
        );
    }
    settle(&engine).await;
    for (key, _) in garbage.iter() {
        assert_eq!(
            text(&storage.get(key).await.unwrap().unwrap().value),
            "clean"
        );
    }
}

#[wasm_bindgen_test]
async fn a_closed_database_degrades_to_upstream() {
    let db = unique("idb-closed");
    let storage = IndexedDbStorage::open(&db, "entries").await.unwrap();
    let (engine, _) = engine_on(storage.clone(), |b| b);
    storage.close();
    let calls = Calls::default();
    for _ in 0..3 {
        let r = engine
            .get_or_fetch("k", calls.ok("from upstream"))
            .await
            .unwrap();
        assert_eq!((r.status, text(&r.value)), (Status::Miss, "from upstream"));
        settle(&engine).await;
    }
    let s = engine.stats();
    // Each call: two failed reads, a failed write and a failed removal of
    // the older entry.
    assert_eq!(
        (
            s.storage_read_errors,
            s.storage_write_errors,
            s.store_cleanup_failures,
            s.errors
        ),
        (6, 6, 3, 0)
    );
}

#[wasm_bindgen_test]
async fn versionchange_closes_and_the_next_operation_reopens() {
    let db = unique("idb-versionchange");
    let first = IndexedDbStorage::open(&db, "a").await.unwrap();
    first
        .set("k", swre_wasm::Entry::new("v", 4_000_000_000_000, ttl()))
        .await
        .unwrap();
    // Opening another store forces a version upgrade: `first` gets versionchange and closes.
    let second = IndexedDbStorage::open(&db, "b").await.unwrap();
    second
        .set("k", swre_wasm::Entry::new("w", 4_000_000_000_000, ttl()))
        .await
        .unwrap();
    assert_eq!(text(&first.get("k").await.unwrap().unwrap().value), "v");
    assert_eq!(text(&second.get("k").await.unwrap().unwrap().value), "w");
    // Deleting the whole database closes both; they reopen empty.
    IndexedDbStorage::delete_database(&db).await.unwrap();
    assert_eq!(first.get("k").await.unwrap(), None);
}

#[wasm_bindgen_test]
async fn tiered_memory_over_indexeddb_serves_hits_without_touching_idb() {
    let db = unique("idb-tiered");
    let l2 = Counting {
        inner: IndexedDbStorage::open(&db, "entries").await.unwrap(),
        gets: Cell::new(0),
    };
    let (engine, _) = engine_on(Tiered::new(MemoryStorage::new(), l2), |b| b);
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v")).await.unwrap();
    settle(&engine).await;
    let reads = engine.storage().l2().gets.get();
    for _ in 0..20 {
        assert_eq!(
            engine
                .get_or_fetch("k", calls.ok("x"))
                .await
                .unwrap()
                .status,
            Status::Hit
        );
    }
    assert_eq!(
        engine.storage().l2().gets.get(),
        reads,
        "L1 hits never read IndexedDB"
    );
    // And the value really is in IndexedDB.
    assert_eq!(
        text(
            &engine
                .storage()
                .l2()
                .inner
                .get("k")
                .await
                .unwrap()
                .unwrap()
                .value
        ),
        "v"
    );
}
