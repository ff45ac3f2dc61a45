//! The engine on browser timers and `spawn_local`.

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::{select, Either};
use swre_wasm::{
    BrowserRuntime, Clock, Detail, Error, ExpiredMode, ManualClock, MemoryStorage, Status, Storage,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common::*;

#[wasm_bindgen_test]
async fn every_phase_and_status() {
    let (engine, clock) = engine_on(MemoryStorage::new(), |b| b);
    let calls = Calls::default();
    let r = engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    assert_eq!((r.status, text(&r.value)), (Status::Miss, "v1"));
    settle(&engine).await;
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("x"))
            .await
            .unwrap()
            .status,
        Status::Hit
    );

    clock.advance(10 * SEC);
    let r = engine
        .get_or_fetch("k", calls.after(5, Ok("v2")))
        .await
        .unwrap();
    assert_eq!((r.status, text(&r.value)), (Status::Stale, "v1"));
    settle(&engine).await;
    let r = engine.get_or_fetch("k", calls.ok("x")).await.unwrap();
    assert_eq!((r.status, text(&r.value)), (Status::Hit, "v2"));

    clock.advance(30 * SEC);
    let r = engine.get_or_fetch("k", calls.err()).await.unwrap();
    assert_eq!(
        (r.status, r.detail, text(&r.value)),
        (Status::Fallback, Detail::UpstreamError, "v2")
    );
    // The fail-safe throttle: the old value again, without a call, for 5 s.
    let r = engine.get_or_fetch("k", calls.ok("v3")).await.unwrap();
    assert_eq!(
        (r.status, r.detail, text(&r.value)),
        (Status::Fallback, Detail::Throttled, "v2")
    );
    clock.advance(5 * SEC);
    let r = engine.get_or_fetch("k", calls.ok("v3")).await.unwrap();
    assert_eq!((r.status, text(&r.value)), (Status::Miss, "v3"));
    settle(&engine).await;

    clock.advance(60 * SEC);
    assert!(matches!(
        engine.get_or_fetch("k", calls.err()).await,
        Err(Error::Upstream(_))
    ));
    assert_eq!(calls.get(), 5);

    let (serve_stale, clock) = engine_on(MemoryStorage::new(), |b| {
        b.expired_mode(ExpiredMode::ServeStale)
    });
    serve_stale
        .get_or_fetch("k", calls.ok("old"))
        .await
        .unwrap();
    settle(&serve_stale).await;
    clock.advance(30 * SEC);
    let r = serve_stale
        .get_or_fetch("k", calls.ok("new"))
        .await
        .unwrap();
    assert_eq!((r.status, text(&r.value)), (Status::Expired, "old"));
    settle(&serve_stale).await;
    assert_eq!(
        text(
            &serve_stale
                .get_or_fetch("k", calls.ok("x"))
                .await
                .unwrap()
                .value
        ),
        "new"
    );
}

#[wasm_bindgen_test]
async fn two_hundred_local_tasks_on_a_cold_key_make_one_upstream_call() {
    let (engine, _) = engine_on(MemoryStorage::new(), |b| b);
    let calls = Calls::default();
    let results = Rc::new(RefCell::new(Vec::new()));
    let mut done = Vec::new();
    for _ in 0..200 {
        let (tx, rx) = futures::channel::oneshot::channel();
        let engine = engine.clone();
        let fetch = calls.after(20, Ok("shared"));
        let results = results.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let r = engine.get_or_fetch("cold", fetch).await;
            results.borrow_mut().push(r.map(|c| c.value.to_vec()));
            let _ = tx.send(());
        });
        done.push(rx);
    }
    for rx in done {
        rx.await.expect("task finished");
    }
    assert_eq!(calls.get(), 1);
    let results = results.borrow();
    assert_eq!(results.len(), 200);
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(v) if v.as_slice() == b"shared")));
}

#[wasm_bindgen_test]
async fn a_dropped_waiter_does_not_cancel_the_shared_fetch() {
    let (engine, _) = engine_on(MemoryStorage::new(), |b| b);
    let calls = Calls::default();
    {
        let lookup = Box::pin(engine.get_or_fetch("k", calls.after(40, Ok("finished"))));
        let timeout = Box::pin(sleep_ms(5));
        match select(lookup, timeout).await {
            Either::Right(_) => {} // the caller gives up; its future is dropped here
            Either::Left(_) => panic!("the fetch cannot finish within 5 ms"),
        }
    }
    sleep_ms(80).await;
    settle(&engine).await;
    let stored = engine
        .storage()
        .get("k")
        .await
        .unwrap()
        .expect("the fetch completed and stored");
    assert_eq!(text(&stored.value), "finished");
    assert_eq!(calls.get(), 1);
}

#[wasm_bindgen_test]
async fn refresh_timeout_fires_on_real_set_timeout() {
    let (engine, _) = engine_on(MemoryStorage::new(), |b| {
        b.refresh_timeout(std::time::Duration::from_millis(50))
    });
    let calls = Calls::default();
    let started = swre_wasm::JsClock.now_ms_f64();
    let r = engine.get_or_fetch("k", calls.hang()).await;
    let took = swre_wasm::JsClock.now_ms_f64() - started;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!((40.0..5_000.0).contains(&took), "timed out after {took} ms");
    settle(&engine).await;
    assert_eq!(engine.stats().in_flight, 0);
}

#[wasm_bindgen_test]
async fn wait_until_receives_the_background_refresh() {
    let promises = js_sys::Array::new();
    let recorder = promises.clone();
    let wait_until = Closure::<dyn FnMut(JsValue)>::new(move |p: JsValue| {
        recorder.push(&p);
    });
    let wait_until_fn: js_sys::Function = wait_until.as_ref().clone().unchecked_into();
    let clock = ManualClock::new(swre_wasm::JsClock.now_ms());
    let engine = swre_wasm::Engine::builder(
        MemoryStorage::new(),
        BrowserRuntime::with_clock(clock.clone()).wait_until(wait_until_fn),
    )
    .ttl(ttl())
    .build()
    .unwrap();
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    clock.advance(10 * SEC);
    let before = promises.length();
    let r = engine
        .get_or_fetch("k", calls.after(10, Ok("v2")))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Stale);
    assert_eq!(
        promises.length(),
        before + 1,
        "the refresh was handed to waitUntil"
    );
    let refresh: js_sys::Promise = promises.get(before).unchecked_into();
    wasm_bindgen_futures::JsFuture::from(refresh).await.unwrap();
    assert_eq!(
        text(&engine.storage().get("k").await.unwrap().unwrap().value),
        "v2"
    );
    drop(wait_until);
}

#[wasm_bindgen_test]
async fn pending_settles_when_the_running_tasks_have_finished() {
    let (engine, clock) = engine_on(MemoryStorage::new(), |b| b);
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    assert!(!engine.runtime().is_busy());
    clock.advance(10 * SEC);
    let r = engine
        .get_or_fetch("k", calls.after(30, Ok("v2")))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Stale);
    assert!(engine.runtime().is_busy(), "the refresh is not tracked");
    wasm_bindgen_futures::JsFuture::from(engine.runtime().pending())
        .await
        .unwrap();
    assert!(!engine.runtime().is_busy());
    assert_eq!(
        text(&engine.storage().get("k").await.unwrap().unwrap().value),
        "v2",
        "pending settled before the refresh stored its value"
    );
}

trait NowF64 {
    fn now_ms_f64(&self) -> f64;
}

impl NowF64 for swre_wasm::JsClock {
    fn now_ms_f64(&self) -> f64 {
        js_sys::Date::now()
    }
}
