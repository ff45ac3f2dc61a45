//! [`BrowserRuntime`]: `Date.now()`, `setTimeout`, `spawn_local` or `waitUntil`.

use std::future::Future;
use std::time::Duration;

use js_sys::{Function, Promise};
use swre_core::{Clock, Spawn, Timer};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::js::global_property;

/// The JS wall clock, `Date.now()`.
///
/// In Cloudflare Workers it does not advance during CPU work; the engine never
/// times anything with it (timeouts come from [`Timer`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsClock;

impl Clock for JsClock {
    fn now_ms(&self) -> u64 {
        let ms = js_sys::Date::now();
        if ms.is_finite() && ms > 0.0 {
            ms as u64
        } else {
            0
        }
    }
}

/// Clock, timer and spawner for browsers, workers and workerd.
///
/// - Timers call `setTimeout` on the global object, so they work in a window,
///   dedicated/shared/service workers and workerd (no `window` needed).
/// - Tasks run with `wasm_bindgen_futures::spawn_local`, or — with
///   [`with_wait_until`](Self::with_wait_until) — are also handed to a JS
///   `waitUntil(promise)` function, so an edge worker keeps running a
///   background refresh after its response was sent.
#[derive(Clone, Debug)]
pub struct BrowserRuntime<C = JsClock> {
    clock: C,
    wait_until: Option<Function>,
}

impl BrowserRuntime<JsClock> {
    /// `Date.now()` and `spawn_local`.
    pub fn new() -> Self {
        Self::with_clock(JsClock)
    }

    /// `Date.now()`, with every task's promise also given to `wait_until`
    /// (e.g. `ctx.waitUntil.bind(ctx)` in a Worker's `fetch` handler).
    pub fn with_wait_until(wait_until: Function) -> Self {
        Self {
            clock: JsClock,
            wait_until: Some(wait_until),
        }
    }
}

impl Default for BrowserRuntime<JsClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone + 'static> BrowserRuntime<C> {
    /// `clock` (e.g. a `ManualClock` in tests) with `setTimeout` and `spawn_local`.
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            wait_until: None,
        }
    }

    /// The same runtime handing task promises to `wait_until`.
    pub fn wait_until(mut self, wait_until: Function) -> Self {
        self.wait_until = Some(wait_until);
        self
    }
}

impl<C: Clock> Clock for BrowserRuntime<C> {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// A promise resolved by `setTimeout` after `ms`; never rejects.
fn timeout_promise(ms: f64) -> Promise {
    Promise::new(&mut |resolve, _reject| {
        let set_timeout = global_property("setTimeout").and_then(|f| f.dyn_into::<Function>().ok());
        let scheduled = set_timeout
            .map(|f| {
                f.call2(&js_sys::global(), &resolve, &JsValue::from_f64(ms))
                    .is_ok()
            })
            .unwrap_or(false);
        if !scheduled {
            // No timer on this global: resolve at once rather than hang.
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    })
}

impl<C: Clock> Timer for BrowserRuntime<C> {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + 'static {
        let ms = d.as_millis().min(i32::MAX as u128) as f64;
        async move {
            let _ = JsFuture::from(timeout_promise(ms)).await;
        }
    }
}

impl<C: Clock> Spawn for BrowserRuntime<C> {
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        match &self.wait_until {
            None => wasm_bindgen_futures::spawn_local(task),
            Some(wait_until) => {
                let promise = wasm_bindgen_futures::future_to_promise(async move {
                    task.await;
                    Ok(JsValue::UNDEFINED)
                });
                // The promise runs whether or not waitUntil accepts it (it may
                // refuse after the response); a refusal only shortens its life.
                let _ = wait_until.call1(&JsValue::UNDEFINED, &promise);
            }
        }
    }
}
