//! [`SwrService`]'s `Service` impl: which requests are cached, passed
//! through or invalidate, and how an engine answer becomes a response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AGE, RANGE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use swre_core::http::{CacheControl, CacheStatus, Forward};
use swre_core::{Cached, Codec, Detail, Error, Runtime, Status, Storage};
use tower::{BoxError, Service, ServiceExt};

use super::body::{self, SwrBody};
use super::fetch::{self, Handoff, NOT_SHARED};
use super::groups;
use super::key::Target;
use super::{vary, SwrService};

const CACHE_STATUS: &str = "cache-status";

/// What the layer does with a request.
enum Route {
    /// Looked up, fetched through the engine.
    Cache,
    /// Passed through, for this reason.
    Pass(Forward),
    /// Passed through; a success invalidates its target.
    Unsafe,
}

fn route(parts: &Parts) -> Route {
    match parts.method {
        Method::GET => {
            let cc = CacheControl::parse(
                parts
                    .headers
                    .get_all(http::header::CACHE_CONTROL)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            if cc.no_store || cc.no_cache || parts.headers.contains_key(RANGE) {
                Route::Pass(Forward::Request)
            } else {
                Route::Cache
            }
        }
        Method::HEAD | Method::OPTIONS | Method::TRACE => Route::Pass(Forward::Method),
        _ => Route::Unsafe,
    }
}

impl<S, B, ResBody, St, R, C> Service<Request<B>> for SwrService<S, St, R, C>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Default + Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
    St: Storage,
    R: Runtime + Send + Sync,
    C: Codec + Clone,
{
    type Response = Response<SwrBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<SwrBody>, S::Error>> + Send>>;

    /// Always ready: each call drives a clone of the inner service to
    /// readiness itself (a cached request may call it later, or never).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            match route(&parts) {
                Route::Cache => {
                    drop(body);
                    this.cached(parts).await
                }
                Route::Pass(fwd) => this.pass(Request::from_parts(parts, body), fwd).await,
                Route::Unsafe => this.unsafe_method(Request::from_parts(parts, body)).await,
            }
        })
    }
}

