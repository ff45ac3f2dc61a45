//! The Redis pub/sub backplane: two engines in this process, each over its
//! own `Backplane<Tiered<MemoryStorage, RedisStorage>>` on one real
//! redis-server, and a control pair without it.

use std::future::Future;
use std::time::{Duration, Instant};

use swre_native::{
    Backplane, BackplaneOptions, CallOptions, Clock, Engine, MemoryStorage, Status, Storage,
    SystemClock, Tiered,
};

use crate::common::*;
use crate::redis::RedisServer;

/// Longest a change may take to reach the other instance.
const BOUND: Duration = Duration::from_secs(2);

async fn backplane(server: &RedisServer, prefix: &str) -> Backplane {
    backplane_on(server, server, prefix).await
}

/// Entries in `store`'s Redis, messages through `bus`'s.
async fn backplane_on(store: &RedisServer, bus: &RedisServer, prefix: &str) -> Backplane {
    let tiered = Tiered::new(MemoryStorage::new(), store.storage(prefix).await);
    let options = BackplaneOptions {
        channel: format!("{prefix}:backplane"),
        ..BackplaneOptions::default()
    };
    Backplane::connect_with(&bus.url(), tiered, options)
        .await
        .expect("backplane connects")
}

/// `(value, status)` of a lookup of `key` whose fetch answers `fetched`.
async fn lookup<S: Storage>(
    engine: &Engine<S, Rt>,
    key: &str,
    calls: &Calls,
    fetched: &'static str,
) -> (String, Status) {
    let r = engine
        .get_or_fetch(key, calls.ok(fetched))
        .await
        .expect("lookup");
    (text(&r.value).to_owned(), r.status)
}

