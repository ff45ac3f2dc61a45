//! Typed calls and the decoded-value tier: a typed value is decoded once per
//! stored version, shared by every hit on it, and never outlives the version
//! it came from (writes, invalidations, refreshes, eviction, other types).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use swre_core::storage::memory::MemoryLimits;
use swre_core::testing::{TestExecutor, TestRuntime};
use swre_core::{Codec, CodecError, Engine, MemoryStorage, Postcard, Status};

use crate::common::*;

/// Postcard, counting its decodes.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Codec for Counting {
    const NAME: &'static str = "counting postcard";
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        Postcard.encode(value)
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Postcard.decode(bytes)
    }
}

struct T {
    exec: TestExecutor,
    rt: TestRuntime,
    engine: Engine<MemoryStorage, TestRuntime, Counting>,
    decodes: Arc<AtomicUsize>,
    fetches: Arc<AtomicUsize>,
}

fn typed(storage: MemoryStorage, decoded: Option<(usize, usize)>) -> T {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, START);
    let codec = Counting::default();
    let decodes = codec.0.clone();
    let mut b = Engine::builder(storage, rt.clone()).ttl(ttl()).codec(codec);
    if let Some((entries, bytes)) = decoded {
        b = b.decoded_values(entries, bytes);
    }
    T {
        exec,
        rt,
        engine: b.build().expect("valid"),
        decodes,
        fetches: Arc::new(AtomicUsize::new(0)),
    }
}

impl T {
    fn get(&self, key: &str, v: &str) -> swre_core::Cached<Arc<String>> {
        let fetches = self.fetches.clone();
        let v = v.to_owned();
        let r = self
            .exec
            .block_on(self.engine.get_or_fetch_as(key, move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Boom>(v)
            }));
        self.exec.run_until_stalled();
        r.expect("typed lookup")
    }

    fn decodes(&self) -> usize {
        self.decodes.load(Ordering::SeqCst)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[test]
fn a_value_is_decoded_once_and_shared_by_every_hit() {
    let t = typed(MemoryStorage::new(), None);
    let first = t.get("k", "v1");
    assert_eq!((first.status, first.value.as_str()), (Status::Miss, "v1"));
    for _ in 0..100 {
        let r = t.get("k", "unused");
        assert_eq!(r.status, Status::Hit);
        assert!(Arc::ptr_eq(&r.value, &first.value));
    }
    assert_eq!((t.decodes(), t.fetches()), (1, 1));
}

#[test]
fn a_write_invalidation_or_refresh_is_seen_at_once() {
    let t = typed(MemoryStorage::new(), None);
    assert_eq!(*t.get("k", "v1").value, "v1");
    t.exec.block_on(t.engine.set_as("k", "v2")).unwrap();
    assert_eq!(*t.get("k", "unused").value, "v2", "after set_as");
    t.exec
        .block_on(t.engine.set("k", Postcard.encode("v3").unwrap()))
        .unwrap();
    assert_eq!(*t.get("k", "unused").value, "v3", "after a bytes set");
    t.exec.block_on(t.engine.invalidate("k")).unwrap();
    let r = t.get("k", "v4");
    assert_eq!(
        (r.status, r.value.as_str()),
        (Status::Miss, "v4"),
        "after invalidate"
    );
    // Into the stale phase: the old value once, then the refreshed one.
    t.rt.advance(10 * SEC);
    t.exec.run_until_stalled();
    let r = t.get("k", "v5");
    assert_eq!((r.status, r.value.as_str()), (Status::Stale, "v4"));
    let r = t.get("k", "unused");
    assert_eq!(
        (r.status, r.value.as_str()),
        (Status::Hit, "v5"),
        "after the refresh"
    );
    assert_eq!(t.fetches(), 3);
}

#[test]
fn an_evicted_value_is_fetched_and_decoded_anew() {
    let store = MemoryStorage::with_limits(MemoryLimits {
        max_bytes: usize::MAX / 2,
        max_entries: 4,
        shards: 1,
    });
    let t = typed(store, None);
    assert_eq!(*t.get("k", "v1").value, "v1");
    for i in 0..50 {
        t.get(&format!("other{i}"), "x");
        t.get(&format!("other{i}"), "x");
    }
    assert!(
        t.engine.storage().get_now("k").is_none(),
        "k should be evicted"
    );
    let r = t.get("k", "v2");
    assert_eq!((r.status, r.value.as_str()), (Status::Miss, "v2"));
}

#[test]
fn one_stored_version_read_as_two_types_gives_each_its_own() {
    let t = typed(MemoryStorage::new(), None);
    t.exec.block_on(t.engine.set_as("n", &7u32)).unwrap();
    let a = t
        .exec
        .block_on(t.engine.peek_as::<u32>("n"))
        .unwrap()
        .unwrap();
    let b = t
        .exec
        .block_on(t.engine.peek_as::<u64>("n"))
        .unwrap()
        .unwrap();
    let c = t
        .exec
        .block_on(t.engine.peek_as::<u32>("n"))
        .unwrap()
        .unwrap();
    assert_eq!((*a.value, *b.value, *c.value), (7, 7, 7));
}

#[test]
fn with_the_tier_off_every_hit_decodes() {
    let t = typed(MemoryStorage::new(), Some((0, 0)));
    t.get("k", "v1");
    for _ in 0..10 {
        assert_eq!(*t.get("k", "unused").value, "v1");
    }
    assert_eq!(t.decodes(), 11);
}

#[test]
fn the_tier_stays_within_its_entry_bound() {
    // 64 values fit; 1,000 keys read twice each: every hit is right, and
    // values of keys read again later are decoded again, not kept beyond
    // the bound.
    let t = typed(MemoryStorage::new(), Some((64, usize::MAX / 2)));
    for i in 0..1_000 {
        let key = format!("k{i}");
        assert_eq!(*t.get(&key, &key).value, key);
        assert_eq!(*t.get(&key, "unused").value, key);
    }
    let before = t.decodes();
    for i in 0..1_000 {
        let key = format!("k{i}");
        assert_eq!(*t.get(&key, "unused").value, key);
    }
    let again = t.decodes() - before;
    assert!(
        again >= 1_000 - 64,
        "{again} decodes: more than 64 values were kept"
    );
}

/// A value that encodes to no bytes at all.
#[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
struct Unit;

#[test]
fn a_value_that_encodes_to_no_bytes_is_decoded_once() {
    let t = typed(MemoryStorage::new(), None);
    t.exec.block_on(t.engine.set_as("u", &Unit)).unwrap();
    for _ in 0..5 {
        let r = t
            .exec
            .block_on(
                t.engine
                    .get_or_fetch_as::<Unit, _, _, _, Boom>("u", || async {
                        unreachable!("a fresh hit does not fetch")
                    }),
            )
            .unwrap();
        assert_eq!(r.status, Status::Hit);
    }
    assert_eq!(t.decodes(), 1, "every hit on an empty encoding decoded");
}

#[test]
fn a_large_value_within_the_default_limits_is_decoded_once() {
    // Default tier: 10,000 values / 32 MiB. A 3 MiB value fits the limit
    // (and the default max_value_bytes of 16 MiB).
    let t = typed(MemoryStorage::new(), None);
    let big = "x".repeat(3 << 20);
    let first = t.get("big", &big);
    assert_eq!(first.value.len(), 3 << 20);
    let before = t.decodes();
    for _ in 0..5 {
        let r = t.get("big", "unused");
        assert_eq!(r.status, Status::Hit);
    }
    assert_eq!(
        t.decodes() - before,
        0,
        "a 3 MiB value was decoded on every hit"
    );
}
