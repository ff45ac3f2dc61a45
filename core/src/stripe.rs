//! Which of several cache-line-padded slots the calling thread should use.
//!
//! Counters and reader counts that every thread writes are spread over slots
//! so that two threads rarely write the same cache line. `no_std` has no
//! thread-locals or thread ids, so the slot is chosen from the address of the
//! caller's stack frame: threads run on stacks megabytes apart, so the address
//! above 64 KiB granularity tells them apart cheaply. Two threads may share a
//! slot by chance, and one thread may move to another slot as its stack grows;
//! users of this function stay correct either way (each slot is an atomic, and
//! a reader remembers the slot it took), only slower.

/// A slot index below `n` (a power of two, at most 256) for the calling thread.
#[inline(always)]
pub(crate) fn stripe(n: usize) -> usize {
    debug_assert!(n.is_power_of_two() && n <= 256);
    let marker = 0u8;
    let addr = core::ptr::addr_of!(marker) as usize as u64;
    // Fibonacci hashing: the top bits of the product are the well-mixed ones.
    let mixed = (addr >> 16).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
    mixed as usize & (n - 1)
}

/// One stripe's atomic, alone on its cache lines (128 bytes: adjacent-line
/// prefetchers pull lines in pairs), so threads on different stripes never
/// write the same line.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded(pub(crate) portable_atomic::AtomicU64);