/// Polls `done` every 2 ms until it holds; how long that took. Fails after
/// [`BOUND`].
async fn within_bound<F: Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    loop {
        if done().await {
            let lag = started.elapsed();
            println!("backplane: {what}: seen after {lag:?}");
            return lag;
        }
        assert!(
            started.elapsed() < BOUND,
            "{what}: not seen within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether `engine`'s L1 holds `key`, and with which value.
async fn in_l1(engine: &Engine<Backplane, Rt>, key: &str) -> Option<String> {
    let found = engine
        .storage()
        .tiered()
        .l1()
        .get(key)
        .await
        .expect("L1 read");
    found.map(|e| text(&e.value).to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_invalidate_tags_and_clear_on_one_instance_reach_the_others_l1() {
    let server = RedisServer::start();
    let (a, _) = engine_on(backplane(&server, "bp").await, |b| b);
    let (b, _) = engine_on(backplane(&server, "bp").await, |b| b);
    let calls = Calls::default();

    // A fetches; B finds it in Redis and keeps it in its L1.
    assert_eq!(
        lookup(&a, "k", &calls, "v1").await,
        ("v1".into(), Status::Miss)
    );
    settle(&a).await;
    assert_eq!(
        lookup(&b, "k", &calls, "unused").await,
        ("v1".into(), Status::Hit)
    );
    assert_eq!(calls.get(), 1);
    assert_eq!(in_l1(&b, "k").await.as_deref(), Some("v1"));

    // set: B's next lookups read the new value from Redis, no upstream call.
    let own_before = a.storage().stats().ignored_own;
    let started = Instant::now();
    a.set("k", "v2").await.unwrap();
    within_bound("set", || async {
        lookup(&b, "k", &calls, "unused").await.0 == "v2"
    })
    .await;
    println!(
        "backplane: set, from before A's write: {:?}",
        started.elapsed()
    );
    assert_eq!(calls.get(), 1, "B read v2 from Redis, not upstream");
    // A heard its own message and left its L1 copy alone.
    within_bound("A's own set", || async {
        a.storage().stats().ignored_own > own_before
    })
    .await;
    assert_eq!(in_l1(&a, "k").await.as_deref(), Some("v2"));

    // invalidate: B's copy goes, and B fetches.
    a.invalidate("k").await.unwrap();
    within_bound("invalidate", || async {
        lookup(&b, "k", &calls, "v3").await.0 == "v3"
    })
    .await;
    assert_eq!(calls.get(), 2, "B fetched once after the invalidation");
    settle(&b).await;

    // invalidate_tag: B's copy of a tagged entry reads as invalidated.
    a.with(CallOptions::new().tags(["group"]))
        .set("t", "t1")
        .await
        .unwrap();
    assert_eq!(
        lookup(&b, "t", &calls, "unused").await,
        ("t1".into(), Status::Hit)
    );
    assert_eq!(in_l1(&b, "t").await.as_deref(), Some("t1"));
    a.invalidate_tag("group").await.unwrap();
    within_bound("invalidate_tag", || async {
        lookup(&b, "t", &calls, "t2").await.0 == "t2"
    })
    .await;
    assert_eq!(calls.get(), 3, "B fetched the tagged key once");
    settle(&b).await;

    // clear: B's L1 is emptied, and B fetches.
    assert_eq!(in_l1(&b, "k").await.as_deref(), Some("v3"));
    a.clear().await.unwrap();
    within_bound("clear", || async {
        lookup(&b, "k", &calls, "v4").await.0 == "v4"
    })
    .await;
    assert_eq!(calls.get(), 4, "B fetched once after the clear");
    settle(&b).await;

    for (name, e) in [("A", &a), ("B", &b)] {
        let s = e.storage().stats();
        println!("backplane: {name} {s:?}");
        assert_eq!(
            (s.malformed, s.publish_errors, s.apply_errors),
            (0, 0, 0),
            "{name}"
        );
        assert!(
            s.published > 0 && s.applied > 0 && s.ignored_own > 0,
            "{name}: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_backplane_an_instance_keeps_serving_its_l1_copy() {
    let server = RedisServer::start();
    let tiered = || async { Tiered::new(MemoryStorage::new(), server.storage("control").await) };
    let (a, _) = engine_on(tiered().await, |b| b);
    let (b, _) = engine_on(tiered().await, |b| b);
    let calls = Calls::default();
    let pause = || tokio::time::sleep(Duration::from_millis(300));

    assert_eq!(
        lookup(&a, "k", &calls, "v1").await,
        ("v1".into(), Status::Miss)
    );
    settle(&a).await;
    assert_eq!(
        lookup(&b, "k", &calls, "unused").await,
        ("v1".into(), Status::Hit)
    );

    a.set("k", "v2").await.unwrap();
    pause().await;
    assert_eq!(
        lookup(&b, "k", &calls, "unused").await,
        ("v1".into(), Status::Hit),
        "B serves its L1 copy after A's set"
    );
    a.invalidate("k").await.unwrap();
    pause().await;
    assert_eq!(
        lookup(&b, "k", &calls, "unused").await.0,
        "v1",
        "and after invalidate"
    );

    // Tag records are read from Redis on every hit of a tagged entry, and
    // `Tiered::get_shared` answers a record from L2 alone (not from L1's
    // copy, which `created_at` cannot tell apart within a millisecond or
    // across skewed clocks): a tag operation reaches B even without the
    // backplane.
    a.with(CallOptions::new().tags(["group"]))
        .set("t", "t1")
        .await
        .unwrap();
    assert_eq!(
        lookup(&b, "t", &calls, "unused").await,
        ("t1".into(), Status::Hit)
    );
    a.invalidate_tag("group").await.unwrap();
    pause().await;
    assert_eq!(
        lookup(&b, "t", &calls, "t2").await.0,
        "t2",
        "a tag operation reaches B through its records"
    );
    settle(&b).await;

    a.clear().await.unwrap();
    pause().await;
    assert_eq!(
        lookup(&b, "k", &calls, "unused").await.0,
        "v1",
        "and after clear"
    );
    assert_eq!(calls.get(), 2, "v1, and t2 after the tag operation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_counted_and_ignored() {
    let server = RedisServer::start();
    let a = backplane(&server, "bad").await;
    let b = backplane(&server, "bad").await;
    let mut raw = server.raw();
    for junk in [&b"hello"[..], b"swre-bp1 set ff 1 2", b"\xff\xfe\x00"] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(b.channel())
            .arg(junk)
            .query(&mut raw)
            .unwrap();
    }
    within_bound("junk", || async { b.stats().malformed == 3 }).await;
    // The subscriber goes on: a real change is still applied.
    b.tiered().l1().set("k", entry("old")).await.unwrap();
    a.delete("k").await.unwrap();
    within_bound("delete after junk", || async { b.stats().applied == 1 }).await;
    assert_eq!(b.tiered().l1().get("k").await.unwrap(), None);
    let s = b.stats();
    assert_eq!(s.received, s.malformed + s.applied + s.ignored_own, "{s:?}");
    assert_eq!(s.apply_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_engine_stops_its_subscriber() {
    let server = RedisServer::start();
    let (a, _) = engine_on(backplane(&server, "drop").await, |b| b);
    let (b, _) = engine_on(backplane(&server, "drop").await, |b| b);
    let channel = a.storage().channel().to_owned();
    let mut raw = server.raw();
    let mut subscribers = || -> i64 {
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query(&mut raw)
            .unwrap();
        counts[0].1
    };
    assert_eq!(subscribers(), 2);
    drop(b);
    within_bound("drop", || std::future::ready(subscribers() == 1)).await;
    drop(a);
    within_bound("second drop", || std::future::ready(subscribers() == 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_fails_does_not_fail_the_write() {
    // Entries in one Redis, messages through another, which then dies.
    let store = RedisServer::start();
    let mut bus = RedisServer::start();
    let (a, _) = engine_on(backplane_on(&store, &bus, "pubfail").await, |b| b);
    bus.stop();
    a.set("k", "v").await.expect("the write succeeds");
    let s = a.storage().stats();
    assert_eq!((s.published, s.queued), (0, 1), "{s:?}");
    assert!(s.publish_errors >= 1, "{s:?}");
    // The subscription is gone too: counted.
    within_bound("subscription lost", || async {
        a.storage().stats().subscription_lost == 1
    })
    .await;
    let (v, _) = lookup(&a, "k", &Calls::default(), "unused").await;
    assert_eq!(v, "v");
    // Once the bus is back, the message is sent again and the instance
    // subscribes again.
    bus.launch();
    within_bound("message sent again, subscribed again", || async {
        let s = a.storage().stats();
        s.published == 1 && s.pending == 0 && s.resubscribed == 1
    })
    .await;
}

fn entry(v: &'static str) -> swre_native::Entry {
    swre_native::Entry::new(v, SystemClock.now_ms(), ttl())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_ids_differ() {
    let server = RedisServer::start();
    let a = backplane(&server, "ids").await;
    let b = backplane(&server, "ids").await;
    assert_ne!(a.instance_id(), b.instance_id());
    assert!(format!("{a:?}").contains("ids:backplane"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_with_a_clear_error() {
    let server = RedisServer::start();
    for (options, says) in [
        (
            BackplaneOptions {
                channel: String::new(),
                ..BackplaneOptions::default()
            },
            "channel must not be empty",
        ),
        (
            BackplaneOptions {
                heartbeat: Duration::ZERO,
                ..BackplaneOptions::default()
            },
            "heartbeat must be at least 10 ms",
        ),
    ] {
        let tiered = Tiered::new(MemoryStorage::new(), server.storage("bad").await);
        let err = Backplane::connect_with(&server.url(), tiered, options)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(says), "{err}");
    }
}
