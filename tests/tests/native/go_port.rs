//! The Go library's engine tests, ported to swre on tokio.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swre_native::{CacheTtl, CallOptions, Clock, Error, ExpiredMode, Json, Status, Storage};
use tokio::sync::Notify;

use crate::common::*;

#[tokio::test]
async fn cache_miss() {
    let (engine, _) = engine_with(|b| b);
    let calls = Calls::default();
    let r = engine.get_or_fetch("k", calls.ok("v")).await.unwrap();
    assert_eq!(
        (r.status, text(&r.value), calls.get()),
        (Status::Miss, "v", 1)
    );
}

#[tokio::test]
async fn cache_hit() {
    let (engine, _) = engine_with(|b| b);
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v")).await.unwrap();
    settle(&engine).await;
    let r = engine.get_or_fetch("k", calls.ok("other")).await.unwrap();
    assert_eq!(
        (r.status, text(&r.value), calls.get()),
        (Status::Hit, "v", 1)
    );
}

#[tokio::test]
async fn stale_while_revalidate() {
    let (engine, clock) = engine_with(|b| b);
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    settle(&engine).await;
    clock.advance(11 * SEC);
    let r = engine.get_or_fetch("k", calls.ok("v2")).await.unwrap();
    assert_eq!((r.status, text(&r.value)), (Status::Stale, "v1"));
    settle(&engine).await;
    let r = engine.get_or_fetch("k", calls.ok("v3")).await.unwrap();
    assert_eq!(
        (r.status, text(&r.value), calls.get()),
        (Status::Hit, "v2", 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_make_one_upstream_call() {
    let (engine, _) = engine_with(|b| b);
    let calls = Calls::default();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let engine = engine.clone();
            let fetch = calls.slow(Duration::from_millis(50), "shared");
            tokio::spawn(async move { engine.get_or_fetch("cold", fetch).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.expect("task").expect("value");
        assert_eq!(text(&r.value), "shared");
    }
    assert_eq!(calls.get(), 1);
    settle(&engine).await;
    assert_eq!(engine.stats().upstream_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_is_an_error_for_every_waiter() {
    let (engine, _) = engine_with(|b| b);
    let gate = Arc::new(Notify::new());
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let engine = engine.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                engine
                    .get_or_fetch("k", move || async move {
                        gate.notified().await;
                        if std::hint::black_box(true) {
                            panic!("callback panicked on purpose");
                        }
                        Ok::<_, Boom>("unreachable")
                    })
                    .await
            })
        })
        .collect();
    while engine.stats().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    for w in waiters {
        assert!(matches!(
            w.await.expect("waiter task"),
            Err(Error::Abandoned)
        ));
    }
    settle(&engine).await;
    assert_eq!(engine.stats().upstream_abandoned, 1);
    let calls = Calls::default();
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("ok"))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
}

#[tokio::test]
async fn custom_serializer() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct User {
        id: u32,
        name: String,
    }
    let clock = swre_native::ManualClock::new(swre_native::SystemClock.now_ms());
    let engine = swre_native::Engine::builder(
        swre_native::MemoryStorage::new(),
        swre_native::TokioRuntime::with_clock(clock),
    )
    .codec(Json)
    .build()
    .unwrap();
    let r = engine
        .get_or_fetch_as::<User, _, _, _, Boom>("u", || async {
            Ok(User {
                id: 1,
                name: "Ada".into(),
            })
        })
        .await
        .unwrap();
    assert_eq!(
        *r.value,
        User {
            id: 1,
            name: "Ada".into()
        }
    );
    settle(&engine).await;
    let raw = engine.storage().get("u").await.unwrap().unwrap();
    assert_eq!(text(&raw.value), r#"{"id":1,"name":"Ada"}"#);
}

#[tokio::test]
async fn dynamic_ttl() {
    let (engine, clock) = engine_with(|b| {
        b.ttl_policy(|_: &str, v: &[u8]| {
            (v == b"short").then(|| CacheTtl::new(SEC, 4 * SEC, 5 * SEC))
        })
    });
    let calls = Calls::default();
    engine.get_or_fetch("a", calls.ok("short")).await.unwrap();
    engine.get_or_fetch("b", calls.ok("long")).await.unwrap();
    settle(&engine).await;
    clock.advance(2 * SEC);
    assert_eq!(
        engine.peek("a").await.unwrap().unwrap().status,
        Status::Stale
    );
    assert_eq!(engine.peek("b").await.unwrap().unwrap().status, Status::Hit);
}

#[tokio::test]
async fn max_concurrent_refreshes() {
    let (engine, clock) = engine_with(|b| b.max_concurrent_refreshes(3));
    let calls = Calls::default();
    for i in 0..10 {
        engine
            .get_or_fetch(&format!("k{i}"), calls.ok("v1"))
            .await
            .unwrap();
    }
    settle(&engine).await;
    clock.advance(11 * SEC);
    let gate = Arc::new(Notify::new());
    for i in 0..10 {
        let gate = gate.clone();
        let c = calls.0.clone();
        let r = engine
            .get_or_fetch(&format!("k{i}"), move || async move {
                c.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok::<_, Boom>("v2")
            })
            .await
            .unwrap();
        assert_eq!(r.status, Status::Stale);
    }
    let s = engine.stats();
    assert_eq!(
        (
            s.refreshes_started,
            s.refreshes_skipped,
            s.refreshes_running
        ),
        (3, 7, 3)
    );
    while calls.get() < 13 {
        tokio::task::yield_now().await;
    }
    gate.notify_waiters();
    settle(&engine).await;
    assert_eq!(calls.get(), 13);
}

#[tokio::test]
async fn key_with_ttl_override() {
    let (engine, _) = engine_with(|b| b);
    let calls = Calls::default();
    let r = engine
        .with(CallOptions::new().ttl(CacheTtl::new(2 * SEC, 3 * SEC, 4 * SEC)))
        .get_or_fetch("k", calls.ok("v"))
        .await
        .unwrap();
    assert_eq!(r.fresh_until - r.created_at, 2_000);
    assert_eq!(r.expires_at - r.created_at, 9_000);
}

#[tokio::test]
async fn storage_errors_still_answer_from_upstream() {
    let (engine, _) = engine_on(Broken, |b| b);
    let calls = Calls::default();
    for _ in 0..3 {
        let r = engine.get_or_fetch("k", calls.ok("v")).await.unwrap();
        assert_eq!((r.status, text(&r.value)), (Status::Miss, "v"));
        settle(&engine).await;
    }
    let s = engine.stats();
    // Each fetch: two failed reads (lookup, re-read), a failed write and a
    // failed removal of the older entry it could not replace.
    assert_eq!(
        (
            s.storage_read_errors,
            s.storage_write_errors,
            s.store_cleanup_failures,
            s.errors
        ),
        (6, 6, 3, 0)
    );
    assert!(matches!(engine.set("k", "v").await, Err(Error::Storage(_))));
}

#[tokio::test]
async fn refresh_during_shutdown_completes() {
    let (engine, clock) = engine_with(|b| b);
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    settle(&engine).await;
    clock.advance(11 * SEC);
    let r = engine
        .get_or_fetch("k", calls.slow(Duration::from_millis(100), "v2"))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Stale);
    engine.shutdown().await;
    assert_eq!(engine.stats().tasks_running, 0);
    assert_eq!(
        text(&engine.storage().get("k").await.unwrap().unwrap().value),
        "v2"
    );
    assert!(matches!(
        engine.get_or_fetch("new", calls.ok("x")).await,
        Err(Error::Shutdown)
    ));
}

