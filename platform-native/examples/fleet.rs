//! Two engines (as two service instances would be) sharing one Redis: a burst
//! of requests split across both makes one upstream call.
//!
//! `cargo run -p swre-native --features redis --example fleet -- redis://127.0.0.1:6379`

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swre_native::{CacheTtl, Engine, RedisOptions, RedisStorage, Status, Storage, TokioRuntime};

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("swre-fleet-demo-{}", std::process::id());
    let ttl = CacheTtl::new(
        Duration::from_secs(30),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    let mut instances = Vec::new();
    for _ in 0..2 {
        let storage = RedisStorage::connect_with(
            &url,
            RedisOptions {
                prefix: prefix.clone(),
                ..RedisOptions::default()
            },
        )
        .await?;
        instances.push(
            Engine::builder(storage, TokioRuntime::new())
                .ttl(ttl)
                .build()?,
        );
    }
    println!("two engines sharing {url} (key prefix {prefix})");

    let upstream_calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let engine = instances[i % 2].clone();
            let calls = upstream_calls.clone();
            tokio::spawn(async move {
                engine
                    .get_or_fetch("exchange-rate:EUR-USD", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, Never>("1.0842")
                    })
                    .await
                    .map(|c| (i % 2, c.status))
            })
        })
        .collect();
    let mut by_status = [[0usize; 2]; 2];
    for t in tasks {
        let (instance, status) = t.await??;
        by_status[instance][usize::from(status != Status::Miss)] += 1;
    }
    for (n, counts) in by_status.iter().enumerate() {
        println!(
            "instance {n}: {} requests waited for the upstream call, {} were served from Redis",
            counts[0], counts[1]
        );
    }
    let calls = upstream_calls.load(Ordering::SeqCst);
    println!(
        "100 requests across 2 instances in {:?}: {calls} upstream call(s)",
        started.elapsed()
    );
    for e in &instances {
        let s = e.stats();
        println!(
            "  stats: upstream calls {}, waited for the other instance's lease {}",
            s.upstream_calls, s.lease_waits
        );
    }
    instances[0].storage().clear().await?;
    if calls != 1 {
        return Err(format!("expected exactly one upstream call, saw {calls}").into());
    }
    Ok(())
}
