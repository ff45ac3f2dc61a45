//! The upstream call the engine makes for a cached request: the inner
//! service asked (conditionally, when the entry has validators), its answer
//! turned into a [`Fetched`] by the standards, and what may not be stored
//! handed to the caller that made the call.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AGE, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, DATE, ETAG, EXPIRES, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, SET_COOKIE, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use http_body::Body;
use swre_core::http::{HttpPolicy, ResponseHeaders};
use swre_core::{CacheTtl, Clock, FetchContext, Fetched};
use tower::{BoxError, Service, ServiceExt};

use super::body::{self, Collected, SwrBody};
use super::groups;
use super::key::Target;
use super::stored::{self, StoredResponse};
use super::vary::{self, Varies};

/// What the call tells the caller that made it (and only that caller:
/// others who joined it see just the engine's answer).
pub(crate) struct Handoff<E> {
    /// The call ran (this caller did not join another's).
    ran: AtomicBool,
    /// It revalidated a stored response (`fwd=stale`).
    had_stale: AtomicBool,
    /// Upstream's status, 0 before it answered.
    fwd_status: AtomicU16,
    /// The answer is to be stored.
    stored: AtomicBool,
    /// A response that is not stored, passed on as it came, or the inner
    /// service's error.
    outcome: Mutex<Option<Result<Response<SwrBody>, E>>>,
}

impl<E> Default for Handoff<E> {
    fn default() -> Self {
        Self {
            ran: AtomicBool::new(false),
            had_stale: AtomicBool::new(false),
            fwd_status: AtomicU16::new(0),
            stored: AtomicBool::new(false),
            outcome: Mutex::new(None),
        }
    }
}

impl<E> Handoff<E> {
    pub(crate) fn ran(&self) -> bool {
        self.ran.load(Ordering::Acquire)
    }

    pub(crate) fn had_stale(&self) -> bool {
        self.had_stale.load(Ordering::Acquire)
    }

    pub(crate) fn fwd_status(&self) -> Option<u16> {
        Some(self.fwd_status.load(Ordering::Acquire)).filter(|s| *s != 0)
    }

    pub(crate) fn stored(&self) -> bool {
        self.stored.load(Ordering::Acquire)
    }

    /// The response passed on or the inner error, if the call left one.
    pub(crate) fn take_outcome(&self) -> Option<Result<Response<SwrBody>, E>> {
        // The lock is held for the `take` only, never across an await.
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn leave(&self, outcome: Result<Response<SwrBody>, E>) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    }

    fn pass(&self, response: Response<SwrBody>) {
        self.leave(Ok(response));
    }
}

/// Upstream answered a server error while a stored response could stand in
/// for it (`stale-if-error`, RFC 5861 §4): the engine serves the stored one.
#[derive(Debug)]
pub(crate) struct UpstreamStatus(pub(crate) StatusCode);

impl fmt::Display for UpstreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream answered {}", self.0)
    }
}

impl std::error::Error for UpstreamStatus {}

/// The inner service failed; its error went to the request that made the
/// call.
#[derive(Debug)]
pub(crate) struct InnerFailed;

impl fmt::Display for InnerFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the inner service failed")
    }
}

impl std::error::Error for InnerFailed {}

/// What every call of one layer shares.
pub(crate) struct Settings {
    pub(crate) policy: HttpPolicy,
    pub(crate) max_body_bytes: usize,
    pub(crate) name: String,
}

/// The value of a response that is not stored: the engine hands it to the
/// callers who joined the call, and they ask upstream themselves (a
/// response one request may not share is never shared with another).
pub(crate) const NOT_SHARED: &[u8] = b"";

/// Request headers the layer answers itself rather than forwards: a
/// conditional or ranged request forwarded as is could bring back a 304 or
/// a 206 the cache cannot store as the resource.
const CLIENT_CONDITIONALS: [HeaderName; 5] = [
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_MATCH,
    IF_UNMODIFIED_SINCE,
    IF_RANGE,
];

