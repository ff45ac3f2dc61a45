//! `SwrCache.open` options: parsed strictly, every rejection naming the option.

use std::time::Duration;

use js_sys::{Function, Object, Reflect};
use swre_core::storage::memory::MemoryLimits;
use swre_core::{
    BreakerConfig, CacheTtl, EarlyRefresh, ExpiredMode, FailSafeThrottle, DEFAULT_MAX_VALUE_BYTES,
    DEFAULT_REFRESH_TIMEOUT,
};
use wasm_bindgen::{JsCast, JsValue};

/// Which storage to open.
pub(crate) enum StorageChoice {
    Memory,
    IndexedDb,
    Cache,
    Object(JsValue),
}

pub(crate) struct Options {
    pub(crate) name: String,
    pub(crate) storage: StorageChoice,
    pub(crate) ttl: CacheTtl,
    pub(crate) max_entries: usize,
    /// Bytes kept in memory (keys, values and per-entry overhead).
    pub(crate) max_bytes: usize,
    /// The largest value stored; larger ones are returned, not stored.
    pub(crate) max_value_bytes: usize,
    pub(crate) refresh_timeout: Duration,
    pub(crate) breaker: BreakerConfig,
    pub(crate) expired_mode: ExpiredMode,
    pub(crate) wait_until: Option<Function>,
    pub(crate) fail_safe_throttle: Option<FailSafeThrottle>,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) early_refresh: Option<EarlyRefresh>,
}

/// Every option `SwrCache.open` takes, named in the message for an unknown
/// one. `coordinator` is the façade's (`www/package/src/coordinated.js`),
/// which takes it out before the engine reads the rest.
const KNOWN: [&str; 16] = [
    "name",
    "storage",
    "fresh",
    "stale",
    "expired",
    "maxEntries",
    "maxBytes",
    "maxValueBytes",
    "refreshTimeout",
    "breaker",
    "expiredMode",
    "waitUntil",
    "failSafeThrottle",
    "softTimeout",
    "earlyRefresh",
    "coordinator",
];

const THROTTLE_KNOWN: [&str; 2] = ["base", "max"];

const BREAKER_KNOWN: [&str; 6] = [
    "failureThreshold",
    "successThreshold",
    "openFor",
    "firstOpenFor",
    "maxHalfOpen",
    "maxKeyBreakers",
];

fn field(obj: &JsValue, name: &str) -> Option<JsValue> {
    Reflect::get(obj, &JsValue::from_str(name))
        .ok()
        .filter(|v| !v.is_undefined())
}

fn reject_unknown(obj: &JsValue, known: &[&str], prefix: &str) -> Result<(), String> {
    let keys = Object::keys(obj.unchecked_ref::<Object>());
    for k in keys.iter() {
        let k = k.as_string().unwrap_or_default();
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "unknown option `{prefix}{k}` (known: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

fn millis(
    obj: &JsValue,
    name: &str,
    label: &str,
    allow_zero: bool,
) -> Result<Option<Duration>, String> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    match v.as_f64() {
        Some(ms) if ms.is_finite() && (ms > 0.0 || (allow_zero && ms == 0.0)) => {
            Ok(Some(Duration::from_millis(ms as u64)))
        }
        _ => Err(format!(
            "`{label}` must be a {} number of milliseconds (got {})",
            if allow_zero {
                "non-negative"
            } else {
                "positive"
            },
            shown(&v)
        )),
    }
}

fn count(obj: &JsValue, name: &str, label: &str) -> Result<Option<u64>, String> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    match v.as_f64() {
        Some(n) if n.is_finite() && n >= 1.0 && n.fract() == 0.0 && n <= 4_294_967_295.0 => {
            Ok(Some(n as u64))
        }
        _ => Err(format!(
            "`{label}` must be a positive whole number (got {})",
            shown(&v)
        )),
    }
}

