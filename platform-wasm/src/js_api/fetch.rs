//! The upstream call of a JS `get`: the façade's fetch function, given the
//! engine's [`FetchContext`] and answering a [`Fetched`] (FusionCache's
//! adaptive caching and conditional refresh, BentoCache's `ctx.setTtl`).
//!
//! The engine calls the façade's function (`#fetch` in
//! `www/package/src/cache.js`) as `fetch(staleValue, staleCreatedAt)`. It
//! runs the caller's fetcher with its context and returns, or resolves to,
//! the *answer*: `[value, flags, fresh, tags]`, where `flags` holds
//! [`NO_STORE`], [`NOT_MODIFIED`] and [`INVALID`] (then `value` is the
//! message of the context's error), `fresh` is the fresh window the fetcher
//! set in ms (negative: none), and `tags` the array of tag names it set
//! (`undefined`: none). A fetcher that throws or rejects makes the function
//! reject with what it threw. A setter added to the context writes a slot
//! of its own after these.

use std::fmt;
use std::time::Duration;

use js_sys::{Array, Function, Promise};
use swre_core::{BoxError, CacheTtl, FetchContext, Fetched, NotCounted};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::table::{self, Table};
use super::value;

/// The fetcher called `ctx.noStore()`.
const NO_STORE: u32 = 1;
/// The fetcher returned `ctx.notModified()`.
const NOT_MODIFIED: u32 = 2;
/// The fetcher misused its context (e.g. `ctx.setTtl(NaN)`).
const INVALID: u32 = 4;

/// A fetched value the JS API cannot store (not a string, bytes or JSON).
pub(super) struct JsEncodeError(pub(super) String);

/// An option the fetcher set on its context that cannot be used: the
/// caller's error, like [`JsEncodeError`], never upstream's.
pub(super) struct JsOptionError(pub(super) String);

/// A fetcher that answered what the JS API cannot read (a batch fetcher's
/// answer that is no `Map`, object or array of pairs): the caller's error.
pub(super) struct JsFetcherError(pub(super) String);

/// An upstream failure as JS reported it: a message and the thrown value.
pub(super) struct JsFetchError {
    pub(super) message: String,
    pub(super) thrown: JsValue,
}

/// The message as it is: a derived `Debug` would escape it, and string
/// escaping is kilobytes of wasm.
macro_rules! message_error {
    ($ty:ty, $this:ident => $message:expr) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $this = self;
                f.write_str($message)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $this = self;
                f.write_str($message)
            }
        }
        impl std::error::Error for $ty {}
    };
}

message_error!(JsEncodeError, e => &e.0);
message_error!(JsOptionError, e => &e.0);
message_error!(JsFetcherError, e => &e.0);
message_error!(JsFetchError, e => &e.message);

/// The caller's own error: it never moves the breaker.
pub(super) fn callers(e: impl std::error::Error + 'static) -> BoxError {
    Box::new(NotCounted::new(e))
}

/// What a JS throw or rejection is as an upstream error.
pub(super) fn thrown(v: JsValue) -> BoxError {
    Box::new(JsFetchError {
        message: crate::js::describe(&v),
        thrown: v,
    })
}

/// The engine's upstream call for `key`, told `ctx`: calls `fetch` (the
/// façade's function) with the value held and when it was fetched, and
/// turns its answer into a [`Fetched`]. `ttl` is the cache's: a fresh window
/// the fetcher sets keeps its stale and expired windows.
pub(super) async fn call(
    ctx: FetchContext,
    key: String,
    fetch: Function,
    table: Table,
    ttl: CacheTtl,
) -> Result<Fetched<Vec<u8>>, BoxError> {
    // What the fetcher is told is held: the value the engine read, with its
    // time, or neither when its value is no longer known.
    let held = ctx
        .stale
        .as_deref()
        .and_then(|b| table::held_value(&table, &key, b).ok().flatten());
    let (stale, created) = match (held, ctx.stale_created_at) {
        (Some(v), Some(at)) => (v, JsValue::from(at as f64)),
        _ => (JsValue::UNDEFINED, JsValue::UNDEFINED),
    };
    let returned = fetch
        .call2(&JsValue::UNDEFINED, &stale, &created)
        .map_err(thrown)?;
    let answer: Array = JsFuture::from(Promise::resolve(&returned))
        .await
        .map_err(thrown)?
        .unchecked_into();
    let flags = answer.get(1).as_f64().unwrap_or(0.0) as u32;
    if flags & INVALID != 0 {
        let message = answer.get(0).as_string().unwrap_or_default();
        return Err(callers(JsOptionError(message)));
    }
    let mut fetched = if flags & NOT_MODIFIED != 0 {
        Fetched::not_modified()
    } else {
        // A value that cannot be stored is the caller's error, not the
        // origin's: it never moves the breaker, and reads as a `codec`
        // error as it does from `set`.
        let bytes = value::encode(&answer.get(0), &table).map_err(|m| callers(JsEncodeError(m)))?;
        Fetched::value(bytes)
    };
    // `ctx.setTtl(fresh, { stale, expired })`: each window given (≥ 0)
    // replaces the cache's.
    let window = |i: u32| Some(answer.get(i).as_f64().unwrap_or(-1.0)).filter(|ms| *ms >= 0.0);
    let ms = |v: f64| Duration::from_millis(v as u64);
    if let Some(fresh) = window(2) {
        let chosen = CacheTtl {
            fresh: ms(fresh),
            stale: window(4).map_or(ttl.stale, ms),
            expired: window(5).map_or(ttl.expired, ms),
        };
        // Any length, as `Fetched::ttl` takes: under 1 ms in all, the value
        // is handed out and not stored.
        fetched = fetched.ttl(chosen);
    }
    if let Some(tags) = answer.get(3).dyn_ref::<Array>() {
        fetched = fetched.tags(tags.iter().filter_map(|t| t.as_string()));
    }
    if flags & NO_STORE != 0 {
        fetched = fetched.do_not_store();
    }
    Ok(fetched)
}
