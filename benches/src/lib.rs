//! Shared fixtures for swre's benchmarks: keys, values, a no-op waker poll.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

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

/// A record of roughly `kib` KiB when encoded as JSON.
pub fn record(kib: usize) -> Record {
    Record {
        id: 42,
        name: "a reasonably long display name".to_owned(),
        tags: (0..kib * 12).map(|i| format!("tag-{i}")).collect(),
        scores: (0..kib * 96).map(|i| (i * 7) as u32).collect(),
    }
}
