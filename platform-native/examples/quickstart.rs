//! A narrated tour of stale-while-revalidate on a FileStorage:
//! miss → hit → stale with background refresh → expired with the upstream
//! down → fallback → the fail-safe throttle → recovery. Real time, about
//! seven seconds.
//!
//! `cargo run -p swre-native --example quickstart [DIR]`

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swre_native::{
    CacheTtl, Detail, Engine, FailSafeThrottle, FileStorage, Status, Storage, TokioRuntime,
};

#[derive(Debug)]
struct UpstreamDown;

impl std::fmt::Display for UpstreamDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream is down (HTTP 503)")
    }
}

impl std::error::Error for UpstreamDown {}

/// A slow upstream (300 ms per call) that can be switched off.
#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Upstream {
    fn fetch(
        &self,
    ) -> impl FnOnce() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, UpstreamDown>> + Send>,
    > + Send
           + 'static {
        let this = self.clone();
        move || {
            Box::pin(async move {
                let n = this.calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                if this.down.load(Ordering::SeqCst) {
                    Err(UpstreamDown)
                } else {
                    Ok(format!("exchange rate v{n}"))
                }
            })
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

type Failure = Box<dyn std::error::Error>;

fn expect(what: &str, ok: bool) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(format!("quickstart check failed: {what}").into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("swre-quickstart"));
    let storage = FileStorage::open(&dir).await?;
    storage.clear().await?;
    let ttl = CacheTtl::new(
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(3),
    );
    let engine = Engine::builder(storage, TokioRuntime::new())
        .ttl(ttl)
        .refresh_timeout(Duration::from_secs(2))
        // After a failed refresh, serve the old value without calling
        // upstream for 1 s (the default is 5 s, doubling up to 1 min).
        .fail_safe_throttle(Some(FailSafeThrottle {
            base: Duration::from_secs(1),
            max: Duration::from_secs(4),
        }))
        .build()?;
    let upstream = Upstream::default();
    println!("swre quickstart — FileStorage in {}", dir.display());
    println!("TTL: fresh 1 s, stale 2 s more, expired 3 s more; upstream takes 300 ms\n");

    let step = |n: usize, label: &'static str| {
        let engine = engine.clone();
        let upstream = upstream.clone();
        async move {
            let started = Instant::now();
            let r = engine.get_or_fetch("rate:EUR-USD", upstream.fetch()).await;
            let took = started.elapsed();
            match &r {
                Ok(c) => println!(
                    "{n}. {label:<46} status={:<8} detail={:<9} value={:?} latency={:>9.3?} upstream calls so far={}",
                    c.status.as_str(),
                    c.detail.as_str(),
                    String::from_utf8_lossy(&c.value),
                    took,
                    upstream.calls()
                ),
                Err(e) => println!("{n}. {label:<44} error: {e}"),
            }
            r
        }
    };

    let r = step(1, "cold cache: miss, waits for upstream").await?;
    expect(
        "1 is a miss after one call",
        r.status == Status::Miss && upstream.calls() == 1,
    )?;

    let r = step(2, "again at once: fresh hit, no upstream").await?;
    expect(
        "2 is a hit with no new call",
        r.status == Status::Hit && upstream.calls() == 1,
    )?;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = step(3, "after 1.1 s: stale, served instantly").await?;
    expect(
        "3 serves v1 as stale",
        r.status == Status::Stale && &*r.value == b"exchange rate v1",
    )?;
    tokio::time::sleep(Duration::from_millis(450)).await;
    println!(
        "   … the background refresh finished meanwhile: upstream calls so far={}",
        upstream.calls()
    );
    expect("one background refresh ran", upstream.calls() == 2)?;

    let r = step(4, "right after: hit on the refreshed value").await?;
    expect(
        "4 is a hit on v2",
        r.status == Status::Hit && &*r.value == b"exchange rate v2",
    )?;

    upstream.down.store(true, Ordering::SeqCst);
    println!("\n   upstream goes down; waiting 3.1 s until the entry is expired\n");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = step(5, "expired + upstream down: fallback").await?;
    expect(
        "5 falls back to v2 after one failed call",
        r.status == Status::Fallback && &*r.value == b"exchange rate v2" && upstream.calls() == 3,
    )?;

    upstream.down.store(false, Ordering::SeqCst);
    println!("\n   upstream recovers\n");
    let r = step(6, "upstream back, inside the throttle: old value").await?;
    expect(
        "6 serves v2 again without a call (the fail-safe throttle)",
        r.status == Status::Fallback
            && r.detail == Detail::Throttled
            && &*r.value == b"exchange rate v2"
            && upstream.calls() == 3,
    )?;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = step(7, "after the 1 s throttle: refetched (miss)").await?;
    expect(
        "7 refetches v4",
        r.status == Status::Miss && &*r.value == b"exchange rate v4" && upstream.calls() == 4,
    )?;

    let r = step(8, "and fresh again: hit").await?;
    expect(
        "8 is a hit",
        r.status == Status::Hit && upstream.calls() == 4,
    )?;

    engine.shutdown().await;
    let s = engine.stats();
    println!(
        "\nstats: hits={} stale={} misses={} fallbacks={} upstream calls={} (errors {})",
        s.hits, s.stale, s.misses, s.fallbacks, s.upstream_calls, s.upstream_errors
    );
    expect(
        "stats agree",
        (
            s.hits,
            s.stale,
            s.misses,
            s.fallbacks,
            s.upstream_calls,
            s.throttled,
        ) == (3, 1, 2, 2, 4, 1),
    )?;
    println!("all steps behaved as narrated");
    Ok(())
}
