//! The upstream call of a JS `getMany`: the façade's batch function, given
//! the keys the engine's `get_many_or_fetch` sends upstream (every stale or
//! missing key, each once).
//!
//! The engine calls the façade's function (`#fetchMany` in
//! `www/package/src/cache.js`) as `fetch(keys)`. It runs the caller's
//! fetcher and returns, or resolves to, the *answer*: the fetcher's `Map`,
//! object or array of pairs flattened into `[key, value, key, value, …]`,
//! or a string, the message saying what the fetcher answered instead (a
//! [`JsFetcherError`], kind "fetcher"). A fetcher that throws or rejects
//! makes the function reject with what it threw.

use js_sys::{Array, Function, Promise};
use swre_core::BoxError;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::fetch::{callers, thrown, JsEncodeError, JsFetcherError};
use super::table::Table;
use super::value;

/// The engine's batch call for `keys`: the `(key, bytes)` pairs the fetcher
/// answered. A value that cannot be stored fails the whole call, with kind
/// "codec" (the caller's error: it never moves a breaker).
pub(super) async fn call(
    keys: Vec<String>,
    fetch: Function,
    table: Table,
) -> Result<Vec<(String, Vec<u8>)>, BoxError> {
    let asked: Array = keys.iter().map(|k| JsValue::from_str(k)).collect();
    let returned = fetch.call1(&JsValue::UNDEFINED, &asked).map_err(thrown)?;
    let answer = JsFuture::from(Promise::resolve(&returned))
        .await
        .map_err(thrown)?;
    if let Some(message) = answer.as_string() {
        return Err(callers(JsFetcherError(message)));
    }
    let answer: Array = answer.unchecked_into();
    let n = answer.length();
    let mut pairs = Vec::with_capacity((n / 2) as usize);
    for i in (0..n).step_by(2) {
        // The façade keeps string keys only.
        let Some(key) = answer.get(i).as_string() else {
            continue;
        };
        let bytes = value::encode(&answer.get(i + 1), &table)
            .map_err(|m| callers(JsEncodeError(format!("the value for `{key}`: {m}"))))?;
        pairs.push((key, bytes));
    }
    Ok(pairs)
}
