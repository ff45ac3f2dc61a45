//! RedisStorage and fleet-wide leases against a real redis-server that each
//! test starts on a free loopback port and stops when done.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swre_native::testing::conformance;
use swre_native::{
    Clock, Engine, Entry, ManualClock, RedisOptions, RedisStorage, Status, Storage, SystemClock,
    TokioRuntime,
};

use crate::common::*;

/// A redis-server child process on 127.0.0.1, killed on drop. It keeps no
/// data on disk (`--save "" --appendonly no`): one [`stop`](Self::stop)ped
/// and [`launch`](Self::launch)ed again comes back empty, on the same port.
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = Self {
            port,
            child: None,
            dir: TempDir::new("redis"),
        };
        server.launch();
        server
    }

    /// Starts redis-server on this server's port and waits until it accepts
    /// connections.
    pub(crate) fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (the test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server with SIGKILL (`Child::kill` on Unix: `kill -9`, no
    /// shutdown of any kind) and reaps it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub(crate) async fn storage(&self, prefix: &str) -> RedisStorage {
        self.storage_with(RedisOptions {
            prefix: prefix.to_owned(),
            ..RedisOptions::default()
        })
        .await
    }

    pub(crate) async fn storage_with(&self, options: RedisOptions) -> RedisStorage {
        RedisStorage::connect_with(&self.url(), options)
            .await
            .expect("connect to redis")
    }

    pub(crate) fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let server = RedisServer::start();
    // The suite checks behaviour, not latency: on a loaded 2-core machine a
    // reply can take longer than the default 1 s, and a read that times out
    // degrades to a miss, which the engine checks would count as incoherent.
    let patient = || RedisOptions {
        prefix: "conformance".to_owned(),
        response_timeout: Duration::from_secs(20),
        ..RedisOptions::default()
    };
    conformance::run_all(&server.storage_with(patient()).await).await;
    let engine = Engine::builder(server.storage_with(patient()).await, TokioRuntime::new())
        .build()
        .unwrap();
    conformance::run_engine_checks(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_two_hundred_callers_one_upstream_call() {
    let server = RedisServer::start();
    let engines = [
        Engine::builder(server.storage("fleet").await, TokioRuntime::new())
            .ttl(ttl())
            .build()
            .unwrap(),
        Engine::builder(server.storage("fleet").await, TokioRuntime::new())
            .ttl(ttl())
            .build()
            .unwrap(),
    ];
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let engine = engines[i % 2].clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                engine
                    .get_or_fetch("cold", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, Boom>("the one value")
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap().expect("every caller gets the value");
        assert_eq!(text(&r.value), "the one value");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "exactly one upstream call across both engines"
    );
    let waits: u64 = engines.iter().map(|e| e.stats().lease_waits).sum();
    assert_eq!(waits, 1, "the other engine waited on the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_on_both_engines_refreshes_once_across_both() {
    let server = RedisServer::start();
    let clock = ManualClock::new(SystemClock.now_ms());
    let build = |s: RedisStorage| {
        Engine::builder(s, TokioRuntime::with_clock(clock.clone()))
            .ttl(ttl())
            .build()
            .unwrap()
    };
    let a = build(server.storage("stale").await);
    let b = build(server.storage("stale").await);
    let calls = Calls::default();
    a.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    settle(&a).await;
    assert_eq!(
        b.get_or_fetch("k", calls.ok("unused"))
            .await
            .unwrap()
            .status,
        Status::Hit
    );
    clock.advance(11 * SEC);
    let (ra, rb) = tokio::join!(
        a.get_or_fetch("k", calls.slow(Duration::from_millis(200), "v2")),
        b.get_or_fetch("k", calls.slow(Duration::from_millis(200), "v2")),
    );
    assert_eq!(
        (ra.unwrap().status, rb.unwrap().status),
        (Status::Stale, Status::Stale)
    );
    settle(&a).await;
    settle(&b).await;
    assert_eq!(
        calls.get(),
        2,
        "the initial fetch and one refresh across both engines"
    );
    for e in [&a, &b] {
        let r = e.get_or_fetch("k", calls.ok("unused")).await.unwrap();
        assert_eq!((r.status, text(&r.value)), (Status::Hit, "v2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_mid_traffic_degrades_then_recovers() {
    let mut server = RedisServer::start();
    let (engine, _) = engine_on(server.storage("outage").await, |b| b);
    let calls = Calls::default();
    engine.get_or_fetch("warm", calls.ok("v")).await.unwrap();
    settle(&engine).await;
    assert_eq!(
        engine
            .get_or_fetch("warm", calls.ok("x"))
            .await
            .unwrap()
            .status,
        Status::Hit
    );

    server.stop();
    for i in 0..5 {
        let r = engine
            .get_or_fetch(&format!("during-{i}"), calls.ok("from upstream"))
            .await
            .unwrap();
        assert_eq!((r.status, text(&r.value)), (Status::Miss, "from upstream"));
        settle(&engine).await;
    }
    let s = engine.stats();
    assert!(
        s.storage_read_errors >= 5 && s.storage_write_errors >= 5,
        "{s:?}"
    );
    assert_eq!(s.errors, 0);

    server.launch();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let _ = engine
            .get_or_fetch("after", calls.ok("stored again"))
            .await
            .unwrap();
        settle(&engine).await;
        if engine
            .get_or_fetch("after", calls.ok("x"))
            .await
            .unwrap()
            .status
            == Status::Hit
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store was not used again after Redis came back"
        );
        engine.invalidate("after").await.ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_written_raw_is_a_miss_and_is_replaced() {
    let server = RedisServer::start();
    let storage = server.storage("garbage").await;
    let mut raw = server.raw();
    let _: () = redis::cmd("SET")
        .arg(storage.value_key("k"))
        .arg("not an envelope")
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(storage.value_key("j"))
        .arg(&b"SWRE\x01\x00junk"[..])
        .query(&mut raw)
        .unwrap();
    assert_eq!(storage.get("k").await.unwrap(), None);
    assert_eq!(storage.get("j").await.unwrap(), None);
    let (engine, _) = engine_on(storage.clone(), |b| b);
    let calls = Calls::default();
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("clean"))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
    settle(&engine).await;
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(storage.value_key("k"))
        .query(&mut raw)
        .unwrap();
    assert!(bytes.starts_with(b"SWRE"), "replaced by an envelope");
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("x"))
            .await
            .unwrap()
            .status,
        Status::Hit
    );
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(storage.value_key("k"))
        .query(&mut raw)
        .unwrap();
    assert!(
        ttl_ms > 50_000 && ttl_ms <= 60_000,
        "Redis expires the key with the entry: {ttl_ms}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_keys_round_trip_and_clear_keeps_other_prefixes() {
    let server = RedisServer::start();
    let ours = server.storage("we*ird?[prefix]").await;
    let theirs = server.storage("we").await;
    let keys = ["with space", "new\nline", "*", "[a-z]?", &"k".repeat(4096)];
    let entry = |v: &str| Entry::new(v.to_owned(), SystemClock.now_ms(), ttl());
    for (i, k) in keys.iter().enumerate() {
        ours.set(k, entry(&format!("v{i}"))).await.unwrap();
    }
    theirs.set("kept", entry("theirs")).await.unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            text(&ours.get(k).await.unwrap().unwrap().value),
            format!("v{i}"),
            "{k:?}"
        );
    }
    ours.clear().await.unwrap();
    for k in keys {
        assert_eq!(ours.get(k).await.unwrap(), None);
    }
    assert!(
        theirs.get("kept").await.unwrap().is_some(),
        "clear touched another prefix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_exclusive_and_released_only_by_its_holder() {
    let server = RedisServer::start();
    let a = server.storage("lease").await;
    let b = server.storage("lease").await;
    let thirty = Duration::from_secs(30);
    let ta = a.try_lease("k", thirty).await.unwrap().expect("granted");
    assert_eq!(b.try_lease("k", thirty).await.unwrap(), None);
    b.release_lease("k", ta).await; // a's token, but not b's grant
    assert_eq!(b.try_lease("k", thirty).await.unwrap(), None);
    a.release_lease("k", ta).await;
    assert!(b.try_lease("k", thirty).await.unwrap().is_some());
    // Leases expire on their own.
    assert!(a
        .try_lease("short", Duration::from_millis(50))
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(b
        .try_lease("short", Duration::from_secs(1))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_released_late_never_frees_the_next_holders() {
    // Two engines sharing one storage through clones: the first one's lease
    // expires, the second takes the key, then the first releases its own
    // (expired) grant. The second's lease must survive it.
    let server = RedisServer::start();
    let a = server.storage("lease-clones").await;
    let a2 = a.clone();
    let other = server.storage("lease-clones").await;
    let first = a
        .try_lease("k", Duration::from_millis(50))
        .await
        .unwrap()
        .expect("granted");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let second = a2
        .try_lease("k", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("granted after expiry");
    assert_ne!(first, second, "each grant has its own token");
    a.release_lease("k", first).await;
    assert_eq!(
        other.try_lease("k", Duration::from_secs(30)).await.unwrap(),
        None,
        "the late release freed the live lease: a third process got the key"
    );
    a2.release_lease("k", second).await;
    assert!(other
        .try_lease("k", Duration::from_secs(30))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    let err = RedisStorage::connect("not-a-url").await.unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RedisStorage::connect(&format!("redis://127.0.0.1:{refused}/"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        swre_native::StorageErrorKind::Unavailable,
        "{err}"
    );
}
