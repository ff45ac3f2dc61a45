//! swre beside moka and quick_cache: fresh hits (1 and 2 threads, 64 B and
//! 4 KiB), typed hits (a serde struct beside an `Arc` of it), a stale hit while a refresh is in flight, a cold-key stampede,
//! codecs, FileStorage and Tiered. Groups are named for the question they
//! answer; peers sit in the same group.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    missing_docs
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use swre_benches::{
    keys, make_stale, ready, record, stale_bench_engine, user, value, Never, Record, User,
};
use swre_native::testing::{TestExecutor, TestRuntime};
use swre_native::{
    Bytes, CacheTtl, Clock, Codec, Compressed, Engine, Entry, FileStorage, Json, MemoryStorage,
    Postcard, Status, Storage, SystemClock, Tiered, TokioRuntime,
};

const KEYS: usize = 1_000;

fn long_ttl() -> CacheTtl {
    CacheTtl::new(
        Duration::from_secs(3600),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    )
}

fn size_label(len: usize) -> &'static str {
    if len == 64 {
        "64B"
    } else {
        "4KiB"
    }
}

struct Peers {
    keys: Vec<String>,
    swre: Engine<MemoryStorage, TokioRuntime>,
    moka_sync: moka::sync::Cache<String, Bytes>,
    moka_future: moka::future::Cache<String, Bytes>,
    quick: quick_cache::sync::Cache<String, Bytes>,
}

fn peers(len: usize) -> Peers {
    let keys = keys(KEYS);
    let swre = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
        .ttl(long_ttl())
        .build()
        .unwrap();
    let moka_sync = moka::sync::Cache::new(100_000);
    let moka_future = moka::future::Cache::new(100_000);
    let quick = quick_cache::sync::Cache::new(100_000);
    for k in &keys {
        // A value of its own per key, as in a real cache: one shared value
        // would make every hit on every thread write the same reference count.
        let v = Bytes::from(value(len));
        ready(swre.set(k, v.clone())).unwrap();
        moka_sync.insert(k.clone(), v.clone());
        ready(moka_future.insert(k.clone(), v.clone()));
        quick.insert(k.clone(), v.clone());
    }
    Peers {
        keys,
        swre,
        moka_sync,
        moka_future,
        quick,
    }
}

fn swre_hit(p: &Peers, k: &str) -> usize {
    let r = ready(
        p.swre
            .get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }),
    )
    .unwrap();
    debug_assert_eq!(r.status, Status::Hit);
    r.value.len()
}

/// The same lookup on every cache: 0 swre, 1 swre's raw storage, 2 moka sync,
/// 3 moka future, 4 quick_cache.
fn lookup(p: &Peers, which: usize, k: &str) -> usize {
    match which {
        0 => swre_hit(p, k),
        1 => p
            .swre
            .storage()
            .get_now(k)
            .map(|e| e.value.len())
            .unwrap_or(0),
        2 => p.moka_sync.get(k).map(|v| v.len()).unwrap_or(0),
        3 => ready(p.moka_future.get(k)).map(|v| v.len()).unwrap_or(0),
        _ => p.quick.get(k).map(|v| v.len()).unwrap_or(0),
    }
}

const NAMES: [&str; 5] = [
    "swre",
    "swre_memory_storage_raw",
    "moka_sync",
    "moka_future",
    "quick_cache",
];

