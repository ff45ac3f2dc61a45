#![allow(missing_docs, clippy::std_instead_of_core)]
use std::hint::black_box;
use swre_benches::{keys, ready, value, Never};
use swre_native::{Bytes, Engine, MemoryStorage, TokioRuntime};
fn main() {
    let e = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
        .build()
        .unwrap();
    let keys = keys(1000);
    let v = Bytes::from(value(64));
    for k in &keys {
        ready(e.set(k, v.clone())).unwrap();
    }
    let raw = std::env::args().nth(1).is_some();
    let mut n = 0usize;
    for i in 0..2_000_000usize {
        let k = &keys[i % 1000];
        n += if raw {
            e.storage().get_now(k).map(|x| x.value.len()).unwrap_or(0)
        } else {
            ready(e.get_or_fetch(k, || async { Ok::<_, Never>(Bytes::new()) }))
                .unwrap()
                .value
                .len()
        };
    }
    black_box(n);
}
