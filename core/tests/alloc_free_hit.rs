#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
//! A fresh hit on `MemoryStorage` allocates nothing: a counting global
//! allocator watches the lookup on this thread.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use swre_core::testing::{TestExecutor, TestRuntime};
use swre_core::{CacheTtl, Engine, MemoryStorage, Status};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator unchanged; the
// thread-locals are const-initialised `Cell`s without destructors, so touching
// them cannot allocate or re-enter the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note() {
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATIONS.with(|a| a.get()))
}

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

/// An engine over memory on `exec`, whose values stay fresh for a minute.
fn engine_on(exec: &TestExecutor) -> Engine<MemoryStorage, TestRuntime> {
    let rt = TestRuntime::new(exec, 1_700_000_000_000);
    let minute = Duration::from_secs(60);
    Engine::builder(MemoryStorage::new(), rt)
        .ttl(CacheTtl::new(minute, minute, minute))
        .build()
        .unwrap()
}

#[test]
fn a_fresh_hit_allocates_nothing() {
    let exec = TestExecutor::new();
    let engine = engine_on(&exec);
    let value = vec![7u8; 4096];
    exec.block_on(engine.set("hot-key", value.clone())).unwrap();

    // The counter works: a miss allocates (key copy, flight, entry).
    let (_, miss_allocs) = allocations_during(|| {
        exec.block_on(engine.get_or_fetch("cold-key", || async { Ok::<_, Never>(&b"v"[..]) }))
    });
    assert!(miss_allocs > 0, "the counting allocator must see the miss");

    for _ in 0..3 {
        let (r, n) = allocations_during(|| {
            exec.block_on(
                engine.get_or_fetch("hot-key", || async { Ok::<_, Never>(&b"unused"[..]) }),
            )
        });
        let r = r.unwrap();
        assert_eq!(r.status, Status::Hit);
        assert_eq!(r.value.len(), 4096);
        assert_eq!(n, 0, "a fresh hit allocated {n} times");
    }
}

#[test]
fn a_fresh_typed_hit_allocates_nothing_and_decodes_nothing() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct User {
        id: u64,
        name: String,
        email: String,
        tags: Vec<String>,
        active: bool,
        score: f64,
    }
    let exec = TestExecutor::new();
    let engine = engine_on(&exec);
    let user = || User {
        id: 42,
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        tags: vec!["admin".into(), "math".into()],
        active: true,
        score: 99.5,
    };
    let first = exec
        .block_on(engine.get_or_fetch_as("user:42", move || async move { Ok::<_, Never>(user()) }))
        .unwrap();
    assert_eq!(first.status, Status::Miss);
    for _ in 0..3 {
        let (r, n) = allocations_during(|| {
            exec.block_on(
                engine.get_or_fetch_as::<User, _, _, _, Never>("user:42", || async {
                    unreachable!("a fresh hit does not fetch")
                }),
            )
        });
        let r = r.unwrap();
        assert_eq!(
            (r.status, r.value.name.as_str()),
            (Status::Hit, "Ada Lovelace")
        );
        assert!(
            std::sync::Arc::ptr_eq(&r.value, &first.value),
            "the hit decoded again instead of sharing the value"
        );
        assert_eq!(n, 0, "a fresh typed hit allocated {n} times");
    }
}