fn fresh_hit(c: &mut Criterion) {
    for len in [64, 4096] {
        let p = peers(len);
        for k in &p.keys {
            for (which, name) in NAMES.iter().enumerate() {
                assert_eq!(lookup(&p, which, k), len, "{name} must hold every key");
            }
        }
        let mut g = c.benchmark_group(format!("fresh_hit/1_thread/{}", size_label(len)));
        g.throughput(Throughput::Elements(1));
        for (which, name) in NAMES.iter().enumerate() {
            g.bench_function(*name, |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % KEYS;
                    black_box(lookup(&p, which, &p.keys[i]))
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("fresh_hit/2_threads/{}", size_label(len)));
        g.throughput(Throughput::Elements(1));
        for (which, name) in NAMES.iter().enumerate() {
            g.bench_function(*name, |b| {
                two_threads(b, |t, n| {
                    let half = KEYS / 2;
                    let mut i = 0;
                    for _ in 0..n {
                        i = (i + 1) % half;
                        black_box(lookup(&p, which, &p.keys[t * half + i]));
                    }
                })
            });
        }
        // Control: nothing shared between the threads (an engine each), to
        // show what this machine's cores give when no cache line is shared.
        let own = [peers(len), peers(len)];
        g.bench_function("swre_one_engine_per_thread", |b| {
            two_threads(b, |t, n| {
                let p = &own[t];
                let mut i = 0;
                for _ in 0..n {
                    i = (i + 1) % KEYS;
                    black_box(lookup(p, 0, &p.keys[i]));
                }
            })
        });
        g.finish();
    }
}

/// Typed hits: a `User` (six fields) decoded once per stored version in swre,
/// beside a bytes hit of its encoding, moka's and quick_cache's `get` of an
/// `Arc<User>`.
fn typed_hit(c: &mut Criterion) {
    let keys = keys(KEYS);
    let swre = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
        .ttl(long_ttl())
        .build()
        .unwrap();
    let moka_sync = moka::sync::Cache::<String, Arc<User>>::new(100_000);
    let quick = quick_cache::sync::Cache::<String, Arc<User>>::new(100_000);
    for (i, k) in keys.iter().enumerate() {
        let u = user(i as u64);
        ready(swre.set_as(k, &u)).unwrap();
        moka_sync.insert(k.clone(), Arc::new(u.clone()));
        quick.insert(k.clone(), Arc::new(u));
    }
    let typed = |k: &str| {
        let r = ready(swre.get_or_fetch_as::<User, _, _, _, Never>(k, || async {
            unreachable!("every key is held")
        }))
        .unwrap();
        debug_assert_eq!(r.status, Status::Hit);
        r.value.id
    };
    let bytes = |k: &str| {
        ready(swre.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }))
            .unwrap()
            .value
            .len() as u64
    };
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(typed(k), i as u64);
        assert_eq!(moka_sync.get(k).map(|u| u.id), Some(i as u64));
        assert_eq!(quick.get(k).map(|u| u.id), Some(i as u64));
    }
    let mut g = c.benchmark_group("typed_hit/1_thread/user");
    g.throughput(Throughput::Elements(1));
    type Lookup<'a> = &'a dyn Fn(&str) -> u64;
    let cases: [(&str, Lookup<'_>); 4] = [
        ("swre_typed", &typed),
        ("swre_bytes", &bytes),
        ("moka_sync_arc", &|k| moka_sync.get(k).map_or(0, |u| u.id)),
        ("quick_cache_arc", &|k| quick.get(k).map_or(0, |u| u.id)),
    ];
    for (name, f) in cases {
        g.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(f(&keys[i]))
            })
        });
    }
    g.finish();
}

/// Runs `work(thread, ops)` on two persistent threads per sample and reports
/// wall time per operation over both (so throughput, not latency).
fn two_threads(b: &mut criterion::Bencher<'_>, work: impl Fn(usize, u64) + Sync) {
    let start = Barrier::new(3);
    let done = Barrier::new(3);
    let ops = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (start, done, ops, stop, work) = (&start, &done, &ops, &stop, &work);
            s.spawn(move || loop {
                start.wait();
                if stop.load(Ordering::Acquire) {
                    return;
                }
                work(t, ops.load(Ordering::Acquire));
                done.wait();
            });
        }
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(2);
            ops.store(per_thread, Ordering::Release);
            let t0 = Instant::now();
            start.wait();
            done.wait();
            t0.elapsed().mul_f64(iters as f64 / (2 * per_thread) as f64)
        });
        stop.store(true, Ordering::Release);
        start.wait();
    });
}

fn stale_hit(c: &mut Criterion) {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, SystemClock.now_ms());
    let keys = keys(KEYS);
    let v = Bytes::from(value(64));
    let fresh = stale_bench_engine(&rt);
    let stale = stale_bench_engine(&rt);
    for k in &keys {
        ready(fresh.set(k, v.clone())).unwrap();
    }
    make_stale(&stale, &rt, &keys, &v);
    assert_eq!(stale.stats().in_flight, KEYS as u64);
    let mut g = c.benchmark_group("stale_hit/refresh_in_flight/64B");
    g.throughput(Throughput::Elements(1));
    for (name, engine) in [("swre_fresh_hit", &fresh), ("swre_stale_hit", &stale)] {
        g.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % KEYS;
                let r =
                    ready(engine.get_or_fetch(&keys[i], || async { Ok::<_, Never>(Bytes::new()) }))
                        .unwrap();
                black_box(r.value.len())
            })
        });
    }
    g.finish();
    assert_eq!(
        stale.stats().refreshes_started,
        KEYS as u64,
        "no extra refresh started"
    );
}

const WAITERS: usize = 10_000;

