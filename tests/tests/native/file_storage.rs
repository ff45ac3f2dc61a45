//! FileStorage against real files: conformance, corruption, hostile keys,
//! bounds, expiry, persistence, concurrency, close.

use std::time::Duration;

use swre_native::testing::conformance;
use swre_native::{
    envelope, CacheTtl, Clock, Entry, FileOptions, FileStorage, Status, Storage, SystemClock,
};

use crate::common::*;

/// How many files in `dir` have a name matching `pred`.
fn files_where(dir: &std::path::Path, pred: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| pred(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .count()
}

fn entry(v: &str) -> Entry {
    Entry::new(
        v,
        SystemClock.now_ms(),
        CacheTtl::new(60 * SEC, 60 * SEC, 60 * SEC),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let dir = TempDir::new("conformance");
    let storage = FileStorage::open(dir.path()).await.unwrap();
    conformance::run_all(&storage).await;
    let engine = swre_native::Engine::builder(storage, swre_native::TokioRuntime::new())
        .build()
        .unwrap();
    conformance::run_engine_checks(&engine).await;
    let durable = TempDir::new("conformance-fsync");
    let storage = FileStorage::open_with(
        durable.path(),
        FileOptions {
            durability: swre_native::Durability::Fsync,
            ..FileOptions::default()
        },
    )
    .await
    .unwrap();
    conformance::run_all(&storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_under_churn() {
    let dir = TempDir::new("churn");
    let opts = FileOptions {
        max_bytes: 30_000,
        maintain_every: 50,
        ..FileOptions::default()
    };
    let storage = FileStorage::open_with(dir.path(), opts).await.unwrap();
    let path = dir.path().to_owned();
    conformance::limits_hold_under_churn(&storage, 200, 200, move |s: &FileStorage| {
        let (bytes, count) = entry_files(&path);
        // Index and disk agree, and both hold the bound.
        s.bytes() <= opts.max_bytes && (s.len(), s.bytes()) == (count, bytes)
    })
    .await;
}

#[tokio::test]
async fn get_set_delete() {
    let dir = TempDir::new("basic");
    let s = FileStorage::open(dir.path()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap(), None);
    let e = entry("v");
    s.set("k", e.clone()).await.unwrap();
    assert!(s.path_for("k").exists());
    assert_eq!(s.get("k").await.unwrap(), Some(e));
    s.delete("k").await.unwrap();
    assert!(!s.path_for("k").exists());
    assert_eq!(s.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn corrupted_truncated_and_foreign_files_are_misses_then_overwritten() {
    let dir = TempDir::new("corrupt");
    let s = FileStorage::open(dir.path()).await.unwrap();
    let e = entry("a value long enough to damage");
    s.set("k", e.clone()).await.unwrap();
    let path = s.path_for("k");
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    assert_eq!(s.get("k").await.unwrap(), None, "flipped bit");

    std::fs::write(&path, &good[..good.len() - 3]).unwrap();
    assert_eq!(s.get("k").await.unwrap(), None, "truncated");

    std::fs::write(&path, b"not an envelope at all").unwrap();
    assert_eq!(s.get("k").await.unwrap(), None, "garbage");

    // Another key's intact envelope under this key's name: never served.
    let foreign = envelope::encode("other-key", &e).unwrap();
    std::fs::write(&path, foreign).unwrap();
    assert_eq!(s.get("k").await.unwrap(), None, "foreign");

    // Through the engine: a miss that rewrites the file.
    let (engine, _) = engine_on(s.clone(), |b| b);
    let calls = Calls::default();
    let r = engine
        .get_or_fetch("k", calls.ok("refetched"))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Miss);
    settle(&engine).await;
    assert_eq!(text(&s.get("k").await.unwrap().unwrap().value), "refetched");
}

#[tokio::test]
async fn hostile_keys_stay_inside_the_directory() {
    let root = TempDir::new("hostile");
    let dir = root.path().join("store");
    let s = FileStorage::open(&dir).await.unwrap();
    let mut keys = conformance::odd_keys();
    keys.extend(
        [
            "../escape",
            "../../escape",
            "/tmp/escape",
            "sub/dir/key",
            "..\\..\\x",
            "\0",
            "a\0../b",
        ]
        .map(String::from),
    );
    keys.push("x".repeat(8000));
    for (i, k) in keys.iter().enumerate() {
        s.set(k, entry(&format!("v{i}"))).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            text(&s.get(k).await.unwrap().unwrap().value),
            format!("v{i}")
        );
    }
    // Nothing was created beside the store directory, and inside it only entry files.
    let beside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("store")]);
    for item in std::fs::read_dir(&dir).unwrap() {
        let item = item.unwrap();
        assert!(item.file_type().unwrap().is_file());
        let name = item.file_name().into_string().unwrap();
        assert!(
            name.ends_with(".swre") && name.len() == 69,
            "unexpected file {name}"
        );
    }
    assert_eq!(s.len(), keys.len());
}

#[tokio::test]
async fn the_byte_bound_holds_and_evicts_least_recently_used() {
    let dir = TempDir::new("bound");
    let s = FileStorage::open_with(
        dir.path(),
        FileOptions {
            max_bytes: 20_000,
            ..FileOptions::default()
        },
    )
    .await
    .unwrap();
    let value = "x".repeat(1_000);
    s.set("hot", entry(&value)).await.unwrap();
    for i in 0..100 {
        s.set(&format!("k{i}"), entry(&value)).await.unwrap();
        s.get("hot").await.unwrap();
        assert!(s.bytes() <= 20_000);
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 20_000, "{on_disk} bytes on disk");
    }
    assert!(
        s.get("hot").await.unwrap().is_some(),
        "a recently used entry survives"
    );
    assert!(
        s.get("k0").await.unwrap().is_none(),
        "the least recently used went"
    );
    let too_big = "y".repeat(30_000);
    assert!(s.set("big", entry(&too_big)).await.is_err());
}

#[tokio::test]
async fn expired_entries_and_temp_files_are_purged_on_open() {
    let dir = TempDir::new("purge");
    let s = FileStorage::open(dir.path()).await.unwrap();
    let now = SystemClock.now_ms();
    let dead = Entry::new("dead", now - 100_000, CacheTtl::new(SEC, SEC, SEC));
    s.set("dead", dead).await.unwrap();
    s.set("alive", entry("alive")).await.unwrap();
    std::fs::write(
        dir.path().join(".tmp-4294967295-0-leftover"),
        b"partial write",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.txt"), b"not ours").unwrap();
    let dead_path = s.path_for("dead");
    drop(s);
    let s = FileStorage::open(dir.path()).await.unwrap();
    assert!(!dead_path.exists(), "expired entry purged");
    assert!(
        !dir.path().join(".tmp-4294967295-0-leftover").exists(),
        "temp file cleaned"
    );
    assert!(
        dir.path().join("README.txt").exists(),
        "foreign files are left alone"
    );
    assert_eq!(s.len(), 1);
    assert!(s.get("alive").await.unwrap().is_some());
    assert_eq!(s.purge_expired(u64::MAX).await.unwrap(), 1);
    assert!(s.is_empty());
}

#[tokio::test]
async fn directories_named_like_temp_or_entry_files_are_left_alone() {
    let dir = TempDir::new("subdirs");
    let s = FileStorage::open(dir.path()).await.unwrap();
    s.set("k", entry("v")).await.unwrap();
    let like_entry = dir.path().join(format!("{}.swre", "ab".repeat(32)));
    let like_temp = dir.path().join(".tmp-1-2-x");
    std::fs::create_dir(&like_entry).unwrap();
    std::fs::create_dir(&like_temp).unwrap();
    drop(s);
    let s = FileStorage::open(dir.path())
        .await
        .expect("open fails on a directory named like one of its files");
    assert!(s.get("k").await.unwrap().is_some());
    s.clear().await.expect("clear fails on such a directory");
    assert!(
        like_entry.is_dir() && like_temp.is_dir(),
        "foreign directories are left alone"
    );
    assert!(s.get("k").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_racing_a_set_never_unindexes_the_new_file() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = TempDir::new("getset");
    let s = FileStorage::open(dir.path()).await.unwrap();
    for round in 0..300 {
        let key = format!("k{round}");
        let done = Arc::new(AtomicBool::new(false));
        let mut getters = Vec::new();
        for _ in 0..3 {
            let (s, key, done) = (s.clone(), key.clone(), done.clone());
            getters.push(tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    s.get(&key).await.unwrap();
                }
                // One more read after the set: it must not forget the file either.
                s.get(&key).await.unwrap();
            }));
        }
        s.set(&key, entry("v")).await.unwrap();
        done.store(true, Ordering::SeqCst);
        for g in getters {
            g.await.unwrap();
        }
    }
    let on_disk = files_where(dir.path(), |name| name.ends_with(".swre"));
    assert_eq!(on_disk, 300);
    assert_eq!(s.len(), 300, "files on disk the index lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_directory_never_fail_each_others_writes() {
    let dir = TempDir::new("two");
    let a = FileStorage::open(dir.path()).await.unwrap();
    let b = FileStorage::open(dir.path()).await.unwrap();
    // Both write the same key in lockstep: the moment two writers' temp
    // files would collide if their names did.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for (i, s) in [a.clone(), b.clone()].into_iter().enumerate() {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..300 {
                barrier.wait().await;
                s.set("shared", entry(&format!("{i}-{round}")))
                    .await
                    .expect("a write failed because of the other instance");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(a.get("shared").await.unwrap().is_some());
}

/// Bytes and count of the entry files in `dir`.
fn entry_files(dir: &std::path::Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut count = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".swre") {
            bytes += e.metadata().unwrap().len();
            count += 1;
        }
    }
    (bytes, count)
}

