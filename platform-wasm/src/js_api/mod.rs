//! The JavaScript API: the `SwrCache` class.

mod batch;
mod fetch;
mod http;
mod options;
mod storage;
mod table;
mod value;

use std::rc::Rc;
use std::time::Duration;

use futures::future::Either;

use js_sys::{Array, Function, Object, Promise, Reflect};
use swre_core::tags::TagNames;
use swre_core::{CacheTtl, Cached, CallOptions, Engine, Error, Tiered};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::{Broadcast, BrowserRuntime, CacheApiStorage, IndexedDbStorage, JsStorage};
use fetch::{JsEncodeError, JsFetchError, JsFetcherError, JsOptionError};
use options::StorageChoice;
use storage::{AnyStorage, Persistent, Readable};
use table::JsTable;

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
        Error::Upstream(u) if u.inner().is::<JsOptionError>() => "options",
        Error::Upstream(u) if u.inner().is::<JsFetcherError>() => "fetcher",
        Error::Upstream(_) => "upstream",
        Error::Timeout { .. } => "timeout",
        Error::CircuitOpen => "circuitOpen",
        Error::InvalidKey(_) => "invalidKey",
        Error::InvalidTag(_) => "invalidTag",
        Error::Storage(_) => "storage",
        Error::Codec(_) => "codec",
        Error::Shutdown => "shutdown",
        Error::Abandoned => "abandoned",
        Error::ValueTooLarge { .. } => "valueTooLarge",
        Error::Config(_) => "options",
        _ => "other",
    };
    let cause = match e {
        Error::Upstream(u) => u
            .inner()
            .downcast_ref::<JsFetchError>()
            .map(|f| f.thrown.clone()),
        _ => None,
    };
    let message = match e {
        // The caller's value, not an upstream failure: say only what is wrong with it.
        Error::Upstream(u) => {
            let inner = u.inner();
            if let Some(JsEncodeError(m)) = inner.downcast_ref() {
                m.clone()
            } else if let Some(JsOptionError(m)) = inner.downcast_ref() {
                m.clone()
            } else if let Some(JsFetcherError(m)) = inner.downcast_ref() {
                m.clone()
            } else {
                e.to_string()
            }
        }
        // A per-call option the builder's rules reject, named as the JS option.
        Error::Config(c) => options::config_error(c.option, c.reason),
        _ => e.to_string(),
    };
    js_error(kind, &message, cause.as_ref())
}

fn set(obj: &Object, key: &str, value: JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value);
}

/// The property names of a result object, made JS strings once.
const RESULT_KEYS: [&str; 8] = [
    "value",
    "status",
    "detail",
    "age",
    "createdAt",
    "freshUntil",
    "staleUntil",
    "expiresAt",
];

thread_local! {
    static KEYS: Vec<JsValue> = RESULT_KEYS.iter().map(|k| JsValue::from_str(k)).collect();
}

/// `{ value, status, detail, age, createdAt, freshUntil, staleUntil, expiresAt }`.
/// The value comes from the table when the answer carries a handle.
fn result_object(
    table: &JsTable,
    key: &str,
    c: &Cached<swre_core::Bytes>,
) -> Result<JsValue, JsValue> {
    let value = match table.value(key, &c.value) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(js_error(
                "abandoned",
                "the entry was deleted while this call waited for it",
                None,
            ))
        }
        Err(m) => return Err(js_error("codec", &m, None)),
    };
    let o = Object::new();
    let fields = [
        value,
        c.status.as_str().into(),
        c.detail.as_str().into(),
        (c.age.as_millis() as f64).into(),
        (c.created_at as f64).into(),
        (c.fresh_until as f64).into(),
        (c.stale_until as f64).into(),
        (c.expires_at as f64).into(),
    ];
    KEYS.with(|keys| {
        for (k, v) in keys.iter().zip(fields.iter()) {
            let _ = Reflect::set(&o, k, v);
        }
    });
    Ok(o.into())
}

