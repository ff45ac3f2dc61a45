//! The Go library's circuit-breaker tests, ported: open, half-open, close,
//! re-open, half-open limit, per-key tracking and LRU eviction, reset.

use swre_native::{BreakerConfig, BreakerState, Error, Status};

use crate::common::*;

fn cfg() -> BreakerConfig {
    BreakerConfig::default()
        .failure_threshold(3)
        .global_failure_keys(3)
        .success_threshold(2)
        .open_for(30 * SEC)
        .first_open_for(30 * SEC) // the Go library opens for one fixed window
        .max_half_open(2)
        .max_key_breakers(5)
}

#[tokio::test]
async fn open_half_open_close_and_reopen() {
    let (engine, clock) = engine_with(|b| b.breaker(cfg()));
    let calls = Calls::default();
    for _ in 0..3 {
        assert!(matches!(
            engine.get_or_fetch("k", calls.err()).await,
            Err(Error::Upstream(_))
        ));
    }
    assert_eq!(engine.key_breaker_state("k"), BreakerState::Open);
    assert!(matches!(
        engine.get_or_fetch("k", calls.ok("v")).await,
        Err(Error::CircuitOpen)
    ));
    assert_eq!(calls.get(), 3);
    // Half-open after open_for; a failing trial re-opens.
    clock.advance(30 * SEC);
    assert_eq!(engine.key_breaker_state("k"), BreakerState::HalfOpen);
    assert!(matches!(
        engine.get_or_fetch("k", calls.err()).await,
        Err(Error::Upstream(_))
    ));
    assert_eq!(engine.key_breaker_state("k"), BreakerState::Open);
    // Two successful trials close it.
    clock.advance(30 * SEC);
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("v"))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
    settle(&engine).await;
    engine.invalidate("k").await.unwrap();
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("v"))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
    assert_eq!(engine.key_breaker_state("k"), BreakerState::Closed);
}

#[tokio::test]
async fn half_open_limit() {
    let (engine, clock) = engine_with(|b| b.breaker(cfg()));
    let calls = Calls::default();
    for k in ["a", "b", "c"] {
        assert!(engine.get_or_fetch(k, calls.err()).await.is_err());
    }
    assert_eq!(engine.breaker_state(), BreakerState::Open);
    clock.advance(30 * SEC);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let trials: Vec<_> = ["t1", "t2"]
        .into_iter()
        .map(|k| {
            let engine = engine.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                engine
                    .get_or_fetch(k, move || async move {
                        let _permit = gate.acquire().await;
                        Ok::<_, Boom>("ok")
                    })
                    .await
            })
        })
        .collect();
    while engine.stats().in_flight < 2 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        engine.get_or_fetch("t3", calls.ok("v")).await,
        Err(Error::CircuitOpen)
    ));
    gate.add_permits(2);
    for t in trials {
        assert_eq!(t.await.unwrap().unwrap().status, Status::Miss);
    }
    assert_eq!(engine.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn per_key_tracking_and_lru_eviction() {
    let (engine, _) =
        engine_with(|b| b.breaker(cfg().failure_threshold(50).global_failure_keys(50)));
    let calls = Calls::default();
    for i in 0..12 {
        assert!(engine
            .get_or_fetch(&format!("k{i}"), calls.err())
            .await
            .is_err());
        assert!(engine.stats().key_breakers <= 5);
    }
    assert_eq!(engine.stats().key_breakers, 5);
    // A failing key does not stop a healthy one.
    let (engine, _) = engine_with(|b| b.breaker(cfg()));
    for _ in 0..3 {
        assert!(engine.get_or_fetch("bad", calls.err()).await.is_err());
    }
    assert_eq!(
        engine
            .get_or_fetch("good", calls.ok("v"))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
}

#[tokio::test]
async fn reset() {
    let (engine, _) = engine_with(|b| b.breaker(cfg()));
    let calls = Calls::default();
    for k in ["a", "b", "c"] {
        assert!(engine.get_or_fetch(k, calls.err()).await.is_err());
    }
    assert_eq!(engine.breaker_state(), BreakerState::Open);
    engine.reset_breaker();
    assert_eq!(engine.breaker_state(), BreakerState::Closed);
    assert_eq!(
        engine
            .get_or_fetch("a", calls.ok("v"))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
}

#[tokio::test]
async fn an_open_breaker_never_blocks_a_fresh_hit() {
    let (engine, _) = engine_with(|b| b.breaker(cfg()));
    let calls = Calls::default();
    engine.get_or_fetch("cached", calls.ok("v")).await.unwrap();
    settle(&engine).await;
    for k in ["a", "b", "c"] {
        assert!(engine.get_or_fetch(k, calls.err()).await.is_err());
    }
    assert_eq!(engine.breaker_state(), BreakerState::Open);
    assert_eq!(
        engine
            .get_or_fetch("cached", calls.ok("x"))
            .await
            .unwrap()
            .status,
        Status::Hit
    );
}
