//! The short soak (seconds): mixed operations on a byte-bounded memory store;
//! memory stays bounded and nothing is left running afterwards.

use swre_tests::soak::{run, SoakConfig};

#[test]
fn short_soak_stays_bounded_and_leaves_nothing_running() {
    let cfg = SoakConfig {
        ops: 40_000,
        keys: 10_000,
        max_bytes: 4 << 20,
        workers: 32,
        max_value: 2_048,
        duration: std::time::Duration::ZERO,
    };
    let report = run(cfg);
    println!("{report}");
    let s = &report.stats;
    assert_eq!(
        (s.in_flight, s.refreshes_running, s.tasks_running),
        (0, 0, 0),
        "{report}"
    );
    assert!(report.storage_bytes <= cfg.max_bytes, "{report}");
    assert!(report.storage_entries > 100, "the store was used: {report}");
    assert!(
        s.hits > 0 && s.misses > 0 && s.stale > 0,
        "mixed phases were exercised: {report}"
    );
    assert_eq!(
        s.upstream_calls, report.upstream_calls,
        "every upstream call was counted"
    );
    // Growth is bounded by the store's bound plus runtime/allocator overhead.
    assert!(
        report.rss_growth_bytes() < (cfg.max_bytes as u64) + (48 << 20),
        "{report}"
    );
}
