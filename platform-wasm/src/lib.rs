//! # swre-wasm
//!
//! The swre stale-while-revalidate engine in browsers, service workers and
//! edge workers (Cloudflare Workers / workerd): a [`BrowserRuntime`] (clock
//! from `Date.now()`, timers from `setTimeout`, tasks through `spawn_local` or
//! a Workers `waitUntil`), and storages over IndexedDB, the Cache API and any
//! JS object with async `get`/`put`/`delete`. Every item of `swre-core` is
//! re-exported.
//!
//! Everything here is for `wasm32`; on other targets the crate is empty.

#![cfg(target_arch = "wasm32")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// A std crate (wasm32-unknown-unknown has std): the no_std import lints do not apply.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod broadcast;
mod cache_api;
mod idb;
mod js;
mod js_api;
mod js_storage;
mod runtime;
mod web_locks;

pub use broadcast::{Broadcast, BroadcastStats};
pub use cache_api::CacheApiStorage;
pub use idb::IndexedDbStorage;
pub use js_api::SwrEngine;
pub use js_storage::JsStorage;
pub use runtime::{BrowserRuntime, JsClock};
pub use swre_core::*;
pub use web_locks::LeaseStats;
