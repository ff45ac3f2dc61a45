use super::*;
use crate::entry::CacheTtl;
use alloc::format;
use core::time::Duration;

fn entry(value: &str, now: u64, life_ms: u64) -> Entry {
    Entry::new(
        value,
        now,
        CacheTtl::new(
            Duration::from_millis(life_ms),
            Duration::ZERO,
            Duration::ZERO,
        ),
    )
}

fn one_shard(max_bytes: usize, max_entries: usize) -> MemoryStorage {
    MemoryStorage::with_limits(MemoryLimits {
        max_bytes,
        max_entries,
        shards: 1,
    })
}

#[test]
fn set_get_overwrite_delete() {
    let s = MemoryStorage::new();
    assert_eq!(s.get_now("a"), None);
    s.set_now("a", entry("1", 0, 10)).unwrap();
    assert_eq!(s.get_now("a").unwrap().value.as_slice(), b"1");
    s.set_now("a", entry("22", 0, 10)).unwrap();
    assert_eq!(s.get_now("a").unwrap().value.as_slice(), b"22");
    assert_eq!(s.len(), 1);
    assert_eq!(s.bytes(), entry_charge(1, 2));
    s.delete_now("a");
    assert_eq!(s.get_now("a"), None);
    assert_eq!((s.len(), s.bytes()), (0, 0));
    s.delete_now("a");
}

#[test]
fn entry_bound_holds_under_many_inserts() {
    let s = MemoryStorage::with_limits(MemoryLimits {
        max_bytes: usize::MAX / 2,
        max_entries: 1_000,
        shards: 0,
    });
    for i in 0..20_000u64 {
        s.set_now(&format!("key-{i}"), entry("v", i, 1_000_000))
            .unwrap();
        assert!(s.len() <= 1_000, "len {} after {i}", s.len());
    }
    assert!(s.len() >= 900, "evicted far more than needed: {}", s.len());
}

#[test]
fn byte_bound_holds_under_many_inserts() {
    let max = 64 * 1024;
    let s = one_shard(max, usize::MAX);
    let value = "x".repeat(1000);
    for i in 0..1_000u64 {
        s.set_now(&format!("k{i}"), entry(&value, i, 1_000_000))
            .unwrap();
        assert!(s.bytes() <= max, "bytes {} over {max}", s.bytes());
    }
    // Overwrites that grow a value also respect the bound.
    let big = "y".repeat(8000);
    for i in 990..1_000u64 {
        s.set_now(&format!("k{i}"), entry(&big, 2_000, 1_000_000))
            .unwrap();
        assert!(s.bytes() <= max);
    }
    assert!(
        s.get_now("k999").is_some(),
        "the entry just written must survive"
    );
}

#[test]
fn too_large_is_refused_and_changes_nothing() {
    let s = one_shard(1_000, 10);
    s.set_now("keep", entry("v", 0, 10)).unwrap();
    let err = s
        .set_now("big", entry(&"z".repeat(2_000), 0, 10))
        .unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::TooLarge);
    assert_eq!(s.len(), 1);
    assert!(s.get_now("keep").is_some());
    assert!(s.get_now("big").is_none());
}

#[test]
fn expired_entries_are_evicted_first() {
    let s = one_shard(usize::MAX / 2, 4);
    // Two entries die at 100, two live long; none has been read.
    s.set_now("short-1", entry("v", 0, 100)).unwrap();
    s.set_now("long-1", entry("v", 0, 1_000_000)).unwrap();
    s.set_now("short-2", entry("v", 0, 100)).unwrap();
    s.set_now("long-2", entry("v", 0, 1_000_000)).unwrap();
    // Writes made at 500 need room: the dead entries go, not the oldest live one.
    s.set_now("new-1", entry("v", 500, 1_000_000)).unwrap();
    s.set_now("new-2", entry("v", 500, 1_000_000)).unwrap();
    assert!(s.get_now("short-1").is_none());
    assert!(s.get_now("short-2").is_none());
    for k in ["long-1", "long-2", "new-1", "new-2"] {
        assert!(s.get_now(k).is_some(), "{k} was evicted");
    }
}

#[test]
fn sieve_spares_visited_entries() {
    let s = one_shard(usize::MAX / 2, 100);
    for i in 0..100u64 {
        s.set_now(&format!("k{i}"), entry("v", 0, 1_000_000))
            .unwrap();
    }
    // Read a hot set (every tenth key), then push 50 one-hit wonders through.
    for i in (0..100u64).step_by(10) {
        assert!(s.get_now(&format!("k{i}")).is_some());
    }
    for i in 0..50u64 {
        s.set_now(&format!("w{i}"), entry("v", 0, 1_000_000))
            .unwrap();
    }
    for i in (0..100u64).step_by(10) {
        assert!(s.get_now(&format!("k{i}")).is_some(), "hot k{i} evicted");
    }
    assert_eq!(s.len(), 100);
}

