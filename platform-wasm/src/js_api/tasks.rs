//! The JS API's runtime: browser clock and timers, and spawned tasks that are
//! tracked as promises so edge workers can hand them to `waitUntil`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use js_sys::{Array, Function, Promise};
use swre_core::{Clock, Spawn, Timer};
use wasm_bindgen::JsValue;

use crate::runtime::{BrowserRuntime, JsClock};

#[derive(Default)]
pub(crate) struct Tracker {
    next: Cell<u32>,
    /// Running tasks' promises by id (few: the refresh bound caps them).
    pending: RefCell<Vec<(u32, Promise)>>,
}

impl Tracker {
    /// A promise that settles when every task running now has finished.
    pub(crate) fn idle(&self) -> Promise {
        let all: Array = self
            .pending
            .borrow()
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        Promise::all(&all)
    }

    pub(crate) fn is_busy(&self) -> bool {
        !self.pending.borrow().is_empty()
    }
}

/// `Date.now()`, `setTimeout`, and tasks as tracked promises, each also given
/// to `wait_until` when one was configured.
#[derive(Clone)]
pub(crate) struct JsApiRuntime {
    browser: BrowserRuntime<JsClock>,
    wait_until: Option<Function>,
    pub(crate) tracker: Rc<Tracker>,
}

impl JsApiRuntime {
    pub(crate) fn new(wait_until: Option<Function>) -> Self {
        Self {
            browser: BrowserRuntime::new(),
            wait_until,
            tracker: Rc::new(Tracker::default()),
        }
    }
}

impl Clock for JsApiRuntime {
    fn now_ms(&self) -> u64 {
        self.browser.now_ms()
    }
}

impl Timer for JsApiRuntime {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + 'static {
        self.browser.sleep(d)
    }
}

impl Spawn for JsApiRuntime {
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        let id = self.tracker.next.get().wrapping_add(1);
        self.tracker.next.set(id);
        let tracker = self.tracker.clone();
        let promise = crate::js::boxed_promise(Box::pin(async move {
            task.await;
            tracker.pending.borrow_mut().retain(|(i, _)| *i != id);
            Ok(JsValue::UNDEFINED)
        }));
        self.tracker
            .pending
            .borrow_mut()
            .push((id, promise.clone()));
        if let Some(f) = &self.wait_until {
            let _ = f.call1(&JsValue::UNDEFINED, &promise);
        }
    }
}
