//! RedisStorage's versions, assigned by Redis, and the conditional changes a
//! backplane replays with them, on a real redis-server.

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
    assert_eq!(a.observed_version(), 0);
    a.set("k", entry("1")).await.unwrap();
    let first = a.observed_version();
    assert!(first > 0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_write_is_skipped_after_another_instances_change() {
    let server = RedisServer::start();
    let (a, b) = (server.storage("cond").await, server.storage("cond").await);
    a.set("k", entry("a1")).await.unwrap();
    let since = a.observed_version();

    // Nothing changed the key since: written.
    assert!(a.set_if_unchanged("k", &entry("a2"), since).await.unwrap());
    assert_eq!(value(&a, "k").await.as_deref(), Some("a2"));
    let since = a.observed_version();

    // Another instance wrote it: skipped, its value kept.
    b.set("k", entry("b1")).await.unwrap();
    assert!(!a.set_if_unchanged("k", &entry("a3"), since).await.unwrap());
    assert_eq!(value(&a, "k").await.as_deref(), Some("b1"));
    assert!(!a.delete_if_unchanged("k", since).await.unwrap());
    assert_eq!(value(&a, "k").await.as_deref(), Some("b1"));
    assert!(!a
        .expire_if_unchanged("k", SystemClock.now_ms(), since)
        .await
        .unwrap());

    // Another instance deleted it: the tombstone keeps the delete.
    let since = b.observed_version();
    b.delete("k").await.unwrap();
    assert!(!a.set_if_unchanged("k", &entry("a4"), since).await.unwrap());
    assert_eq!(value(&a, "k").await, None);

    // A key never written is unchanged since any version.
    assert!(a.set_if_unchanged("fresh", &entry("f"), 0).await.unwrap());
    assert_eq!(value(&a, "fresh").await.as_deref(), Some("f"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_elsewhere_stops_every_older_conditional_change() {
    let server = RedisServer::start();
    let (a, b) = (server.storage("clr").await, server.storage("clr").await);
    a.set("x", entry("x")).await.unwrap();
    a.set("y", entry("y")).await.unwrap();
    let since = a.observed_version();
    b.clear().await.unwrap();
    assert!(!a.set_if_unchanged("x", &entry("x2"), since).await.unwrap());
    assert!(!a.set_if_unchanged("new", &entry("n"), since).await.unwrap());
    assert_eq!(value(&a, "x").await, None);
    assert_eq!(value(&a, "new").await, None);
    // After the clear, changes are conditional on the new versions.
    b.set("z", entry("z")).await.unwrap();
    let since = b.observed_version();
    assert!(b.set_if_unchanged("z", &entry("z2"), since).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_clear_deletes_only_what_nothing_changed_since() {
    let server = RedisServer::start();
    let (a, b) = (server.storage("late").await, server.storage("late").await);
    for k in ["p", "q", "r"] {
        a.set(k, entry(k)).await.unwrap();
    }
    let since = a.observed_version();
    b.set("q", entry("q-newer")).await.unwrap();
    assert_eq!(a.clear_unchanged_since(since).await.unwrap(), 2);
    assert_eq!(value(&a, "p").await, None);
    assert_eq!(value(&a, "q").await.as_deref(), Some("q-newer"));
    assert_eq!(value(&a, "r").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_after_a_restart_without_data_are_above_those_before() {
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
    assert!(
        b.observed_version() > before,
        "{} after a restart, {before} before",
        b.observed_version()
    );
    // So a change queued before the restart is not made over one after it.
    assert!(!a
        .set_if_unchanged("k0", &entry("queued"), before)
        .await
        .unwrap());
    assert_eq!(value(&b, "k0").await.as_deref(), Some("after"));
    // And one on a key nobody wrote since is.
    assert!(a
        .set_if_unchanged("k1", &entry("queued"), before)
        .await
        .unwrap());
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
