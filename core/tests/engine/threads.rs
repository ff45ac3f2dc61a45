//! Singleflight across OS threads: callers on many threads, tasks spawned on
//! their own threads, exactly one upstream call.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use swre_core::testing::ManualTimer;
use swre_core::{Clock, Engine, ManualClock, MemoryStorage, Spawn, Status, Timer};

use crate::common::*;

/// A runtime whose every task runs on a thread of its own.
#[derive(Clone)]
struct ThreadRuntime {
    clock: ManualClock,
    timer: ManualTimer,
}

impl Clock for ThreadRuntime {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

impl Timer for ThreadRuntime {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.timer.sleep(d)
    }
}

impl Spawn for ThreadRuntime {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        std::thread::spawn(move || futures::executor::block_on(task));
    }
}

#[test]
fn callers_on_eight_threads_share_one_upstream_call() {
    for round in 0..5 {
        let rt = ThreadRuntime {
            clock: ManualClock::new(START),
            timer: ManualTimer::new(),
        };
        let engine = Engine::builder(MemoryStorage::new(), rt)
            .ttl(ttl())
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let engine = engine.clone();
                let calls = calls.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let lookups = (0..25).map(|_| {
                        let calls = calls.clone();
                        engine.get_or_fetch("cold", move || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            Ok::<_, Boom>("value")
                        })
                    });
                    futures::executor::block_on(futures::future::join_all(lookups))
                })
            })
            .collect();
        let mut answered = 0;
        for t in threads {
            for r in t.join().expect("caller thread") {
                let r = r.expect("every caller gets the value");
                assert_eq!(&*r.value, b"value");
                assert!(matches!(r.status, Status::Miss | Status::Hit));
                answered += 1;
            }
        }
        assert_eq!(answered, 200);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "round {round}: exactly one upstream call"
        );
    }
}

/// A typed value, tagged with its key and a version its one writer raises.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Versioned {
    key: u32,
    version: u64,
    pad: String,
}

/// The same encoding read as a second type.
type AsTuple = (u32, u64, String);

/// Version 0: a value the upstream fetched, not one a writer wrote.
const FETCHED: u64 = 0;

#[test]
fn typed_lookups_on_many_threads_match_the_bytes_around_them() {
    use swre_core::storage::memory::MemoryLimits;
    use swre_core::{Codec, Postcard};
    const KEYS: u32 = 48;
    const WRITERS: u32 = 2;
    let rt = ThreadRuntime {
        clock: ManualClock::new(START),
        timer: ManualTimer::new(),
    };
    // A store and a tier too small for the keys: both evict all the time.
    let store = MemoryStorage::with_limits(MemoryLimits {
        max_bytes: usize::MAX / 2,
        max_entries: 32,
        shards: 1,
    });
    let engine = Engine::builder(store, rt)
        .ttl(ttl())
        .decoded_values(12, 12 * 200)
        .build()
        .unwrap();
    let versions: Arc<Vec<AtomicUsize>> =
        Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let decode = |b: &[u8]| -> Versioned { Postcard.decode(b).expect("stored bytes decode") };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (engine, versions, stop) = (engine.clone(), versions.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Each key has one writer: its versions only rise.
                    let key = (n as u32 * 7 + w) % KEYS;
                    if key % WRITERS != w {
                        continue;
                    }
                    let name = format!("k{key}");
                    if n.is_multiple_of(11) {
                        futures::executor::block_on(engine.invalidate(&name)).unwrap();
                        continue;
                    }
                    let version = versions[key as usize].fetch_add(1, Ordering::SeqCst) as u64 + 1;
                    let v = Versioned {
                        key,
                        version,
                        pad: "p".repeat((version % 40) as usize),
                    };
                    futures::executor::block_on(engine.set_as(&name, &v)).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut x = (r + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut checked = 0u64;
                for _ in 0..40_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = (x % KEYS as u64) as u32;
                    let name = format!("k{key}");
                    let before = futures::executor::block_on(engine.peek(&name))
                        .unwrap()
                        .map(|c| decode(&c.value).version);
                    let typed: (u32, u64) = match (x >> 20) % 3 {
                        0 => {
                            let Some(c) =
                                futures::executor::block_on(engine.peek_as::<Versioned>(&name))
                                    .unwrap()
                            else {
                                continue;
                            };
                            (c.value.key, c.value.version)
                        }
                        1 => {
                            let Some(c) =
                                futures::executor::block_on(engine.peek_as::<AsTuple>(&name))
                                    .unwrap()
                            else {
                                continue;
                            };
                            (c.value.0, c.value.1)
                        }
                        _ => {
                            let c = futures::executor::block_on(engine.get_or_fetch_as(
                                &name,
                                move || async move {
                                    Ok::<_, Boom>(Versioned {
                                        key,
                                        version: FETCHED,
                                        pad: String::new(),
                                    })
                                },
                            ))
                            .unwrap();
                            (c.value.key, c.value.version)
                        }
                    };
                    let after = futures::executor::block_on(engine.peek(&name))
                        .unwrap()
                        .map(|c| decode(&c.value).version);
                    assert_eq!(
                        typed.0, key,
                        "a typed lookup of {name} returned another key's value"
                    );
                    if typed.1 != FETCHED {
                        if let Some(b) = before.filter(|&b| b != FETCHED) {
                            assert!(typed.1 >= b, "{name}: typed v{} after bytes v{b}", typed.1);
                        }
                        if let Some(a) = after.filter(|&a| a != FETCHED) {
                            assert!(a >= typed.1, "{name}: bytes v{a} after typed v{}", typed.1);
                        }
                    }
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    let checked: u64 = readers.into_iter().map(|t| t.join().expect("reader")).sum();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    assert!(checked > 10_000, "only {checked} typed lookups checked");
}
