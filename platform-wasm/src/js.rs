//! Small bridges between JS values, events and swre's errors.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::{Function, Reflect, Uint8Array};
use swre_core::{StorageError, StorageErrorKind};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// A readable message for a thrown JS value (`DOMException`, `Error`, anything).
pub(crate) fn describe(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<web_sys::DomException>() {
        return format!("{}: {}", e.name(), e.message());
    }
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(e.name()), String::from(e.message()));
    }
    if let Some(s) = value.as_string() {
        return s;
    }
    // A thrown object as JSON (`{"code":7}`), anything else as `String(v)`;
    // never Rust's debug form of a JsValue.
    if value.is_object() {
        if let Some(json) = js_sys::JSON::stringify(value)
            .ok()
            .and_then(|j| j.as_string())
        {
            return json;
        }
    }
    global_property("String")
        .and_then(|f| f.dyn_into::<Function>().ok())
        .and_then(|f| f.call1(&JsValue::UNDEFINED, value).ok())
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| String::from("a value that cannot be shown"))
}

/// A storage error of `kind` saying what `op` was doing and what JS threw.
pub(crate) fn storage_error(kind: StorageErrorKind, op: &str, value: &JsValue) -> StorageError {
    StorageError::new(kind, format!("{op}: {}", describe(value)))
}

/// `obj[name]` as a function, or an error naming it.
pub(crate) fn method(obj: &JsValue, name: &str) -> Result<Function, StorageError> {
    Reflect::get(obj, &JsValue::from_str(name))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Other,
                format!("the JS store has no `{name}` function"),
            )
        })
}

/// A property of the global object (`window`, a worker's `self`, workerd's global).
pub(crate) fn global_property(name: &str) -> Option<JsValue> {
    Reflect::get(&js_sys::global(), &JsValue::from_str(name))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// Bytes out of a `Uint8Array` or `ArrayBuffer`; `None` for anything else.
pub(crate) fn bytes_of(value: &JsValue) -> Option<Vec<u8>> {
    if let Some(a) = value.dyn_ref::<Uint8Array>() {
        return Some(a.to_vec());
    }
    if value.is_instance_of::<js_sys::ArrayBuffer>() {
        return Some(Uint8Array::new(value).to_vec());
    }
    None
}

type Handler = Closure<dyn FnMut(web_sys::Event)>;

/// Waits for one of two event handlers to fire. The handlers are Rust
/// closures owned by this value, so nothing leaks whichever fires (or if
/// neither does and the wait is dropped).
pub(crate) struct EventWait {
    rx: oneshot::Receiver<bool>,
    ok: Handler,
    err: Handler,
}

impl EventWait {
    /// `install(ok, err)` must attach the two functions as the target's
    /// success and failure handlers.
    pub(crate) fn new(install: impl FnOnce(&Function, &Function)) -> Self {
        let (tx, rx) = oneshot::channel();
        let tx = Rc::new(RefCell::new(Some(tx)));
        let tx_err = tx.clone();
        let ok = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(true);
            }
        });
        let err = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
            // Handled here: keep it from surfacing as an uncaught error.
            e.prevent_default();
            if let Some(tx) = tx_err.borrow_mut().take() {
                let _ = tx.send(false);
            }
        });
        install(ok.as_ref().unchecked_ref(), err.as_ref().unchecked_ref());
        Self { rx, ok, err }
    }

    /// `true` if the success handler fired, `false` for the failure handler.
    pub(crate) async fn wait(self) -> bool {
        let EventWait { rx, ok, err } = self;
        let fired = rx.await.unwrap_or(false);
        drop((ok, err));
        fired
    }
}

/// `future_to_promise`, instantiated once: every caller hands it a boxed
/// future (one copy of the promise glue instead of one per call site).
#[inline(never)]
pub(crate) fn boxed_promise(
    f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>>,
) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(f)
}
