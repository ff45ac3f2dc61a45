//! `Send`/`Sync` everywhere but `wasm32`, where JS values and futures are `!Send`.
//!
//! Every bound that crosses a task boundary uses these markers, so one engine
//! compiles for tokio's multi-threaded runtime (futures must be `Send`) and for
//! `wasm32` with `spawn_local` (futures may hold a `JsValue`).

/// `Send` on every target but `wasm32`; implemented for every type on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Sync` on every target but `wasm32`; implemented for every type on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}

/// `Send` on every target but `wasm32`; implemented for every type on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` on every target but `wasm32`; implemented for every type on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}