#[test]
fn more_shards_than_entries_never_hold_more_than_max_entries() {
    for (shards, max_entries) in [(16, 4), (16, 1), (8, 5), (16, 1000), (4, 7)] {
        let s = MemoryStorage::with_limits(MemoryLimits {
            max_bytes: usize::MAX / 2,
            max_entries,
            shards,
        });
        for i in 0..(max_entries * 5 + 50) as u64 {
            s.set_now(&format!("k{i}"), entry("v", 0, 1_000_000))
                .unwrap();
            assert!(
                s.len() <= max_entries,
                "{shards} shards, limit {max_entries}: {} held",
                s.len()
            );
        }
    }
}

#[test]
fn clear_empties_every_shard() {
    let s = MemoryStorage::new();
    for i in 0..100u64 {
        s.set_now(&format!("k{i}"), entry("v", 0, 10)).unwrap();
    }
    s.clear_now();
    assert!(s.is_empty());
    assert_eq!(s.bytes(), 0);
    s.set_now("again", entry("v", 0, 10)).unwrap();
    assert_eq!(s.len(), 1);
}

#[test]
fn overwrites_do_not_grow_the_expiry_heap_without_bound() {
    let s = one_shard(usize::MAX / 2, 10);
    for i in 0..10_000u64 {
        s.set_now("same", entry("v", i, 1_000)).unwrap();
    }
    let shard = s.shards[0].read();
    assert!(shard.expiry.len() <= 2 * shard.len + 17);
}

#[test]
fn automatic_sharding_keeps_shards_useful() {
    assert_eq!(
        MemoryLimits {
            max_bytes: 64 << 20,
            max_entries: 100_000,
            shards: 0
        }
        .shard_count(),
        16
    );
    assert_eq!(
        MemoryLimits {
            max_bytes: 64 << 20,
            max_entries: 100,
            shards: 0
        }
        .shard_count(),
        1
    );
    assert_eq!(
        MemoryLimits {
            max_bytes: 1 << 20,
            max_entries: 100_000,
            shards: 0
        }
        .shard_count(),
        1
    );
    assert_eq!(
        MemoryLimits {
            max_bytes: 1,
            max_entries: 1,
            shards: 6
        }
        .shard_count(),
        4
    );
}

/// Threads reading, writing, overwriting and deleting overlapping keys of a
/// small, evicting store: every value read is whole and belongs to its key,
/// and the bounds hold at the end.
#[test]
fn threads_sharing_a_store_never_see_a_foreign_or_torn_value() {
    extern crate std;
    use alloc::string::String;
    use alloc::sync::Arc;
    use alloc::vec::Vec;

    const THREADS: usize = 4;
    const OPS: usize = 20_000;
    const KEYS: usize = 300;
    let store = Arc::new(MemoryStorage::with_limits(MemoryLimits {
        max_bytes: 64 * 1024,
        max_entries: 200,
        shards: 4,
    }));
    // The value for (key, version): the key and version repeated, so a read
    // can tell a whole value of its own key from anything else.
    fn value_for(key: &str, version: usize) -> String {
        let unit = format!("{key}#{version};");
        unit.repeat(1 + version % 5)
    }
    fn whole_value_of(key: &str, bytes: &[u8]) -> bool {
        let Ok(text) = core::str::from_utf8(bytes) else {
            return false;
        };
        let Some(unit_end) = text.find(';') else {
            return false;
        };
        let unit = &text[..=unit_end];
        let Some((k, version)) = unit[..unit.len() - 1].split_once('#') else {
            return false;
        };
        let Ok(version) = version.parse::<usize>() else {
            return false;
        };
        k == key && text == unit.repeat(1 + version % 5)
    }
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let (mut reads, mut bad) = (0usize, 0usize);
                for i in 0..OPS {
                    let n = (i * 7 + t * 13) % KEYS;
                    let key = format!("k{n}");
                    match (i + t) % 10 {
                        0..=2 => {
                            let v = value_for(&key, i);
                            store
                                .set_now(&key, entry(&v, 0, 1_000_000))
                                .expect("every value fits a shard");
                        }
                        3 => store.delete_now(&key),
                        _ => {
                            if let Some(e) = store.get_now(&key) {
                                reads += 1;
                                if !whole_value_of(&key, e.value.as_slice()) {
                                    bad += 1;
                                }
                            }
                        }
                    }
                }
                (reads, bad)
            })
        })
        .collect();
    let (mut reads, mut bad) = (0, 0);
    for h in handles {
        let (r, b) = h.join().expect("no thread panics");
        reads += r;
        bad += b;
    }
    assert_eq!(bad, 0, "{bad} of {reads} reads saw a foreign or torn value");
    assert!(reads > 1_000, "the readers must have found values: {reads}");
    assert!(store.len() <= 200 && store.bytes() <= 64 * 1024);
}

