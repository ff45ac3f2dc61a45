//! [`BrowserRuntime`]: `Date.now()`, `setTimeout`, and tasks as tracked
//! promises (also handed to `waitUntil` when one is given).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use js_sys::{Array, Function, Promise, Reflect};
use swre_core::{Clock, Spawn, Timer};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

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

/// The clock a persistent store judges remaining life by (for the expiry it
/// hands the backing store): [`JsClock`] unless the store was made with
/// another, such as the engine's `ManualClock`.
#[derive(Clone)]
pub(crate) struct StoreClock(Rc<dyn Clock>);

impl StoreClock {
    pub(crate) fn new(clock: impl Clock + 'static) -> Self {
        Self(Rc::new(clock))
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

impl Default for StoreClock {
    fn default() -> Self {
        Self::new(JsClock)
    }
}

impl std::fmt::Debug for StoreClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreClock")
    }
}

/// Clock, timer and spawner for browsers, workers and workerd.
///
/// - Timers call `setTimeout` on the global object, so they work in a window,
///   dedicated/shared/service workers and workerd (no `window` needed).
/// - Tasks run as promises (`future_to_promise`), with
///   [`with_wait_until`](Self::with_wait_until) also handed to a JS
///   `waitUntil(promise)` function, so an edge worker keeps running a
///   background refresh after its response was sent.
///
/// Every spawned task is tracked as a promise: [`pending`](Self::pending)
/// settles when the tasks running now have finished (what a Worker hands to
/// `waitUntil` after a response), and [`is_busy`](Self::is_busy) says
/// whether any runs.
#[derive(Clone, Debug)]
pub struct BrowserRuntime<C = JsClock> {
    clock: C,
    wait_until: Option<Function>,
    tasks: Rc<Tasks>,
}

/// The promises of running tasks, by id (few: the engine's refresh bound
/// caps them).
#[derive(Debug, Default)]
struct Tasks {
    next: Cell<u32>,
    running: RefCell<Vec<(u32, Promise)>>,
}

impl BrowserRuntime<JsClock> {
    /// `Date.now()` and `spawn_local`.
    pub fn new() -> Self {
        Self::with_clock(JsClock)
    }

    /// `Date.now()`, with every task's promise also given to `wait_until`
    /// (e.g. `ctx.waitUntil.bind(ctx)` in a Worker's `fetch` handler).
    pub fn with_wait_until(wait_until: Function) -> Self {
        Self::new().wait_until(wait_until)
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
            tasks: Rc::default(),
        }
    }

    /// The same runtime handing task promises to `wait_until`.
    pub fn wait_until(mut self, wait_until: Function) -> Self {
        self.wait_until = Some(wait_until);
        self
    }

    /// A promise that settles when every task running now has finished.
    pub fn pending(&self) -> Promise {
        let all: Array = self
            .tasks
            .running
            .borrow()
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        Promise::all(&all)
    }

    /// Whether a spawned task is still running.
    pub fn is_busy(&self) -> bool {
        !self.tasks.running.borrow().is_empty()
    }
}

impl<C: Clock> Clock for BrowserRuntime<C> {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// What a [`Sleep`] and its timer callback share.
#[derive(Default)]
struct SleepState {
    fired: bool,
    waker: Option<Waker>,
}

/// A sleep on `setTimeout`, without a promise: the timer calls a closure the
/// sleep owns. Dropped before it fires, it clears its timer and frees the
/// closure — nothing of it stays in the externref table. (A `JsFuture` over
/// a promise that never settles would keep its callbacks forever.) The
/// handle is `unref`'d where the host has that (Node), so a pending timer
/// never keeps a process alive.
struct Sleep {
    state: Rc<RefCell<SleepState>>,
    handle: JsValue,
    _callback: Option<Closure<dyn FnMut()>>,
}

thread_local! {
    /// The global's `setTimeout` and `clearTimeout`, looked up once.
    static TIMERS: Option<(Function, Function)> = {
        let f = |name| global_property(name).and_then(|f| f.dyn_into::<Function>().ok());
        f("setTimeout").zip(f("clearTimeout"))
    };
    /// `"unref"` as a JS string.
    static UNREF: JsValue = JsValue::from_str("unref");
}

/// Calls the JS function `f` after `ms` through the global's `setTimeout`:
/// the timer's handle, or `None` when this global has no timer.
pub(crate) fn set_timeout(f: &Function, ms: f64) -> Option<JsValue> {
    let set = TIMERS.with(|t| t.as_ref().map(|(set, _)| set.clone()))?;
    set.call2(&js_sys::global(), f, &JsValue::from_f64(ms))
        .ok()
        .filter(|h| !h.is_undefined())
}

/// Clears a timer [`set_timeout`] started.
pub(crate) fn clear_timeout(handle: &JsValue) {
    TIMERS.with(|t| {
        if let Some((_, clear)) = t {
            let _ = clear.call1(&js_sys::global(), handle);
        }
    });
}

impl Sleep {
    fn new(ms: f64) -> Self {
        let state = Rc::new(RefCell::new(SleepState::default()));
        let Some(set_timeout) = TIMERS.with(|t| t.as_ref().map(|(set, _)| set.clone())) else {
            // No timer on this global: done at once rather than hang.
            state.borrow_mut().fired = true;
            return Self {
                state,
                handle: JsValue::UNDEFINED,
                _callback: None,
            };
        };
        let shared = state.clone();
        let callback = Closure::<dyn FnMut()>::new(move || {
            let waker = {
                let mut s = shared.borrow_mut();
                s.fired = true;
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
        let handle = set_timeout
            .call2(&js_sys::global(), callback.as_ref(), &JsValue::from_f64(ms))
            .unwrap_or(JsValue::UNDEFINED);
        if handle.is_undefined() {
            state.borrow_mut().fired = true;
        } else if handle.is_object() {
            if let Some(unref) = UNREF
                .with(|k| Reflect::get(&handle, k))
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok())
            {
                let _ = unref.call0(&handle);
            }
        }
        Self {
            state,
            handle,
            _callback: Some(callback),
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.state.borrow_mut();
        if s.fired {
            return Poll::Ready(());
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.state.borrow().fired || self.handle.is_undefined() {
            return;
        }
        TIMERS.with(|t| {
            if let Some((_, clear)) = t {
                let _ = clear.call1(&js_sys::global(), &self.handle);
            }
        });
    }
}

impl<C: Clock> Timer for BrowserRuntime<C> {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + 'static {
        Sleep::new(d.as_millis().min(i32::MAX as u128) as f64)
    }
}

impl<C: Clock> Spawn for BrowserRuntime<C> {
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        let tasks = self.tasks.clone();
        let id = tasks.next.get().wrapping_add(1);
        tasks.next.set(id);
        let done = tasks.clone();
        let promise = crate::js::boxed_promise(Box::pin(async move {
            task.await;
            done.running.borrow_mut().retain(|(i, _)| *i != id);
            Ok(JsValue::UNDEFINED)
        }));
        tasks.running.borrow_mut().push((id, promise.clone()));
        if let Some(wait_until) = &self.wait_until {
            // The promise runs whether or not waitUntil accepts it (it may
            // refuse after the response); a refusal only shortens its life.
            let _ = wait_until.call1(&JsValue::UNDEFINED, &promise);
        }
    }
}
