//! What the package's HTTP response caching (`cache.fetch`, in
//! `www/package/src/http.js`) asks of the core: a response's phases by RFC
//! 9111 and RFC 5861 ([`HttpPolicy`]), and its RFC 9211 `Cache-Status`
//! ([`CacheStatus`]), so that those rules live once, in `swre-core`.

use js_sys::{Array, Float64Array};
use swre_core::http::{
    group_tag, string_list, CacheMode, CacheStatus, Forward, HttpPolicy, NotStored, ResponseHeaders,
};
use swre_core::{Detail, Status};
use wasm_bindgen::prelude::*;

use super::SwrEngine;

#[wasm_bindgen]
impl SwrEngine {
    /// The phases `[fresh, stale, expired]` (ms) of a response received at
    /// `now` (Unix ms), or why it is not stored (`"no-store"`, `"private"`,
    /// `"authorization"`, `"set-cookie"`, `"status"`). `cache_control` is
    /// the response's `Cache-Control` (field lines joined by commas, as the
    /// `Headers` class joins them); a response without freshness of its own
    /// gets the cache's TTL. `private`: a private cache (a page, a service
    /// worker) rather than a shared one (a Worker).
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = httpPhases)]
    pub fn http_phases(
        &self,
        private: bool,
        status: u16,
        cache_control: Option<String>,
        expires: Option<String>,
        date: Option<String>,
        age: Option<String>,
        sets_cookie: bool,
        authorized: bool,
        now: f64,
    ) -> JsValue {
        let mode = if private {
            CacheMode::Private
        } else {
            CacheMode::Shared
        };
        let policy = HttpPolicy::new(mode, self.inner.ttl);
        let lines: Vec<&str> = cache_control.as_deref().into_iter().collect();
        let response = ResponseHeaders {
            status,
            cache_control: &lines,
            expires: expires.as_deref(),
            date: date.as_deref(),
            age: age.as_deref(),
            sets_cookie,
            request_authorized: authorized,
        };
        match policy.phases(&response, now.max(0.0) as u64) {
            Ok(ttl) => {
                let ms = |d: core::time::Duration| d.as_millis() as f64;
                Float64Array::from(&[ms(ttl.fresh), ms(ttl.stale), ms(ttl.expired)][..]).into()
            }
            Err(why) => JsValue::from_str(match why {
                NotStored::NoStore => "no-store",
                NotStored::Private => "private",
                NotStored::Authorization => "authorization",
                NotStored::SetsCookie => "set-cookie",
                _ => "status",
            }),
        }
    }

    /// The engine tags of the cache groups (RFC 9875) that `field` (a
    /// `Cache-Groups` or `Cache-Group-Invalidation` value) lists, scoped to
    /// `origin`: none when it is absent or not a List of Strings (RFC 8941
    /// §4.2: the whole field is then ignored).
    #[wasm_bindgen(js_name = groupTags)]
    pub fn group_tags(origin: &str, field: Option<String>) -> Array {
        let tags = Array::new();
        for group in field.as_deref().and_then(string_list).unwrap_or_default() {
            tags.push(&JsValue::from_str(&group_tag(origin, &group)));
        }
        tags
    }

    /// The RFC 9211 `Cache-Status` member for a lookup: `status` and
    /// `detail` as the package's results name them, `fresh_until` and `now`
    /// in Unix ms. `forward` (`"miss"`, `"stale"`, `"request"`,
    /// `"vary-miss"`, `"method"`, `"bypass"`, or empty) says why the request
    /// went to the origin, `fwd_status` what the origin answered (negative:
    /// not told); `stored` whether the response was stored; `collapsed`
    /// whether this request shared another's fetch. No `ttl` when the
    /// request went to the origin without a stored response.
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = cacheStatus)]
    pub fn cache_status(
        status: &str,
        detail: &str,
        fresh_until: f64,
        now: f64,
        forward: &str,
        fwd_status: i32,
        stored: bool,
        collapsed: bool,
    ) -> String {
        let status = match status {
            "hit" => Status::Hit,
            "stale" => Status::Stale,
            "expired" => Status::Expired,
            "fallback" => Status::Fallback,
            _ => Status::Miss,
        };
        let detail = Detail::ALL
            .iter()
            .copied()
            .find(|d| d.as_str() == detail)
            .unwrap_or(Detail::None);
        let mut c = CacheStatus::of(
            "swre",
            status,
            detail,
            fresh_until.max(0.0) as u64,
            now.max(0.0) as u64,
        );
        let fwd = match forward {
            "miss" => Some(Forward::Miss),
            "stale" => Some(Forward::Stale),
            "request" => Some(Forward::Request),
            "vary-miss" => Some(Forward::Vary),
            "method" => Some(Forward::Method),
            "bypass" => Some(Forward::Bypass),
            _ => None,
        };
        if fwd.is_some() {
            c.fwd = fwd;
        }
        if c.fwd.is_some() && !c.hit && !stored {
            c.ttl = None;
        }
        c.fwd_status = u16::try_from(fwd_status).ok();
        c.stored = stored;
        c.collapsed = collapsed;
        c.render()
    }
}