#[test]
fn a_write_is_readable_at_once_even_when_full() {
    let s = one_shard(usize::MAX / 2, 100);
    for i in 0..100u64 {
        s.set_now(&format!("k{i}"), entry("v", 0, 1_000_000))
            .unwrap();
        assert!(s.get_now(&format!("k{i}")).is_some());
    }
    for i in 100..1_000u64 {
        let key = format!("new{i}");
        s.set_now(&key, entry("v", 0, 1_000_000)).unwrap();
        assert!(s.get_now(&key).is_some(), "{key} was refused at once");
        assert_eq!(s.len(), 100);
    }
}

/// Hits over `rounds` passes of a loop over `span` keys, each miss inserting.
fn loop_hits(s: &MemoryStorage, span: u64, rounds: u64) -> u64 {
    let mut hits = 0;
    for _ in 0..rounds {
        for k in 0..span {
            let key = format!("k{k}");
            if s.get_now(&key).is_some() {
                hits += 1;
            } else {
                s.set_now(&key, entry("v", 0, 1_000_000)).unwrap();
            }
        }
    }
    hits
}

#[test]
fn a_loop_over_more_keys_than_fit_keeps_most_of_them() {
    // SIEVE alone (like LRU) evicts each key just before its reuse: 0 hits.
    let s = one_shard(usize::MAX / 2, 1_000);
    loop_hits(&s, 1_200, 3);
    let hits = loop_hits(&s, 1_200, 10);
    let ratio = hits as f64 / 12_000.0;
    assert!(
        ratio > 0.75,
        "hit ratio {ratio:.3} on a loop over 1.2x the capacity"
    );
}

#[test]
fn a_scan_does_not_flush_the_keys_in_use() {
    let s = one_shard(usize::MAX / 2, 1_000);
    // A working set of 500 keys, each read several times.
    loop_hits(&s, 500, 5);
    for i in 0..20_000u64 {
        let key = format!("scan{i}");
        if s.get_now(&key).is_none() {
            s.set_now(&key, entry("v", 0, 1_000_000)).unwrap();
        }
    }
    let kept = (0..500)
        .filter(|k| s.get_now(&format!("k{k}")).is_some())
        .count();
    assert!(
        kept >= 490,
        "a scan of 20,000 keys left {kept} of 500 hot keys"
    );
}