struct Inner {
    engine: Engine<AnyStorage, BrowserRuntime>,
    runtime: BrowserRuntime,
    refresh_timeout: Duration,
    ttl: CacheTtl,
}

impl Inner {
    /// The per-call options of `fresh` (negative: none) and `tags`
    /// (`undefined`: none; else an array of strings), or `None` for none.
    fn call_options(&self, fresh: f64, tags: &JsValue) -> Option<CallOptions> {
        let mut opts = None::<CallOptions>;
        if fresh >= 0.0 {
            let ttl = CacheTtl {
                fresh: Duration::from_millis(fresh as u64),
                ..self.ttl
            };
            opts = Some(CallOptions::new().ttl(ttl));
        }
        if let Some(names) = tags.dyn_ref::<Array>() {
            let names: Vec<String> = names.iter().filter_map(|t| t.as_string()).collect();
            opts = Some(opts.unwrap_or_default().tags(names));
        }
        opts
    }
}

/// Why a per-call fresh window is refused.
const TTL_TOO_SHORT: &str =
    "`ttl`: the fresh window and the cache's `stale` and `expired` must total at least 5000 ms";

/// A call's outcome as the promise of a write resolves or rejects.
fn done(r: Result<(), Error>) -> Result<JsValue, JsValue> {
    r.map(|()| JsValue::UNDEFINED).map_err(|e| engine_error(&e))
}

/// The engine under the JavaScript package's `SwrCache` (`www/package`).
///
/// Its memory tier is the package's JS `Table` (see `table.rs`), from which
/// the façade serves fresh hits itself; this class does everything else:
/// misses, stale and expired lookups, writes, persistence, the breaker.
/// Arguments are checked by the façade; this class trusts their types.
#[wasm_bindgen]
pub struct SwrEngine {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl SwrEngine {
    /// Opens an engine; rejects with a message naming any bad option.
    /// `table_class` is the package's `Table` (the memory tier).
    pub fn open(options: JsValue, table_class: Function) -> Promise {
        crate::js::boxed_promise(Box::pin(async move {
            let o = options::parse(&options)
                .map_err(|m| js_error("options", &format!("SwrCache.open: {m}"), None))?;
            let memory = JsTable::new(&table_class, o.max_entries, o.max_bytes, o.early_refresh)
                .map_err(|e| {
                    js_error(
                        "options",
                        "SwrCache.open: cannot make the memory table",
                        Some(&e),
                    )
                })?;
            // An unbound `ctx.waitUntil` throws when called: find out now.
            if let Some(f) = &o.wait_until {
                if let Err(thrown) =
                    f.call1(&JsValue::UNDEFINED, &Promise::resolve(&JsValue::UNDEFINED))
                {
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
            let store = match o.storage {
                StorageChoice::Memory => None,
                StorageChoice::IndexedDb => Some(Persistent::IndexedDb(
                    IndexedDbStorage::open(&o.name, "entries")
                        .await
                        .map_err(open_error)?,
                )),
                StorageChoice::Cache => Some(Persistent::Cache(
                    CacheApiStorage::open(&o.name).await.map_err(open_error)?,
                )),
                StorageChoice::Object(obj) => {
                    Some(Persistent::Js(JsStorage::new(obj).map_err(|e| {
                        js_error(
                            "options",
                            &format!("SwrCache.open: `storage` object: {}", e.message()),
                            None,
                        )
                    })?))
                }
            };
            let storage = match store {
                None => AnyStorage::Memory(memory),
                Some(store) => {
                    let json = memory.js().clone();
                    let shared = matches!(store, Persistent::IndexedDb(_));
                    let tiered = Tiered::new(memory, Readable::new(store, json));
                    if shared {
                        // Every context of the origin opening this database
                        // shares its leases (Web Locks) and its changes.
                        let channel = format!("swre:indexeddb:{}", o.name);
                        AnyStorage::Shared(Broadcast::new(tiered, &channel))
                    } else {
                        AnyStorage::Tiered(tiered)
                    }
                }
            };
            let runtime = match o.wait_until {
                Some(f) => BrowserRuntime::with_wait_until(f),
                None => BrowserRuntime::new(),
            };
            let mut builder = Engine::builder(storage, runtime.clone());
            if let Some(soft) = o.soft_timeout {
                builder = builder.soft_timeout(soft);
            }
            if let Some(early) = o.early_refresh {
                builder = builder.early_refresh(early);
            }
            let engine = builder
                .ttl(o.ttl)
                .refresh_timeout(o.refresh_timeout)
                .breaker(o.breaker)
                .fail_safe_throttle(o.fail_safe_throttle)
                .expired_mode(o.expired_mode)
                .max_value_bytes(o.max_value_bytes)
                .build()
                .map_err(|e| {
                    let m = match &e {
                        Error::Config(c) => options::config_error(c.option, c.reason),
                        other => other.to_string(),
                    };
                    js_error("options", &format!("SwrCache.open: {m}"), None)
                })?;
            Ok(SwrEngine {
                inner: Rc::new(Inner {
                    engine,
                    runtime,
                    refresh_timeout: o.refresh_timeout,
                    ttl: o.ttl,
                }),
            }
            .into())
        }))
    }

    /// The value under `key`, fetched through `fetch` when there is no usable
    /// one; resolves to `{ value, status, age, … }`. `fetch` is the façade's
    /// function over the caller's fetcher (see `fetch.rs` for how it is
    /// called and what it answers). `fresh` is a per-call fresh window in
    /// milliseconds (negative: the cache's TTL); the call's stale and expired
    /// windows are then the cache's. `tags`: `undefined`, or an array of
    /// strings, the tags of the value this call fetches.
    pub fn get(&self, key: String, fetch: Function, fresh: f64, tags: JsValue) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(async move {
            let table = inner.engine.storage().table().js().clone();
            let (name, ttl) = (key.clone(), inner.ttl);
            let call = move |ctx| fetch::call(ctx, name, fetch, table, ttl);
            let result = {
                let lookup = match inner.call_options(fresh, &tags) {
                    Some(opts) => {
                        Either::Left(inner.engine.with(opts).get_or_fetch_with(&key, call))
                    }
                    None => Either::Right(inner.engine.get_or_fetch_with(&key, call)),
                };
                lookup.await
            };
            match result {
                Ok(c) => result_object(inner.engine.storage().table(), &key, &c),
                Err(e) => Err(engine_error(&e)),
            }
        }))
    }

