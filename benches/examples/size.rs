#![allow(missing_docs, clippy::std_instead_of_core)]
use swre_benches::Never;
use swre_native::{Bytes, Engine, MemoryStorage, TokioRuntime};
fn main() {
    let e = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
        .build()
        .unwrap();
    let f = e.get_or_fetch("k", || async { Ok::<_, Never>(Bytes::new()) });
    println!("get_or_fetch future: {} bytes", std::mem::size_of_val(&f));
    let p = e.peek("k");
    println!("peek future: {} bytes", std::mem::size_of_val(&p));
}
