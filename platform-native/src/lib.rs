//! # swre-native
//!
//! The swre stale-while-revalidate engine for native Rust services: a tokio
//! [`TokioRuntime`], a crash-safe [`FileStorage`], and every item of
//! `swre-core` re-exported.
//!
//! ```
//! use std::time::Duration;
//! use swre_native::{CacheTtl, Engine, FileStorage, NotCounted, Status, TokioRuntime};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct User { id: u32, name: String }
//!
//! async fn load_user(id: u32) -> Result<Option<User>, std::io::Error> {
//!     Ok((id == 1).then(|| User { id, name: "Ada".into() }))
//! }
//!
//! async fn run() -> Result<(), swre_native::Error> {
//!     let dir = std::env::temp_dir().join(format!("swre-doc-{}", std::process::id()));
//!     let storage = FileStorage::open(&dir).await?;
//!     let engine = Engine::builder(storage, TokioRuntime::new())
//!         .ttl(CacheTtl::new(Duration::from_secs(5), Duration::from_secs(60), Duration::from_secs(3600)))
//!         .build()?;
//!
//!     // A typed value; "not found" is cached as `None`, not an error, so
//!     // unknown ids never move the circuit breaker.
//!     let user = engine.get_or_fetch_as("user:1", || load_user(1)).await?;
//!     // Typed values come as an `Arc`, decoded once and shared by every hit.
//!     let name = user.value.as_ref().as_ref().map(|u| u.name.as_str());
//!     assert_eq!((user.status, name), (Status::Miss, Some("Ada")));
//!     let again = engine.get_or_fetch_as("user:1", || load_user(1)).await?;
//!     assert_eq!(again.status, Status::Hit);
//!
//!     // Bytes, with an error the breaker must not count.
//!     let r = engine
//!         .get_or_fetch("user:2/avatar", || async { Err::<Vec<u8>, _>(NotCounted::new("no avatar")) })
//!         .await;
//!     assert!(matches!(r, Err(swre_native::Error::Upstream(_))));
//!     engine.shutdown().await;
//!     let _ = std::fs::remove_dir_all(dir);
//!     Ok(())
//! }
//!
//! tokio::runtime::Builder::new_multi_thread()
//!     .enable_all()
//!     .build()
//!     .unwrap()
//!     .block_on(run())
//!     .unwrap();
//! ```

#![forbid(unsafe_code)]
// A std crate: the no_std import lints of the workspace do not apply here.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
#![warn(missing_docs)]

#[cfg(feature = "redis")]
mod backplane;
mod file;
#[cfg(feature = "tower")]
pub mod http_layer;
pub mod observe;
#[cfg(feature = "redis")]
mod redis_storage;
mod runtime;

#[cfg(feature = "redis")]
pub use backplane::{Backplane, BackplaneOptions, BackplaneStats};
pub use file::{Durability, FileOptions, FileStorage, Maintenance};
#[cfg(feature = "metrics")]
pub use observe::MetricsFacade;
#[cfg(feature = "redis")]
pub use redis_storage::{RedisOptions, RedisStorage};
pub use runtime::{CoarseClock, SystemClock, TokioRuntime};
pub use swre_core::*;
