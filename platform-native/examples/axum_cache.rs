//! The tower layer in front of an axum route, driven over real HTTP:
//! `cargo run -p swre-native --features tower --example axum_cache`.
//!
//! The route counts its calls and answers `Cache-Control: max-age=1,
//! stale-while-revalidate=30`. The example asks it four times through the
//! layer with a hyper client and checks what `Cache-Status` says: a miss,
//! a hit, a stale hit served at once after the second of freshness (the
//! refresh runs in background), then a hit on the refreshed response.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use swre_native::http_layer::SwrLayer;
use swre_native::{Engine, MemoryStorage, TokioRuntime};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build()?;
    let app = Router::new()
        .route(
            "/time",
            get(move || async move {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    [("cache-control", "max-age=1, stale-while-revalidate=30")],
                    format!("call {n}"),
                )
            }),
        )
        .layer(SwrLayer::new(engine.clone()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/time", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();

    let get = || async {
        let response = client.get(url.parse()?).await?;
        let status = response.status();
        let cache_status = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        println!("{status} {body:?}  Cache-Status: {cache_status}");
        Ok::<_, Box<dyn Error + Send + Sync>>((body, cache_status))
    };

    let (body, cs) = get().await?;
    check(
        body == "call 1" && cs.contains("fwd=miss") && cs.contains("stored"),
        &cs,
    )?;
    let (body, cs) = get().await?;
    check(body == "call 1" && cs.starts_with("swre; hit; ttl="), &cs)?;

    println!("(waiting for max-age=1 to pass)");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (body, cs) = get().await?;
    // Stale: served at once, the refresh runs in background.
    check(body == "call 1" && cs.starts_with("swre; hit; ttl=-"), &cs)?;

    // The refresh lands in a moment; the next request is a hit on it.
    for _ in 0..100 {
        if calls.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (body, cs) = get().await?;
    check(body == "call 2" && cs.starts_with("swre; hit; ttl="), &cs)?;
    check(calls.load(Ordering::SeqCst) == 2, "two upstream calls")?;

    println!(
        "ok: miss, hit, stale (refreshed in background), hit; 2 upstream calls for 4 requests"
    );
    server.abort();
    engine.shutdown().await;
    Ok(())
}

fn check(ok: bool, what: &str) -> Result<(), Box<dyn Error + Send + Sync>> {
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected: {what}").into())
    }
}