// ---- A model of the store, and threads churning it ----

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The entry under `key` without setting its visited bit (so checking does
/// not change what the policy sees).
fn peek(s: &MemoryStorage, key: &str) -> Option<Entry> {
    let (hash, shard) = s.locate(key);
    let shard = shard.read();
    let idx = *shard
        .table
        .find(hash, |&i| shard::key_is(shard.nodes(), i, key))?;
    shard.node(idx).map(|n| n.entry.clone())
}

/// Random sets (small, large, already expired, short- and long-lived),
/// overwrites, reads, deletes and clears against a map of the last value
/// written per key. A read returns that value or nothing (evicted), never
/// another; an evicted key stays gone until written; a write is readable at
/// once; limits, `len` and `bytes` hold after every step.
fn model_run(seed: u64, limits: MemoryLimits, keys: u64, ops: usize) {
    use alloc::collections::BTreeMap;
    let s = MemoryStorage::with_limits(limits);
    let shard_max_bytes = s.shards.iter().map(|x| x.read().max_bytes).max().unwrap();
    let mut model: BTreeMap<u64, Entry> = BTreeMap::new();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut now = 1_000u64;
    let mut version = 0u64;
    for op in 0..ops {
        // Mostly a hot set, sometimes the whole key space (scans).
        let k = if rng.below(4) == 0 {
            rng.below(keys)
        } else {
            rng.below(keys / 4 + 1)
        };
        let key = format!("k{k}");
        match rng.below(1000) {
            0..=449 => {
                version += 1;
                now += rng.below(3);
                let len = match rng.below(10) {
                    0 => rng.below(3_000) as usize,
                    _ => rng.below(40) as usize,
                };
                let life = match rng.below(5) {
                    0 => 0,
                    1 => rng.below(50),
                    _ => 1_000_000,
                };
                let value = format!("{version}:{}", "x".repeat(len));
                let e = entry(&value, now, life);
                match s.set_now(&key, e.clone()) {
                    Ok(()) => {
                        model.insert(k, e.clone());
                        assert_eq!(
                            peek(&s, &key),
                            Some(e),
                            "op {op}: a write not readable at once"
                        );
                    }
                    Err(err) => {
                        assert_eq!(err.kind(), StorageErrorKind::TooLarge, "op {op}");
                        assert!(entry_charge(key.len(), e.value.len()) > shard_max_bytes);
                    }
                }
            }
            450..=849 => match (s.get_now(&key), model.get(&k)) {
                (None, _) => {
                    model.remove(&k);
                }
                (Some(got), Some(want)) => assert_eq!(&got, want, "op {op}: {key} wrong value"),
                (Some(got), None) => panic!("op {op}: {key} came back: {got:?}"),
            },
            850..=989 => {
                s.delete_now(&key);
                model.remove(&k);
                assert_eq!(peek(&s, &key), None, "op {op}: delete");
            }
            990..=997 => {
                // The clock jumps: expired entries become victims.
                now += rng.below(200);
            }
            _ => {
                s.clear_now();
                model.clear();
            }
        }
        assert!(
            s.len() <= limits.max_entries.max(1),
            "op {op}: len {}",
            s.len()
        );
        assert!(
            s.bytes() <= limits.max_bytes.max(1),
            "op {op}: bytes {}",
            s.bytes()
        );
        if op % 13 == 0 {
            for shard in s.shards.iter() {
                shard.read().check();
            }
        }
        if op % 101 == 0 || op + 1 == ops {
            // Sweep: what is held is exactly what the model says, minus evictions.
            let mut count = 0;
            let mut bytes = 0;
            for k in 0..keys {
                let key = format!("k{k}");
                match (peek(&s, &key), model.get(&k)) {
                    (Some(got), Some(want)) => {
                        assert_eq!(&got, want, "op {op}: sweep {key}");
                        count += 1;
                        bytes += entry_charge(key.len(), got.value.len());
                    }
                    (Some(got), None) => panic!("op {op}: sweep {key} came back: {got:?}"),
                    (None, _) => {
                        model.remove(&k);
                    }
                }
            }
            assert_eq!((s.len(), s.bytes()), (count, bytes), "op {op}: counters");
        }
    }
}

#[test]
fn model_random_ops_match_a_reference() {
    let configs = [
        (usize::MAX / 2, 1, 1, 8),
        (usize::MAX / 2, 2, 1, 8),
        (usize::MAX / 2, 8, 1, 40),
        (usize::MAX / 2, 150, 1, 600),
        (4_000, 1_000, 1, 200),
        (3_500, 20, 1, 100),
        (20_000, 300, 4, 1_000),
        (64 * 1024, 200, 0, 1_000),
        (12_000, 64, 16, 400),
        (1, 1, 1, 4),
    ];
    for (i, &(max_bytes, max_entries, shards, keys)) in configs.iter().enumerate() {
        for seed in 0..6u64 {
            model_run(
                seed * 31 + i as u64,
                MemoryLimits {
                    max_bytes,
                    max_entries,
                    shards,
                },
                keys,
                10_000,
            );
        }
    }
}

#[test]
fn threads_churning_keep_every_shard_consistent() {
    extern crate std;
    use alloc::sync::Arc;
    let s = Arc::new(MemoryStorage::with_limits(MemoryLimits {
        max_bytes: 40_000,
        max_entries: 120,
        shards: 2,
    }));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(t * 7919 + 1);
                for i in 0..60_000u64 {
                    let key = format!("k{}", rng.below(400));
                    match rng.below(100) {
                        0..=39 => {
                            let v = format!("{key}:{}", "x".repeat(rng.below(300) as usize));
                            let e = entry(&v, i, if rng.below(3) == 0 { 5 } else { 1_000_000 });
                            let _ = s.set_now(&key, e);
                        }
                        40..=89 => {
                            if let Some(e) = s.get_now(&key) {
                                assert!(e.value.as_slice().starts_with(key.as_bytes()));
                            }
                        }
                        90..=98 => s.delete_now(&key),
                        _ => {
                            if rng.below(50) == 0 {
                                s.clear_now()
                            }
                        }
                    }
                    assert!(s.len() <= 120 && s.bytes() <= 40_000);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no thread panics");
    }
    for shard in s.shards.iter() {
        shard.read().check();
    }
}

#[test]
fn peek_reads_the_entry_where_it_lies() {
    let s = one_shard(1 << 20, 2);
    assert_eq!(s.peek_now("a", |e| e.created_at), None);
    s.set_now("a", entry("1", 7, 10)).unwrap();
    s.set_now("b", entry("2", 8, 10)).unwrap();
    // The closure sees the stored entry itself: its value shares the
    // stored allocation.
    let held = s.get_now("a").unwrap().value;
    assert_eq!(
        s.peek_now("a", |e| (e.created_at, e.value.addr() == held.addr())),
        Some((7, true))
    );
    assert_eq!(
        crate::storage::Storage::peek_ready(&s, "b", |e| e.value.clone())
            .unwrap()
            .unwrap()
            .unwrap()
            .as_slice(),
        b"2"
    );
    // `get_now` is a peek that copies the entry out.
    assert_eq!(s.get_now("b"), s.peek_now("b", Entry::clone));
}
