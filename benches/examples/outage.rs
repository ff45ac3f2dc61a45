#![allow(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]
//! Breaker recovery: how soon cold misses succeed again after an origin
//! outage, swre beside moka (which has no breaker).
//!
//! A 10 ms origin serves 100,000 Zipf(1.0) keys to 32 closed-loop clients for
//! 3 s, fails every call for 3 s, then is back for 4 s. Reported per cache:
//! lookups begun in the 4 s after the origin recovered that failed, and how
//! long after the recovery the first fetched value came back. swre runs with its
//! defaults (breaker `first_open_for` 1 s growing to `open_for` 30 s) and
//! with one fixed 30 s opening (the Go library's breaker, and swre's before).
//!
//! `cargo run --release -p swre-benches --example outage -- OUT_JSON`
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swre_benches::{Rng, Zipf};
use swre_native::{BreakerConfig, CacheTtl, Engine, MemoryStorage, TokioRuntime};

const KEYS: usize = 100_000;
const CLIENTS: usize = 32;
const UP: Duration = Duration::from_secs(3);
const DOWN: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(4);
const ORIGIN_LATENCY: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct OriginDown;

impl std::fmt::Display for OriginDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("origin down")
    }
}

impl std::error::Error for OriginDown {}

/// The origin: 10 ms per call, failing while `down` is set.
#[derive(Clone)]
struct Origin {
    down: Arc<AtomicBool>,
}

impl Origin {
    async fn fetch(self, key: u64) -> Result<Vec<u8>, OriginDown> {
        tokio::time::sleep(ORIGIN_LATENCY).await;
        if self.down.load(Ordering::SeqCst) {
            Err(OriginDown)
        } else {
            Ok(key.to_le_bytes().to_vec())
        }
    }
}

/// What one run saw after the origin came back.
#[derive(Default)]
struct Tally {
    failed_after: AtomicU64,
    lookups_after: AtomicU64,
    /// Microseconds from the recovery to the first fetched value (`u64::MAX`: none).
    first_fetch_us: AtomicU64,
}

trait Cache: Clone + Send + Sync + 'static {
    /// Looks `key` up; `Ok(true)` when the value came from the origin now.
    fn lookup(
        &self,
        key: u64,
        origin: Origin,
    ) -> impl std::future::Future<Output = Result<bool, ()>> + Send;
}

#[derive(Clone)]
struct Swre(Engine<MemoryStorage, TokioRuntime>);

impl Cache for Swre {
    async fn lookup(&self, key: u64, origin: Origin) -> Result<bool, ()> {
        let r = self
            .0
            .get_or_fetch(key.to_string(), move || origin.fetch(key))
            .await;
        r.map(|c| c.status == swre_native::Status::Miss)
            .map_err(|_| ())
    }
}

#[derive(Clone)]
struct Moka(moka::future::Cache<u64, Arc<Vec<u8>>>);

impl Cache for Moka {
    async fn lookup(&self, key: u64, origin: Origin) -> Result<bool, ()> {
        let fetched = Arc::new(AtomicBool::new(false));
        let mark = fetched.clone();
        let r = self
            .0
            .try_get_with(key, async move {
                mark.store(true, Ordering::Relaxed);
                origin.fetch(key).await.map(Arc::new)
            })
            .await;
        r.map(|_| fetched.load(Ordering::Relaxed)).map_err(|_| ())
    }
}

async fn run<C: Cache>(cache: C) -> (u64, u64, Option<f64>) {
    let origin = Origin {
        down: Arc::new(AtomicBool::new(false)),
    };
    let tally = Arc::new(Tally {
        first_fetch_us: AtomicU64::new(u64::MAX),
        ..Tally::default()
    });
    let zipf = Arc::new(Zipf::new(KEYS, 1.0));
    let start = Instant::now();
    let recovered_at = start + UP + DOWN;
    let end = recovered_at + AFTER;
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (cache, origin, tally, zipf) =
            (cache.clone(), origin.clone(), tally.clone(), zipf.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9 + c as u64);
            while Instant::now() < end {
                let key = (zipf.draw(&mut rng) * 7_919 % KEYS) as u64;
                let began = Instant::now();
                let r = cache.lookup(key, origin.clone()).await;
                let now = Instant::now();
                // Lookups begun once the origin was back.
                if began >= recovered_at {
                    tally.lookups_after.fetch_add(1, Ordering::Relaxed);
                    match r {
                        Err(()) => {
                            tally.failed_after.fetch_add(1, Ordering::Relaxed);
                            // A rejected lookup answers at once: pace the
                            // client as a real one would be paced by its work.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Ok(true) => {
                            let us = (now - recovered_at).as_micros() as u64;
                            tally.first_fetch_us.fetch_min(us, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                    }
                } else if r.is_err() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    tokio::time::sleep_until((start + UP).into()).await;
    origin.down.store(true, Ordering::SeqCst);
    tokio::time::sleep_until(recovered_at.into()).await;
    origin.down.store(false, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client");
    }
    let first = tally.first_fetch_us.load(Ordering::Relaxed);
    (
        tally.failed_after.load(Ordering::Relaxed),
        tally.lookups_after.load(Ordering::Relaxed),
        (first != u64::MAX).then(|| first as f64 / 1000.0),
    )
}

fn swre(breaker: BreakerConfig) -> Swre {
    let minute = Duration::from_secs(60);
    Swre(
        Engine::builder(MemoryStorage::new(), TokioRuntime::new())
            .ttl(CacheTtl::new(minute, minute, minute))
            .breaker(breaker)
            .build()
            .expect("valid configuration"),
    )
}

fn main() {
    let out = std::env::args().nth(1).expect("usage: outage OUT_JSON");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fixed = BreakerConfig::default().first_open_for(Duration::from_secs(30));
    let runs: [(&str, Box<dyn Fn() -> _>); 3] = [
        (
            "swre",
            Box::new(|| rt.block_on(run(swre(BreakerConfig::default())))),
        ),
        (
            "swre, one fixed 30 s opening",
            Box::new(|| rt.block_on(run(swre(fixed)))),
        ),
        (
            "moka (no breaker)",
            Box::new(|| rt.block_on(run(Moka(moka::future::Cache::new(KEYS as u64))))),
        ),
    ];
    let mut rows = Vec::new();
    for (name, f) in runs {
        let (failed, lookups, first) = f();
        let first_s = first.map_or("none".to_owned(), |ms| format!("{ms:.0} ms"));
        println!("{name}: {failed} of {lookups} lookups failed after recovery; first fetched value {first_s} after it");
        rows.push(format!(
            "{{\"cache\": \"{name}\", \"failed_after\": {failed}, \"lookups_after\": {lookups}, \"first_fetch_ms\": {}}}",
            first.map_or("null".to_owned(), |ms| format!("{ms:.1}"))
        ));
    }
    let json = format!(
        "{{\"keys\": {KEYS}, \"clients\": {CLIENTS}, \"origin_ms\": {}, \"up_s\": {}, \"down_s\": {}, \"after_s\": {}, \"rows\": [{}]}}",
        ORIGIN_LATENCY.as_millis(),
        UP.as_secs(),
        DOWN.as_secs(),
        AFTER.as_secs(),
        rows.join(", ")
    );
    std::fs::write(&out, json).expect("write the report");
}
