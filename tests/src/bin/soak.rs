//! The long soak run:
//! `cargo run --release -p swre-tests --bin soak [SECONDS] [OPS_PER_PASS] [KEYS] [MAX_MIB]`
//! (defaults: 150 s of passes of 1,000,000 mixed operations over 100,000 keys
//! on one engine, a 64 MiB bound).

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use swre_tests::soak::{run, SoakConfig};

/// Memory the process may use beyond the storage's byte bound: the tokio
/// runtime, the allocator's slack and the hash tables' spare capacity.
const OVERHEAD_BYTES: u64 = 32 << 20;

/// Growth allowed from the end of the first pass to the end of the run (a
/// leak would grow with every pass).
const DRIFT_BYTES: u64 = 16 << 20;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let cfg = SoakConfig {
        duration: std::time::Duration::from_secs(arg(1, 150)),
        ops: arg(2, 1_000_000),
        keys: arg(3, 100_000),
        max_bytes: (arg(4, 64) << 20) as usize,
        workers: 64,
        max_value: 2_048,
    };
    println!(
        "soak: passes of {} ops over {} keys for {:?}, memory bound {} MiB",
        cfg.ops,
        cfg.keys,
        cfg.duration,
        cfg.max_bytes >> 20
    );
    let report = run(cfg);
    println!("{report}");
    let s = &report.stats;
    let mut ok = true;
    if (s.in_flight, s.refreshes_running, s.tasks_running) != (0, 0, 0) {
        println!("FAIL: work still running after traffic stopped");
        ok = false;
    }
    if report.storage_bytes > cfg.max_bytes {
        println!("FAIL: storage over its bound");
        ok = false;
    }
    let limit = cfg.max_bytes as u64 + OVERHEAD_BYTES;
    if report.rss_growth_bytes() > limit {
        println!(
            "FAIL: resident memory grew {} bytes, over the bound plus {} MiB",
            report.rss_growth_bytes(),
            OVERHEAD_BYTES >> 20
        );
        ok = false;
    }
    let drift = report
        .rss_after_kib
        .saturating_sub(report.rss_after_first_pass_kib)
        * 1024;
    if drift > DRIFT_BYTES {
        println!("FAIL: resident memory kept growing after the first pass: {drift} bytes");
        ok = false;
    }
    println!(
        "resident growth within bound + {} MiB, drift after the first pass {:.1} MiB (allowed {} MiB): {}",
        OVERHEAD_BYTES >> 20,
        drift as f64 / 1048576.0,
        DRIFT_BYTES >> 20,
        if ok { "yes" } else { "no" }
    );
    if !ok {
        std::process::exit(1);
    }
}
