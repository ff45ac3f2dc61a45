//! The storage conformance suite: one set of checks that every [`Storage`]
//! runs — memory, tiered, files, Redis, IndexedDB, Cache API, JS objects.
//!
//! Each check is a generic async function that panics with a message naming
//! itself on failure; each uses its own key prefix, so all of them can run
//! against one store. [`run_all`] runs every check in turn. Call it from the
//! test harness of the storage's platform (`#[tokio::test]`,
//! `#[wasm_bindgen_test]`, or [`TestExecutor::block_on`](super::TestExecutor::block_on)).
//! [`run_engine_checks`] adds the checks that need an engine over the store
//! (the decoded-value tier's coherence).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::codec::Codec;
use crate::engine::Engine;
use crate::entry::{CacheTtl, Entry};
use crate::runtime::Runtime;
use crate::storage::Storage;

/// Runs every check of the suite against `storage`.
pub async fn run_all<S: Storage>(storage: &S) {
    get_of_unknown_key_is_none(storage).await;
    set_get_overwrite_delete(storage).await;
    times_are_preserved_exactly(storage).await;
    large_and_empty_values(storage).await;
    odd_keys_round_trip_separately(storage).await;
    similar_keys_do_not_collide(storage).await;
    concurrent_writers_leave_one_whole_value(storage).await;
    a_delete_is_final_under_concurrent_reads_and_writes(storage).await;
    reads_are_linearisable_per_key(storage).await;
    remove_older_keeps_the_written_entry_and_newer_ones(storage).await;
    expire_ends_the_fresh_phase_only(storage).await;
}

fn entry(value: impl Into<crate::Bytes>, created_at: u64) -> Entry {
    Entry::new(
        value,
        created_at,
        CacheTtl::new(
            Duration::from_millis(1_000),
            Duration::from_millis(2_000),
            Duration::from_millis(3_000),
        ),
    )
}

/// A time that is in the near future for any real clock, so stores that
/// expire entries on their own keep them for the suite's duration.
const NOW: u64 = 4_000_000_000_000;

/// `get` of a key never written is `Ok(None)`, and so is deleting it.
pub async fn get_of_unknown_key_is_none<S: Storage>(s: &S) {
    let got = s.get("conformance/unknown").await;
    assert_eq!(got, Ok(None), "get_of_unknown_key_is_none: get");
    assert_eq!(
        s.delete("conformance/unknown").await,
        Ok(()),
        "get_of_unknown_key_is_none: delete of a missing key succeeds"
    );
}

/// Writes are read back; overwrites replace; deletes remove.
pub async fn set_get_overwrite_delete<S: Storage>(s: &S) {
    let k = "conformance/basic";
    let first = entry("first", NOW);
    s.set(k, first.clone())
        .await
        .expect("set_get_overwrite_delete: set");
    assert_eq!(
        s.get(k).await,
        Ok(Some(first)),
        "set_get_overwrite_delete: read back"
    );
    let second = entry("second value, longer", NOW + 1);
    s.set(k, second.clone())
        .await
        .expect("set_get_overwrite_delete: overwrite");
    assert_eq!(
        s.get(k).await,
        Ok(Some(second)),
        "set_get_overwrite_delete: overwrite read back"
    );
    s.delete(k).await.expect("set_get_overwrite_delete: delete");
    assert_eq!(
        s.get(k).await,
        Ok(None),
        "set_get_overwrite_delete: deleted"
    );
}

/// Every time of an entry comes back to the millisecond, including extremes,
/// with its pinned flag, fetch time and tags.
pub async fn times_are_preserved_exactly<S: Storage>(s: &S) {
    let k = "conformance/times";
    let e = Entry {
        value: crate::Bytes::from("t"),
        created_at: NOW + 123,
        fresh_until: NOW + 4_567,
        stale_until: NOW + 89_012,
        expires_at: u64::MAX / 2 + 7,
        pinned_ttl: true,
        fetch_ms: 4_321,
        tags: crate::tags::Tags::new(alloc::vec![
            crate::tags::TagStamp {
                name: "team/ü 1".into(),
                hard: u64::MAX - 1,
                soft: 3,
            },
            crate::tags::TagStamp {
                name: "b".into(),
                hard: 0,
                soft: 1 << 63,
            },
        ]),
    };
    s.set(k, e.clone())
        .await
        .expect("times_are_preserved_exactly: set");
    let got = s.get(k).await.expect("times_are_preserved_exactly: get");
    assert_eq!(got, Some(e), "times_are_preserved_exactly");
}

