//! Redis under faults (issue 15, Deliver 4): a `Tiered<MemoryStorage,
//! RedisStorage>` engine on a real redis-server that is `kill -9`ed under
//! load and restarted, restarted empty, and slowed down by a delaying TCP
//! proxy. Every lookup that L1 or the upstream can answer is answered, none
//! outlives its deadline, leases work again afterwards, and nothing stale is
//! served as fresh.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use swre_native::{
    Bytes, Cached, Clock, Engine, Entry, ManualClock, MemoryStorage, RedisOptions, RedisStorage,
    Status, Storage, SystemClock, Tiered, TokioRuntime,
};

use crate::common::{settle, text, ttl, Boom, Rt, SEC};
use crate::redis::RedisServer;

type Tier = Tiered<MemoryStorage, RedisStorage>;
type TierEngine = Engine<Tier, Rt>;

/// The engine's refresh timeout: the deadline of every upstream call.
const REFRESH: Duration = Duration::from_secs(2);
/// Redis's response and connection timeouts.
const RESPONSE: Duration = Duration::from_millis(200);
const CONNECT: Duration = Duration::from_millis(300);
/// Longest a lookup may take: its own store read (one Redis command: connect
/// and response) and the call's deadline, plus 500 ms of scheduling slack.
const LIMIT: Duration = Duration::from_millis(
    REFRESH.as_millis() as u64 + CONNECT.as_millis() as u64 + RESPONSE.as_millis() as u64 + 500,
);

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        prefix: prefix.to_owned(),
        response_timeout: RESPONSE,
        connection_timeout: CONNECT,
        ..RedisOptions::default()
    }
}

/// An engine over memory in front of `l2`, on the shared `clock`.
fn tiered(l2: RedisStorage, clock: &ManualClock) -> TierEngine {
    Engine::builder(
        Tiered::new(MemoryStorage::new(), l2),
        TokioRuntime::with_clock(clock.clone()),
    )
    .ttl(ttl())
    .refresh_timeout(REFRESH)
    .build()
    .expect("valid configuration")
}

/// An upstream that always answers `<key>@<clock now>` and counts its calls.
#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicUsize>,
    clock: ManualClock,
}

impl Upstream {
    fn new(clock: &ManualClock) -> Self {
        Self {
            calls: Arc::default(),
            clock: clock.clone(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn fetch(
        &self,
        key: &str,
    ) -> impl FnOnce() -> std::future::Ready<Result<String, Boom>> + Send + 'static {
        let (calls, clock, key) = (self.calls.clone(), self.clock.clone(), key.to_owned());
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(format!("{key}@{}", clock.now_ms())))
        }
    }

    /// As [`fetch`](Self::fetch), answering after `d`.
    fn slow(
        &self,
        key: &str,
        d: Duration,
    ) -> impl FnOnce() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, Boom>> + Send>,
    > + Send
           + 'static {
        let (calls, clock, key) = (self.calls.clone(), self.clock.clone(), key.to_owned());
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(d).await;
                Ok(format!("{key}@{}", clock.now_ms()))
            })
        }
    }
}

/// What lookups under faults came to.
#[derive(Default)]
struct Tally {
    lookups: AtomicU64,
    errors: AtomicU64,
    hung: AtomicU64,
    worst_ms: AtomicU64,
    /// The first few violations, for the failure message.
    problems: Mutex<Vec<String>>,
}

impl Tally {
    fn problem(&self, p: String) {
        let mut ps = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if ps.len() < 10 {
            ps.push(p);
        }
    }

