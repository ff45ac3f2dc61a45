//! [`BrowserRuntime`]: `Date.now()`, `setTimeout`, `spawn_local` or `waitUntil`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
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

/// A `setTimeout` of `ms` and the promise it resolves; never rejects. The
/// handle is `unref`'d where the host has that (Node), so a pending timer never
/// keeps a process alive.
fn timeout(ms: f64) -> (Promise, JsValue) {
    let handle = Rc::new(RefCell::new(JsValue::UNDEFINED));
    let slot = handle.clone();
    let promise = Promise::new(&mut |resolve, _reject| {
        let set_timeout = global_property("setTimeout").and_then(|f| f.dyn_into::<Function>().ok());
        let scheduled = set_timeout.and_then(|f| {
            f.call2(&js_sys::global(), &resolve, &JsValue::from_f64(ms))
                .ok()
        });
        match scheduled {
            Some(id) => {
                if let Some(unref) = Reflect::get(&id, &"unref".into())
                    .ok()
                    .filter(|_| id.is_object())
                    .and_then(|f| f.dyn_into::<Function>().ok())
                {
                    let _ = unref.call0(&id);
                }
                *slot.borrow_mut() = id;
            }
            // No timer on this global: resolve at once rather than hang.
            None => {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
        }
    });
    let id = handle.borrow().clone();
    (promise, id)
}

/// A sleep on `setTimeout`; dropped before it fires, it clears its timer
/// (an engine call that ends early leaves no timer behind).
struct Sleep {
    promise: JsFuture,
    handle: JsValue,
    fired: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.promise).poll(cx) {
            Poll::Ready(_) => {
                self.fired = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.fired || self.handle.is_undefined() {
            return;
        }
        if let Some(clear) =
            global_property("clearTimeout").and_then(|f| f.dyn_into::<Function>().ok())
        {
            let _ = clear.call1(&js_sys::global(), &self.handle);
        }
    }
}

impl<C: Clock> Timer for BrowserRuntime<C> {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + 'static {
        let ms = d.as_millis().min(i32::MAX as u128) as f64;
        let (promise, handle) = timeout(ms);
        Sleep {
            promise: JsFuture::from(promise),
            handle,
            fired: false,
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
