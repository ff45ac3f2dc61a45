//! The JavaScript API: the `SwrCache` class.

mod options;
mod storage;
mod tasks;
mod value;

use std::fmt;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};

use js_sys::{Function, Object, Promise, Reflect};
use swre_core::storage::memory::MemoryLimits;
use swre_core::{BoxError, Cached, Engine, Error, MemoryStorage, NotCounted, Tiered, Timer};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::{CacheApiStorage, IndexedDbStorage, JsStorage};
use options::StorageChoice;
use storage::{AnyStorage, Persistent};
use tasks::JsApiRuntime;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Where a SwrCache keeps entries. */
export type SwrStorage = "memory" | "indexeddb" | "cache" | {
  get(key: string, type?: "arrayBuffer"): Promise<Uint8Array | ArrayBuffer | null | undefined> | Uint8Array | ArrayBuffer | null | undefined;
  put(key: string, value: Uint8Array, options?: { expirationTtl?: number }): Promise<unknown> | unknown;
  delete(key: string): Promise<unknown> | unknown;
};

/** Options of `SwrCache.open`; durations are milliseconds. */
export interface SwrOptions {
  /** Database / cache name for "indexeddb" and "cache" (default "swre"). */
  name?: string;
  storage?: SwrStorage;
  /** Served as a hit this long (default 5000). */
  fresh?: number;
  /** Then served at once while one background refresh runs (default 3600000). */
  stale?: number;
  /** Then kept as a fallback for upstream failures (default 302400000). */
  expired?: number;
  /** Entries kept in memory (default 10000). */
  maxEntries?: number;
  /** Bytes kept in memory: keys, values and about 96 bytes per entry (default 64 MiB). */
  maxBytes?: number;
  /** The largest value stored (default 16 MiB); a larger one is returned but not stored, and counted as `oversizedValues`. */
  maxValueBytes?: number;
  /** Longest an upstream call may take (default 30000). */
  refreshTimeout?: number;
  breaker?: { failureThreshold?: number; successThreshold?: number; openFor?: number; maxHalfOpen?: number; maxKeyBreakers?: number };
  /** "revalidate" (default): wait for a refresh, old value on failure; "serveStale": serve expired values at once. */
  expiredMode?: "revalidate" | "serveStale";
  /** Receives each background task's promise (e.g. `ctx.waitUntil.bind(ctx)`). */
  waitUntil?: (promise: Promise<unknown>) => void;
}

export type SwrStatus = "hit" | "stale" | "miss" | "expired" | "fallback";

export interface SwrResult<T = unknown> {
  value: T;
  status: SwrStatus;
  /** Milliseconds since the value was fetched. */
  age: number;
  createdAt: number;
  freshUntil: number;
  staleUntil: number;
  expiresAt: number;
}

export interface SwrGetOptions {
  /** Given a promise of this call's background work, if any: a Worker's `ctx.waitUntil.bind(ctx)`
   * (bound: an unbound `ctx.waitUntil` throws when called, and `get` then rejects with kind "options"). */
  waitUntil?: (promise: Promise<unknown>) => void;
}

export interface SwrStats {
  hits: number; stale: number; misses: number; expired: number; fallbacks: number; errors: number;
  upstreamCalls: number; upstreamErrors: number; upstreamTimeouts: number;
  refreshesStarted: number; refreshesSkipped: number; breakerRejections: number;
  storageReadErrors: number; storageWriteErrors: number; oversizedValues: number; inFlight: number; refreshesRunning: number;
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "SwrOptions")]
    pub type SwrOptions;
    #[wasm_bindgen(typescript_type = "() => unknown | Promise<unknown>")]
    pub type SwrFetcher;
    #[wasm_bindgen(typescript_type = "SwrGetOptions")]
    pub type SwrGetOptions;
    #[wasm_bindgen(typescript_type = "Promise<SwrCache>")]
    pub type OpenPromise;
    #[wasm_bindgen(typescript_type = "Promise<SwrResult<any>>")]
    pub type ResultPromise;
    #[wasm_bindgen(typescript_type = "Promise<SwrResult<any> | undefined>")]
    pub type PeekPromise;
    #[wasm_bindgen(typescript_type = "Promise<void>")]
    pub type VoidPromise;
    #[wasm_bindgen(typescript_type = "SwrStats")]
    pub type SwrStats;
}