/// An empty value and a 1 MiB value with every byte value round-trip.
pub async fn large_and_empty_values<S: Storage>(s: &S) {
    let empty = entry(Vec::new(), NOW);
    s.set("conformance/empty", empty.clone())
        .await
        .expect("large_and_empty_values: set empty");
    assert_eq!(
        s.get("conformance/empty").await,
        Ok(Some(empty)),
        "large_and_empty_values: empty"
    );
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    let big = entry(big, NOW);
    s.set("conformance/large", big.clone())
        .await
        .expect("large_and_empty_values: set 1 MiB");
    let got = s
        .get("conformance/large")
        .await
        .expect("large_and_empty_values: get 1 MiB");
    assert!(
        got == Some(big),
        "large_and_empty_values: 1 MiB value differs"
    );
}

/// Keys that are hostile to paths, protocols and parsers.
pub fn odd_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "conformance/odd/ ",
        "conformance/odd/with space",
        "conformance/odd/../../etc/passwd",
        "/etc/passwd",
        "../x",
        "..",
        ".",
        "conformance/odd/nul\0byte",
        "conformance/odd/new\nline\r\n",
        "conformance/odd/*",
        "conformance/odd/%2e%2e%2f",
        "conformance/odd/C:\\Windows\\CON",
        "conformance/odd/ünïcödé 🚀",
        "conformance/odd/\u{202e}rtl",
        "conformance/odd/'quote\"",
    ]
    .iter()
    .map(|k| String::from(*k))
    .collect();
    keys.push(format!("conformance/odd/long-{}", "k".repeat(4000)));
    keys
}

/// Each odd key holds its own value.
pub async fn odd_keys_round_trip_separately<S: Storage>(s: &S) {
    let keys = odd_keys();
    for (i, k) in keys.iter().enumerate() {
        s.set(k, entry(format!("value {i}"), NOW))
            .await
            .unwrap_or_else(|e| panic!("odd_keys_round_trip_separately: set {k:?}: {e}"));
    }
    for (i, k) in keys.iter().enumerate() {
        let got = s
            .get(k)
            .await
            .unwrap_or_else(|e| panic!("odd_keys_round_trip_separately: get {k:?}: {e}"));
        let value = got.map(|e| e.value);
        assert_eq!(
            value.as_deref(),
            Some(format!("value {i}").as_bytes()),
            "odd_keys_round_trip_separately: {k:?}"
        );
    }
    for k in &keys {
        s.delete(k)
            .await
            .expect("odd_keys_round_trip_separately: delete");
        assert_eq!(
            s.get(k).await,
            Ok(None),
            "odd_keys_round_trip_separately: deleted {k:?}"
        );
    }
}

/// Keys differing by case, a trailing byte or a prefix stay apart.
pub async fn similar_keys_do_not_collide<S: Storage>(s: &S) {
    let keys = [
        "conformance/sim/a",
        "conformance/sim/A",
        "conformance/sim/a ",
        "conformance/sim/a/",
        "conformance/sim/",
    ];
    for k in keys {
        s.set(k, entry(k, NOW))
            .await
            .expect("similar_keys_do_not_collide: set");
    }
    for k in keys {
        let got = s.get(k).await.expect("similar_keys_do_not_collide: get");
        assert_eq!(
            got.map(|e| e.value).as_deref(),
            Some(k.as_bytes()),
            "similar_keys_do_not_collide: {k:?}"
        );
    }
}

/// Sixteen writers racing on one key leave exactly one of their values, whole.
pub async fn concurrent_writers_leave_one_whole_value<S: Storage>(s: &S) {
    let k = "conformance/race";
    let values: Vec<Entry> = (0..16u8)
        .map(|i| entry(alloc::vec![i; 64 * 1024], NOW + u64::from(i)))
        .collect();
    let writes = values.iter().map(|e| s.set(k, e.clone()));
    for r in futures::future::join_all(writes).await {
        r.expect("concurrent_writers_leave_one_whole_value: set");
    }
    let got = s
        .get(k)
        .await
        .expect("concurrent_writers_leave_one_whole_value: get")
        .expect("concurrent_writers_leave_one_whole_value: a value must remain");
    assert!(
        values.contains(&got),
        "concurrent_writers_leave_one_whole_value: the stored value is torn or mixed"
    );
}

