#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
#![allow(unreachable_pub)]
//! Deterministic simulation of the engine (FoundationDB style): one seed
//! drives every scheduling choice, store and upstream fault and clock move;
//! invariants are checked after every step, and a failing seed replays
//! exactly.
//!
//! - `cargo test --release -p swre-core --test sim` runs seeds
//!   `0..SWRE_SIM_RUNS` (default 100,000) on every core;
//! - `SWRE_SIM_SEED=n cargo test --release -p swre-core --test sim` replays one;
//! - `SWRE_SIM_RUNS=5000000 SWRE_SIM_FIRST=100000 cargo test --release -p
//!   swre-core --test sim` is the long run.

mod run;
mod world;

fn var(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Silences the fetches that panic on purpose; other panics print as usual.
fn quiet_simulated_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&world::PANIC) {
            default(info);
        }
    }));
}

#[test]
fn simulate() {
    quiet_simulated_panics();
    if let Some(seed) = var("SWRE_SIM_SEED") {
        if let Err(e) = run::run(seed) {
            panic!("seed {seed}: {e}");
        }
        return;
    }
    let runs = var("SWRE_SIM_RUNS").unwrap_or(if cfg!(debug_assertions) {
        2_000
    } else {
        100_000
    });
    let first = var("SWRE_SIM_FIRST").unwrap_or(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let failures: Vec<(u64, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut seed = first + t;
                    let mut failed = Vec::new();
                    while seed < first + runs {
                        if let Err(e) = run::run(seed) {
                            failed.push((seed, e));
                            break;
                        }
                        seed += threads;
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("simulator thread"))
            .collect()
    });
    if let Some((seed, e)) = failures.iter().min_by_key(|(s, _)| *s) {
        panic!(
            "simulation failed at seed {seed}: {e}\nreplay: SWRE_SIM_SEED={seed} cargo test --release -p swre-core --test sim"
        );
    }
    eprintln!("simulated {runs} seeds from {first}: no invariant violated");
}