/// A fetched value the JS API cannot store (not a string, bytes or JSON).
#[derive(Debug)]
struct JsEncodeError(String);

impl fmt::Display for JsEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsEncodeError {}

/// An upstream failure as JS reported it: a message and the thrown value.
struct JsFetchError {
    message: String,
    thrown: JsValue,
}

impl fmt::Debug for JsFetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for JsFetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsFetchError {}

/// A JS `Error` named `SwrError` with `message`, a `kind` and an optional `cause`.
fn js_error(kind: &str, message: &str, cause: Option<&JsValue>) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name("SwrError");
    let _ = Reflect::set(&e, &"kind".into(), &kind.into());
    if let Some(c) = cause {
        let _ = Reflect::set(&e, &"cause".into(), c);
    }
    e.into()
}

fn engine_error(e: &Error) -> JsValue {
    let kind = match e {
        Error::Upstream(u) if u.inner().is::<JsEncodeError>() => "codec",
        Error::Upstream(_) => "upstream",
        Error::Timeout { .. } => "timeout",
        Error::CircuitOpen => "circuitOpen",
        Error::InvalidKey(_) => "invalidKey",
        Error::Storage(_) => "storage",
        Error::Codec(_) => "codec",
        Error::Shutdown => "shutdown",
        Error::Abandoned => "abandoned",
        Error::ValueTooLarge { .. } => "valueTooLarge",
        _ => "other",
    };
    let cause = match e {
        Error::Upstream(u) => u
            .inner()
            .downcast_ref::<JsFetchError>()
            .map(|f| f.thrown.clone()),
        _ => None,
    };
    js_error(kind, &e.to_string(), cause.as_ref())
}

fn set(obj: &Object, key: &str, value: JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value);
}

fn result_object(c: &Cached<swre_core::Bytes>) -> Result<JsValue, JsValue> {
    let value = value::decode(&c.value).map_err(|m| js_error("codec", &m, None))?;
    let o = Object::new();
    set(&o, "value", value);
    set(&o, "status", c.status.as_str().into());
    set(&o, "age", (c.age.as_millis() as f64).into());
    set(&o, "createdAt", (c.created_at as f64).into());
    set(&o, "freshUntil", (c.fresh_until as f64).into());
    set(&o, "staleUntil", (c.stale_until as f64).into());
    set(&o, "expiresAt", (c.expires_at as f64).into());
    Ok(o.into())
}

fn string_key(key: &JsValue) -> Result<String, JsValue> {
    key.as_string()
        .ok_or_else(|| js_error("invalidKey", "the key must be a string", None))
}

struct Inner {
    engine: Engine<AnyStorage, JsApiRuntime>,
    runtime: JsApiRuntime,
    /// How long one `get` may wait in all: the refresh timeout and a margin.
    wait_limit: Duration,
}

/// Ticks a short timer while a `get` waits, for at most `limit`.
///
/// A Workers request that waits on an upstream call another request started
/// has no I/O of its own, and workerd cancels such a request as hung. Each
/// tick is a timer owned by the waiting request, so it stays alive; the limit
/// bounds the wait even if the other request (and its call) was cancelled.
/// A lookup that completes on its first poll (a hit) never starts a timer.
async fn keep_alive(runtime: JsApiRuntime, limit: Duration) {
    const TICK: Duration = Duration::from_millis(25);
    let mut waited = Duration::ZERO;
    while waited < limit {
        runtime.sleep(TICK).await;
        waited += TICK;
    }
}

