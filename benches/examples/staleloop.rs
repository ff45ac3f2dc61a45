#![allow(missing_docs, clippy::std_instead_of_core)]
//! A bare loop of stale hits while each key's refresh is in flight (the
//! set-up of the `stale_hit` benchmark), for profilers:
//! `cargo run --release -p swre-benches --example staleloop`.
use std::hint::black_box;
use std::time::Instant;
use swre_benches::{keys, make_stale, ready, stale_bench_engine, value, Never};
use swre_native::testing::{TestExecutor, TestRuntime};
use swre_native::{Bytes, Clock, SystemClock};

fn main() {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, SystemClock.now_ms());
    let e = stale_bench_engine(&rt);
    let keys = keys(1000);
    make_stale(&e, &rt, &keys, &Bytes::from(value(64)));
    let n: usize = std::env::var("STALELOOP_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    let start = Instant::now();
    let mut t = 0;
    for i in 0..n {
        t += ready(e.get_or_fetch(&keys[i % 1000], || async { Ok::<_, Never>(Bytes::new()) }))
            .expect("a stale hit")
            .value
            .len();
    }
    black_box(t);
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("stale: {ns:.1} ns");
}
