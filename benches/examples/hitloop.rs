#![allow(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]
//! A bare loop of fresh hits for profilers and instruction counters:
//! `cargo run --release -p swre-benches --example hitloop [MODE]`, where MODE
//! is one of `engine` (a bytes hit through the engine), `raw` (its
//! MemoryStorage alone), `typed` (a typed hit of a 6-field struct), `quick`
//! (quick_cache's `get`), `moka` (moka sync's `get`), `xfetch` (a bytes hit
//! with the XFetch early refresh on, far from expiry), `stale` (a stale hit
//! while its key's refresh is in flight: the `stale_hit` benchmark's set-up);
//! all modes when none is given. `HITLOOP_N` sets the number of hits
//! (default 20,000,000).
//!
//! `benches/run.sh` runs it under `valgrind --tool=cachegrind` at two sizes
//! and takes the difference, which gives instructions per hit without the
//! set-up: a figure that does not depend on the machine's noise.
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swre_benches::{keys, make_stale, ready, stale_bench_engine, user, value, Never, User};
use swre_native::testing::{TestExecutor, TestRuntime};
use swre_native::{Bytes, CacheTtl, Clock, Engine, MemoryStorage, SystemClock, TokioRuntime};

fn iterations() -> usize {
    std::env::var("HITLOOP_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000_000)
}

const MODES: [&str; 7] = ["engine", "raw", "typed", "quick", "moka", "stale", "xfetch"];

fn main() {
    let hour = Duration::from_secs(3600);
    let e = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
        .ttl(CacheTtl::new(hour, hour, hour))
        .build()
        .unwrap();
    let xfetch = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
        .ttl(CacheTtl::new(hour, hour, hour))
        .early_refresh(swre_native::EarlyRefresh::XFetch { beta: 1.0 })
        .build()
        .unwrap();
    let keys = keys(1000);
    let typed_keys: Vec<String> = keys.iter().map(|k| format!("typed:{k}")).collect();
    let quick = quick_cache::sync::Cache::<String, Bytes>::new(100_000);
    let moka = moka::sync::Cache::<String, Bytes>::new(100_000);
    for (i, k) in keys.iter().enumerate() {
        let v = Bytes::from(value(64));
        ready(e.set(k, v.clone())).unwrap();
        ready(e.set_as(&typed_keys[i], &user(i as u64))).unwrap();
        ready(xfetch.set(k, v.clone())).unwrap();
        quick.insert(k.clone(), v.clone());
        moka.insert(k.clone(), v);
    }
    // Every key stale, each with a refresh the executor never runs.
    let exec = TestExecutor::new();
    let stale_rt = TestRuntime::new(&exec, SystemClock.now_ms());
    let stale = stale_bench_engine(&stale_rt);
    make_stale(&stale, &stale_rt, &keys, &Bytes::from(value(64)));
    let n_iter = iterations();
    let only = std::env::args().nth(1);
    if let Some(m) = only.as_deref() {
        assert!(MODES.contains(&m), "unknown mode {m}: one of {MODES:?}");
    }
    for mode in MODES {
        if only.as_deref().is_some_and(|o| o != mode) {
            continue;
        }
        let typed_hit = |k: &str| -> usize {
            let r =
                ready(e.get_or_fetch_as::<User, _, _, _, Never>(k, || async {
                    unreachable!("a hit")
                }))
                .unwrap();
            let u: &Arc<User> = &r.value;
            u.id as usize
        };
        let start = Instant::now();
        let mut n = 0usize;
        for i in 0..n_iter {
            let k = &keys[i % 1000];
            n += match mode {
                "raw" => e.storage().get_now(k).map(|x| x.value.len()).unwrap_or(0),
                "typed" => typed_hit(&typed_keys[i % 1000]),
                "quick" => quick.get(k).map(|v| v.len()).unwrap_or(0),
                "moka" => moka.get(k).map(|v| v.len()).unwrap_or(0),
                "xfetch" => {
                    ready(xfetch.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }))
                        .unwrap()
                        .value
                        .len()
                }
                "stale" => ready(stale.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }))
                    .unwrap()
                    .value
                    .len(),
                _ => ready(e.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }))
                    .unwrap()
                    .value
                    .len(),
            };
        }
        black_box(n);
        let ns = start.elapsed().as_nanos() as f64 / n_iter as f64;
        println!("{mode}: {ns:.1} ns");
    }
}
