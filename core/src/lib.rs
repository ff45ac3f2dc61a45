//! # swre-core
//!
//! A `no_std` + `alloc` stale-while-revalidate cache engine. It holds all the
//! logic — TTL phases, singleflight, background refresh, circuit breaker,
//! codecs, memory and tiered storage — written against small platform traits
//! ([`Clock`], [`Timer`], [`Spawn`], [`Storage`]) that platform crates
//! implement (`swre-native` for tokio, `swre-wasm` for browsers and workers).
//!
//! ## Phases
//!
//! | phase | when | lookup does | [`Status`] |
//! |---|---|---|---|
//! | fresh | `now < fresh_until` | return it | `Hit` |
//! | stale | `fresh_until <= now < stale_until` | return it, start one background refresh | `Stale` |
//! | expired | `stale_until <= now < expires_at` | [`ExpiredMode::Revalidate`]: wait for a refresh, old value on failure | `Miss` / `Fallback` |
//! | | | [`ExpiredMode::ServeStale`]: return it, refresh in background | `Expired` |
//! | gone | no entry, `now >= expires_at`, or undecodable | fetch through singleflight and wait | `Miss` |
//!
//! See [`Engine`] for an example.

#![no_std]
// `unsafe` is denied everywhere but `storage/memory/lock.rs` (see its docs).
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod breaker;
mod bytes;
pub mod codec;
mod crc;
mod detail;
mod early;
mod engine;
mod entry;
pub mod envelope;
mod error;
mod flight;
pub mod http;
mod key;
mod log;
mod marks;
mod metrics;
mod negative;
mod phase;
mod policy;
mod random;
mod runtime;
mod stats;
pub mod storage;
mod stripe;
mod sync;
pub mod tags;
mod throttle;
mod time;
mod trace;
mod wait;

#[cfg(feature = "testing")]
pub mod testing;

pub use breaker::{BreakerConfig, BreakerScope, BreakerState};
pub use bytes::Bytes;
pub use codec::{Codec, Compressed, Json, Postcard};
pub use detail::Detail;
pub use early::EarlyRefresh;
pub use engine::{
    BatchResults, Cached, CallOptions, Engine, EngineBuilder, FetchContext, Fetched, WithOptions,
    DEFAULT_MAX_VALUE_BYTES, DEFAULT_REFRESH_TIMEOUT,
};
pub use entry::{CacheTtl, Entry};
pub use error::{
    BoxError, CodecError, ConfigError, Error, FetchError, KeyError, MissingFromBatch, NotCounted,
    StorageError, StorageErrorKind, UpstreamError,
};
pub use metrics::{Metrics, NoMetrics, StorageOp, UpstreamOutcome};
pub use phase::{Phase, Status};
pub use policy::{ExpiredMode, TtlPolicy};
pub use runtime::{Runtime, Spawn};
pub use stats::Stats;
pub use storage::memory::{MemoryLimits, MemoryStorage};
pub use storage::tiered::Tiered;
pub use storage::{LeaseToken, Storage};
pub use sync::{MaybeSend, MaybeSync};
pub use tags::{TagError, TagNames, TagStamp, Tags};
pub use throttle::FailSafeThrottle;
pub use time::{Clock, ManualClock, Timer};
pub use trace::key_hash;
