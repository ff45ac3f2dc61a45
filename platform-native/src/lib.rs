//! # swre-native
//!
//! The swre stale-while-revalidate engine for native Rust services: a tokio
//! [`TokioRuntime`], a crash-safe [`FileStorage`], and every item of
//! `swre-core` re-exported.
//!
//! ```no_run
//! use std::time::Duration;
//! use swre_native::{CacheTtl, Engine, FileStorage, TokioRuntime};
//!
//! # async fn run() -> Result<(), swre_native::Error> {
//! let storage = FileStorage::open(std::env::temp_dir().join("swre-cache")).await.map_err(swre_native::Error::Storage)?;
//! let engine = Engine::builder(storage, TokioRuntime::new())
//!     .ttl(CacheTtl::new(Duration::from_secs(5), Duration::from_secs(60), Duration::from_secs(3600)))
//!     .build()?;
//! let user = engine.get_or_fetch("user:1", || async { Ok::<_, std::io::Error>("Ada") }).await?;
//! println!("{} ({})", String::from_utf8_lossy(&user.value), user.status);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
// A std crate: the no_std import lints of the workspace do not apply here.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
#![warn(missing_docs)]

mod file;
#[cfg(feature = "redis")]
mod redis_storage;
mod runtime;

pub use file::{Durability, FileOptions, FileStorage};
#[cfg(feature = "redis")]
pub use redis_storage::{RedisOptions, RedisStorage};
pub use runtime::{CoarseClock, SystemClock, TokioRuntime};
pub use swre_core::*;
