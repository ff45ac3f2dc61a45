//! Fault injection: a storage that fails 30% of reads and writes and adds
//! latency. Every one of 10,000 mixed lookups that upstream can answer is
//! answered, and Stats counts every injected fault exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use swre_native::{
    CacheTtl, Engine, Entry, ManualClock, MemoryStorage, Status, Storage, StorageError,
    StorageErrorKind, TokioRuntime,
};

use crate::common::Boom;

/// Wraps a store: fails a share of reads and writes and sleeps before each
/// operation, from a seeded generator (reproducible).
struct Flaky {
    inner: MemoryStorage,
    per_mille: u64,
    rng: Mutex<u64>,
    read_faults: AtomicU64,
    write_faults: AtomicU64,
}

impl Flaky {
    fn roll(&self) -> (bool, Duration) {
        let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (
            *x % 1000 < self.per_mille,
            Duration::from_micros((*x >> 20) % 800),
        )
    }
}

fn injected(op: &str) -> StorageError {
    StorageError::new(
        StorageErrorKind::Unavailable,
        format!("injected {op} fault"),
    )
}

impl Storage for Flaky {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let (fail, delay) = self.roll();
        tokio::time::sleep(delay).await;
        if fail {
            self.read_faults.fetch_add(1, Ordering::SeqCst);
            return Err(injected("read"));
        }
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let (fail, delay) = self.roll();
        tokio::time::sleep(delay).await;
        if fail {
            self.write_faults.fetch_add(1, Ordering::SeqCst);
            return Err(injected("write"));
        }
        self.inner.set(key, entry).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }

    // Faults are injected into the engine's own reads and writes, which it
    // counts; the store's internal cleanup read is the inner store's.
    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        self.inner.remove_older(key, written).await
    }
}

#[tokio::test(start_paused = true)]
async fn thirty_percent_storage_faults_never_fail_a_lookup_and_are_all_counted() {
    let clock = ManualClock::new(1_700_000_000_000);
    let storage = Flaky {
        inner: MemoryStorage::new(),
        per_mille: 300,
        rng: Mutex::new(0x2545_F491_4F6C_DD1D),
        read_faults: AtomicU64::new(0),
        write_faults: AtomicU64::new(0),
    };
    let engine = Engine::builder(storage, TokioRuntime::with_clock(clock.clone()))
        .ttl(CacheTtl::new(
            Duration::from_secs(5),
            Duration::from_secs(10),
            Duration::from_secs(30),
        ))
        .build()
        .unwrap();
    let mut answered = 0;
    let mut statuses = [0usize; 5];
    for batch in 0..100u64 {
        let lookups = (0..100u64).map(|i| {
            let key = format!("k{}", (batch * 37 + i * 13) % 400);
            let engine = engine.clone();
            let value = format!("value of {key}");
            async move {
                engine
                    .get_or_fetch(&key, move || async move { Ok::<_, Boom>(value) })
                    .await
            }
        });
        for r in futures::future::join_all(lookups).await {
            let c = r.expect("upstream can always answer, so every lookup is answered");
            statuses[Status::ALL.iter().position(|s| *s == c.status).unwrap_or(0)] += 1;
            answered += 1;
        }
        clock.advance(Duration::from_secs(2));
    }
    crate::common::settle(&engine).await;
    assert_eq!(answered, 10_000);
    let s = engine.stats();
    let store = engine.storage();
    let (reads, writes) = (
        store.read_faults.load(Ordering::SeqCst),
        store.write_faults.load(Ordering::SeqCst),
    );
    assert!(
        reads > 1_000 && writes > 100,
        "faults were injected: {reads} reads, {writes} writes"
    );
    assert_eq!(s.storage_read_errors, reads, "every read fault counted");
    assert_eq!(s.storage_write_errors, writes, "every write fault counted");
    assert_eq!(s.errors, 0);
    assert!(
        statuses[0] > 0 && statuses[2] > 0,
        "hits and misses both happened: {statuses:?}"
    );
}
