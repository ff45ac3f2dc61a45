#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
//! The decoded-value tier against the memory it really holds: a global
//! allocator counts live heap bytes on this thread.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use swre_core::testing::{TestExecutor, TestRuntime};
use swre_core::{Bytes, CacheTtl, Engine, Entry, MemoryStorage, Storage, StorageError};

struct Live;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread (each test runs its
    /// engine on its own thread, so tests do not see each other's heap).
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged, counting sizes in a
// const-initialised thread-local `Cell` (no destructor, never allocates).
unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Live = Live;

/// A store that, like `FileStorage`, hands out a new allocation per read.
struct Copying(MemoryStorage);

impl Storage for Copying {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self.0.get_now(key).map(|mut e| {
            e.value = Bytes::copy_from_slice(&e.value);
            e
        }))
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.0.set_now(key, entry)
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.delete_now(key);
        Ok(())
    }
}

#[test]
fn typed_hits_on_a_copying_store_leave_nothing_behind() {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, 1_700_000_000_000);
    let ttl = CacheTtl::new(
        Duration::from_secs(60),
        Duration::from_secs(60),
        Duration::from_secs(60),
    );
    // Default tier limits (10,000 values, 32 MiB).
    let engine = Engine::builder(Copying(MemoryStorage::new()), rt)
        .ttl(ttl)
        .build()
        .unwrap();
    exec.block_on(engine.set_as("k", &"v".repeat(1_000)))
        .unwrap();
    exec.run_until_stalled();
    let before = live();
    for _ in 0..20_000 {
        let r = exec
            .block_on(engine.peek_as::<String>("k"))
            .unwrap()
            .unwrap();
        assert_eq!(r.value.len(), 1_000);
    }
    let held = live() - before;
    assert!(
        held <= 64 << 10,
        "one key read 20,000 times leaves {} KiB of decoded values no lookup can find again",
        held >> 10
    );
}