/// Reads and writes in flight together return whole values that some write
/// wrote (or nothing); once a delete has returned, the key reads as absent
/// until a later set, however many reads were in flight with it.
pub async fn a_delete_is_final_under_concurrent_reads_and_writes<S: Storage>(s: &S) {
    const NAME: &str = "a_delete_is_final_under_concurrent_reads_and_writes";
    let k = "conformance/final";
    for round in 0..20u64 {
        let written: Vec<Entry> = (0..4u64)
            .map(|i| entry(format!("round {round} writer {i}"), NOW + round * 10 + i))
            .collect();
        let writes = futures::future::join_all(written.iter().map(|e| s.set(k, e.clone())));
        let reads = futures::future::join_all((0..4).map(|_| s.get(k)));
        let (writes, reads) = futures::future::join(writes, reads).await;
        for w in writes {
            w.unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
        }
        for r in reads {
            let got = r.unwrap_or_else(|e| panic!("{NAME}: get: {e}"));
            assert!(
                got.as_ref().is_none_or(|g| written.contains(g)),
                "{NAME}: a read during the writes returned a value no write wrote"
            );
        }
        let after = s
            .get(k)
            .await
            .unwrap_or_else(|e| panic!("{NAME}: get: {e}"));
        assert!(
            after.as_ref().is_some_and(|g| written.contains(g)),
            "{NAME}: after the writes returned, the key holds none of them"
        );
        let reads = futures::future::join_all((0..4).map(|_| s.get(k)));
        let (_, deleted) = futures::future::join(reads, s.delete(k)).await;
        deleted.unwrap_or_else(|e| panic!("{NAME}: delete: {e}"));
        assert_eq!(
            s.get(k).await,
            Ok(None),
            "{NAME}: round {round}: the deleted value came back"
        );
    }
}

/// One writer sets versions 1, 2, 3, … of a key in turn while readers read
/// it concurrently: a read never returns a version older than one whose set
/// had returned before the read began, and no reader sees versions go
/// backwards.
pub async fn reads_are_linearisable_per_key<S: Storage>(s: &S) {
    const NAME: &str = "reads_are_linearisable_per_key";
    const VERSIONS: u64 = 40;
    let k = "conformance/linear";
    let version_of = |e: &Entry| -> u64 {
        core::str::from_utf8(&e.value)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{NAME}: a value no write wrote"))
    };
    s.set(k, entry("0", NOW))
        .await
        .unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
    let committed = core::cell::Cell::new(0u64);
    let writer = async {
        for v in 1..=VERSIONS {
            s.set(k, entry(format!("{v}"), NOW + v))
                .await
                .unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
            committed.set(v);
        }
    };
    let reader = |id: u64| {
        let committed = &committed;
        async move {
            let mut last = 0;
            while committed.get() < VERSIONS {
                let floor = committed.get();
                let got = s
                    .get(k)
                    .await
                    .unwrap_or_else(|e| panic!("{NAME}: get: {e}"))
                    .unwrap_or_else(|| panic!("{NAME}: the key vanished"));
                let v = version_of(&got);
                assert!(
                    v >= floor,
                    "{NAME}: reader {id} read version {v} after version {floor} was acknowledged"
                );
                assert!(
                    v >= last,
                    "{NAME}: reader {id} read version {v} after reading {last}"
                );
                last = v;
            }
        }
    };
    futures::future::join(writer, futures::future::join_all((0..4).map(reader))).await;
    let end = s
        .get(k)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: get: {e}"));
    assert_eq!(
        end.as_ref().map(version_of),
        Some(VERSIONS),
        "{NAME}: the last write"
    );
}

/// Writes, overwrites and deletes over `keys` keys, several in flight at a
/// time, checking `within_limits` after each batch: a store with limits
/// (entries, bytes) holds them under churn. Not part of [`run_all`], which
/// cannot know a store's limits.
pub async fn limits_hold_under_churn<S: Storage>(
    s: &S,
    keys: u64,
    rounds: u64,
    within_limits: impl Fn(&S) -> bool,
) {
    const NAME: &str = "limits_hold_under_churn";
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for round in 0..rounds {
        let mut batch = Vec::new();
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("conformance/churn/{}", x % keys);
            let len = (x >> 20) as usize % 3_000;
            batch.push((key, len, x.is_multiple_of(5)));
        }
        let ops = batch.iter().map(|(key, len, delete)| async move {
            if *delete {
                s.delete(key).await
            } else {
                s.set(key, entry(alloc::vec![7u8; *len], NOW + round)).await
            }
        });
        for r in futures::future::join_all(ops).await {
            r.unwrap_or_else(|e| panic!("{NAME}: round {round}: {e}"));
        }
        assert!(within_limits(s), "{NAME}: round {round}: over the limits");
    }
}

