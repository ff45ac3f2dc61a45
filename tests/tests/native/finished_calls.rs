//! A call that has handed out its value is over: a lookup that starts after
//! that, and after the value was removed from the store behind the engine's
//! back, reads the store again and calls upstream; it never joins the
//! finished call. Found by the conformance suite on a loaded machine, where
//! the call's task was descheduled between handing the value out and
//! leaving the flight table, and a later lookup got the removed value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swre_native::{Bytes, CacheTtl, Engine, MemoryStorage, Storage, TokioRuntime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_after_a_delete_from_the_store_never_gets_the_removed_value() {
    let hour = Duration::from_secs(3600);
    let storage = Arc::new(MemoryStorage::new());
    let engine = Engine::builder(storage.clone(), TokioRuntime::new())
        .ttl(CacheTtl::new(hour, hour, hour))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let key = "finished/key";
    for i in 0..10_000u64 {
        let fetched = calls.clone();
        let got = engine
            .get_or_fetch(key, move || async move {
                fetched.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from(i.to_le_bytes().to_vec()))
            })
            .await
            .unwrap();
        assert_eq!(
            &got.value[..],
            &i.to_le_bytes()[..],
            "iteration {i}: the fetched value"
        );
        // Behind the engine's back, as another process would.
        storage.delete(key).await.unwrap();
    }
    // Every lookup found the store empty: one upstream call each, none
    // answered by the call before it.
    assert_eq!(calls.load(Ordering::SeqCst), 10_000);
}
