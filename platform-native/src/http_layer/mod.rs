//! [`SwrLayer`]: a `tower` layer that caches an HTTP service's responses
//! with the engine, by HTTP's own rules (feature `tower`).
//!
//! Put it in front of your own routes, or of a client calling an upstream
//! API, and every `GET` gets stale-while-revalidate with one line:
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use swre_native::http_layer::SwrLayer;
//! use swre_native::{Engine, MemoryStorage, TokioRuntime};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counter = calls.clone();
//! let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build()?;
//! let app = Router::new()
//!     .route("/hello", get(move || async move {
//!         counter.fetch_add(1, Ordering::SeqCst);
//!         ([("cache-control", "max-age=60, stale-while-revalidate=600")], "Hello")
//!     }))
//!     .layer(SwrLayer::new(engine));
//!
//! for expected in ["swre; fwd=miss; fwd-status=200; ttl=60; stored", "swre; hit; ttl=60"] {
//!     let request = Request::get("/hello").body(Body::empty())?;
//!     let response = app.clone().oneshot(request).await?;
//!     assert_eq!(response.headers()["cache-status"], expected);
//! }
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! What it does, request by request:
//!
//! - **`GET`** is looked up under its method and URL (the URI's origin when
//!   it has one, else the `Host` header, then path and query). A fresh
//!   response is served from the store; a stale one (within
//!   `stale-while-revalidate`) is served at once and refreshed in the
//!   background; a missing one is fetched, and concurrent requests for it
//!   share one upstream call ("one call per key"). A request with
//!   `Cache-Control: no-store` or `no-cache`, or with a `Range`, is passed
//!   through.
//! - **What is stored** is decided by [`HttpPolicy::phases`]: the response's
//!   `Cache-Control` (`s-maxage` in a shared cache, `max-age`, `Expires`,
//!   `stale-while-revalidate`, `stale-if-error`, …). Responses it refuses —
//!   `no-store`, `private` in a shared cache, statuses not cacheable without
//!   explicit freshness, `Authorization` or `Set-Cookie` without leave —
//!   and `Vary: *` are passed through and never shared: a request that
//!   joined the call for one asks upstream itself. The whole response is
//!   stored (status, end-to-end headers, body); a body over
//!   [`max_body_bytes`](SwrLayerBuilder::max_body_bytes) (default 8 MiB) or
//!   with trailers is streamed through uncached.
//! - **`Vary`**: the request's values of the headers a response varies on
//!   are stored with it; a request with other values is a miss that fetches
//!   and replaces the entry (`fwd=vary-miss`).
//! - **Revalidation**: a refresh of a response with an `ETag` or
//!   `Last-Modified` sends `If-None-Match` / `If-Modified-Since`; a `304`
//!   keeps the stored body and starts its phases again from the 304's
//!   headers. The client's own conditional headers are not forwarded.
//! - **Errors**: a refresh answered `500`, `502`, `503` or `504` (or failing)
//!   while a stored response may stand in (`stale-if-error`) serves the
//!   stored one (`detail=upstream-error`), as the engine's phases say.
//! - **Unsafe methods** (anything but `GET`, `HEAD`, `OPTIONS`, `TRACE`)
//!   pass through; a `2xx`/`3xx` answer invalidates the cached `GET` of the
//!   target, and of same-origin `Location` / `Content-Location` targets
//!   (RFC 9111 §4.4).
//! - **`HEAD`**, `OPTIONS` and `TRACE` pass through.
//! - Every response gets an RFC 9211 `Cache-Status` member (appended after
//!   any the inner service set), rendered by
//!   [`CacheStatus`](swre_core::http::CacheStatus): `hit` with the seconds of
//!   freshness left (negative once stale), or `fwd=miss|stale|vary-miss|request|method`
//!   with `fwd-status`, `stored` and `collapsed` (joined another request's
//!   call), and a `detail` such as `upstream-error`. Responses from the
//!   store also get `Age`.
//!
//! **Errors.** [`SwrService`]'s error is the inner service's: a request
//! passed through, or whose own upstream call failed, gets the inner error
//! as it came. When the engine cannot answer otherwise — the request joined
//! a call that failed, the circuit breaker is open, the call timed out, the
//! engine is shutting down — the answer is a response, as a gateway's would
//! be: `502 Bad Gateway` (`503` while the breaker is open or at shutdown,
//! `504` on timeout), with the reason in `Cache-Status`'s `detail`. So a
//! layer over an infallible axum `Router` stays infallible.
//!
//! **Request bodies.** A cached `GET` is sent upstream with an empty body
//! (`B::default()`): the call may be made again later for a background
//! refresh, and a `GET`'s body has no meaning for caching (RFC 9110
//! §9.3.1). Passed-through requests keep theirs.

mod body;
mod fetch;
mod groups;
mod key;
mod service;
mod stored;
mod vary;

use std::sync::Arc;

use swre_core::http::{CacheMode, HttpPolicy};
use swre_core::{CacheTtl, Engine, Postcard};
use tower::Layer;

pub use body::SwrBody;

use fetch::Settings;

/// The largest body stored by default (8 MiB); larger ones pass through.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// A `tower` [`Layer`] caching HTTP responses with an [`Engine`]: see the
/// [module docs](self).
///
/// Generic over the engine's storage `St`, runtime `R` and codec `C`.
/// Cloning is cheap (the engine and the settings are shared).
///
/// ```
/// use swre_native::http_layer::SwrLayer;
/// use swre_native::http::CacheMode;
/// use swre_native::{Engine, MemoryStorage, TokioRuntime};
///
/// let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build().unwrap();
/// let layer = SwrLayer::builder(engine)
///     .mode(CacheMode::Private)
///     .max_body_bytes(1 << 20)
///     .build();
/// # let _ = layer;
/// ```
pub struct SwrLayer<St, R, C = Postcard> {
    engine: Engine<St, R, C>,
    settings: Arc<Settings>,
}