    /// The values under `keys` (strings), fetched together through the
    /// engine's `get_many_or_fetch`: one call of `fetch` (the façade's
    /// function over the caller's batch fetcher, see `batch.rs`) with every
    /// stale or missing key. Resolves to an array in the order of `keys`,
    /// each a result object as `get` resolves to, or a `SwrError`. `fresh`
    /// and `tags` as for `get`.
    #[wasm_bindgen(js_name = getMany)]
    pub fn get_many(&self, keys: Array, fetch: Function, fresh: f64, tags: JsValue) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(async move {
            let keys: Vec<String> = keys.iter().filter_map(|k| k.as_string()).collect();
            let table = inner.engine.storage().table().js().clone();
            let call = move |asked: Vec<String>| batch::call(asked, fetch, table);
            let results = match inner.call_options(fresh, &tags) {
                Some(opts) => inner.engine.with(opts).get_many_or_fetch(keys, call).await,
                None => inner.engine.get_many_or_fetch(keys, call).await,
            };
            let table = inner.engine.storage().table();
            let out = Array::new_with_length(results.len() as u32);
            for (i, (key, r)) in results.iter().enumerate() {
                let v = match r {
                    Ok(c) => result_object(table, key, c).unwrap_or_else(|e| e),
                    Err(e) => engine_error(e),
                };
                out.set(i as u32, v);
            }
            Ok(out.into())
        }))
    }

    /// Whether per-call options can be used, checked at once (as the engine
    /// would check them) so that the façade changes nothing for a bad one:
    /// `undefined`, or the `SwrError` the call would reject with. `fresh`
    /// and `tags` as for `get`.
    #[wasm_bindgen(js_name = checkOptions)]
    pub fn check_options(&self, fresh: f64, tags: JsValue) -> JsValue {
        let Some(opts) = self.inner.call_options(fresh, &tags) else {
            return JsValue::UNDEFINED;
        };
        if opts.ttl.is_some_and(|t| !t.is_valid()) {
            return js_error("options", TTL_TOO_SHORT, None);
        }
        match opts.tags.as_ref().map(TagNames::check) {
            Some(Err(e)) => engine_error(&Error::InvalidTag(e)),
            _ => JsValue::UNDEFINED,
        }
    }

    /// The stored value under `key` without fetching or refreshing, or `undefined`.
    pub fn peek(&self, key: String) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(async move {
            match inner.engine.peek(&key).await {
                Ok(Some(c)) => result_object(inner.engine.storage().table(), &key, &c),
                Ok(None) => Ok(JsValue::UNDEFINED),
                Err(e) => Err(engine_error(&e)),
            }
        }))
    }

    /// The memory tier (the package's `Table`) this engine reads and writes.
    pub fn table(&self) -> JsValue {
        self.inner.engine.storage().table().js().clone().into()
    }

    /// Stores `value` under `key`, with the cache's TTL or `fresh` and
    /// `tags` as for `get`.
    pub fn set(&self, key: String, value: JsValue, fresh: f64, tags: JsValue) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(async move {
            let bytes = value::encode(&value, inner.engine.storage().table().js())
                .map_err(|m| js_error("codec", &m, None))?;
            let opts = inner.call_options(fresh, &tags).unwrap_or_default();
            done(inner.engine.with(opts).set(&key, bytes).await)
        }))
    }

    /// Removes `key`.
    pub fn delete(&self, key: String) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(async move {
            done(inner.engine.invalidate(&key).await)
        }))
    }

    /// Makes `key`'s entry stale at once, kept as a fallback.
    pub fn expire(&self, key: String) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(
            async move { done(inner.engine.expire(&key).await) },
        ))
    }

    /// Invalidates every entry written with `tag`: they read as absent.
    #[wasm_bindgen(js_name = invalidateTag)]
    pub fn invalidate_tag(&self, tag: String) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(async move {
            done(inner.engine.invalidate_tag(&tag).await)
        }))
    }

    /// Expires every entry written with `tag`: they read as stale, kept as
    /// fallbacks.
    #[wasm_bindgen(js_name = expireTag)]
    pub fn expire_tag(&self, tag: String) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(async move {
            done(inner.engine.expire_tag(&tag).await)
        }))
    }

    /// Removes every entry (memory and the persistent store), remembered
    /// errors and throttle windows.
    pub fn clear(&self) -> Promise {
        let inner = self.inner.clone();
        crate::js::boxed_promise(Box::pin(async move { done(inner.engine.clear().await) }))
    }

    /// Resolves when every background task running now has finished.
    pub fn pending(&self) -> Promise {
        self.inner.runtime.pending()
    }

    /// Whether a background task is running.
    pub fn busy(&self) -> bool {
        self.inner.runtime.is_busy()
    }

    /// The refresh timeout in milliseconds.
    #[wasm_bindgen(js_name = refreshTimeout)]
    pub fn refresh_timeout(&self) -> f64 {
        self.inner.refresh_timeout.as_millis() as f64
    }

    /// Counters since the engine was opened: every `Stats` field, named in
    /// camelCase (`upstream_calls` → `upstreamCalls`), from `Stats::fields`,
    /// then the sharing between contexts' (`LeaseStats`, `BroadcastStats`).
    pub fn stats(&self) -> Object {
        let o = Object::new();
        let storage = self.inner.engine.storage();
        for (name, v) in self
            .inner
            .engine
            .stats()
            .fields()
            .chain(storage.sharing_fields())
        {
            set(&o, &camel_case(name), (v as f64).into());
        }
        o
    }
}

/// `snake_case` → `camelCase`.
pub(crate) fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