fn stampede(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("stampede/10000_waiters");
    g.sample_size(10);
    g.throughput(Throughput::Elements(WAITERS as u64));
    let round = AtomicUsize::new(0);
    g.bench_function("swre", |b| {
        let engine = rt.block_on(async {
            Engine::builder(MemoryStorage::new(), TokioRuntime::new())
                .ttl(long_ttl())
                .build()
                .unwrap()
        });
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let key = format!("cold-{}", round.fetch_add(1, Ordering::Relaxed));
                let calls = Arc::new(AtomicUsize::new(0));
                let start = Instant::now();
                let results = rt.block_on(futures::future::join_all((0..WAITERS).map(|_| {
                    let calls = calls.clone();
                    engine.get_or_fetch(&key, move || async move {
                        calls.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        Ok::<_, Never>(&b"value"[..])
                    })
                })));
                total += start.elapsed();
                assert_eq!(
                    calls.load(Ordering::Relaxed),
                    1,
                    "exactly one upstream call"
                );
                assert!(results
                    .iter()
                    .all(|r| r.as_ref().is_ok_and(|c| &*c.value == b"value")));
            }
            total
        })
    });
    g.bench_function("moka_future_get_with", |b| {
        let cache: moka::future::Cache<String, Bytes> = moka::future::Cache::new(100_000);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let key = format!("cold-{}", round.fetch_add(1, Ordering::Relaxed));
                let calls = Arc::new(AtomicUsize::new(0));
                let start = Instant::now();
                let results = rt.block_on(futures::future::join_all((0..WAITERS).map(|_| {
                    let calls = calls.clone();
                    cache.get_with(key.clone(), async move {
                        calls.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        Bytes::from(&b"value"[..])
                    })
                })));
                total += start.elapsed();
                assert_eq!(calls.load(Ordering::Relaxed), 1);
                assert!(results.iter().all(|v| &**v == b"value"));
            }
            total
        })
    });
    g.finish();
}

fn codecs(c: &mut Criterion) {
    let rec: Record = record(1);
    let json_len = Json.encode(&rec).unwrap().len();
    type Encode = Box<dyn Fn(&Record) -> Vec<u8>>;
    type Decode = Box<dyn Fn(&[u8]) -> Record>;
    let codecs: [(&str, Encode, Decode); 3] = [
        (
            "postcard",
            Box::new(|r| Postcard.encode(r).unwrap()),
            Box::new(|b| Postcard.decode(b).unwrap()),
        ),
        (
            "json",
            Box::new(|r| Json.encode(r).unwrap()),
            Box::new(|b| Json.decode(b).unwrap()),
        ),
        (
            "compressed_json",
            Box::new(|r| Compressed::new(Json, 0).encode(r).unwrap()),
            Box::new(|b| Compressed::new(Json, 0).decode(b).unwrap()),
        ),
    ];
    let mut g = c.benchmark_group("codec/encode_1KiB_json_record");
    g.throughput(Throughput::Bytes(json_len as u64));
    for (name, enc, _) in &codecs {
        g.bench_function(*name, |b| b.iter(|| black_box(enc(black_box(&rec)))));
    }
    g.finish();
    let mut g = c.benchmark_group("codec/decode_1KiB_json_record");
    g.throughput(Throughput::Bytes(json_len as u64));
    for (name, enc, dec) in &codecs {
        let bytes = enc(&rec);
        assert_eq!(dec(&bytes), rec);
        g.bench_function(*name, |b| b.iter(|| black_box(dec(black_box(&bytes)))));
    }
    g.finish();
}

fn storage(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("swre-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = rt.block_on(FileStorage::open(&dir)).unwrap();
    let keys = keys(KEYS);
    let v = Bytes::from(value(1024));
    let entry = Entry::new(v.clone(), SystemClock.now_ms(), long_ttl());
    for k in &keys {
        rt.block_on(file.set(k, entry.clone())).unwrap();
    }
    let mut g = c.benchmark_group("file_storage/1KiB");
    g.bench_function("get", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(rt.block_on(file.get(&keys[i])).unwrap())
        })
    });
    g.bench_function("set", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            rt.block_on(file.set(&keys[i], entry.clone())).unwrap()
        })
    });
    g.finish();

    let tiered = rt.block_on(async {
        Engine::builder(
            Tiered::new(MemoryStorage::new(), file.clone()),
            TokioRuntime::new(),
        )
        .ttl(long_ttl())
        .build()
        .unwrap()
    });
    for k in &keys {
        rt.block_on(tiered.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }))
            .unwrap();
    }
    let mut g = c.benchmark_group("tiered/memory_over_file_hit/1KiB");
    g.bench_function(BenchmarkId::from_parameter("swre"), |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            let r = ready(tiered.get_or_fetch(&keys[i], || async { Ok::<_, Never>(Bytes::new()) }))
                .unwrap();
            black_box(r.value.len())
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, fresh_hit, typed_hit, stale_hit, stampede, codecs, storage);
criterion_main!(benches);
