#![allow(missing_docs, clippy::std_instead_of_core)]
//! A bare loop of stale hits while each key's refresh is in flight, for
//! profilers: `cargo run --release -p swre-benches --example staleloop`.
use std::hint::black_box;
use std::time::{Duration, Instant};
use swre_benches::{keys, ready, value, Never};
use swre_native::testing::{TestExecutor, TestRuntime};
use swre_native::{Bytes, CacheTtl, Clock, Engine, Entry, MemoryStorage, Storage, SystemClock};
fn main() {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, SystemClock.now_ms());
    let ttl = CacheTtl::new(
        Duration::from_secs(10),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    let e = Engine::builder(MemoryStorage::new(), rt.clone())
        .ttl(ttl)
        .max_concurrent_refreshes(10_000)
        .refresh_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let keys = keys(1000);
    let v = Bytes::from(value(64));
    let past = rt.clock.now_ms() - 20_000;
    for k in &keys {
        ready(e.storage().set(k, Entry::new(v.clone(), past, ttl))).unwrap();
    }
    for k in &keys {
        ready(e.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) })).unwrap();
    }
    let n = 10_000_000;
    let start = Instant::now();
    let mut t = 0;
    for i in 0..n {
        t += ready(e.get_or_fetch(&keys[i % 1000], || async { Ok::<_, Never>(Bytes::new()) }))
            .unwrap()
            .value
            .len();
    }
    black_box(t);
    println!(
        "stale: {:.1} ns",
        start.elapsed().as_nanos() as f64 / n as f64
    );
}
