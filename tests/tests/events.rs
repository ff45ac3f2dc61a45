//! Engine events through the `log` facade (feature `log`): what an operator
//! should hear about, and nothing per hit. Its own test binary, since a
//! process has one logger.

#![allow(
    unreachable_pub,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::sync::Mutex;
use std::time::Duration;

use swre_core::testing::{TestExecutor, TestRuntime};
use swre_native::{BreakerConfig, CacheTtl, Engine, MemoryStorage};

static EVENTS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target() == "swre"
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            EVENTS
                .lock()
                .unwrap()
                .push((r.level(), r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

fn taken() -> Vec<(log::Level, String)> {
    std::mem::take(&mut *EVENTS.lock().unwrap())
}

#[derive(Debug)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream down")
    }
}
impl std::error::Error for Down {}

#[test]
fn operators_hear_of_failures_and_not_of_hits() {
    log::set_logger(&Capture).expect("one logger per process");
    log::set_max_level(log::LevelFilter::Trace);
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, 1_700_000_000_000);
    let s = Duration::from_secs(1);
    let engine = Engine::builder(MemoryStorage::new(), rt.clone())
        .ttl(CacheTtl::new(10 * s, 20 * s, 30 * s))
        .max_value_bytes(8)
        .breaker(BreakerConfig::default().failure_threshold(2))
        .build()
        .unwrap();

    // Hits, misses and stale answers say nothing.
    exec.block_on(engine.get_or_fetch("k", || async { Ok::<_, Down>("v") }))
        .unwrap();
    for _ in 0..1_000 {
        exec.block_on(engine.get_or_fetch("k", || async { Ok::<_, Down>("v") }))
            .unwrap();
    }
    exec.run_until_stalled();
    assert_eq!(taken(), vec![], "nothing is logged per lookup");

    // A value too large to store.
    exec.block_on(engine.get_or_fetch("big", || async { Ok::<_, Down>("far too large") }))
        .unwrap();
    let events = taken();
    assert!(
        events
            .iter()
            .any(|(l, m)| *l == log::Level::Warn && m.contains("over max_value_bytes")),
        "{events:?}"
    );

    // A background refresh that fails.
    rt.advance(15 * s);
    exec.block_on(engine.get_or_fetch("k", || async { Err::<&str, _>(Down) }))
        .unwrap();
    exec.run_until_stalled();
    let events = taken();
    assert!(
        events.iter().any(|(l, m)| *l == log::Level::Warn
            && m == "background refresh failed: upstream fetch failed: upstream down"),
        "{events:?}"
    );

    // A key's breaker opening.
    for _ in 0..2 {
        let _ = exec.block_on(engine.get_or_fetch("bad", || async { Err::<&str, _>(Down) }));
    }
    let events = taken();
    assert!(
        events
            .iter()
            .any(|(l, m)| *l == log::Level::Warn && m.contains("circuit breaker (Key) opened")),
        "{events:?}"
    );
}
