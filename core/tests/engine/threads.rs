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