#[tokio::test]
async fn a_maintenance_pass_indexes_the_other_instances_files_and_bounds_the_directory() {
    let dir = TempDir::new("maintain");
    let opts = FileOptions {
        max_bytes: 4_000,
        maintain_every: 0,
        ..FileOptions::default()
    };
    let a = FileStorage::open_with(dir.path(), opts).await.unwrap();
    let b = FileStorage::open_with(dir.path(), opts).await.unwrap();
    let value = "v".repeat(200);
    for i in 0..15 {
        a.set(&format!("a{i}"), entry(&value)).await.unwrap();
        b.set(&format!("b{i}"), entry(&value)).await.unwrap();
    }
    let one = a.bytes() / a.len() as u64;
    let (before, _) = entry_files(dir.path());
    assert!(
        before > opts.max_bytes + one,
        "each instance alone stays within the bound, the directory does not: {before}"
    );

    let report = a.maintain().await.unwrap();
    let (bytes, count) = entry_files(dir.path());
    assert!(
        bytes <= opts.max_bytes,
        "after a pass the directory holds {bytes} bytes"
    );
    assert_eq!((a.len(), a.bytes()), (count, bytes), "drift after a's pass");
    assert!(report.adopted > 0 && report.deleted > 0, "{report:?}");

    // b still believes in files a evicted, until its own pass.
    let report = b.maintain().await.unwrap();
    assert!(report.forgotten > 0, "{report:?}");
    let (bytes, count) = entry_files(dir.path());
    assert_eq!((b.len(), b.bytes()), (count, bytes), "drift after b's pass");
    // What survived reads back whole from either instance.
    for i in 0..15 {
        for key in [format!("a{i}"), format!("b{i}")] {
            let from_a = a.get(&key).await.unwrap().map(|e| e.value);
            let from_b = b.get(&key).await.unwrap().map(|e| e.value);
            assert_eq!(from_a, from_b, "{key}");
            if let Some(v) = from_a {
                assert_eq!(&v[..], value.as_bytes());
            }
        }
    }
}