    /// One lookup of `key`, bounded by [`LIMIT`], checked: the value is
    /// `key`'s, and its status matches its entry's times at `clock`'s now
    /// ("nothing stale is served as fresh").
    async fn lookup(
        &self,
        engine: &TierEngine,
        upstream: &Upstream,
        key: &str,
    ) -> Option<Cached<Bytes>> {
        let started = Instant::now();
        let result =
            tokio::time::timeout(LIMIT, engine.get_or_fetch(key, upstream.fetch(key))).await;
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.worst_ms.fetch_max(took, Ordering::SeqCst);
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let cached = match result {
            Err(_) => {
                self.hung.fetch_add(1, Ordering::SeqCst);
                self.problem(format!("{key}: no answer within {LIMIT:?}"));
                return None;
            }
            Ok(Err(e)) => {
                self.errors.fetch_add(1, Ordering::SeqCst);
                self.problem(format!("{key}: {e} after {took} ms"));
                return None;
            }
            Ok(Ok(c)) => c,
        };
        let now = upstream.clock.now_ms();
        if !text(&cached.value).starts_with(&format!("{key}@")) {
            self.problem(format!("{key}: served {:?}", text(&cached.value)));
        }
        let honest = match cached.status {
            Status::Hit | Status::Miss => now < cached.fresh_until,
            Status::Stale => cached.fresh_until <= now && now < cached.stale_until,
            _ => now < cached.expires_at,
        };
        if !honest {
            self.problem(format!(
                "{key}: {:?} at {now} for an entry fresh until {}, stale until {}",
                cached.status, cached.fresh_until, cached.stale_until
            ));
        }
        Some(cached)
    }

    fn assert_clean(&self, what: &str) {
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            (
                self.errors.load(Ordering::SeqCst),
                self.hung.load(Ordering::SeqCst)
            ),
            (0, 0),
            "{what}: every lookup is answered in time: {problems:#?}"
        );
        assert!(problems.is_empty(), "{what}: {problems:#?}");
    }

    fn summary(&self) -> String {
        format!(
            "{} lookups, {} errors, {} hung, worst {} ms",
            self.lookups.load(Ordering::SeqCst),
            self.errors.load(Ordering::SeqCst),
            self.hung.load(Ordering::SeqCst),
            self.worst_ms.load(Ordering::SeqCst)
        )
    }
}

