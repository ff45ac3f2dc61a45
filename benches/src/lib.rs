//! Shared fixtures for swre's benchmarks: keys, values, a no-op waker poll.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use swre_native::testing::TestRuntime;
use swre_native::{Bytes, CacheTtl, Clock, Engine, Entry, MemoryStorage, Status, Storage};

/// `n` keys shaped like real cache keys.
pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i:08}:profile")).collect()
}

/// A value of `len` bytes.
pub fn value(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Polls `fut` once with a no-op waker; a cache hit is ready at once.
///
/// Panics if the future is pending: the benchmark set-up must make it a hit.
pub fn ready<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("expected a future that is ready at once (a cache hit)"),
    }
}

/// An error type for fetches that never fail.
#[derive(Debug)]
pub struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

/// A serde record for codec benchmarks.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// An id.
    pub id: u64,
    /// A name.
    pub name: String,
    /// Some tags.
    pub tags: Vec<String>,
    /// Some numbers.
    pub scores: Vec<u32>,
}

/// A user profile: the 6-field serde struct of the typed-hit benchmarks.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// An id.
    pub id: u64,
    /// A name.
    pub name: String,
    /// An email address.
    pub email: String,
    /// Some tags.
    pub tags: Vec<String>,
    /// Whether the account is active.
    pub active: bool,
    /// A score.
    pub score: f64,
}

/// The user with id `i`.
pub fn user(i: u64) -> User {
    User {
        id: i,
        name: format!("User Number {i}"),
        email: format!("user{i}@example.com"),
        tags: vec!["reader".to_owned(), format!("cohort-{}", i % 7)],
        active: !i.is_multiple_of(3),
        score: i as f64 * 1.5,
    }
}

/// A record of roughly `kib` KiB when encoded as JSON.
pub fn record(kib: usize) -> Record {
    Record {
        id: 42,
        name: "a reasonably long display name".to_owned(),
        tags: (0..kib * 12).map(|i| format!("tag-{i}")).collect(),
        scores: (0..kib * 96).map(|i| (i * 7) as u32).collect(),
    }
}

/// The stale-hit benchmarks' TTL: 10 s fresh, then an hour each of stale and expired.
pub fn stale_bench_ttl() -> CacheTtl {
    CacheTtl::new(
        Duration::from_secs(10),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    )
}

/// An engine for the stale-hit benchmarks: memory storage, [`stale_bench_ttl`],
/// and refreshes neither bounded nor timed out during a run.
pub fn stale_bench_engine(rt: &TestRuntime) -> Engine<MemoryStorage, TestRuntime> {
    Engine::builder(MemoryStorage::new(), rt.clone())
        .ttl(stale_bench_ttl())
        .max_concurrent_refreshes(10_000)
        .refresh_timeout(Duration::from_secs(3600))
        .build()
        .expect("the benchmark configuration is valid")
}

/// Makes every key stale with a refresh in flight: writes each 20 s in the
/// past, then looks it up once, which starts its refresh; the caller's
/// executor never runs that refresh, so every later lookup is a stale hit.
pub fn make_stale(
    engine: &Engine<MemoryStorage, TestRuntime>,
    rt: &TestRuntime,
    keys: &[String],
    v: &Bytes,
) {
    let past = rt.clock.now_ms() - 20_000;
    for k in keys {
        ready(
            engine
                .storage()
                .set(k, Entry::new(v.clone(), past, stale_bench_ttl())),
        )
        .expect("memory set");
        let r = ready(engine.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }))
            .expect("a stale value is served");
        assert_eq!(r.status, Status::Stale);
    }
}

/// A small xorshift generator: traces are the same on every run.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws ranks 0..n with P(k) ∝ 1 / (k+1)^alpha, by inverting the CDF.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks with exponent `alpha`.
    pub fn new(n: usize, alpha: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 0..n {
            sum += 1.0 / ((k + 1) as f64).powf(alpha);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    /// One rank.
    pub fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}
