//! RedisStorage's versions, assigned by Redis, and the conditional changes a
//! backplane replays with them, on a real redis-server.

use std::time::Duration;

use swre_native::{Clock, Entry, RedisStorage, Storage, SystemClock};

use crate::common::*;
use crate::redis::RedisServer;

fn entry(v: &str) -> Entry {
    Entry::new(v.to_owned(), SystemClock.now_ms(), ttl())
}

async fn value(store: &RedisStorage, key: &str) -> Option<String> {
    store
        .get(key)
        .await
        .unwrap()
        .map(|e| text(&e.value).to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_takes_a_higher_version_from_redis() {
    let server = RedisServer::start();
    let (a, b) = (server.storage("ver").await, server.storage("ver").await);
    // Read at connection: the counter, created then from Redis's clock.
    let connected = a.observed_version();
    assert!(connected > 1_000_000_000_000_000, "{connected}");
    a.set("k", entry("1")).await.unwrap();
    let first = a.observed_version();
    assert_eq!(first, connected + 1);
    b.set("k", entry("2")).await.unwrap();
    assert!(b.observed_version() > first, "b's write is after a's");
    assert_eq!(a.observed_version(), first, "a saw only its own change");
    a.delete("other").await.unwrap();
    assert!(a.observed_version() > b.observed_version());
    let mut raw = server.raw();
    let stored: u64 = redis::cmd("GET")
        .arg(b.version_key("k"))
        .query(&mut raw)
        .unwrap();
    assert!(stored > first && stored < a.observed_version());
}

/// Whether a conditional write was made.
async fn wrote(store: &RedisStorage, key: &str, v: &str, since: u64) -> bool {
    store
        .set_if_unchanged(key, &entry(v), since)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_write_is_skipped_after_another_instances_change() {
    let server = RedisServer::start();
    let (a, b) = (server.storage("cond").await, server.storage("cond").await);
    a.set("k", entry("a1")).await.unwrap();
    let since = a.observed_version();

    // Nothing changed the key since: written, with a higher version.
    let made = a.set_if_unchanged("k", &entry("a2"), since).await.unwrap();
    assert!(made.is_some_and(|v| v > since));
    assert_eq!(value(&a, "k").await.as_deref(), Some("a2"));
    let since = a.observed_version();

    // Another instance wrote it: skipped, its value kept.
    b.set("k", entry("b1")).await.unwrap();
    assert!(!wrote(&a, "k", "a3", since).await);
    assert_eq!(value(&a, "k").await.as_deref(), Some("b1"));

    // Another instance deleted it: the tombstone keeps the delete.
    let since = b.observed_version();
    b.delete("k").await.unwrap();
    assert!(!wrote(&a, "k", "a4", since).await);
    assert_eq!(value(&a, "k").await, None);

    // A key never written is unchanged since any version of this history.
    assert!(wrote(&a, "fresh", "f", since).await);
    assert_eq!(value(&a, "fresh").await.as_deref(), Some("f"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_elsewhere_stops_every_older_conditional_write_and_keeps_the_rest() {
    let server = RedisServer::start();
    let (a, b) = (server.storage("clr").await, server.storage("clr").await);
    a.set("x", entry("x")).await.unwrap();
    let since = a.observed_version();
    let lease = Duration::from_secs(30);
    assert!(a.try_lease("x", lease).await.unwrap().is_some());
    b.clear().await.unwrap();
    assert!(
        b.observed_version() > since,
        "versions go on across a clear"
    );
    assert!(!wrote(&a, "x", "x2", since).await);
    assert!(!wrote(&a, "new", "n", since).await);
    assert_eq!(value(&a, "x").await, None);
    assert_eq!(value(&a, "new").await, None);
    // The lease is not the clear's to drop: a fetch in flight keeps it.
    assert!(b.try_lease("x", lease).await.unwrap().is_none());
    // After the clear, writes are conditional on the new versions, and
    // expire (conditional on the key alone) works.
    b.set("z", entry("z")).await.unwrap();
    let since = b.observed_version();
    assert!(wrote(&b, "z", "z2", since).await);
    let now = SystemClock.now_ms();
    let expired = b.expire("z", now).await.unwrap().unwrap();
    assert!(expired.fresh_until <= now.max(expired.created_at));
    assert_eq!(
        b.get("z").await.unwrap().unwrap().fresh_until,
        expired.fresh_until,
        "the expiry is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_without_data_no_write_from_before_is_replayed() {
    let mut server = RedisServer::start();
    let a = server.storage("restart").await;
    for i in 0..50 {
        a.set(&format!("k{i}"), entry("v")).await.unwrap();
    }
    let before = a.observed_version();
    server.stop();
    server.launch();
    let b = server.storage("restart").await;
    b.set("k0", entry("after")).await.unwrap();
    assert!(b.observed_version() > before, "versions keep growing");
    // Redis lost the history `before` belongs to (a delete made before the
    // restart, say): no write conditional on it is made, on any key.
    assert!(!wrote(&a, "k0", "queued", before).await);
    assert!(!wrote(&a, "k1", "queued", before).await);
    assert_eq!(value(&b, "k0").await.as_deref(), Some("after"));
    assert_eq!(value(&b, "k1").await, None);
    // Writes conditional on the new history are.
    let now = b.observed_version();
    assert!(wrote(&b, "k2", "new", now).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_keeps_a_write_and_works_on_values_written_without_versions() {
    let server = RedisServer::start();
    let a = server.storage("exp").await;
    let now = SystemClock.now_ms();
    a.set("k", entry("v")).await.unwrap();
    let expired = a.expire("k", now).await.unwrap().unwrap();
    assert_eq!(expired.fresh_until, now.max(expired.created_at));
    let stored = a.get("k").await.unwrap().unwrap();
    assert_eq!(stored.fresh_until, expired.fresh_until);

    // A value written by a version of swre that kept no versions.
    let mut raw = server.raw();
    let old = swre_core::envelope::seal("legacy", &entry("old")).unwrap();
    redis::cmd("SET")
        .arg(a.value_key("legacy"))
        .arg(old)
        .query::<()>(&mut raw)
        .unwrap();
    let expired = a.expire("legacy", now).await.unwrap().unwrap();
    assert_eq!(text(&expired.value), "old");
    assert!(a.get("legacy").await.unwrap().unwrap().fresh_until <= now.max(expired.created_at));
}