/// Polls `ok` until it holds, failing with `what` after 10 s.
async fn eventually<F, Fut>(what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a write to `redis` and a read of it back both work now.
async fn round_trips(redis: &RedisStorage, key: &str) -> bool {
    let entry = Entry::new("probe", SystemClock.now_ms(), ttl());
    redis.set(key, entry.clone()).await.is_ok()
        && matches!(redis.get(key).await, Ok(Some(e)) if e == entry)
}

/// Asks both storages for `key`'s lease at once: exactly one is granted,
/// then released.
async fn exactly_one_lease(a: &RedisStorage, b: &RedisStorage, key: &str) {
    let (ga, gb) = tokio::join!(a.try_lease(key, 30 * SEC), b.try_lease(key, 30 * SEC));
    let (ga, gb) = (
        ga.expect("lease request answered"),
        gb.expect("lease request answered"),
    );
    assert!(
        ga.is_some() != gb.is_some(),
        "exactly one lease granted: {ga:?} {gb:?}"
    );
    match (ga, gb) {
        (Some(t), None) => a.release_lease(key, t).await,
        (None, Some(t)) => b.release_lease(key, t).await,
        _ => unreachable!("checked above"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_during_load_then_restart() {
    const WARM: usize = 20;
    const WORKERS: usize = 6;
    let mut server = RedisServer::start();
    let clock = ManualClock::new(SystemClock.now_ms());
    let upstream = Upstream::new(&clock);
    let engine = tiered(server.storage_with(options("kill")).await, &clock);
    let warm: Arc<Vec<String>> = Arc::new((0..WARM).map(|i| format!("warm-{i}")).collect());
    let tally = Arc::new(Tally::default());
    for k in warm.iter() {
        let c = tally.lookup(&engine, &upstream, k).await;
        assert_eq!(c.map(|c| c.status), Some(Status::Miss), "{k}");
    }
    settle(&engine).await;
    let warmed_at = clock.now_ms();

    // Workers alternate warm keys (fresh in L1) and keys never seen before
    // (upstream) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicBool::new(false));
    // Lookups started once Redis was dead, and the slowest of them (ms).
    let during_outage = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (engine, upstream, tally, warm) = (
                engine.clone(),
                upstream.clone(),
                tally.clone(),
                warm.clone(),
            );
            let (stop, down, during_outage) = (stop.clone(), down.clone(), during_outage.clone());
            tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let key = if i.is_multiple_of(2) {
                        warm[(w * 7 + i) % warm.len()].clone()
                    } else {
                        format!("cold-{w}-{i}")
                    };
                    let outage = down.load(Ordering::SeqCst);
                    let started = Instant::now();
                    let c = tally.lookup(&engine, &upstream, &key).await;
                    let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    if key.starts_with("warm") {
                        let served = c.map(|c| (c.status, c.created_at));
                        if served != Some((Status::Hit, warmed_at)) {
                            tally.problem(format!("{key}: warm key served as {served:?}"));
                        }
                    }
                    if outage {
                        during_outage.0.fetch_add(1, Ordering::SeqCst);
                        during_outage.1.fetch_max(took, Ordering::SeqCst);
                    }
                    i += 1;
                }
            })
        })
        .collect();

    eventually("load running", || {
        let done = tally.lookups.load(Ordering::SeqCst) >= WARM as u64 + 300;
        async move { done }
    })
    .await;
    server.stop(); // kill -9, mid-load
    down.store(true, Ordering::SeqCst);
    // The load goes on against the dead Redis for longer than a call's
    // deadline, so calls started while it died run their whole course.
    tokio::time::sleep(REFRESH + SEC).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("worker");
    }
    tally.assert_clean("Redis killed under load");
    let (outage, outage_worst) = (
        during_outage.0.load(Ordering::SeqCst),
        during_outage.1.load(Ordering::SeqCst),
    );
    let s = engine.stats();
    // "Commands fail fast while Redis is down": a refused connection costs a
    // lookup less than one Redis command's timeouts, though a cold one
    // makes five store calls.
    assert!(
        outage_worst < (CONNECT + RESPONSE).as_millis() as u64,
        "a lookup waited {outage_worst} ms on a dead Redis"
    );
    assert!(outage >= 100, "lookups while Redis was dead: {outage}");
    assert!(s.storage_read_errors > 0, "the outage was felt: {s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    eprintln!(
        "redis kill -9: {}; {outage} while Redis was dead (worst {outage_worst} ms), {} store read errors, {} upstream calls",
        tally.summary(),
        s.storage_read_errors,
        upstream.calls()
    );

    // Restarted on the same port (empty): the engine's Redis connection comes
    // back by itself, and a lease is exclusive again.
    server.launch();
    let l2 = engine.storage().l2();
    eventually("the engine's RedisStorage reconnected", || {
        round_trips(l2, "probe")
    })
    .await;
    let other = server.storage_with(options("kill")).await;
    exactly_one_lease(l2, &other, "lease-probe").await;
    // Fleet-wide: a second engine on the same Redis, both asked for a key
    // neither holds, make one upstream call between them.
    let peer = tiered(other, &clock);
    let calls = upstream.calls();
    let (a, b) = tokio::join!(
        engine.get_or_fetch("after", upstream.slow("after", Duration::from_millis(200))),
        peer.get_or_fetch("after", upstream.slow("after", Duration::from_millis(200))),
    );
    assert_eq!(
        text(&a.expect("answered").value),
        text(&b.expect("answered").value)
    );
    assert_eq!(upstream.calls() - calls, 1, "one upstream call across both");
    assert_eq!(
        engine.stats().lease_waits + peer.stats().lease_waits,
        1,
        "the other engine waited on the lease"
    );

    // Past the fresh window: the warm keys are served as stale (never as a
    // hit), then refreshed, then hits again.
    clock.advance(11 * SEC);
    let after = Tally::default();
    for k in warm.iter() {
        let c = after.lookup(&engine, &upstream, k).await;
        assert_eq!(
            c.map(|c| (c.status, c.created_at)),
            Some((Status::Stale, warmed_at)),
            "{k}"
        );
    }
    settle(&engine).await;
    for k in warm.iter() {
        let c = after.lookup(&engine, &upstream, k).await;
        assert_eq!(
            c.map(|c| (c.status, c.created_at)),
            Some((Status::Hit, clock.now_ms())),
            "{k} refreshed"
        );
        // The refresh reached the restarted Redis: the peer reads it there.
        let p = after.lookup(&peer, &upstream, k).await;
        assert_eq!(
            p.map(|c| (c.status, c.created_at)),
            Some((Status::Hit, clock.now_ms())),
            "{k} through Redis"
        );
    }
    after.assert_clean("after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty() {
    const KEYS: usize = 10;
    let mut server = RedisServer::start();
    let clock = ManualClock::new(SystemClock.now_ms());
    let upstream = Upstream::new(&clock);
    let tally = Tally::default();
    let a = tiered(server.storage_with(options("empty")).await, &clock);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    for k in &keys {
        let c = tally.lookup(&a, &upstream, k).await;
        assert_eq!(c.map(|c| c.status), Some(Status::Miss));
    }
    settle(&a).await;
    let probe = server.storage_with(options("empty")).await;
    for k in &keys {
        assert!(probe.get(k).await.expect("read").is_some(), "{k} in Redis");
    }
    let old = |k: &str| format!("{k}@{}", clock.now_ms());
    let old: Vec<String> = keys.iter().map(|k| old(k)).collect();

    server.stop();
    server.launch();
    clock.advance(SEC);
    eventually("a fresh connection to the restarted Redis", || {
        round_trips(&probe, "probe")
    })
    .await;
    for k in &keys {
        assert_eq!(
            probe.get(k).await.expect("read"),
            None,
            "{k}: restarted empty"
        );
    }

    // A new engine finds nothing and asks upstream, once per key.
    let b = tiered(server.storage_with(options("empty")).await, &clock);
    let calls = upstream.calls();
    for k in &keys {
        let c = tally.lookup(&b, &upstream, k).await.expect("answered");
        assert_eq!(c.status, Status::Miss, "{k}");
    }
    settle(&b).await;
    assert_eq!(
        upstream.calls() - calls,
        KEYS,
        "B: one upstream call per key"
    );
    // A still answers from its L1, within the values' TTL.
    for (k, v) in keys.iter().zip(&old) {
        let c = tally.lookup(&a, &upstream, k).await.expect("answered");
        assert_eq!((c.status, text(&c.value)), (Status::Hit, v.as_str()), "{k}");
    }
    assert_eq!(upstream.calls() - calls, KEYS, "A made no upstream call");

    // Invalidated on A: neither engine serves the value from before the
    // restart any more.
    for k in &keys {
        a.invalidate(k)
            .await
            .expect("invalidate reaches L1 and Redis");
    }
    for (k, v) in keys.iter().zip(&old) {
        for (name, e) in [("A", &a), ("B", &b)] {
            let c = tally.lookup(e, &upstream, k).await.expect("answered");
            assert_ne!(text(&c.value), v.as_str(), "{name} served {k}'s old value");
        }
    }
    settle(&a).await;
    tally.assert_clean("Redis restarted empty");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.errors, sb.errors), (0, 0), "{sa:?} {sb:?}");
    eprintln!(
        "redis restarted empty: {}; {} upstream calls",
        tally.summary(),
        upstream.calls()
    );
}

