//! The tower layer (`swre_native::http_layer`) in front of a real hyper
//! server on loopback, reached through a hyper client: the layer wraps the
//! client as its inner service. Time moves on the engine's manual clock.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use swre_native::http::CacheMode;
use swre_native::http_layer::{SwrLayer, SwrLayerBuilder, SwrService};
use swre_native::{CacheTtl, Clock, Entry, ManualClock, MemoryStorage, Storage};
use tower::{Layer, ServiceExt};

use crate::common::{engine_with, settle, Rt, SEC};

type Upstream = Client<HttpConnector, Empty<Bytes>>;
type Svc = SwrService<Upstream, MemoryStorage, Rt>;
type Handler = dyn Fn(&Request<Incoming>, usize) -> Response<Full<Bytes>> + Send + Sync;

/// A counting hyper server on 127.0.0.1 whose answers the test writes.
struct Origin {
    base: String,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(Method, String, HeaderMap)>>>,
}

impl Origin {
    async fn start(
        handler: impl Fn(&Request<Incoming>, usize) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (c, s) = (calls.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (c, s, handler) = (c.clone(), s.clone(), handler.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                        s.lock().unwrap().push((
                            req.method().clone(),
                            req.uri().path().to_owned(),
                            req.headers().clone(),
                        ));
                        let response = handler(&req, n);
                        async move {
                            // Long enough for concurrent requests to meet.
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    // No `Date` from the wall clock: the engine's clock is manual.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .auto_date_header(false)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { base, calls, seen }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Upstream calls for `path` by method.
    fn calls_to(&self, method: Method, path: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(m, p, _)| *m == method && p == path)
            .count()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (n, v) in headers {
        r = r.header(*n, *v);
    }
    r.body(Full::new(body.into())).unwrap()
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The layer (as `build` makes it) over a hyper client.
fn layer(
    build: impl FnOnce(SwrLayerBuilder<MemoryStorage, Rt>) -> SwrLayerBuilder<MemoryStorage, Rt>,
) -> (Svc, swre_native::Engine<MemoryStorage, Rt>, ManualClock) {
    let (engine, clock) = engine_with(|b| b);
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = build(SwrLayer::builder(engine.clone()))
        .build()
        .layer(client);
    (svc, engine, clock)
}

struct Got {
    status: StatusCode,
    body: String,
    cache_status: String,
    headers: HeaderMap,
}

async fn send(svc: &Svc, method: Method, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::builder().method(method).uri(url);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let response = svc
        .clone()
        .oneshot(req.body(Empty::new()).unwrap())
        .await
        .expect("a response");
    let status = response.status();
    let headers = response.headers().clone();
    let cache_status = headers
        .get_all("cache-status")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(", ");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        body: String::from_utf8(body.to_vec()).unwrap(),
        cache_status,
        headers,
    }
}

async fn get(svc: &Svc, url: &str) -> Got {
    send(svc, Method::GET, url, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_for_a_cold_url_make_one_upstream_call() {
    let origin = Origin::start(|_, _| reply(200, &[("cache-control", "max-age=60")], "v")).await;
    let (svc, _engine, _clock) = layer(|b| b);
    let url = origin.url("/cold");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (svc, url) = (svc.clone(), url.clone());
            tokio::spawn(async move { get(&svc, &url).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, "v"));
        statuses.push(got.cache_status);
    }
    assert_eq!(origin.calls(), 1);
    let leader = "swre; fwd=miss; fwd-status=200; ttl=60; stored";
    assert_eq!(statuses.iter().filter(|s| *s == leader).count(), 1);
    // Everyone else joined that call, or came once it was stored.
    let others = ["swre; fwd=miss; ttl=60; collapsed", "swre; hit; ttl=60"];
    for s in &statuses {
        assert!(s == leader || others.contains(&s.as_str()), "{s}");
    }
    assert!(statuses.iter().any(|s| s == others[0]), "none collapsed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_may_not_be_stored_reaches_upstream_every_time() {
    let origin = Origin::start(|req, _| match req.uri().path() {
        "/no-store" => reply(200, &[("cache-control", "no-store, max-age=60")], "a"),
        "/private" => reply(200, &[("cache-control", "private, max-age=60")], "b"),
        _ => reply(500, &[], "c"),
    })
    .await;
    let (shared, _, _) = layer(|b| b);
    for (path, status) in [("/no-store", 200), ("/private", 200), ("/error", 500)] {
        for _ in 0..3 {
            let got = get(&shared, &origin.url(path)).await;
            assert_eq!(got.status.as_u16(), status);
            assert_eq!(
                got.cache_status,
                format!("swre; fwd=miss; fwd-status={status}"),
                "{path}"
            );
        }
        assert_eq!(origin.calls_to(Method::GET, path), 3, "{path}");
    }
    // A private cache stores `private`.
    let (private, _, _) = layer(|b| b.mode(CacheMode::Private));
    let first = get(&private, &origin.url("/private")).await;
    let second = get(&private, &origin.url("/private")).await;
    assert_eq!(
        first.cache_status,
        "swre; fwd=miss; fwd-status=200; ttl=60; stored"
    );
    assert_eq!(
        (second.cache_status.as_str(), second.body.as_str()),
        ("swre; hit; ttl=60", "b")
    );
    assert_eq!(origin.calls_to(Method::GET, "/private"), 4);
    // A request's own no-store passes through, as does HEAD.
    let (svc, _, _) = layer(|b| b);
    let url = origin.url("/private");
    let got = send(&svc, Method::GET, &url, &[("cache-control", "no-store")]).await;
    assert_eq!(got.cache_status, "swre; fwd=request; fwd-status=200");
    let got = send(&svc, Method::HEAD, &url, &[]).await;
    assert_eq!(got.cache_status, "swre; fwd=method; fwd-status=200");
    assert_eq!(origin.calls(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_response_that_may_not_be_stored_is_never_shared() {
    // Concurrent requests join one call; its answer is `private`, so each
    // of the others asks upstream itself and gets its own.
    let origin = Origin::start(|_, n| {
        reply(
            200,
            &[("cache-control", "private, max-age=60")],
            format!("for caller {n}"),
        )
    })
    .await;
    let (svc, _, _) = layer(|b| b);
    let url = origin.url("/me");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (svc, url) = (svc.clone(), url.clone());
            tokio::spawn(async move { get(&svc, &url).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.cache_status, "swre; fwd=miss; fwd-status=200");
        bodies.push(got.body);
    }
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 10);
    assert_eq!(origin.calls(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_each_language_apart() {
    let origin = Origin::start(|req, _| {
        let lang = header(req, "accept-language");
        reply(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            format!("hello {lang}"),
        )
    })
    .await;
    let (svc, _, _) = layer(|b| b);
    let url = origin.url("/greeting");
    let en = send(&svc, Method::GET, &url, &[("accept-language", "en")]).await;
    assert_eq!(
        (en.body.as_str(), en.cache_status.as_str()),
        ("hello en", "swre; fwd=miss; fwd-status=200; ttl=60; stored")
    );
    let fr = send(&svc, Method::GET, &url, &[("accept-language", "fr")]).await;
    assert_eq!(
        (fr.body.as_str(), fr.cache_status.as_str()),
        (
            "hello fr",
            "swre; fwd=vary-miss; fwd-status=200; ttl=60; stored"
        )
    );
    let again = send(&svc, Method::GET, &url, &[("accept-language", "fr")]).await;
    assert_eq!(
        (again.body.as_str(), again.cache_status.as_str()),
        ("hello fr", "swre; hit; ttl=60")
    );
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_revalidation_keeps_the_body_and_extends_the_entry() {
    let origin = Origin::start(|req, _| {
        let cc = ("cache-control", "max-age=10, stale-while-revalidate=30");
        if header(req, "if-none-match") == "\"v1\"" {
            reply(304, &[cc, ("etag", "\"v1\"")], "")
        } else {
            reply(200, &[cc, ("etag", "\"v1\"")], "the body")
        }
    })
    .await;
    let (svc, engine, clock) = layer(|b| b);
    let url = origin.url("/etag");
    let first = get(&svc, &url).await;
    assert_eq!(
        (first.body.as_str(), first.cache_status.as_str()),
        ("the body", "swre; fwd=miss; fwd-status=200; ttl=10; stored")
    );
    // Fresh until its last millisecond of max-age ...
    clock.advance(10 * SEC - std::time::Duration::from_millis(1));
    let hit = get(&svc, &url).await;
    assert_eq!(hit.cache_status, "swre; hit; ttl=0");
    assert_eq!(hit.headers["age"], "9");
    assert_eq!(origin.calls(), 1);
    // ... stale at exactly max-age: served at once, revalidated in background.
    clock.advance(std::time::Duration::from_millis(1));
    let stale = get(&svc, &url).await;
    assert_eq!(
        (stale.body.as_str(), stale.cache_status.as_str()),
        ("the body", "swre; hit; ttl=0")
    );
    settle(&engine).await;
    assert_eq!(origin.calls(), 2);
    let seen = origin.seen.lock().unwrap().clone();
    assert!(!seen[0].2.contains_key("if-none-match"));
    assert_eq!(seen[1].2["if-none-match"], "\"v1\"");
    // The 304 started the phases again: a fresh hit on the stored body.
    clock.advance(5 * SEC);
    let after = get(&svc, &url).await;
    assert_eq!(
        (
            after.status,
            after.body.as_str(),
            after.cache_status.as_str()
        ),
        (StatusCode::OK, "the body", "swre; hit; ttl=5")
    );
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_unsafe_request_invalidates_its_target() {
    let origin = Origin::start(|req, _| match *req.method() {
        Method::POST => reply(201, &[("location", "/other")], "created"),
        Method::DELETE => reply(500, &[], "failed"),
        _ => reply(200, &[("cache-control", "max-age=60")], "item"),
    })
    .await;
    let (svc, _, _) = layer(|b| b);
    let (item, other) = (origin.url("/item"), origin.url("/other"));
    for url in [&item, &other, &item, &other] {
        get(&svc, url).await;
    }
    assert_eq!(origin.calls(), 2);
    // A failed unsafe request invalidates nothing.
    let failed = send(&svc, Method::DELETE, &item, &[]).await;
    assert_eq!(failed.cache_status, "swre; fwd=method; fwd-status=500");
    assert_eq!(get(&svc, &item).await.cache_status, "swre; hit; ttl=60");
    let posted = send(&svc, Method::POST, &item, &[]).await;
    assert_eq!(
        (posted.status, posted.cache_status.as_str()),
        (StatusCode::CREATED, "swre; fwd=method; fwd-status=201")
    );
    // The target and its same-origin Location are gone.
    for url in [&item, &other] {
        let got = get(&svc, url).await;
        assert_eq!(
            got.cache_status,
            "swre; fwd=miss; fwd-status=200; ttl=60; stored"
        );
    }
    assert_eq!(origin.calls_to(Method::GET, "/item"), 2);
    assert_eq!(origin.calls_to(Method::GET, "/other"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_passes_through_uncached() {
    let origin = Origin::start(|req, _| {
        let size = if req.uri().path() == "/big" {
            4096
        } else {
            1024
        };
        reply(200, &[("cache-control", "max-age=60")], vec![b'x'; size])
    })
    .await;
    let (svc, _, _) = layer(|b| b.max_body_bytes(1024));
    for _ in 0..2 {
        let big = get(&svc, &origin.url("/big")).await;
        assert_eq!(big.body.len(), 4096);
        assert_eq!(big.cache_status, "swre; fwd=miss; fwd-status=200");
    }
    assert_eq!(origin.calls_to(Method::GET, "/big"), 2);
    get(&svc, &origin.url("/small")).await;
    let small = get(&svc, &origin.url("/small")).await;
    assert_eq!(
        (small.body.len(), small.cache_status.as_str()),
        (1024, "swre; hit; ttl=60")
    );
    assert_eq!(origin.calls_to(Method::GET, "/small"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_store_reads_as_a_miss() {
    let origin =
        Origin::start(|_, n| reply(200, &[("cache-control", "max-age=60")], format!("call {n}")))
            .await;
    let (svc, engine, clock) = layer(|b| b);
    let url = origin.url("/x");
    assert_eq!(get(&svc, &url).await.body, "call 1");
    let key = format!("GET {url}");
    let ttl = CacheTtl::new(60 * SEC, SEC, SEC);
    let valid = engine.peek(&key).await.unwrap().expect("stored").value;
    let garbage: [&[u8]; 4] = [b"garbage", b"", &valid[..5], &[0xC5, 1, 0, 200, 0, 1, 0]];
    for (i, value) in garbage.into_iter().enumerate() {
        let entry = Entry::new(value, clock.now_ms(), ttl);
        engine.storage().set(&key, entry).await.unwrap();
        let got = get(&svc, &url).await;
        assert_eq!(got.body, format!("call {}", i + 2));
        assert_eq!(
            got.cache_status,
            "swre; fwd=miss; fwd-status=200; ttl=60; stored"
        );
        assert_eq!(get(&svc, &url).await.cache_status, "swre; hit; ttl=60");
    }
    assert_eq!(origin.calls(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_stored_response() {
    let origin = Origin::start(|_, n| {
        if n == 1 {
            reply(
                200,
                &[("cache-control", "max-age=1, stale-if-error=60")],
                "good",
            )
        } else {
            reply(503, &[], "down")
        }
    })
    .await;
    let (svc, _, clock) = layer(|b| b);
    let url = origin.url("/flaky");
    get(&svc, &url).await;
    clock.advance(2 * SEC);
    let got = get(&svc, &url).await;
    assert_eq!(
        (got.status, got.body.as_str(), got.cache_status.as_str()),
        (
            StatusCode::OK,
            "good",
            "swre; hit; ttl=-1; detail=upstream-error"
        )
    );
    // With nothing stored, the 503 itself passes through.
    let other = get(&svc, &origin.url("/down")).await;
    assert_eq!(
        (other.status, other.cache_status.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "swre; fwd=miss; fwd-status=503"
        )
    );
    assert_eq!(origin.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_the_inner_error() {
    // A port nothing listens on: bound, then closed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let (svc, _, _) = layer(|b| b);
    let request = Request::get(&url).body(Empty::new()).unwrap();
    let err = svc.oneshot(request).await.expect_err("nothing listens");
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_groups_are_invalidated_by_an_unsafe_requests_answer() {
    // RFC 9875: `Cache-Groups` on stored responses, and
    // `Cache-Group-Invalidation` on the answer to a POST.
    let origin = Origin::start(|req, n| match req.uri().path() {
        "/a" => reply(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cache-groups", r#""scripts", "all""#),
            ],
            format!("a{n}"),
        ),
        "/b" => reply(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cache-groups", r#""all""#),
            ],
            format!("b{n}"),
        ),
        "/c" => reply(200, &[("cache-control", "max-age=60")], format!("c{n}")),
        _ => reply(
            204,
            &[("cache-group-invalidation", r#""scripts""#)],
            Bytes::new(),
        ),
    })
    .await;
    let (svc, _, _) = layer(|b| b);
    let first: Vec<String> = {
        let mut v = Vec::new();
        for p in ["/a", "/b", "/c"] {
            v.push(get(&svc, &origin.url(p)).await.body);
        }
        v
    };
    let purge = send(&svc, Method::POST, &origin.url("/purge"), &[]).await;
    assert_eq!(purge.cache_status, "swre; fwd=method; fwd-status=204");
    let a = get(&svc, &origin.url("/a")).await;
    assert_eq!(
        (a.body.as_str(), a.cache_status.as_str()),
        ("a5", "swre; fwd=miss; fwd-status=200; ttl=60; stored"),
        "in group scripts: fetched again (first: {first:?})"
    );
    for (p, body) in [("/b", &first[1]), ("/c", &first[2])] {
        let got = get(&svc, &origin.url(p)).await;
        assert_eq!(
            (&got.body, got.cache_status.as_str()),
            (body, "swre; hit; ttl=60"),
            "{p}"
        );
    }
    assert_eq!(origin.calls(), 5);
}
