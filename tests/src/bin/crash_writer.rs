//! Writes entries into a FileStorage directory in a loop until killed.
//! Used by the crash test. Usage: `crash_writer DIR START ID`.
//!
//! Writes keys `p<ID>-k0..k39` (this writer's own) and `s0..s7` (shared with
//! the other writer), four at a time, with the values of
//! `swre_tests::crash_value`. Prints `ready` after its first batch, then
//! `ack <key> <i>` once the write of round `i` to one of its own keys has
//! returned. Exits non-zero if any write fails.

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
    let mut args = std::env::args().skip(1);
    let usage = "usage: crash_writer DIR START ID";
    let dir = args.next().ok_or(usage)?;
    let start: u64 = args.next().ok_or(usage)?.parse()?;
    let id: u64 = args.next().ok_or(usage)?.parse()?;
    let storage = FileStorage::open(&dir).await?;
    let ttl = CacheTtl::new(
        Duration::from_secs(3600),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    let mut i = start;
    let mut out = std::io::stdout();
    loop {
        // Several writes at once: three of this writer's keys and one shared.
        let mut writes = Vec::new();
        for n in 0..4 {
            let key = if n == 3 {
                format!("s{}", i % 8)
            } else {
                format!("p{id}-k{}", (i / 4 * 3 + n) % 40)
            };
            let entry = Entry::new(swre_tests::crash_value(&key, i), SystemClock.now_ms(), ttl);
            let s = storage.clone();
            writes.push(tokio::spawn(async move {
                s.set(&key, entry).await.map(|()| (key, i))
            }));
            i += 1;
        }
        let mut acks = String::new();
        for w in writes {
            let (key, round) = w.await??;
            if !key.starts_with('s') {
                acks.push_str(&format!("ack {key} {round}\n"));
            }
        }
        if i == start + 4 {
            acks.insert_str(0, "ready\n");
        }
        out.write_all(acks.as_bytes())?;
        out.flush()?;
    }
}