impl<St, R, C> Clone for SwrLayer<St, R, C> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<St, R, C> SwrLayer<St, R, C> {
    /// A shared cache ([`CacheMode::Shared`]) over `engine` with the
    /// defaults of [`SwrLayerBuilder`].
    ///
    /// ```
    /// use swre_native::http_layer::SwrLayer;
    /// use swre_native::{Engine, MemoryStorage, TokioRuntime};
    ///
    /// let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build().unwrap();
    /// let layer = SwrLayer::new(engine);
    /// # let _ = layer;
    /// ```
    pub fn new(engine: Engine<St, R, C>) -> Self {
        Self::builder(engine).build()
    }

    /// A builder over `engine`, to choose the mode, the policy, the body
    /// limit and the name in `Cache-Status`.
    ///
    /// ```
    /// use swre_native::http_layer::SwrLayer;
    /// use swre_native::{Engine, MemoryStorage, TokioRuntime};
    ///
    /// let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build().unwrap();
    /// let layer = SwrLayer::builder(engine).name("edge").build();
    /// # let _ = layer;
    /// ```
    pub fn builder(engine: Engine<St, R, C>) -> SwrLayerBuilder<St, R, C> {
        SwrLayerBuilder {
            engine,
            policy: HttpPolicy::new(CacheMode::Shared, CacheTtl::new(ZERO, ZERO, ZERO)),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            name: "swre".to_owned(),
        }
    }
}

const ZERO: core::time::Duration = core::time::Duration::ZERO;

impl<S, St, R, C> Layer<S> for SwrLayer<St, R, C> {
    type Service = SwrService<S, St, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        SwrService {
            inner,
            engine: self.engine.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// Settings of a [`SwrLayer`] ([`SwrLayer::builder`]).
pub struct SwrLayerBuilder<St, R, C = Postcard> {
    engine: Engine<St, R, C>,
    policy: HttpPolicy,
    max_body_bytes: usize,
    name: String,
}

impl<St, R, C> SwrLayerBuilder<St, R, C> {
    /// Whose cache this is: [`CacheMode::Shared`] (the default: `s-maxage`
    /// applies, `private` responses are not stored) or
    /// [`CacheMode::Private`] (one user's cache).
    ///
    /// ```
    /// # use swre_native::http_layer::SwrLayer;
    /// # use swre_native::{Engine, MemoryStorage, TokioRuntime};
    /// use swre_native::http::CacheMode;
    /// # let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build().unwrap();
    /// let layer = SwrLayer::builder(engine).mode(CacheMode::Private).build();
    /// # let _ = layer;
    /// ```
    pub fn mode(mut self, mode: CacheMode) -> Self {
        self.policy.mode = mode;
        self
    }

    /// The whole policy. The default is a shared cache that stores only
    /// responses giving their own freshness or stale phases (its
    /// `default_ttl`, for cacheable responses without `max-age`,
    /// `s-maxage` or `Expires`, is zero), capped at a year.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use swre_native::http_layer::SwrLayer;
    /// # use swre_native::{CacheTtl, Engine, MemoryStorage, TokioRuntime};
    /// use swre_native::http::{CacheMode, HttpPolicy};
    /// # let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build().unwrap();
    /// // Responses without freshness information: fresh 10 s, then stale 1 min.
    /// let heuristic = CacheTtl::new(Duration::from_secs(10), Duration::from_secs(60), Duration::ZERO);
    /// let layer = SwrLayer::builder(engine)
    ///     .policy(HttpPolicy::new(CacheMode::Shared, heuristic))
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn policy(mut self, policy: HttpPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The largest body stored, in bytes (default
    /// [`DEFAULT_MAX_BODY_BYTES`]); a larger one is streamed through
    /// uncached. (The engine's own `max_value_bytes` applies too.)
    ///
    /// ```
    /// # use swre_native::http_layer::SwrLayer;
    /// # use swre_native::{Engine, MemoryStorage, TokioRuntime};
    /// # let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build().unwrap();
    /// let layer = SwrLayer::builder(engine).max_body_bytes(64 << 10).build();
    /// # let _ = layer;
    /// ```
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// The cache's name in `Cache-Status` (default `swre`).
    ///
    /// ```
    /// # use swre_native::http_layer::SwrLayer;
    /// # use swre_native::{Engine, MemoryStorage, TokioRuntime};
    /// # let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build().unwrap();
    /// let layer = SwrLayer::builder(engine).name("api-cache").build();
    /// # let _ = layer;
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The layer.
    ///
    /// ```
    /// # use swre_native::http_layer::SwrLayer;
    /// # use swre_native::{Engine, MemoryStorage, TokioRuntime};
    /// # let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new()).build().unwrap();
    /// let layer = SwrLayer::builder(engine).build();
    /// # let _ = layer;
    /// ```
    pub fn build(self) -> SwrLayer<St, R, C> {
        SwrLayer {
            engine: self.engine,
            settings: Arc::new(Settings {
                policy: self.policy,
                max_body_bytes: self.max_body_bytes,
                name: self.name,
            }),
        }
    }
}

/// The service a [`SwrLayer`] wraps around an inner HTTP service `S`: see
/// the [module docs](self). Its responses have a [`SwrBody`]; its error is
/// `S::Error`.
pub struct SwrService<S, St, R, C = Postcard> {
    inner: S,
    engine: Engine<St, R, C>,
    settings: Arc<Settings>,
}

impl<S: Clone, St, R, C> Clone for SwrService<S, St, R, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            engine: self.engine.clone(),
            settings: self.settings.clone(),
        }
    }
}
