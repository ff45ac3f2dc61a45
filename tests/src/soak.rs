//! The soak run: many mixed operations over many keys on a byte-bounded
//! `MemoryStorage`, then a check that memory stayed bounded and that nothing
//! keeps running once traffic stops. `src/bin/soak.rs` is the long run; the
//! test suite runs a short one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swre_native::storage::memory::MemoryLimits;
use swre_native::{CacheTtl, Engine, ManualClock, MemoryStorage, Stats, TokioRuntime};

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct SoakConfig {
    /// Operations in all.
    pub ops: u64,
    /// Distinct keys.
    pub keys: u64,
    /// The memory storage's byte bound.
    pub max_bytes: usize,
    /// Concurrent workers.
    pub workers: u64,
    /// Largest value in bytes.
    pub max_value: usize,
    /// Keep running passes of `ops` operations on the same engine until this
    /// much time has passed (at least one pass).
    pub duration: Duration,
}

/// What a soak run measured.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// Operations run.
    pub ops: u64,
    /// Passes of `SoakConfig::ops` run on the same engine.
    pub passes: u64,
    /// Resident memory after the first pass (KiB): later passes must not grow it much.
    pub rss_after_first_pass_kib: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Resident memory before the run (KiB).
    pub rss_before_kib: u64,
    /// Resident memory after the run (KiB).
    pub rss_after_kib: u64,
    /// Peak resident memory of the process (KiB).
    pub rss_peak_kib: u64,
    /// Bytes the memory storage charged at the end.
    pub storage_bytes: usize,
    /// Entries at the end.
    pub storage_entries: usize,
    /// Engine counters after traffic stopped and the engine settled.
    pub stats: Stats,
    /// Upstream calls the fetches saw.
    pub upstream_calls: u64,
}

impl SoakReport {
    /// Growth of resident memory over the run, in bytes.
    pub fn rss_growth_bytes(&self) -> u64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) * 1024
    }
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "ops {} in {} passes, {:.2?} ({:.0} ops/s)",
            self.ops,
            self.passes,
            self.elapsed,
            self.ops as f64 / self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "rss after the first pass {} KiB",
            self.rss_after_first_pass_kib
        )?;
        writeln!(
            f,
            "rss before {} KiB, after {} KiB (growth {:.1} MiB), peak {} KiB",
            self.rss_before_kib,
            self.rss_after_kib,
            self.rss_growth_bytes() as f64 / 1048576.0,
            self.rss_peak_kib
        )?;
        writeln!(
            f,
            "memory storage: {} entries, {:.1} MiB charged",
            self.storage_entries,
            self.storage_bytes as f64 / 1048576.0
        )?;
        writeln!(
            f,
            "lookups: {} hit, {} stale, {} miss, {} expired, {} fallback, {} errors; upstream calls {} (seen by fetches {})",
            s.hits, s.stale, s.misses, s.expired, s.fallbacks, s.errors, s.upstream_calls, self.upstream_calls
        )?;
        write!(
            f,
            "after traffic: in flight {}, refreshes running {}, tasks running {}",
            s.in_flight, s.refreshes_running, s.tasks_running
        )
    }
}

#[derive(Debug)]
struct Refused;
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream refused")
    }
}
impl std::error::Error for Refused {}

/// Resident memory (`VmRSS`, or `VmHWM` for the peak) in KiB; 0 if unknown.
pub fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the soak on its own multi-threaded tokio runtime.
pub fn run(cfg: SoakConfig) -> SoakReport {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rss_before_kib = rss_kib("VmRSS:");
    let clock = ManualClock::new(1_700_000_000_000);
    let upstream = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (stats, storage_bytes, storage_entries, passes, rss_first) = rt.block_on(async {
        let storage = MemoryStorage::with_limits(MemoryLimits {
            max_bytes: cfg.max_bytes,
            max_entries: usize::MAX / 2,
            shards: 0,
        });
        let engine = Engine::builder(storage, TokioRuntime::with_clock(clock.clone()))
            .ttl(CacheTtl::new(
                Duration::from_secs(5),
                Duration::from_secs(10),
                Duration::from_secs(30),
            ))
            .build()
            .expect("valid configuration");
        let per_worker = cfg.ops / cfg.workers;
        let mut passes = 0u64;
        let mut rss_first = 0;
        loop {
            let workers: Vec<_> = (0..cfg.workers)
                .map(|w| {
                    let engine = engine.clone();
                    let clock = clock.clone();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let mut x = 0x9E37_79B9_7F4A_7C15u64
                            ^ (w + 1 + passes * 1_000).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                        for i in 0..per_worker {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let key = format!("soak:{}", x % cfg.keys);
                            match x % 100 {
                                0..=4 => {
                                    let _ = engine.invalidate(&key).await;
                                }
                                5..=9 => {
                                    let _ = engine.set(&key, vec![7u8; 32]).await;
                                }
                                roll => {
                                    let len = 16 + (x >> 32) as usize % cfg.max_value;
                                    let fails = roll >= 96;
                                    let upstream = upstream.clone();
                                    let _ = engine
                                        .get_or_fetch(&key, move || async move {
                                            upstream.fetch_add(1, Ordering::Relaxed);
                                            if fails {
                                                Err(Refused)
                                            } else {
                                                Ok(vec![1u8; len])
                                            }
                                        })
                                        .await;
                                }
                            }
                            if w == 0 && i % 50 == 49 {
                                clock.advance(Duration::from_secs(1));
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.await;
            }
            passes += 1;
            if passes == 1 {
                rss_first = rss_kib("VmRSS:");
            }
            if started.elapsed() >= cfg.duration {
                break;
            }
        }
        // Traffic has stopped: everything started must end by itself.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = engine.stats();
            if (s.in_flight, s.refreshes_running, s.tasks_running) == (0, 0, 0)
                || Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let storage = engine.storage();
        (
            engine.stats(),
            storage.bytes(),
            storage.len(),
            passes,
            rss_first,
        )
    });
    let elapsed = started.elapsed();
    SoakReport {
        ops: cfg.ops * passes,
        passes,
        rss_after_first_pass_kib: rss_first,
        elapsed,
        rss_before_kib,
        rss_after_kib: rss_kib("VmRSS:"),
        rss_peak_kib: rss_kib("VmHWM:"),
        storage_bytes,
        storage_entries,
        stats,
        upstream_calls: upstream.load(Ordering::Relaxed),
    }
}