/// A stale-while-revalidate cache for JavaScript.
///
/// ```js
/// const cache = await SwrCache.open({ storage: "indexeddb", fresh: 5_000, stale: 60_000, expired: 3_600_000 });
/// const { value, status, age } = await cache.get("user:1", () => fetch("/api/user/1").then(r => r.json()));
/// ```
#[wasm_bindgen]
pub struct SwrCache {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl SwrCache {
    /// Opens a cache; rejects with a message naming any bad option.
    pub fn open(options: Option<SwrOptions>) -> OpenPromise {
        let options: JsValue = options.map(JsValue::from).unwrap_or(JsValue::UNDEFINED);
        future_to_promise(async move {
            let o = options::parse(&options)
                .map_err(|m| js_error("options", &format!("SwrCache.open: {m}"), None))?;
            // Each memory shard holds an equal part of `maxBytes`: use no more
            // shards than keep a `maxValueBytes` value storable in one.
            let shards = (o.max_bytes / o.max_value_bytes.max(1)).clamp(1, 16);
            let memory = MemoryStorage::with_limits(MemoryLimits {
                max_entries: o.max_entries,
                max_bytes: o.max_bytes,
                shards,
            });
            // An unbound `ctx.waitUntil` throws when called: find out now.
            if let Some(f) = &o.wait_until {
                if let Err(thrown) = f.call1(&JsValue::UNDEFINED, &Promise::resolve(&JsValue::UNDEFINED)) {
                    return Err(js_error(
                        "options",
                        "SwrCache.open: `waitUntil` threw when called; pass `ctx.waitUntil.bind(ctx)`, not `ctx.waitUntil`",
                        Some(&thrown),
                    ));
                }
            }
            let open_error = |e: swre_core::StorageError| {
                js_error(
                    "storage",
                    &format!("SwrCache.open: cannot open the storage: {e}"),
                    None,
                )
            };
            let storage = match o.storage {
                StorageChoice::Memory => AnyStorage::Memory(memory),
                StorageChoice::IndexedDb => AnyStorage::Tiered(Tiered::new(
                    memory,
                    Persistent::IndexedDb(
                        IndexedDbStorage::open(&o.name, "entries")
                            .await
                            .map_err(open_error)?,
                    ),
                )),
                StorageChoice::Cache => AnyStorage::Tiered(Tiered::new(
                    memory,
                    Persistent::Cache(CacheApiStorage::open(&o.name).await.map_err(open_error)?),
                )),
                StorageChoice::Object(obj) => AnyStorage::Tiered(Tiered::new(
                    memory,
                    Persistent::Js(JsStorage::new(obj).map_err(|e| {
                        js_error(
                            "options",
                            &format!("SwrCache.open: `storage` object: {}", e.message()),
                            None,
                        )
                    })?),
                )),
            };
            let runtime = JsApiRuntime::new(o.wait_until);
            let wait_limit = o.refresh_timeout + Duration::from_secs(1);
            let engine = Engine::builder(storage, runtime.clone())
                .ttl(o.ttl)
                .refresh_timeout(o.refresh_timeout)
                .breaker(o.breaker)
                .expired_mode(o.expired_mode)
                .max_value_bytes(o.max_value_bytes)
                .build()
                .map_err(|e| js_error("options", &format!("SwrCache.open: {e}"), None))?;
            Ok(SwrCache {
                inner: Rc::new(Inner {
                    engine,
                    runtime,
                    wait_limit,
                }),
            }
            .into())
        })
        .unchecked_into()
    }

