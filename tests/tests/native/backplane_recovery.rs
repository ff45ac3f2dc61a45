//! The backplane through outages, on a real redis-server: one instance cut
//! off by a TCP proxy while the others reach Redis, Redis killed with
//! SIGKILL and started again, subscriptions dropped by Redis.

use std::future::Future;
use std::time::{Duration, Instant};

use swre_native::{
    Backplane, BackplaneOptions, BackplaneStats, Clock, Entry, MemoryStorage, RedisOptions,
    Storage, SystemClock, Tiered,
};

use crate::common::*;
use crate::proxy::Proxy;
use crate::redis::RedisServer;

/// Longest a recovery may take in these tests.
const BOUND: Duration = Duration::from_secs(10);

fn options(prefix: &str, max_pending: usize) -> BackplaneOptions {
    BackplaneOptions {
        channel: format!("{prefix}:backplane"),
        connection_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(3),
        max_pending,
        ..BackplaneOptions::default()
    }
}

/// An instance whose Redis (entries and messages) is at `url`.
async fn instance(url: &str, prefix: &str, max_pending: usize) -> Backplane {
    split_instance(url, url, prefix, options(prefix, max_pending)).await
}

/// An instance whose entries are in the Redis at `store`, its messages
/// through `bus` (the same server, through a proxy or not).
async fn split_instance(
    store: &str,
    bus: &str,
    prefix: &str,
    options: BackplaneOptions,
) -> Backplane {
    let l2 = swre_native::RedisStorage::connect_with(
        store,
        RedisOptions {
            prefix: prefix.to_owned(),
            connection_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(3),
            ..RedisOptions::default()
        },
    )
    .await
    .expect("connect to redis");
    Backplane::connect_with(bus, Tiered::new(MemoryStorage::new(), l2), options)
        .await
        .expect("backplane connects")
}

fn entry(v: &str) -> Entry {
    Entry::new(v.to_owned(), SystemClock.now_ms(), ttl())
}

async fn read(store: &impl Storage, key: &str) -> Option<String> {
    store
        .get(key)
        .await
        .expect("the store answers")
        .map(|e| text(&e.value).to_owned())
}

async fn in_l1(store: &Backplane, key: &str) -> Option<String> {
    read(store.tiered().l1(), key).await
}