#[tokio::test]
async fn passes_every_n_writes_keep_two_instances_near_the_bound() {
    // Two instances write new keys in turn. Each keeps its own bytes within
    // the bound; only the passes bound the two together.
    async fn peak(maintain_every: u64) -> (u64, u64) {
        let dir = TempDir::new("paced");
        let opts = FileOptions {
            max_bytes: 5_000,
            maintain_every,
            ..FileOptions::default()
        };
        let a = FileStorage::open_with(dir.path(), opts).await.unwrap();
        let b = FileStorage::open_with(dir.path(), opts).await.unwrap();
        let value = "v".repeat(200);
        let mut peak = 0;
        for i in 0..200 {
            a.set(&format!("a{i}"), entry(&value)).await.unwrap();
            b.set(&format!("b{i}"), entry(&value)).await.unwrap();
            peak = peak.max(entry_files(dir.path()).0);
        }
        (peak, a.bytes() / a.len() as u64)
    }
    let (unpaced, _) = peak(0).await;
    let (paced, one) = peak(10).await;
    assert!(
        unpaced > 9_000,
        "without passes the directory should reach twice the bound: {unpaced}"
    );
    // Between two passes each instance writes at most 10 entries the other
    // has not seen.
    assert!(
        paced <= 5_000 + 2 * 10 * one,
        "with a pass every 10 writes the directory peaked at {paced} bytes"
    );
}

