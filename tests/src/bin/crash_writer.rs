//! Writes entries into a FileStorage directory in a loop until killed.
//! Used by the crash test; prints `ready` after its first write.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::io::Write;
use std::time::Duration;

use swre_native::{CacheTtl, Clock, Entry, FileStorage, Storage, SystemClock};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: crash_writer DIR START_ROUND")?;
    let start: u64 = std::env::args()
        .nth(2)
        .ok_or("missing START_ROUND")?
        .parse()?;
    let storage = FileStorage::open(&dir).await?;
    let ttl = CacheTtl::new(
        Duration::from_secs(3600),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    let mut i = start;
    loop {
        // Several writers at once, some on the same key.
        let mut writes = Vec::new();
        for _ in 0..4 {
            let key = format!("k{}", i % 40);
            let entry = Entry::new(swre_tests::crash_value(&key, i), SystemClock.now_ms(), ttl);
            let s = storage.clone();
            writes.push(tokio::spawn(async move { s.set(&key, entry).await }));
            i += 1;
        }
        for w in writes {
            w.await??;
        }
        if i == start + 4 {
            println!("ready");
            std::io::stdout().flush()?;
        }
    }
}