#[tokio::test]
async fn expired_entry() {
    for (mode, want) in [
        (ExpiredMode::Revalidate, Status::Miss),
        (ExpiredMode::ServeStale, Status::Expired),
    ] {
        let (engine, clock) = engine_with(|b| b.expired_mode(mode));
        let calls = Calls::default();
        engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
        settle(&engine).await;
        clock.advance(31 * SEC);
        let r = engine.get_or_fetch("k", calls.ok("v2")).await.unwrap();
        assert_eq!(r.status, want, "{mode:?}");
        settle(&engine).await;
        assert_eq!(calls.get(), 2);
        let failing = engine_with(|b| b.expired_mode(mode));
        let (engine, clock) = failing;
        engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
        settle(&engine).await;
        clock.advance(31 * SEC);
        let r = engine.get_or_fetch("k", calls.err()).await.unwrap();
        let want = if mode == ExpiredMode::Revalidate {
            Status::Fallback
        } else {
            Status::Expired
        };
        assert_eq!((r.status, text(&r.value)), (want, "v1"));
    }
}

#[tokio::test]
async fn request_cancellation_does_not_cancel_the_shared_refresh() {
    let (engine, _) = engine_with(|b| b);
    let calls = Calls::default();
    let caller = {
        let engine = engine.clone();
        let fetch = calls.slow(Duration::from_millis(50), "v");
        tokio::spawn(async move { engine.get_or_fetch("k", fetch).await })
    };
    while engine.stats().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    settle(&engine).await;
    assert_eq!(
        text(&engine.storage().get("k").await.unwrap().unwrap().value),
        "v"
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn callback_timeout() {
    let (engine, _) = engine_with(|b| b.refresh_timeout(SEC));
    let calls = Calls::default();
    let r = engine.get_or_fetch("k", calls.slow(60 * SEC, "late")).await;
    assert!(matches!(r, Err(Error::Timeout { after }) if after == SEC));
    settle(&engine).await;
    assert_eq!(engine.stats().upstream_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn background_refresh_timeout() {
    let (engine, clock) = engine_with(|b| b.refresh_timeout(2 * SEC));
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    settle(&engine).await;
    clock.advance(11 * SEC);
    let r = engine
        .get_or_fetch("k", calls.slow(60 * SEC, "late"))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Stale);
    tokio::time::sleep(3 * SEC).await;
    let s = engine.stats();
    assert_eq!(
        (s.upstream_timeouts, s.refreshes_running, s.in_flight),
        (1, 0, 0)
    );
    assert_eq!(
        text(&engine.storage().get("k").await.unwrap().unwrap().value),
        "v1"
    );
}

#[tokio::test(start_paused = true)]
async fn per_key_timeout() {
    let (engine, _) = engine_with(|b| b.refresh_timeout(5 * SEC));
    let calls = Calls::default();
    let slow = {
        let engine = engine.clone();
        let fetch = calls.slow(60 * SEC, "never");
        tokio::spawn(async move { engine.get_or_fetch("slow", fetch).await })
    };
    let fast = engine
        .get_or_fetch("fast", calls.slow(SEC, "quick"))
        .await
        .unwrap();
    assert_eq!(text(&fast.value), "quick");
    assert!(matches!(slow.await.unwrap(), Err(Error::Timeout { .. })));
}

#[tokio::test(start_paused = true)]
async fn concurrent_timeouts_release_every_slot() {
    let (engine, _) = engine_with(|b| b.refresh_timeout(SEC));
    let calls = Calls::default();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let engine = engine.clone();
            let fetch = calls.slow(60 * SEC, "never");
            tokio::spawn(async move { engine.get_or_fetch(&format!("k{i}"), fetch).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Err(Error::Timeout { .. })));
    }
    settle(&engine).await;
    let s = engine.stats();
    assert_eq!(
        (s.upstream_timeouts, s.in_flight, s.tasks_running),
        (20, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_drops_a_hanging_fetch_after_its_grace_period() {
    let (engine, _) = engine_with(|b| b.shutdown_timeout(2 * SEC).refresh_timeout(3600 * SEC));
    let dropped = Arc::new(AtomicBool::new(false));
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let waiter = {
        let engine = engine.clone();
        let flag = Flag(dropped.clone());
        tokio::spawn(async move {
            engine
                .get_or_fetch("k", move || async move {
                    let _flag = flag;
                    std::future::pending::<()>().await;
                    Ok::<_, Boom>("never")
                })
                .await
        })
    };
    while engine.stats().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    engine.shutdown().await;
    assert!(dropped.load(Ordering::SeqCst));
    assert!(matches!(waiter.await.unwrap(), Err(Error::Shutdown)));
    assert_eq!(engine.stats().tasks_running, 0);
}

#[test]
fn engine_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (engine, _) = engine_with(|b| b);
    let calls = Calls::default();
    is_send(&engine.get_or_fetch("k", calls.ok("v")));
    is_send(&engine.get_or_fetch_as::<String, _, _, _, Boom>("k", || async { Ok(String::new()) }));
    is_send(&engine.peek("k"));
    is_send(&engine.get_many_or_fetch(["k"], |keys| async move {
        Ok::<_, Boom>(keys.into_iter().map(|k| (k, "v")).collect::<Vec<_>>())
    }));
    is_send(
        &engine.get_many_or_fetch_as::<String, _, _, _, _, _, _>(["k"], |_| async {
            Ok::<_, Boom>(Vec::<(String, String)>::new())
        }),
    );
    is_send(&engine.set("k", "v"));
    is_send(&engine.invalidate("k"));
    is_send(&engine.shutdown());
    let _ = AtomicUsize::new(0);
}