#[tokio::test]
async fn open_leaves_a_live_writers_temp_files_and_removes_dead_ones() {
    let dir = TempDir::new("temps");
    let live = dir
        .path()
        .join(format!(".tmp-{}-77-live", std::process::id()));
    let dead = dir.path().join(".tmp-4294967295-3-dead");
    let old = dir
        .path()
        .join(format!(".tmp-{}-78-old", std::process::id()));
    for p in [&live, &dead, &old] {
        std::fs::write(p, b"partial").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7_200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let _s = FileStorage::open(dir.path()).await.unwrap();
    assert!(
        live.exists(),
        "a temp file a running writer may be renaming was deleted"
    );
    assert!(!dead.exists(), "a dead writer's temp file was kept");
    assert!(!old.exists(), "an hour-old temp file was kept");
}

#[tokio::test]
async fn expiry_at_open_is_judged_by_the_clock_the_store_is_given() {
    use swre_core::ManualClock;
    let dir = TempDir::new("clock");
    // An engine on a manual clock far in the past writes an entry that
    // is fresh by that clock and long expired by the system clock.
    let clock = ManualClock::new(1_000_000_000_000);
    let s = FileStorage::open_with_clock(dir.path(), FileOptions::default(), clock.clone())
        .await
        .unwrap();
    let e = Entry::new("v", clock.now_ms(), CacheTtl::new(SEC, SEC, SEC));
    s.set("k", e.clone()).await.unwrap();
    drop(s);
    let s = FileStorage::open_with_clock(dir.path(), FileOptions::default(), clock.clone())
        .await
        .unwrap();
    assert_eq!(
        s.get("k").await.unwrap(),
        Some(e),
        "purged by the system clock"
    );
    drop(s);
    clock.advance(std::time::Duration::from_secs(10));
    let s = FileStorage::open_with_clock(dir.path(), FileOptions::default(), clock)
        .await
        .unwrap();
    assert_eq!(
        s.get("k").await.unwrap(),
        None,
        "expired by the given clock, yet kept"
    );
}

#[tokio::test]
async fn ttl_handling_through_the_engine() {
    let dir = TempDir::new("ttl");
    let (engine, clock) = engine_on(FileStorage::open(dir.path()).await.unwrap(), |b| b);
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v1")).await.unwrap();
    settle(&engine).await;
    let stored = engine.storage().get("k").await.unwrap().unwrap();
    assert_eq!(stored.fresh_until - stored.created_at, 10_000);
    assert_eq!(stored.expires_at - stored.created_at, 60_000);
    clock.advance(11 * SEC);
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("v2"))
            .await
            .unwrap()
            .status,
        Status::Stale
    );
    settle(&engine).await;
    clock.advance(60 * SEC);
    assert_eq!(
        engine
            .get_or_fetch("k", calls.ok("v3"))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
}