/// A TCP proxy on loopback that holds every chunk it forwards, either way,
/// for the delay set when the chunk arrived; the delay can change at any
/// time. Its tasks end with the test's runtime.
struct DelayingProxy {
    port: u16,
    delay_ms: Arc<AtomicU64>,
}

impl DelayingProxy {
    async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, delay.clone()));
                tokio::spawn(pump(server_read, client_write, delay.clone()));
            }
        });
        Self { port, delay_ms }
    }

    fn set_delay(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, each chunk held until its arrival time plus the
/// delay then set, in order.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay_ms: Arc<AtomicU64>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                let due = tokio::time::Instant::now() + delay;
                if tx.send((due, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_redis_through_a_delaying_proxy() {
    const WARM: usize = 10;
    const WORKERS: usize = 4;
    const ROUNDS: usize = 5;
    let server = RedisServer::start();
    let proxy = DelayingProxy::start(server.port()).await;
    let clock = ManualClock::new(SystemClock.now_ms());
    let upstream = Upstream::new(&clock);
    let through_proxy = RedisStorage::connect_with(
        &format!("redis://127.0.0.1:{}/", proxy.port),
        options("slow"),
    )
    .await
    .expect("connect through the proxy");
    let engine = tiered(through_proxy, &clock);
    let direct = server.storage_with(options("slow")).await;
    let warm: Arc<Vec<String>> = Arc::new((0..WARM).map(|i| format!("warm-{i}")).collect());
    let tally = Arc::new(Tally::default());
    for k in warm.iter() {
        tally.lookup(&engine, &upstream, k).await;
    }
    settle(&engine).await;
    let warmed_at = clock.now_ms();

    // Every Redis answer now comes 800 ms late, four times the response
    // timeout: warm keys are answered from L1 at once, the others from
    // upstream once Redis has timed out.
    proxy.set_delay(Duration::from_millis(800));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (engine, upstream, tally, warm) = (
                engine.clone(),
                upstream.clone(),
                tally.clone(),
                warm.clone(),
            );
            tokio::spawn(async move {
                let mut cold = Vec::new();
                for i in 0..ROUNDS {
                    let k = &warm[(w + i) % warm.len()];
                    let started = Instant::now();
                    let c = tally.lookup(&engine, &upstream, k).await;
                    let took = started.elapsed();
                    if c.map(|c| (c.status, c.created_at)) != Some((Status::Hit, warmed_at))
                        || took >= RESPONSE
                    {
                        tally.problem(format!("{k}: not an L1 hit at once ({took:?})"));
                    }
                    let k = format!("cold-{w}-{i}");
                    if let Some(c) = tally.lookup(&engine, &upstream, &k).await {
                        if c.status != Status::Miss {
                            tally.problem(format!("{k}: {:?}, not from upstream", c.status));
                        }
                    }
                    cold.push(k);
                }
                cold
            })
        })
        .collect();
    let mut cold = Vec::new();
    for w in workers {
        cold.extend(w.await.expect("worker"));
    }
    tally.assert_clean("Redis answering slowly");
    let s = engine.stats();
    assert!(
        s.storage_read_errors >= (WORKERS * ROUNDS) as u64,
        "every cold read timed out: {s:?}"
    );
    assert_eq!(s.errors, 0, "{s:?}");
    eprintln!(
        "redis slow (800 ms behind a {RESPONSE:?} timeout): {}; {} store read errors",
        tally.summary(),
        s.storage_read_errors
    );

    // Redis answers at once again: what another process writes there is
    // read through the engine (an L2 hit, no upstream call), and the keys
    // looked up while it was slow are answered (none is left behind a
    // lease).
    proxy.set_delay(Duration::ZERO);
    let entry = Entry::new("from another process", clock.now_ms(), ttl());
    direct
        .set("shared", entry)
        .await
        .expect("direct write to Redis");
    eventually("Redis used again through the proxy", || {
        let engine = &engine;
        async move {
            matches!(engine.peek("shared").await, Ok(Some(c)) if &*c.value == b"from another process")
        }
    })
    .await;
    let calls = upstream.calls();
    let c = engine
        .get_or_fetch("shared", upstream.fetch("shared"))
        .await
        .expect("answered");
    assert_eq!(
        (c.status, &*c.value),
        (Status::Hit, &b"from another process"[..])
    );
    assert_eq!(
        upstream.calls(),
        calls,
        "no upstream call for a value in Redis"
    );

    let again = Tally::default();
    // Latest first: their leases, if any were left, would still be live.
    for k in cold.iter().rev() {
        again.lookup(&engine, &upstream, k).await;
    }
    again.assert_clean("keys looked up while Redis was slow, once it is not");
    exactly_one_lease(engine.storage().l2(), &direct, "lease-probe").await;
    eprintln!("redis slow, then fast again: {}", again.summary());
}