/// After a failed write the engine calls `remove_older`: it removes an older
/// entry, and keeps the written one and newer ones.
pub async fn remove_older_keeps_the_written_entry_and_newer_ones<S: Storage>(s: &S) {
    const NAME: &str = "remove_older_keeps_the_written_entry_and_newer_ones";
    let k = "conformance/older";
    let older = entry("older", NOW + 1);
    let written = entry("written", NOW + 2);
    let newer = entry("newer", NOW + 3);
    let get = || async {
        s.get(k)
            .await
            .unwrap_or_else(|e| panic!("{NAME}: get: {e}"))
    };
    let remove = |w: Entry| async move {
        s.remove_older(k, &w)
            .await
            .unwrap_or_else(|e| panic!("{NAME}: remove_older: {e}"));
    };
    remove(written.clone()).await;
    assert_eq!(get().await, None, "{NAME}: on a missing key");
    s.set(k, newer.clone())
        .await
        .unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
    remove(written.clone()).await;
    assert_eq!(
        get().await,
        Some(newer),
        "{NAME}: a newer entry was removed"
    );
    s.set(k, written.clone())
        .await
        .unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
    remove(written.clone()).await;
    assert_eq!(
        get().await,
        Some(written.clone()),
        "{NAME}: the written entry was removed"
    );
    s.set(k, older)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
    remove(written).await;
    assert_eq!(get().await, None, "{NAME}: an older entry was kept");
}

/// `expire` ends a fresh entry's fresh phase at the given time and changes
/// nothing else (value, other times); a stale entry and a missing key are
/// left as they are.
pub async fn expire_ends_the_fresh_phase_only<S: Storage>(s: &S) {
    const NAME: &str = "expire_ends_the_fresh_phase_only";
    let k = "conformance/expire";
    let written = entry("value", NOW);
    s.set(k, written.clone())
        .await
        .unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
    let mut want = written.clone();
    want.fresh_until = NOW + 400;
    let got = s
        .expire(k, NOW + 400)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: expire: {e}"));
    assert_eq!(got.as_ref(), Some(&want), "{NAME}: what expire returned");
    let stored = s
        .get(k)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: get: {e}"));
    assert_eq!(stored.as_ref(), Some(&want), "{NAME}: what the store holds");
    let again = s
        .expire(k, NOW + 500)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: expire: {e}"));
    assert_eq!(again.as_ref(), Some(&want), "{NAME}: a stale entry changed");
    let missing = "conformance/expire-missing";
    let none = s
        .expire(missing, NOW)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: expire of a missing key: {e}"));
    assert_eq!(none, None, "{NAME}: a missing key");
    let stored = s
        .get(missing)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: get: {e}"));
    assert_eq!(stored, None, "{NAME}: expire created an entry");
}

/// The engine-level checks of the suite, against an engine over the store
/// under test: the decoded-value tier in front of that store
/// ([`EngineBuilder::decoded_values`](crate::EngineBuilder::decoded_values))
/// stays coherent with every way the stored value can change. Build the
/// engine with the platform's runtime and a fresh phase of a few seconds
/// at least (the default TTL's 5 s is enough).
pub async fn run_engine_checks<S: Storage, R: Runtime, C: Codec + Clone>(engine: &Engine<S, R, C>) {
    typed_values_follow_every_write(engine).await;
    tags_reach_their_entries(engine).await;
}

/// Tags work over the store: their records (under keys starting with a NUL)
/// are kept, `expire_tag` makes a tagged entry stale, `invalidate_tag`
/// makes it absent, an untagged entry stays fresh through both.
pub async fn tags_reach_their_entries<S: Storage, R: Runtime, C: Codec + Clone>(
    engine: &Engine<S, R, C>,
) {
    use crate::engine::CallOptions;
    use crate::phase::Status;
    const NAME: &str = "tags_reach_their_entries";
    let (tagged, plain) = ("conformance/tagged", "conformance/untagged");
    let tag = "conformance tag/ü";
    let status = |key: &'static str| async move {
        engine
            .peek(key)
            .await
            .unwrap_or_else(|e| panic!("{NAME}: peek {key}: {e}"))
            .map(|c| c.status)
    };
    engine
        .with(CallOptions::new().tags([tag]))
        .set(tagged, "t")
        .await
        .unwrap_or_else(|e| panic!("{NAME}: tagged set: {e}"));
    engine
        .set(plain, "p")
        .await
        .unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
    assert_eq!(status(tagged).await, Some(Status::Hit), "{NAME}: written");
    engine
        .expire_tag(tag)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: expire_tag: {e}"));
    assert_eq!(status(tagged).await, Some(Status::Stale), "{NAME}: expired");
    engine
        .invalidate_tag(tag)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: invalidate_tag: {e}"));
    assert_eq!(status(tagged).await, None, "{NAME}: invalidated");
    assert_eq!(status(plain).await, Some(Status::Hit), "{NAME}: untagged");
    for key in [tagged, plain] {
        engine
            .invalidate(key)
            .await
            .unwrap_or_else(|e| panic!("{NAME}: invalidate {key}: {e}"));
    }
}

