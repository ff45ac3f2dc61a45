//! swre-wasm in a real headless Chromium: the engine on browser timers and
//! `spawn_local`, IndexedDB, the Cache API and JS-object storage.

#![cfg(target_arch = "wasm32")]
#![allow(
    unreachable_pub,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use wasm_bindgen_test::wasm_bindgen_test_configure;

wasm_bindgen_test_configure!(run_in_browser);

mod cache_api;
mod common;
mod engine;
mod idb;
mod js_storage;
mod sharing;