#[tokio::test]
async fn persistence_across_a_new_engine_on_the_same_directory() {
    let dir = TempDir::new("persist");
    let calls = Calls::default();
    {
        let (engine, _) = engine_on(FileStorage::open(dir.path()).await.unwrap(), |b| b);
        engine.get_or_fetch("k", calls.ok("kept")).await.unwrap();
        settle(&engine).await;
        engine.shutdown().await;
    }
    let (engine, _) = engine_on(FileStorage::open(dir.path()).await.unwrap(), |b| b);
    let r = engine.get_or_fetch("k", calls.ok("new")).await.unwrap();
    assert_eq!(
        (r.status, text(&r.value), calls.get()),
        (Status::Hit, "kept", 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_use_from_many_tasks() {
    let dir = TempDir::new("concurrent");
    let s = FileStorage::open(dir.path()).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let key = format!("k{}", (t + i) % 16);
                    let value = format!("{key}:{t}:{i}");
                    s.set(&key, entry(&value)).await.unwrap();
                    if let Some(e) = s.get(&key).await.unwrap() {
                        let v = text(&e.value).to_owned();
                        assert!(v.starts_with(&format!("{key}:")), "{key} holds {v}");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.len(), 16);
    let leftovers = files_where(dir.path(), |name| name.starts_with(".tmp-"));
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn close_degrades_to_upstream() {
    let dir = TempDir::new("close");
    let s = FileStorage::open(dir.path()).await.unwrap();
    let (engine, _) = engine_on(s.clone(), |b| b);
    let calls = Calls::default();
    engine.get_or_fetch("k", calls.ok("v")).await.unwrap();
    settle(&engine).await;
    s.close();
    assert!(s.get("k").await.is_err());
    let r = engine
        .get_or_fetch("k", calls.ok("from upstream"))
        .await
        .unwrap();
    assert_eq!((r.status, text(&r.value)), (Status::Miss, "from upstream"));
    settle(&engine).await;
    assert!(engine.stats().storage_read_errors >= 1);
    let _ = Duration::ZERO;
}

// ---- Two instances, and clocks ----

#[tokio::test]
async fn a_same_size_overwrite_by_another_instance_is_not_purged_as_expired() {
    use swre_core::ManualClock;
    let dir = TempDir::new("same-size");
    let clock = ManualClock::new(1_000_000_000_000);
    let opts = FileOptions {
        maintain_every: 0,
        ..FileOptions::default()
    };
    let a = FileStorage::open_with_clock(dir.path(), opts, clock.clone())
        .await
        .unwrap();
    let b = FileStorage::open_with_clock(dir.path(), opts, clock.clone())
        .await
        .unwrap();
    let ttl = CacheTtl::new(SEC, SEC, SEC); // gone 3 s after it is written
    a.set("k", Entry::new("v1", clock.now_ms(), ttl))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    // Another process refreshes the key; same value length, same file size.
    let fresh = Entry::new("v2", clock.now_ms(), ttl);
    b.set("k", fresh.clone()).await.unwrap();
    clock.advance(Duration::from_secs(2)); // a's write would be gone by now; b's is fresh
    let report = a.maintain().await.unwrap();
    assert_eq!(
        b.get("k").await.unwrap(),
        Some(fresh),
        "a's pass deleted b's fresh entry ({report:?})"
    );
}

#[tokio::test]
async fn a_live_temp_file_with_a_future_mtime_is_left_alone() {
    let dir = TempDir::new("future-temp");
    // This process's own temp file (a write in progress), stamped a minute
    // ahead of this clock (a clock stepped back, or a file server's clock).
    let live = dir
        .path()
        .join(format!(".tmp-{}-99-live", std::process::id()));
    std::fs::write(&live, b"partial").unwrap();
    let ahead = std::time::SystemTime::now() + Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&live)
        .unwrap()
        .set_modified(ahead)
        .unwrap();
    let _s = FileStorage::open(dir.path()).await.unwrap();
    assert!(
        live.exists(),
        "a live writer's temp file was deleted: its rename now fails"
    );
}