/// Polls `done` every 5 ms until it holds; how long that took. Fails after
/// [`BOUND`], printing `stats`.
async fn until<F: Future<Output = bool>>(
    what: &str,
    stats: impl Fn() -> BackplaneStats,
    mut done: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    loop {
        if done().await {
            let took = started.elapsed();
            println!("backplane recovery: {what}: after {took:?}");
            return took;
        }
        assert!(
            started.elapsed() < BOUND,
            "{what}: not within {BOUND:?}; {:?}",
            stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_cut_off_are_replayed_unless_another_instance_changed_the_key() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let a = instance(&proxy.url(), "cut", 100).await;
    let b = instance(&server.url(), "cut", 100).await;
    for k in ["kept", "overwritten", "deleted", "gone"] {
        a.set(k, entry(&format!("{k}-0"))).await.unwrap();
    }

    proxy.cut();
    // A's changes fail as unavailable, are made in its L1 and queued.
    for k in ["kept", "overwritten", "deleted", "new"] {
        let err = a.set(k, entry(&format!("{k}-a"))).await.unwrap_err();
        assert_eq!(err.kind(), swre_native::StorageErrorKind::Unavailable);
        assert_eq!(in_l1(&a, k).await, Some(format!("{k}-a")));
    }
    assert!(a.delete("gone").await.is_err());
    assert_eq!(a.stats().pending, 5, "{:?}", a.stats());
    // Meanwhile B, which reaches Redis, changes two of those keys.
    b.set("overwritten", entry("overwritten-b")).await.unwrap();
    b.delete("deleted").await.unwrap();

    proxy.restore();
    until(
        "queue replayed",
        || a.stats(),
        || async { a.stats().pending == 0 && a.stats().replayed + a.stats().replay_skipped == 5 },
    )
    .await;
    let stats = a.stats();
    assert_eq!((stats.replayed, stats.replay_skipped), (3, 2), "{stats:?}");

    // What A changed alone is in Redis; what B changed after A's change
    // failed is B's, and A no longer serves its own copy of it.
    let l2 = b.tiered().l2();
    assert_eq!(read(l2, "kept").await.as_deref(), Some("kept-a"));
    assert_eq!(read(l2, "new").await.as_deref(), Some("new-a"));
    assert_eq!(read(l2, "gone").await, None);
    assert_eq!(
        read(l2, "overwritten").await.as_deref(),
        Some("overwritten-b")
    );
    assert_eq!(read(l2, "deleted").await, None);
    assert_eq!(
        read(&a, "overwritten").await.as_deref(),
        Some("overwritten-b")
    );
    assert_eq!(read(&a, "deleted").await, None);
    // B heard of A's replayed changes: no L1 copy of them survives there.
    until(
        "replayed changes published",
        || b.stats(),
        || async { b.stats().applied >= 3 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_made_while_cut_off_are_made_whatever_happened_since() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    // A never writes: its only changes are invalidations.
    let a = instance(&proxy.url(), "inv", 100).await;
    let b = instance(&server.url(), "inv", 100).await;
    b.set("k", entry("old")).await.unwrap();
    b.set("e", entry("old")).await.unwrap();
    b.set("other", entry("other")).await.unwrap();
    proxy.cut();
    assert!(a.delete("k").await.is_err());
    assert!(a.expire("e", SystemClock.now_ms()).await.is_err());
    b.set("other", entry("other-b")).await.unwrap();
    proxy.restore();
    until(
        "invalidations replayed",
        || a.stats(),
        || async { a.stats().pending == 0 && a.stats().replayed == 2 },
    )
    .await;
    let l2 = b.tiered().l2();
    assert_eq!(read(l2, "k").await, None, "the delete was made");
    let e = l2.get("e").await.unwrap().expect("an expired entry stays");
    assert!(e.fresh_until <= SystemClock.now_ms(), "the expiry was made");
    until(
        "B's copies dropped",
        || b.stats(),
        || async { in_l1(&b, "k").await.is_none() && in_l1(&b, "e").await.is_none() },
    )
    .await;
    assert_eq!(read(&b, "k").await, None);
    assert_eq!(read(&b, "other").await.as_deref(), Some("other-b"));

    // A clear likewise, over a write made elsewhere during the gap (which
    // then costs a fetch again, never old data kept).
    proxy.cut();
    assert!(a.clear().await.is_err());
    b.set("later", entry("later-b")).await.unwrap();
    proxy.restore();
    until(
        "clear replayed",
        || a.stats(),
        || async { a.stats().pending == 0 && a.stats().replayed == 3 },
    )
    .await;
    assert_eq!(read(l2, "other").await, None);
    assert_eq!(read(l2, "later").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_drops_the_copy_a_read_put_in_l1_before_it() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    // A's entries through the proxy, its messages direct.
    let a = split_instance(&proxy.url(), &server.url(), "own", options("own", 100)).await;
    a.set("k", entry("old")).await.unwrap();
    proxy.cut();
    assert!(a.delete("k").await.is_err());
    assert_eq!(in_l1(&a, "k").await, None);
    proxy.restore();
    // A read before the replay may find Redis's old entry and fill L1.
    let _ = a.get("k").await;
    until(
        "delete replayed",
        || a.stats(),
        || async { a.stats().pending == 0 && a.stats().replayed == 1 },
    )
    .await;
    assert_eq!(in_l1(&a, "k").await, None);
    assert_eq!(read(&a, "k").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscription_is_found_by_its_heartbeat_and_replaced() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let quick = BackplaneOptions {
        heartbeat: Duration::from_millis(100),
        response_timeout: Duration::from_millis(300),
        connection_timeout: Duration::from_millis(300),
        ..options("hole", 100)
    };
    // A's messages through the proxy, its entries direct.
    let a = split_instance(&server.url(), &proxy.url(), "hole", quick).await;
    let quiet = server.storage("hole").await; // writes without telling anyone
    a.set("k", entry("v1")).await.unwrap();
    proxy.black_hole();
    until(
        "ping unanswered",
        || a.stats(),
        || async { a.stats().heartbeat_failures >= 1 },
    )
    .await;
    quiet.set("k", entry("v2")).await.unwrap();
    proxy.restore();
    until(
        "subscribed again, L1 emptied",
        || a.stats(),
        || async { a.stats().resubscribed >= 1 },
    )
    .await;
    assert!(a.stats().l1_emptied >= 1);
    assert_eq!(read(&a, "k").await.as_deref(), Some("v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_subscription_drops_an_instance_subscribes_again_and_distrusts_l1() {
    let server = RedisServer::start();
    let a = instance(&server.url(), "sub", 100).await;
    let quiet = server.storage("sub").await; // writes without telling anyone
    a.set("k", entry("v1")).await.unwrap();
    assert_eq!(in_l1(&a, "k").await.as_deref(), Some("v1"));

    // A change A cannot hear of (no message): it keeps its copy...
    quiet.set("k", entry("v2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(read(&a, "k").await.as_deref(), Some("v1"));

    // ...until its subscription drops and comes back: Redis closes every
    // pub/sub connection, as it does for a subscriber too slow to read.
    let mut raw = server.raw();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut raw)
        .unwrap();
    assert!(killed >= 1);
    until(
        "resubscribed, L1 emptied",
        || a.stats(),
        || async { a.stats().resubscribed == 1 && a.stats().l1_emptied == 1 },
    )
    .await;
    assert_eq!(a.stats().subscription_lost, 1);
    assert_eq!(read(&a, "k").await.as_deref(), Some("v2"));

    // And it hears changes again.
    let b = instance(&server.url(), "sub", 100).await;
    b.set("k", entry("v3")).await.unwrap();
    until(
        "heard again",
        || a.stats(),
        || async { read(&a, "k").await.as_deref() == Some("v3") },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_recovers_without_restarting_instances() {
    let mut server = RedisServer::start();
    let a = instance(&server.url(), "kill", 100).await;
    let b = instance(&server.url(), "kill", 100).await;
    a.set("k", entry("v1")).await.unwrap();
    // Once B has heard of the set (which drops its L1 copy), it reads the
    // key into its L1.
    until(
        "set heard",
        || b.stats(),
        || async { b.stats().applied == 1 },
    )
    .await;
    assert_eq!(read(&b, "k").await.as_deref(), Some("v1"));
    assert_eq!(in_l1(&b, "k").await.as_deref(), Some("v1"));

    server.stop(); // SIGKILL: no data kept
    assert!(a.set("during", entry("during-a")).await.is_err());
    assert!(a.delete("k").await.is_err());
    server.launch();
    let took = until(
        "both resubscribed, A's write replayed",
        || a.stats(),
        || async {
            a.stats().resubscribed == 1 && b.stats().resubscribed == 1 && a.stats().pending == 0
        },
    )
    .await;
    println!("backplane recovery: Redis restart to recovered: {took:?} (after the restart)");
    // B's copy from before the outage is gone (Redis lost it too): not
    // served as if it were still shared.
    assert_eq!(in_l1(&b, "k").await, None);
    assert_eq!(read(&b, "k").await, None);
    // A's delete is made; its write is not: Redis lost the history it was
    // conditional on (a delete of the key elsewhere, before the restart,
    // would be lost with it), and A's own copy goes.
    let s = a.stats();
    assert_eq!((s.replayed, s.replay_skipped), (1, 1), "{s:?}");
    assert_eq!(read(&b, "during").await, None);
    assert_eq!(read(&a, "during").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_changes_and_has_every_instance_empty_its_l1() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let a = instance(&proxy.url(), "full", 2).await;
    let b = instance(&server.url(), "full", 100).await;
    b.set("z", entry("z")).await.unwrap();
    until(
        "set heard",
        || a.stats(),
        || async { a.stats().applied == 1 },
    )
    .await;
    assert_eq!(in_l1(&b, "z").await.as_deref(), Some("z"));
    proxy.cut();
    for k in ["p", "q", "r"] {
        assert!(a.set(k, entry(k)).await.is_err());
    }
    let stats = a.stats();
    // Two keys, and the notice that L1s must be emptied.
    assert_eq!((stats.pending, stats.overflowed), (3, 1), "{stats:?}");
    proxy.restore();
    until(
        "queue replayed",
        || a.stats(),
        || async { a.stats().pending == 0 && a.stats().replayed == 2 },
    )
    .await;
    // The dropped change was announced as a clear of every L1.
    until(
        "B's L1 emptied",
        || b.stats(),
        || async { in_l1(&b, "z").await.is_none() },
    )
    .await;
    assert_eq!(
        read(b.tiered().l2(), "r").await,
        None,
        "dropped, never written"
    );
    assert_eq!(read(&b, "z").await.as_deref(), Some("z"), "L2 untouched");
}