/// How a rejected option value reads in a message: strings quoted by
/// `JSON.stringify`, numbers as JS prints them (no Rust float formatting or
/// debug escaping in the wasm), anything else by its `typeof`.
fn shown(v: &JsValue) -> String {
    if v.is_string() {
        return js_sys::JSON::stringify(v)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default();
    }
    if v.as_f64().is_some() {
        return v
            .unchecked_ref::<js_sys::Number>()
            .to_string_with_radix(10)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default();
    }
    v.js_typeof().as_string().unwrap_or_default()
}

/// Parses `SwrCache.open`'s argument: types and ranges here, the rules that
/// relate options to each other in `EngineBuilder::build` (see
/// [`config_error`]).
pub(crate) fn parse(value: &JsValue) -> Result<Options, String> {
    // Every default is swre-core's: the memory tier's limits, the engine's
    // TTL, refresh timeout, value bound and breaker.
    let memory = MemoryLimits::default();
    let mut o = Options {
        name: "swre".to_owned(),
        storage: StorageChoice::Memory,
        ttl: CacheTtl::default(),
        max_entries: memory.max_entries,
        max_bytes: memory.max_bytes,
        max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
        breaker: BreakerConfig::default(),
        expired_mode: ExpiredMode::default(),
        wait_until: None,
        fail_safe_throttle: Some(FailSafeThrottle::default()),
        soft_timeout: None,
        early_refresh: None,
    };
    if value.is_undefined() || value.is_null() {
        return Ok(o);
    }
    if !value.is_object() || value.is_function() {
        return Err("options must be an object".to_owned());
    }
    reject_unknown(value, &KNOWN, "")?;
    if let Some(name) = field(value, "name") {
        match name.as_string() {
            Some(n) if !n.is_empty() => o.name = n,
            _ => {
                return Err(format!(
                    "`name` must be a non-empty string (got {})",
                    shown(&name)
                ))
            }
        }
    }
    if let Some(storage) = field(value, "storage") {
        o.storage = match storage.as_string().as_deref() {
            Some("memory") => StorageChoice::Memory,
            Some("indexeddb") => StorageChoice::IndexedDb,
            Some("cache") => StorageChoice::Cache,
            None if storage.is_object() => StorageChoice::Object(storage),
            _ => {
                return Err(format!(
                    "`storage` must be \"memory\", \"indexeddb\", \"cache\" or an object with get/put/delete (got {})",
                    shown(&storage)
                ))
            }
        };
    }
    if let Some(d) = millis(value, "fresh", "fresh", true)? {
        o.ttl.fresh = d;
    }
    if let Some(d) = millis(value, "stale", "stale", true)? {
        o.ttl.stale = d;
    }
    if let Some(d) = millis(value, "expired", "expired", true)? {
        o.ttl.expired = d;
    }
    if let Some(n) = count(value, "maxEntries", "maxEntries")? {
        o.max_entries = n as usize;
    }
    if let Some(n) = count(value, "maxBytes", "maxBytes")? {
        o.max_bytes = n as usize;
    }
    if let Some(n) = count(value, "maxValueBytes", "maxValueBytes")? {
        o.max_value_bytes = n as usize;
    }
    if o.max_value_bytes > o.max_bytes {
        return Err(format!(
            "`maxValueBytes` ({}) must not exceed `maxBytes` ({})",
            o.max_value_bytes, o.max_bytes
        ));
    }
    if let Some(d) = millis(value, "refreshTimeout", "refreshTimeout", false)? {
        o.refresh_timeout = d;
    }
    if let Some(mode) = field(value, "expiredMode") {
        o.expired_mode = match mode.as_string().as_deref() {
            Some("revalidate") => ExpiredMode::Revalidate,
            Some("serveStale") => ExpiredMode::ServeStale,
            _ => {
                return Err(format!(
                    "`expiredMode` must be \"revalidate\" or \"serveStale\" (got {})",
                    shown(&mode)
                ))
            }
        };
    }
    if let Some(f) = field(value, "waitUntil") {
        o.wait_until = Some(
            f.dyn_into::<Function>()
                .map_err(|v| format!("`waitUntil` must be a function (got {})", shown(&v)))?,
        );
    }
    o.soft_timeout = millis(value, "softTimeout", "softTimeout", false)?;
    if let Some(e) = field(value, "earlyRefresh") {
        let bad = || {
            format!(
                "`earlyRefresh` must be {{ beta }} (XFetch, beta > 0) or {{ threshold }} (between 0 and 1) (got {})",
                shown(&e)
            )
        };
        if !e.is_object() {
            return Err(bad());
        }
        reject_unknown(&e, &["beta", "threshold"], "earlyRefresh.")?;
        o.early_refresh = match (
            field(&e, "beta").map(|v| v.as_f64()),
            field(&e, "threshold").map(|v| v.as_f64()),
        ) {
            (Some(Some(beta)), None) if beta.is_finite() && beta > 0.0 => {
                Some(EarlyRefresh::XFetch { beta })
            }
            (None, Some(Some(f))) if f > 0.0 && f < 1.0 => Some(EarlyRefresh::Threshold(f)),
            _ => return Err(bad()),
        };
    }
    if let Some(t) = field(value, "failSafeThrottle") {
        if t.as_bool() == Some(false) {
            o.fail_safe_throttle = None;
        } else if t.is_object() {
            reject_unknown(&t, &THROTTLE_KNOWN, "failSafeThrottle.")?;
            let mut c = FailSafeThrottle::default();
            if let Some(d) = millis(&t, "base", "failSafeThrottle.base", false)? {
                c.base = d;
                c.max = c.max.max(d);
            }
            if let Some(d) = millis(&t, "max", "failSafeThrottle.max", false)? {
                c.max = d;
            }
            o.fail_safe_throttle = Some(c);
        } else {
            return Err(format!(
                "`failSafeThrottle` must be false or an object {{ base, max }} (got {})",
                shown(&t)
            ));
        }
    }
    if let Some(b) = field(value, "breaker") {
        if !b.is_object() {
            return Err(format!("`breaker` must be an object (got {})", shown(&b)));
        }
        reject_unknown(&b, &BREAKER_KNOWN, "breaker.")?;
        let c = &mut o.breaker;
        if let Some(n) = count(&b, "failureThreshold", "breaker.failureThreshold")? {
            c.failure_threshold = n as u32;
        }
        if let Some(n) = count(&b, "successThreshold", "breaker.successThreshold")? {
            c.success_threshold = n as u32;
        }
        if let Some(d) = millis(&b, "openFor", "breaker.openFor", false)? {
            c.open_for = d;
            // A shorter `openFor` caps the first opening too, unless given.
            c.first_open_for = c.first_open_for.min(d);
        }
        if let Some(d) = millis(&b, "firstOpenFor", "breaker.firstOpenFor", false)? {
            c.first_open_for = d;
        }
        if let Some(n) = count(&b, "maxHalfOpen", "breaker.maxHalfOpen")? {
            c.max_half_open = n as u32;
        }
        if let Some(n) = count(&b, "maxKeyBreakers", "breaker.maxKeyBreakers")? {
            c.max_key_breakers = n as usize;
        }
    }
    Ok(o)
}

/// The message for an option `EngineBuilder::build` rejected, in the JS
/// option's name: `ttl` is the three windows together, and every other
/// option is the builder's in camelCase (`breaker.max_half_open` →
/// `breaker.maxHalfOpen`).
pub(crate) fn config_error(option: &str, reason: &str) -> String {
    let name = if option == "ttl" {
        "`fresh` + `stale` + `expired`".to_owned()
    } else {
        format!("`{}`", super::camel_case(option))
    };
    format!("{name} {reason}")
}