/// One upstream call for `parts` through `inner`, as the engine makes it
/// (in a spawned task, at most once per key at a time).
pub(crate) async fn fetch<S, B, ResBody, K>(
    ctx: FetchContext,
    inner: S,
    parts: Arc<Parts>,
    settings: Arc<Settings>,
    clock: K,
    handoff: Arc<Handoff<S::Error>>,
) -> Result<Fetched<Vec<u8>>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: Default,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
    K: Clock,
{
    handoff.ran.store(true, Ordering::Release);
    // The stored response, if it is one for this request's variant: only
    // then are its validators this request's to send.
    let held = ctx
        .stale
        .as_ref()
        .and_then(|v| stored::decode(v).ok())
        .filter(|s| vary::matches(&s.vary, &parts.headers));
    let mut request = Request::from_parts((*parts).clone(), B::default());
    for h in &CLIENT_CONDITIONALS {
        request.headers_mut().remove(h);
    }
    if let Some(s) = &held {
        handoff.had_stale.store(true, Ordering::Release);
        if let Some(etag) = s.headers.get(ETAG) {
            request.headers_mut().insert(IF_NONE_MATCH, etag.clone());
        }
        if let Some(lm) = s.headers.get(LAST_MODIFIED) {
            request.headers_mut().insert(IF_MODIFIED_SINCE, lm.clone());
        }
    }
    let response = match inner.oneshot(request).await {
        Ok(r) => r,
        Err(e) => {
            handoff.leave(Err(e));
            return Err(Box::new(InnerFailed));
        }
    };
    let now = clock.now_ms();
    let status = response.status();
    handoff.fwd_status.store(status.as_u16(), Ordering::Release);

    if let (StatusCode::NOT_MODIFIED, Some(s)) = (status, &held) {
        let merged = updated_headers(&s.headers, response.headers());
        return Ok(
            match phases(&settings.policy, status, &merged, &parts, now) {
                Some(ttl) => {
                    handoff.stored.store(stores(&ttl), Ordering::Release);
                    Fetched::not_modified().ttl(ttl)
                }
                None => Fetched::not_modified().do_not_store(),
            },
        );
    }
    let (head, upstream_body) = response.into_parts();
    if held.is_some() && is_server_error(status) {
        handoff.pass(Response::from_parts(head, body::boxed(upstream_body)));
        return Err(Box::new(UpstreamStatus(status)));
    }
    let names = match vary::varies(&head.headers) {
        Varies::On(names) => Some(names),
        Varies::Anything => None,
    };
    let ttl = phases(&settings.policy, status, &head.headers, &parts, now);
    let (Some(ttl), Some(names)) = (ttl, names) else {
        handoff.pass(Response::from_parts(head, body::boxed(upstream_body)));
        return Ok(Fetched::value(NOT_SHARED.to_vec()).do_not_store());
    };
    let bytes = match body::collect(upstream_body, settings.max_body_bytes).await? {
        Collected::Whole(bytes) => bytes,
        Collected::Streamed(rest) => {
            handoff.pass(Response::from_parts(head, rest));
            return Ok(Fetched::value(NOT_SHARED.to_vec()).do_not_store());
        }
    };
    let vary = vary::capture(&parts.headers, names);
    match stored::encode(status, &end_to_end(&head.headers), &vary, &bytes) {
        Ok(value) => {
            let target = Target::of(&parts.uri, &parts.headers);
            let groups = groups::tags(&head.headers, groups::CACHE_GROUPS, &target);
            let fetched = Fetched::value(value).ttl(ttl);
            if !groups::storable(&groups) {
                // More groups, or longer names, than an entry's tags hold:
                // stored without them, a group's invalidation would miss it.
                return Ok(fetched.do_not_store());
            }
            handoff.stored.store(stores(&ttl), Ordering::Release);
            // Its groups (RFC 9875) as tags; none names none, so an answer
            // that leaves a group leaves it here too.
            Ok(fetched.tags(groups))
        }
        Err(_) => {
            handoff.pass(Response::from_parts(head, body::full(bytes)));
            Ok(Fetched::value(NOT_SHARED.to_vec()).do_not_store())
        }
    }
}

/// The engine stores phases totalling 1 ms or more.
fn stores(ttl: &CacheTtl) -> bool {
    ttl.fresh + ttl.stale + ttl.expired >= Duration::from_millis(1)
}

/// The statuses `stale-if-error` stands in for (RFC 5861 §4).
fn is_server_error(s: StatusCode) -> bool {
    matches!(s.as_u16(), 500 | 502 | 503 | 504)
}

/// The phases of a response with `headers` to the request `parts`, or
/// `None` when it may not be stored.
fn phases(
    policy: &HttpPolicy,
    status: StatusCode,
    headers: &HeaderMap,
    parts: &Parts,
    now: u64,
) -> Option<CacheTtl> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let cache_control: Vec<&str> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let r = ResponseHeaders {
        status: status.as_u16(),
        cache_control: &cache_control,
        expires: text(EXPIRES),
        date: text(DATE),
        age: text(AGE),
        sets_cookie: headers.contains_key(SET_COOKIE),
        request_authorized: parts.headers.contains_key(AUTHORIZATION),
    };
    policy.phases(&r, now).ok()
}

/// A stored response's headers updated by a 304's (RFC 9111 §3.2): each
/// header the 304 sends replaces the stored one; `Date` and `Age` describe
/// the 304 alone.
fn updated_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut merged = stored.clone();
    merged.remove(DATE);
    merged.remove(AGE);
    for name in not_modified.keys() {
        if *name == CONTENT_LENGTH {
            continue;
        }
        merged.remove(name);
        for v in not_modified.get_all(name) {
            merged.append(name.clone(), v.clone());
        }
    }
    merged
}

/// `headers` without the hop-by-hop fields (RFC 9110 §7.6.1), which are not
/// stored.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        out.remove(name);
    }
    for name in [CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE] {
        out.remove(name);
    }
    out.remove("keep-alive");
    out.remove("proxy-connection");
    out
}

/// The stored response under `value`, if it is one.
pub(crate) fn read(value: &[u8]) -> Option<StoredResponse> {
    stored::decode(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_304_updates_the_stored_headers_and_hop_by_hop_ones_are_dropped() {
        let mut stored = HeaderMap::new();
        stored.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
        stored.insert(
            DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        stored.insert(ETAG, HeaderValue::from_static("\"a\""));
        let mut nm = HeaderMap::new();
        nm.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        nm.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let merged = updated_headers(&stored, &nm);
        assert_eq!(merged.get(CACHE_CONTROL).unwrap(), "max-age=60");
        assert_eq!(merged.get(ETAG).unwrap(), "\"a\"");
        assert!(merged.get(DATE).is_none() && merged.get(CONTENT_LENGTH).is_none());

        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(ETAG, HeaderValue::from_static("\"a\""));
        let kept = end_to_end(&h);
        assert_eq!(kept.len(), 1);
        assert!(kept.contains_key(ETAG));
    }
}
