//! Hit ratios: the same traces replayed through `MemoryStorage`, moka and
//! quick_cache at equal capacity (entries). A benchmark, not a test: run by
//! `benches/run.sh`, which puts the table in BENCHMARKS.md.
//!
//! Usage: `cargo run --release -p swre-benches --example hitratio [OUT_JSON]`
//!
//! Traces (each 2,000,000 requests, capacity 5,000; a miss inserts the key):
//! - `zipf-0.8`, `zipf-1.0`, `zipf-1.2`: Zipf-distributed over 100,000 keys;
//! - `scan-mixed`: Zipf 1.0, interrupted every 50,000 requests by a scan of
//!   10,000 keys never requested again;
//! - `loop-1.2x`: keys 0..6,000 requested in order, over and over.

#![allow(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_precision_loss
)]

use std::time::Duration;

use swre_benches::{Rng, Zipf};
use swre_native::storage::memory::MemoryLimits;
use swre_native::{CacheTtl, Entry, MemoryStorage};

const CAPACITY: usize = 5_000;
const REQUESTS: usize = 2_000_000;
const KEYS: usize = 100_000;

/// A deterministic xorshift64* generator.
/// Key ids; the ranks are scattered over ids so that popularity does not
/// follow insertion order or hash order.
fn zipf_trace(alpha: f64, seed: u64, scans: bool) -> Vec<usize> {
    let zipf = Zipf::new(KEYS, alpha);
    let mut rng = Rng(seed);
    let mut trace = Vec::with_capacity(REQUESTS);
    let mut next_scan_key = KEYS;
    while trace.len() < REQUESTS {
        if scans && trace.len() % 60_000 == 50_000 {
            for _ in 0..10_000 {
                trace.push(next_scan_key);
                next_scan_key += 1;
            }
            continue;
        }
        let rank = zipf.draw(&mut rng);
        trace.push(rank.wrapping_mul(7_919) % KEYS);
    }
    trace.truncate(REQUESTS);
    trace
}

fn loop_trace() -> Vec<usize> {
    let span = CAPACITY * 6 / 5;
    (0..REQUESTS).map(|i| i % span).collect()
}

trait Cache {
    /// Looks `key` up, inserting it on a miss; `true` on a hit.
    fn access(&self, key: &str) -> bool;
}

struct Swre(MemoryStorage, Entry);

impl Cache for Swre {
    fn access(&self, key: &str) -> bool {
        if self.0.get_now(key).is_some() {
            return true;
        }
        // A refused write (never, at these sizes) would count as a miss.
        let _ = self.0.set_now(key, self.1.clone());
        false
    }
}

struct Moka(moka::sync::Cache<String, ()>);

impl Cache for Moka {
    fn access(&self, key: &str) -> bool {
        if self.0.get(key).is_some() {
            return true;
        }
        self.0.insert(key.to_owned(), ());
        false
    }
}

struct Quick(quick_cache::sync::Cache<String, ()>);

impl Cache for Quick {
    fn access(&self, key: &str) -> bool {
        if self.0.get(key).is_some() {
            return true;
        }
        self.0.insert(key.to_owned(), ());
        false
    }
}

fn ratio(cache: &dyn Cache, names: &[String], trace: &[usize]) -> f64 {
    let hits = trace.iter().filter(|&&id| cache.access(&names[id])).count();
    hits as f64 / trace.len() as f64
}

fn main() {
    let out = std::env::args().nth(1);
    let traces: Vec<(&str, Vec<usize>)> = vec![
        ("zipf-0.8", zipf_trace(0.8, 1, false)),
        ("zipf-1.0", zipf_trace(1.0, 2, false)),
        ("zipf-1.2", zipf_trace(1.2, 3, false)),
        ("scan-mixed", zipf_trace(1.0, 4, true)),
        ("loop-1.2x", loop_trace()),
    ];
    let most = traces
        .iter()
        .flat_map(|(_, t)| t.iter().copied())
        .max()
        .unwrap_or(0);
    let names: Vec<String> = (0..=most).map(|i| format!("key-{i}")).collect();
    let day = Duration::from_secs(86_400);
    let entry = Entry::new(&b"v"[..], 0, CacheTtl::new(day, day, day));

    let mut rows = Vec::new();
    println!(
        "{:<12} {:>8} {:>8} {:>12}",
        "trace", "swre", "moka", "quick_cache"
    );
    for (name, trace) in &traces {
        let swre = Swre(
            MemoryStorage::with_limits(MemoryLimits {
                max_bytes: usize::MAX / 2,
                max_entries: CAPACITY,
                shards: 0,
            }),
            entry.clone(),
        );
        let moka = Moka(moka::sync::Cache::new(CAPACITY as u64));
        let quick = Quick(quick_cache::sync::Cache::new(CAPACITY));
        let r = [
            ratio(&swre, &names, trace),
            ratio(&moka, &names, trace),
            ratio(&quick, &names, trace),
        ];
        println!(
            "{name:<12} {:>7.2}% {:>7.2}% {:>11.2}%",
            r[0] * 100.0,
            r[1] * 100.0,
            r[2] * 100.0
        );
        rows.push(format!(
            r#"{{"trace":"{name}","requests":{},"swre":{},"moka":{},"quick_cache":{}}}"#,
            trace.len(),
            r[0],
            r[1],
            r[2]
        ));
    }
    if let Some(path) = out {
        let json = format!(
            r#"{{"capacity":{CAPACITY},"keys":{KEYS},"rows":[{}]}}"#,
            rows.join(",")
        );
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
}
