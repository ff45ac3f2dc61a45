#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    clippy::cast_precision_loss
)]
//! `MemoryStorage` charges each entry what the heap really spends on it,
//! within 20 %: a global allocator here tallies the blocks live at each
//! moment, each as glibc's allocator sizes it (the request plus an 8-byte
//! header, rounded up to 16, at least 32), and the test compares the growth
//! of that tally with the growth of `bytes()` as entries are added, and after
//! churn under the limits.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use swre_core::storage::memory::MemoryLimits;
use swre_core::{CacheTtl, Entry, MemoryStorage};

struct Tally;

static LIVE: AtomicIsize = AtomicIsize::new(0);

fn block(size: usize) -> isize {
    let chunk = (size + 8 + 15) & !15;
    chunk.max(32) as isize
}

// SAFETY: every method forwards to the system allocator unchanged and only
// adds to or subtracts from an atomic counter.
unsafe impl GlobalAlloc for Tally {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(block(layout.size()), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(block(layout.size()), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(block(layout.size()), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(block(new_size) - block(layout.size()), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tally = Tally;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn entry(value_len: usize) -> Entry {
    let day = Duration::from_secs(86_400);
    Entry::new(vec![7u8; value_len], 0, CacheTtl::new(day, day, day))
}

/// Heap spent per charged byte after `n` inserts of the given shape.
fn spent_per_charged(
    store: &MemoryStorage,
    first: usize,
    n: usize,
    key_pad: usize,
    value_len: usize,
) -> f64 {
    let before = (live(), store.bytes());
    for i in first..first + n {
        let key = format!("{i:0key_pad$}");
        store.set_now(&key, entry(value_len)).expect("fits");
    }
    let spent = (live() - before.0) as f64;
    let charged = store.bytes() as f64 - before.1 as f64;
    spent / charged
}

// One test in this binary, so no other test's allocations are tallied.
#[test]
fn the_charge_per_entry_is_what_the_heap_spends_within_a_fifth() {
    let mut report = Vec::new();
    for (key_pad, value_len) in [(4, 0), (6, 8), (12, 40), (32, 1_000)] {
        // Growing: several sizes, so the slab, table and heap are caught at
        // every point of their growth.
        for n in [1_000, 1_500, 2_048, 3_000, 5_000, 20_000] {
            let store = MemoryStorage::with_limits(MemoryLimits {
                max_bytes: usize::MAX / 2,
                max_entries: 1_000_000,
                shards: 1,
            });
            let r = spent_per_charged(&store, 0, n, key_pad, value_len);
            report.push(format!(
                "key {key_pad} B, value {value_len} B, {n} entries: {r:.3}"
            ));
            assert!(
                (0.8..=1.2).contains(&r),
                "key {key_pad} B, value {value_len} B, {n} entries: the heap spends {r:.3}× what is charged"
            );
        }
        // Full and churning: the store at its entry limit, then as many
        // again replaced by eviction (the admission sketch now exists).
        let store = MemoryStorage::with_limits(MemoryLimits {
            max_bytes: usize::MAX / 2,
            max_entries: 4_000,
            shards: 4,
        });
        let base = live();
        spent_per_charged(&store, 0, 4_000, key_pad, value_len);
        spent_per_charged(&store, 4_000, 8_000, key_pad, value_len);
        let r = (live() - base) as f64 / store.bytes() as f64;
        report.push(format!(
            "key {key_pad} B, value {value_len} B, full after churn: {r:.3}"
        ));
        assert!(
            (0.8..=1.2).contains(&r),
            "key {key_pad} B, value {value_len} B, full after churn: the heap spends {r:.3}× what is charged"
        );
    }
    eprintln!("{}", report.join("\n"));
}
