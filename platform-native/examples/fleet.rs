//! Three instances of a service (here in one process; in production, one
//! per machine) each answering from memory in front of one shared Redis,
//! kept coherent by the backplane: a burst across all three makes one
//! upstream call, and an invalidation on one reaches the others' memory.
//!
//! ```text
//! cargo run -p swre-native --features redis,metrics --example fleet
//! cargo run -p swre-native --features redis,metrics --example fleet -- redis://127.0.0.1:6379/
//! ```
//!
//! Without a URL it starts a `redis-server` of its own on a free loopback
//! port (and stops it when done); with one, it uses that Redis under a key
//! prefix of its own, which it clears when done. At the end it prints the
//! three instances' metrics in Prometheus text, labelled by instance, as a
//! scrape of each would show them.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use swre_native::{
    Backplane, BackplaneOptions, CacheTtl, Engine, MemoryStorage, MetricsFacade, RedisOptions,
    RedisStorage, Status, Storage, Tiered, TokioRuntime,
};

type Instance = Engine<Backplane, TokioRuntime>;

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

/// A `redis-server` this example started, stopped on drop.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `redis-server` on a free loopback port, without persistence;
/// its URL once it accepts connections.
fn start_redis() -> Result<(OwnRedis, String), Box<dyn std::error::Error>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("cannot start redis-server ({e}); install it, or pass a redis:// URL")
        })?;
    let server = OwnRedis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, format!("redis://127.0.0.1:{port}/")))
}

async fn instance(
    url: &str,
    prefix: &str,
    n: usize,
) -> Result<Instance, Box<dyn std::error::Error>> {
    let l2 = RedisStorage::connect_with(
        url,
        RedisOptions {
            prefix: prefix.to_owned(),
            ..RedisOptions::default()
        },
    )
    .await?;
    let backplane = Backplane::connect_with(
        url,
        Tiered::new(MemoryStorage::new(), l2),
        BackplaneOptions {
            channel: format!("{prefix}:backplane"),
            ..BackplaneOptions::default()
        },
    )
    .await?;
    let ttl = CacheTtl::new(
        Duration::from_secs(30),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    Ok(Engine::builder(backplane, TokioRuntime::new())
        .ttl(ttl)
        .metrics(MetricsFacade::with_labels([("instance", n.to_string())]))
        .build()?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_own, url) = match std::env::args().nth(1) {
        Some(url) => (None, url),
        None => {
            let (server, url) = start_redis()?;
            (Some(server), url)
        }
    };
    let prefix = format!("swre-fleet-demo-{}", std::process::id());
    // The recorder first: each engine's metrics register with it when made.
    let prometheus = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .install_recorder()?;
    let mut fleet = Vec::new();
    for n in 0..3 {
        fleet.push(instance(&url, &prefix, n).await?);
    }
    println!(
        "three instances, each memory in front of {url} (key prefix {prefix}), with a backplane"
    );

    // 1. A burst of 300 requests across the fleet: one upstream call.
    let upstream_calls = Arc::new(AtomicUsize::new(0));
    let version = Arc::new(AtomicUsize::new(1));
    let delay_ms = Arc::new(AtomicU64::new(200));
    let fetch = |calls: Arc<AtomicUsize>, version: Arc<AtomicUsize>, delay: Arc<AtomicU64>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let ms = delay.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Never>(format!("rate-v{}", version.load(Ordering::SeqCst)))
        }
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let engine = fleet[i % 3].clone();
            let f = fetch(upstream_calls.clone(), version.clone(), delay_ms.clone());
            tokio::spawn(async move { engine.get_or_fetch("exchange-rate:EUR-USD", f).await })
        })
        .collect();
    let mut misses = 0;
    for t in tasks {
        if t.await??.status == Status::Miss {
            misses += 1;
        }
    }
    let calls = upstream_calls.load(Ordering::SeqCst);
    println!(
        "300 requests across 3 instances in {:?}: {calls} upstream call(s) ({misses} waited for it, the rest were served from Redis or memory)",
        started.elapsed()
    );

    // 2. An invalidation on one instance reaches the others' memory: how
    // long after it returned another instance still answered the old value.
    version.store(2, Ordering::SeqCst);
    delay_ms.store(0, Ordering::SeqCst);
    fleet[0].invalidate("exchange-rate:EUR-USD").await?;
    let invalidated = Instant::now();
    let mut lag = Duration::ZERO;
    for (n, engine) in fleet.iter().enumerate().skip(1) {
        loop {
            let f = fetch(upstream_calls.clone(), version.clone(), delay_ms.clone());
            let answered = invalidated.elapsed();
            let got = engine.get_or_fetch("exchange-rate:EUR-USD", f).await?;
            if got.value.as_ref() == b"rate-v2" {
                break;
            }
            lag = lag.max(answered);
            if answered > Duration::from_secs(5) {
                return Err(format!("instance {n} still serves the old value after 5 s").into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let calls_now = upstream_calls.load(Ordering::SeqCst);
    if lag.is_zero() {
        println!("invalidate on instance 0: no other instance answered the old value once it returned ({calls_now} upstream calls in all)");
    } else {
        println!("invalidate on instance 0: another instance answered the old value up to {lag:?} after it returned ({calls_now} upstream calls in all)");
    }

    for (n, engine) in fleet.iter().enumerate() {
        let s = engine.stats();
        let b = engine.storage().stats();
        println!(
            "instance {n}: upstream calls {}, lease waits {}; backplane published {}, applied {}, queued {}",
            s.upstream_calls, s.lease_waits, b.published, b.applied, b.queued
        );
    }
    println!("\nmetrics (Prometheus text):");
    let text = prometheus.render();
    for line in text.lines().filter(|l| !l.trim_end().ends_with(" 0")) {
        println!("{line}");
    }
    fleet[0].storage().tiered().l2().clear().await?;
    if !text.contains("swre_upstream_calls_total") {
        return Err("the metrics lack swre_upstream_calls_total".into());
    }
    if calls != 1 {
        return Err(
            format!("expected exactly one upstream call for the burst, saw {calls}").into(),
        );
    }
    Ok(())
}
