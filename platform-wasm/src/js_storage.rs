//! [`JsStorage`]: any JS object with async `get`, `put` and `delete`.

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use swre_core::{envelope, Clock, Entry, Storage, StorageError, StorageErrorKind};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use crate::js::{bytes_of, method, storage_error};
use crate::runtime::StoreClock;

/// A [`Storage`] over a JS object: Workers KV, Durable Object storage, or
/// anything with the same three methods.
///
/// - `get(key, "arrayBuffer")` may return (or resolve to) a `Uint8Array`, an
///   `ArrayBuffer`, or `null`/`undefined`; the second argument is KV's type
///   hint and is ignored by plain stores. Anything else — strings, objects,
///   bytes that are not an intact envelope for `key` — reads as a miss.
/// - `put(key, Uint8Array, options)` stores the [`envelope`]; `options` is
///   `{ expirationTtl }` (seconds left until the entry is gone) when that is
///   at least 60 s, as KV requires, and omitted otherwise.
/// - `delete(key)`.
/// - The remaining life is counted on `Date.now()`, or on the clock given to
///   [`with_clock`](Self::with_clock) (give it the engine's).
///
/// Methods may be sync or async; a throw or a rejection becomes a
/// `StorageError` carrying the JS message, which the engine degrades.
#[derive(Debug, Clone)]
pub struct JsStorage {
    target: JsValue,
    get: Function,
    put: Function,
    delete: Function,
    clock: StoreClock,
}

impl JsStorage {
    /// Wraps `target`; fails, naming the method, if one of `get`, `put`,
    /// `delete` is not a function.
    pub fn new(target: JsValue) -> Result<Self, StorageError> {
        Ok(Self {
            get: method(&target, "get")?,
            put: method(&target, "put")?,
            delete: method(&target, "delete")?,
            target,
            clock: StoreClock::default(),
        })
    }

    /// [`new`](Self::new), counting each entry's remaining life (its
    /// `expirationTtl`) on `clock`, the engine's, rather than `Date.now()`.
    pub fn with_clock(target: JsValue, clock: impl Clock + 'static) -> Result<Self, StorageError> {
        Ok(Self {
            clock: StoreClock::new(clock),
            ..Self::new(target)?
        })
    }

    /// The wrapped object.
    pub fn target(&self) -> &JsValue {
        &self.target
    }

    async fn call(
        &self,
        op: &str,
        result: Result<JsValue, JsValue>,
    ) -> Result<JsValue, StorageError> {
        let value = result.map_err(|e| storage_error(StorageErrorKind::Io, op, &e))?;
        JsFuture::from(Promise::resolve(&value))
            .await
            .map_err(|e| storage_error(StorageErrorKind::Io, op, &e))
    }
}

impl Storage for JsStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let k = JsValue::from_str(key);
        let got = self
            .call(
                "store.get",
                self.get
                    .call2(&self.target, &k, &JsValue::from_str("arrayBuffer")),
            )
            .await?;
        Ok(bytes_of(&got).and_then(|b| envelope::decode_for(key, &b)))
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let bytes = envelope::seal(key, &entry)?;
        let value = Uint8Array::from(&bytes[..]);
        // KV's `expirationTtl` is whole seconds, at least 60: a shorter life
        // is rounded up to that (the envelope's own times still make the
        // entry read as expired on time), so no entry is kept forever. At
        // most a 32-bit count (about 68 years): workerd refuses more, and a
        // tag's records live a century (found by a POST's tag invalidation
        // over KV in workerd, which failed with "Value out of range").
        let remaining_s = entry
            .expires_at
            .saturating_sub(self.clock.now_ms())
            .div_ceil(1000)
            .clamp(60, i32::MAX as u64);
        let o = Object::new();
        let _ = Reflect::set(
            &o,
            &JsValue::from_str("expirationTtl"),
            &JsValue::from_f64(remaining_s as f64),
        );
        let options = JsValue::from(o);
        let k = JsValue::from_str(key);
        self.call(
            "store.put",
            self.put.call3(&self.target, &k, &value, &options),
        )
        .await
        .map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let k = JsValue::from_str(key);
        self.call("store.delete", self.delete.call1(&self.target, &k))
            .await
            .map(|_| ())
    }
}