impl<S, St, R, C> SwrService<S, St, R, C>
where
    St: Storage,
    R: Runtime + Send + Sync,
    C: Codec + Clone,
{
    /// A request the cache does not answer: the inner service's response,
    /// with `Cache-Status` saying why.
    async fn pass<B, ResBody>(
        self,
        request: Request<B>,
        fwd: Forward,
    ) -> Result<Response<SwrBody>, S::Error>
    where
        S: Service<Request<B>, Response = Response<ResBody>>,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let response = self.inner.oneshot(request).await?;
        let status = response.status();
        let mut response = response.map(body::boxed);
        let mut cs = CacheStatus::of(&self.settings.name, Status::Miss, Detail::None, 0, 0);
        cs.fwd = Some(fwd);
        cs.fwd_status = Some(status.as_u16());
        cs.ttl = None;
        add_cache_status(&mut response, &cs);
        Ok(response)
    }

    /// An unsafe method: passed through; a `2xx`/`3xx` answer invalidates
    /// the cached `GET` of its target and of same-origin `Location` /
    /// `Content-Location` targets (RFC 9111 §4.4).
    async fn unsafe_method<B, ResBody>(
        self,
        request: Request<B>,
    ) -> Result<Response<SwrBody>, S::Error>
    where
        S: Service<Request<B>, Response = Response<ResBody>>,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let target = Target::of(request.uri(), request.headers());
        let engine = self.engine.clone();
        let response = self.pass(request, Forward::Method).await?;
        if response.status().is_success() || response.status().is_redirection() {
            let related = target.related(response.headers());
            let groups = groups::tags(
                response.headers(),
                groups::CACHE_GROUP_INVALIDATION,
                &target,
            );
            for t in std::iter::once(target).chain(related) {
                // "Storage failures degrade": the write already succeeded
                // upstream, so a failed invalidation does not fail it.
                let _ = engine.invalidate(t.key(&Method::GET)).await;
            }
            // RFC 9875 §3: the groups it names, of its origin.
            for tag in groups {
                let _ = engine.invalidate_tag(&tag).await;
            }
        }
        Ok(response)
    }

    /// A `GET` through the engine.
    async fn cached<B, ResBody>(self, parts: Parts) -> Result<Response<SwrBody>, S::Error>
    where
        S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + Send + 'static,
        B: Default + Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let key = Target::of(&parts.uri, &parts.headers).key(&Method::GET);
        let parts = Arc::new(parts);
        let mut fwd = Forward::Miss;
        // A stored response for another variant, or garbage, is replaced:
        // once, since a concurrent request may store its variant again; then
        // this request goes upstream by itself.
        for _ in 0..2 {
            let handoff = Arc::new(Handoff::<S::Error>::default());
            let call = {
                let (inner, parts, handoff) = (self.inner.clone(), parts.clone(), handoff.clone());
                let settings = self.settings.clone();
                let clock = self.engine.runtime().clone();
                move |ctx| fetch::fetch(ctx, inner, parts, settings, clock, handoff)
            };
            let result = self.engine.get_or_fetch_with(&key, call).await;
            let now = self.engine.runtime().now_ms();
            let cached = match result {
                Ok(cached) => cached,
                Err(Error::InvalidKey(_)) => break,
                Err(e) => return self.failed(&e, &handoff),
            };
            if cached.status == Status::Miss {
                if let Some(own) = handoff.take_outcome() {
                    // This request's own call, not stored: its answer as it came.
                    return Ok(self.passed_on(own?, &handoff));
                }
            }
            match fetch::read(&cached.value) {
                Some(stored) if vary::matches(&stored.vary, &parts.headers) => {
                    let body = Bytes::from_owner(cached.value.clone()).slice(stored.body.clone());
                    let mut response = Response::new(body::full(body));
                    *response.status_mut() = stored.status;
                    *response.headers_mut() = stored.headers;
                    return Ok(self.served(response, &cached, fwd, &handoff, now));
                }
                Some(_) => fwd = Forward::Vary,
                // Another request's call that may not be shared.
                None if *cached.value == *NOT_SHARED && cached.status == Status::Miss => break,
                None => {}
            }
            let _ = self.engine.invalidate(&key).await;
        }
        let request = Request::from_parts((*parts).clone(), B::default());
        self.pass(request, fwd).await
    }

    /// A response served from the engine's answer, with `Age` (from the
    /// store) and `Cache-Status`.
    fn served<E>(
        &self,
        mut response: Response<SwrBody>,
        cached: &Cached<swre_core::Bytes>,
        fwd: Forward,
        handoff: &Handoff<E>,
        now: u64,
    ) -> Response<SwrBody> {
        let mut cs = CacheStatus::of(
            &self.settings.name,
            cached.status,
            cached.detail,
            cached.fresh_until,
            now,
        );
        if cached.status == Status::Miss {
            if handoff.ran() {
                cs.fwd = Some(if handoff.had_stale() {
                    Forward::Stale
                } else {
                    fwd
                });
                cs.fwd_status = handoff.fwd_status();
                cs.stored = handoff.stored();
            } else {
                cs.fwd = Some(fwd);
                cs.collapsed = true;
            }
        } else {
            let stored_age = response
                .headers()
                .get(AGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let age = stored_age.saturating_add(cached.age.as_secs());
            response.headers_mut().insert(AGE, HeaderValue::from(age));
        }
        add_cache_status(&mut response, &cs);
        response
    }

    /// The response of this request's own call, which is not stored.
    fn passed_on<E>(
        &self,
        mut response: Response<SwrBody>,
        handoff: &Handoff<E>,
    ) -> Response<SwrBody> {
        let mut cs = CacheStatus::of(&self.settings.name, Status::Miss, Detail::None, 0, 0);
        cs.fwd = Some(if handoff.had_stale() {
            Forward::Stale
        } else {
            Forward::Miss
        });
        cs.fwd_status = Some(response.status().as_u16());
        cs.ttl = None;
        add_cache_status(&mut response, &cs);
        response
    }

    /// The engine could not answer: this request's own upstream answer or
    /// error when it made the call, else a gateway error response.
    fn failed<E>(&self, e: &Error, handoff: &Handoff<E>) -> Result<Response<SwrBody>, E> {
        if let Some(own) = handoff.take_outcome() {
            return Ok(self.passed_on(own?, handoff));
        }
        let (status, detail) = match e {
            Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, Detail::Timeout),
            Error::CircuitOpen => (StatusCode::SERVICE_UNAVAILABLE, Detail::BreakerOpen),
            Error::Shutdown => (StatusCode::SERVICE_UNAVAILABLE, Detail::Shutdown),
            _ => (StatusCode::BAD_GATEWAY, Detail::UpstreamError),
        };
        let mut response = Response::new(body::full(Bytes::from(e.to_string())));
        *response.status_mut() = status;
        let mut cs = CacheStatus::of(&self.settings.name, Status::Miss, detail, 0, 0);
        cs.ttl = None;
        cs.collapsed = !handoff.ran();
        add_cache_status(&mut response, &cs);
        Ok(response)
    }
}

/// Appends this cache's member to the response's `Cache-Status` (RFC 9211
/// §2: caches nearer the user come later in the list).
fn add_cache_status(response: &mut Response<SwrBody>, cs: &CacheStatus<'_>) {
    if let Ok(v) = HeaderValue::try_from(cs.render()) {
        response.headers_mut().append(CACHE_STATUS, v);
    }
}