/// A typed value as the check stores it: always the same encoded length, so
/// that a freed value's allocation is likely reused for the next one.
fn typed(i: u64) -> (u64, String) {
    (i, format!("value-{i:06}"))
}

/// A typed read of `key` that must not fetch: returns the value and the
/// number of fetches it made (0 or 1, if the entry went stale meanwhile).
async fn typed_read<S: Storage, R: Runtime, C: Codec + Clone>(
    engine: &Engine<S, R, C>,
    key: &str,
    fetched: (u64, String),
) -> (u64, String) {
    let r = engine
        .get_or_fetch_as(
            key,
            move || async move { Ok::<_, core::fmt::Error>(fetched) },
        )
        .await
        .unwrap_or_else(|e| panic!("typed_values_follow_every_write: read of {key}: {e}"));
    (*r.value).clone()
}

/// A typed read always returns what the store holds now: after a write
/// through the engine (a hundred in a row, of one encoded length), a write
/// straight to the store (another process, another instance), an
/// `invalidate`, a delete straight from the store, and a stored value that
/// does not decode as the type.
pub async fn typed_values_follow_every_write<S: Storage, R: Runtime, C: Codec + Clone>(
    engine: &Engine<S, R, C>,
) {
    const NAME: &str = "typed_values_follow_every_write";
    let k = "conformance/typed";
    let other = "conformance/typed-other";
    let never = typed(u64::MAX);
    for i in 0..100 {
        engine
            .set_as(k, &typed(i))
            .await
            .unwrap_or_else(|e| panic!("{NAME}: set_as: {e}"));
        for read in 0..2 {
            let got = typed_read(engine, k, never.clone()).await;
            assert_eq!(got, typed(i), "{NAME}: write {i}, read {read}");
        }
    }
    let s = engine.storage();
    for i in 1_000..1_050 {
        engine
            .set_as(other, &typed(i))
            .await
            .unwrap_or_else(|e| panic!("{NAME}: set_as: {e}"));
        let e = s
            .get(other)
            .await
            .unwrap_or_else(|e| panic!("{NAME}: get: {e}"))
            .unwrap_or_else(|| panic!("{NAME}: {other} was not stored"));
        let copy = Entry {
            value: crate::Bytes::copy_from_slice(&e.value),
            ..e
        };
        s.set(k, copy)
            .await
            .unwrap_or_else(|e| panic!("{NAME}: set straight to the store: {e}"));
        let got = typed_read(engine, k, never.clone()).await;
        assert_eq!(got, typed(i), "{NAME}: after a write straight to the store");
    }
    engine
        .invalidate(k)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: invalidate: {e}"));
    let got = typed_read(engine, k, typed(2_000)).await;
    assert_eq!(got, typed(2_000), "{NAME}: after invalidate");
    assert_eq!(
        typed_read(engine, k, never.clone()).await,
        typed(2_000),
        "{NAME}: the value fetched after invalidate"
    );
    s.delete(k)
        .await
        .unwrap_or_else(|e| panic!("{NAME}: delete straight from the store: {e}"));
    let got = typed_read(engine, k, typed(3_000)).await;
    assert_eq!(
        got,
        typed(3_000),
        "{NAME}: after a delete straight from the store"
    );
    // No codec decodes empty bytes as a (u64, String).
    engine
        .set(k, crate::Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("{NAME}: set: {e}"));
    let got = typed_read(engine, k, typed(4_000)).await;
    assert_eq!(
        got,
        typed(4_000),
        "{NAME}: a value that does not decode is fetched anew"
    );
    assert_eq!(
        typed_read(engine, k, never).await,
        typed(4_000),
        "{NAME}: the value fetched over one that did not decode"
    );
}
