#![allow(missing_docs, clippy::std_instead_of_core)]
//! A bare loop of fresh hits (engine and raw storage) for profilers:
//! `cargo run --release -p swre-benches --example hitloop [raw]`.
use std::hint::black_box;
use std::time::{Duration, Instant};
use swre_benches::{keys, ready, value, Never};
use swre_native::{Bytes, CacheTtl, Engine, MemoryStorage, TokioRuntime};

fn iterations() -> usize {
    std::env::var("HITLOOP_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000_000)
}

fn main() {
    let hour = Duration::from_secs(3600);
    let e = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
        .ttl(CacheTtl::new(hour, hour, hour))
        .build()
        .unwrap();
    let keys = keys(1000);
    for k in &keys {
        ready(e.set(k, Bytes::from(value(64)))).unwrap();
    }
    let n_iter = iterations();
    let only = std::env::args().nth(1);
    for raw in [false, true] {
        if only.as_deref().is_some_and(|o| (o == "raw") != raw) {
            continue;
        }
        let start = Instant::now();
        let mut n = 0usize;
        for i in 0..n_iter {
            let k = &keys[i % 1000];
            n += if raw {
                e.storage().get_now(k).map(|x| x.value.len()).unwrap_or(0)
            } else {
                ready(e.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }))
                    .unwrap()
                    .value
                    .len()
            };
        }
        black_box(n);
        let ns = start.elapsed().as_nanos() as f64 / n_iter as f64;
        println!("{}: {ns:.1} ns", if raw { "raw" } else { "engine" });
    }
}