    /// The value under `key`, fetched with `fetcher` when there is no usable
    /// one; resolves to `{ value, status, age, … }`.
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        fetcher: SwrFetcher,
        options: Option<SwrGetOptions>,
    ) -> ResultPromise {
        let inner = self.inner.clone();
        let fetcher: JsValue = fetcher.into();
        let options: JsValue = options.map(JsValue::from).unwrap_or(JsValue::UNDEFINED);
        future_to_promise(async move {
            let key = string_key(&key)?;
            let fetcher: Function = fetcher
                .dyn_into()
                .map_err(|_| js_error("fetcher", "the fetcher must be a function", None))?;
            // No options object is the common case: look nothing up on it
            // (a property read on `undefined` throws, and each caught throw
            // left an entry in the externref table).
            let wait_until = if options.is_object() {
                match Reflect::get(&options, &"waitUntil".into()) {
                    Ok(f) if f.is_undefined() => None,
                    Ok(f) => Some(f.dyn_into::<Function>().map_err(|_| {
                        js_error("options", "get: `waitUntil` must be a function", None)
                    })?),
                    Err(_) => None,
                }
            } else {
                None
            };
            let fetch = move || async move {
                let thrown = |v: JsValue| -> BoxError {
                    Box::new(JsFetchError {
                        message: crate::js::describe(&v),
                        thrown: v,
                    })
                };
                let returned = fetcher.call0(&JsValue::UNDEFINED).map_err(thrown)?;
                let value = JsFuture::from(Promise::resolve(&returned))
                    .await
                    .map_err(thrown)?;
                // A value that cannot be stored is the caller's error, not
                // the origin's: it never moves the breaker, and reads as a
                // `codec` error as it does from `set`.
                value::encode(&value)
                    .map_err(|message| -> BoxError { Box::new(NotCounted::new(JsEncodeError(message))) })
            };
            let result = {
                let lookup = pin!(inner.engine.get_or_fetch(&key, fetch));
                let keep_alive = pin!(keep_alive(inner.runtime.clone(), inner.wait_limit));
                match select(lookup, keep_alive).await {
                    Either::Left((r, _)) => r,
                    Either::Right(((), _)) => Err(Error::Timeout {
                        after: inner.wait_limit,
                    }),
                }
            };
            if let Some(f) = wait_until {
                if inner.runtime.tracker.is_busy() {
                    if let Err(thrown) = f.call1(&JsValue::UNDEFINED, &inner.runtime.tracker.idle()) {
                        // An unbound `ctx.waitUntil` throws "Illegal invocation":
                        // say so rather than let workerd cancel the refresh.
                        return Err(js_error(
                            "options",
                            "get: `waitUntil` threw when called; pass `ctx.waitUntil.bind(ctx)`, not `ctx.waitUntil`",
                            Some(&thrown),
                        ));
                    }
                }
            }
            match result {
                Ok(c) => result_object(&c),
                Err(e) => Err(engine_error(&e)),
            }
        })
        .unchecked_into()
    }

    /// The stored value under `key` without fetching or refreshing, or `undefined`.
    pub fn peek(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
    ) -> PeekPromise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let key = string_key(&key)?;
            match inner.engine.peek(&key).await {
                Ok(Some(c)) => result_object(&c),
                Ok(None) => Ok(JsValue::UNDEFINED),
                Err(e) => Err(engine_error(&e)),
            }
        })
        .unchecked_into()
    }

    /// Stores `value` under `key` with the cache's TTL.
    pub fn set(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
    ) -> VoidPromise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let key = string_key(&key)?;
            let bytes = value::encode(&value).map_err(|m| js_error("codec", &m, None))?;
            inner
                .engine
                .set(&key, bytes)
                .await
                .map(|_| JsValue::UNDEFINED)
                .map_err(|e| engine_error(&e))
        })
        .unchecked_into()
    }

    /// Removes `key`.
    pub fn delete(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
    ) -> VoidPromise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let key = string_key(&key)?;
            inner
                .engine
                .invalidate(&key)
                .await
                .map(|_| JsValue::UNDEFINED)
                .map_err(|e| engine_error(&e))
        })
        .unchecked_into()
    }

    /// Resolves when every background refresh running now has finished.
    pub fn pending(&self) -> VoidPromise {
        self.inner.runtime.tracker.idle().unchecked_into()
    }

    /// Counters since the cache was opened.
    pub fn stats(&self) -> SwrStats {
        let s = self.inner.engine.stats();
        let o = Object::new();
        for (k, v) in [
            ("hits", s.hits),
            ("stale", s.stale),
            ("misses", s.misses),
            ("expired", s.expired),
            ("fallbacks", s.fallbacks),
            ("errors", s.errors),
            ("upstreamCalls", s.upstream_calls),
            ("upstreamErrors", s.upstream_errors),
            ("upstreamTimeouts", s.upstream_timeouts),
            ("refreshesStarted", s.refreshes_started),
            ("refreshesSkipped", s.refreshes_skipped),
            ("breakerRejections", s.breaker_rejections),
            ("storageReadErrors", s.storage_read_errors),
            ("storageWriteErrors", s.storage_write_errors),
            ("oversizedValues", s.oversized_values),
            ("inFlight", s.in_flight),
            ("refreshesRunning", s.refreshes_running),
        ] {
            set(&o, k, (v as f64).into());
        }
        JsValue::from(o).unchecked_into()
    }
}
