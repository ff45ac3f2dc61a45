//! [`RefreshMarks`]: which stale entries have a background refresh running,
//! answered without a lock.
//!
//! A stale hit must not start a second refresh of its key ("one call per
//! key"), and finding that out in the [`FlightTable`](crate::flight::FlightTable)
//! takes a hash of the key, a shard lock and a probe — about 170 of the 495
//! instructions a stale hit cost (callgrind, `hitloop stale`). A background
//! refresh therefore also marks the entry it refreshes here: a small
//! direct-mapped table of (tag, deadline) slots, where the tag is a seeded
//! fingerprint of the key and the entry's `created_at`. A stale hit computes
//! the tag, and if its slot holds it with a deadline still ahead, serves the
//! value at once.
//!
//! The marks are a cache of the flight table, never an authority:
//! - A mark is set only by a background refresh just registered in the flight
//!   table, and cleared before that flight completes in any way (a result, a
//!   failure, an abandoned ticket, a takeover), so a lookup that sees a mark
//!   ran before the flight's value existed — as it would have with the probe.
//! - A flight that never completes stops counting at its deadline, where the
//!   probe takes it over ("one deadline per call").
//! - A missing mark (never set, overwritten by another key's in its slot)
//!   only sends the lookup to the flight table.
//! - Two different (key, `created_at`) pairs with one 64-bit tag are the only
//!   way a mark misleads: the other key's stale hit skips starting its refresh
//!   until the marked flight ends; a later stale hit starts it.
//!
//! The fail-safe throttle (`throttle.rs`) marks the entry whose refresh just
//! failed the same way, flagged as throttled, until its window ends: its
//! stale hits then skip the throttle's map as well. Its map stays the
//! authority; the mark only saves the lookup.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

use portable_atomic::AtomicU64;

use crate::key::{fingerprint, fold, K0, K1};

/// What a stale entry's mark says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// No mark: ask the flight table and the throttle.
    None,
    /// A refresh of it is running.
    Running,
    /// Its refresh failed a moment ago: no refresh until the window ends.
    Throttled,
}

/// The deadline word's top bit: the mark is the throttle's.
const THROTTLED: u64 = 1 << 63;

/// A slot's tag while a writer fills it: even, so never a tag (tags are
/// odd), and not 0 (empty).
const BUSY: u64 = 2;

/// Slots at least, and at most.
const MIN_SLOTS: usize = 64;
const MAX_SLOTS: usize = 8192;

/// One mark: a tag (0: none) and the deadline of the flight that set it.
#[derive(Default)]
struct Slot {
    tag: AtomicU64,
    deadline: AtomicU64,
}

/// The marks of one engine's running background refreshes; see the module docs.
pub(crate) struct RefreshMarks {
    slots: Box<[Slot]>,
    mask: usize,
    seed: u64,
}

impl RefreshMarks {
    /// Marks for about `refreshes` concurrent refreshes (two slots each,
    /// within 64..=8192), with tags seeded by `seed`.
    pub(crate) fn new(refreshes: usize, seed: u64) -> Self {
        let n = refreshes
            .saturating_mul(2)
            .clamp(MIN_SLOTS, MAX_SLOTS)
            .next_power_of_two();
        let slots: Vec<Slot> = (0..n).map(|_| Slot::default()).collect();
        Self {
            slots: slots.into_boxed_slice(),
            mask: n - 1,
            seed,
        }
    }

    /// The tag of `key`'s entry created at `created_at` (never 0).
    #[inline(always)]
    pub(crate) fn tag(&self, key: &str, created_at: u64) -> u64 {
        // The creation time goes through a multiply of its own: XORed into
        // the seed it cancelled against the key's bytes (keys differing in
        // one byte, written the right number of ms apart, shared a tag).
        fold(fingerprint(self.seed, key) ^ fold(created_at ^ K1, K0), K1) | 1
    }

    #[inline(always)]
    fn slot(&self, tag: u64) -> &Slot {
        // The low bit of every tag is set: index by the bits above it.
        &self.slots[(tag >> 1) as usize & self.mask]
    }

    /// What `tag`'s mark says at `now` (a mark past its deadline says nothing).
    #[inline(always)]
    pub(crate) fn state(&self, tag: u64, now: u64) -> Mark {
        let slot = self.slot(tag);
        // A seqlock read: the deadline belongs to the tag if the tag reads
        // the same before and after it.
        if slot.tag.load(Ordering::Acquire) != tag {
            return Mark::None;
        }
        let word = slot.deadline.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if slot.tag.load(Ordering::Relaxed) != tag || now >= word & !THROTTLED {
            return Mark::None;
        }
        if word & THROTTLED == 0 {
            Mark::Running
        } else {
            Mark::Throttled
        }
    }

    /// Marks `tag` as refreshing until `deadline`, in place of whatever its
    /// slot held.
    pub(crate) fn mark(&self, tag: u64, deadline: u64) {
        self.write(tag, deadline & !THROTTLED);
    }

    /// Marks `tag` as throttled until `until`.
    pub(crate) fn mark_throttled(&self, tag: u64, until: u64) {
        self.write(tag, (until & !THROTTLED) | THROTTLED);
    }

    fn write(&self, tag: u64, deadline: u64) {
        let slot = self.slot(tag);
        // Writers of one slot take turns (two at once could leave one's tag
        // with the other's deadline): claim it by marking it busy.
        let mut current = slot.tag.load(Ordering::Relaxed);
        loop {
            if current == BUSY {
                core::hint::spin_loop();
                current = slot.tag.load(Ordering::Relaxed);
                continue;
            }
            match slot.tag.compare_exchange_weak(
                current,
                BUSY,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        fence(Ordering::Release);
        slot.deadline.store(deadline, Ordering::Relaxed);
        slot.tag.store(tag, Ordering::Release);
    }

    /// Clears `tag`'s mark if its slot still holds it.
    pub(crate) fn clear(&self, tag: u64) {
        let _ = self
            .slot(tag)
            .tag
            .compare_exchange(tag, 0, Ordering::Release, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{Mark, RefreshMarks};
    use core::sync::atomic::fence;
    use portable_atomic::Ordering;

    #[test]
    fn a_mark_holds_until_cleared_or_its_deadline() {
        let m = RefreshMarks::new(10, 7);
        let t = m.tag("user:1", 1_000);
        assert_eq!(m.state(t, 0), Mark::None);
        m.mark(t, 5_000);
        assert_eq!(m.state(t, 4_999), Mark::Running);
        assert!(
            m.state(t, 5_000) == Mark::None,
            "past the deadline it stops counting"
        );
        m.clear(t);
        assert_eq!(m.state(t, 0), Mark::None);
    }

    #[test]
    fn tags_differ_by_key_and_by_creation_time() {
        let m = RefreshMarks::new(10, 7);
        let t = m.tag("user:00000001:profile", 1_000);
        assert_ne!(t, m.tag("user:00000002:profile", 1_000));
        assert_ne!(t, m.tag("user:00000001:profile", 1_001));
        assert_ne!(
            t,
            RefreshMarks::new(10, 8).tag("user:00000001:profile", 1_000)
        );
        m.mark(t, 5_000);
        assert_eq!(
            m.state(m.tag("user:00000001:profile", 1_001), 0),
            Mark::None
        );
    }

    #[test]
    fn keys_differing_in_one_byte_never_share_a_tag_whatever_their_write_times() {
        // The review's collision: 13 to 16-byte keys differing in bytes 4
        // to 7, written up to seconds apart.
        let m = RefreshMarks::new(10, 0x5eed);
        let mut seen = alloc::collections::BTreeSet::new();
        for byte in 4..8usize {
            for v in [b'a', b'b', b'c', b'z'] {
                let mut k = *b"abcdefghijklmnop";
                k[byte] = v;
                let k = core::str::from_utf8(&k).unwrap_or_default();
                for t in 0..2_500u64 {
                    assert!(
                        seen.insert(m.tag(k, 1_700_000_000_000 + t)),
                        "{k} at +{t} ms"
                    );
                }
            }
        }
    }

    #[test]
    fn clearing_another_tag_leaves_a_mark_alone() {
        let m = RefreshMarks::new(1, 7);
        let (a, b) = (m.tag("a", 1), m.tag("b", 1));
        m.mark(a, 10);
        m.clear(b);
        assert_eq!(m.state(a, 0), Mark::Running);
    }

    #[test]
    fn a_throttle_mark_reads_as_throttled_until_its_window_ends() {
        let m = RefreshMarks::new(10, 7);
        let t = m.tag("k", 1);
        m.mark_throttled(t, 9_000);
        assert_eq!(m.state(t, 8_999), Mark::Throttled);
        assert_eq!(m.state(t, 9_000), Mark::None);
        m.mark(t, 20_000);
        assert_eq!(
            m.state(t, 9_000),
            Mark::Running,
            "a refresh's mark replaces it"
        );
    }

    #[test]
    fn writers_on_one_slot_from_many_threads_leave_a_tag_with_its_own_deadline() {
        extern crate std;
        use alloc::sync::Arc;
        // One slot, four writers: each writes its tag with a deadline that
        // encodes it; a reader must never see a tag with another's deadline.
        let m = Arc::new(RefreshMarks::new(0, 1));
        let tags: alloc::vec::Vec<u64> = (0..4u64).map(|i| m.tag("k", i)).collect();
        let one_slot: alloc::vec::Vec<u64> = tags.iter().map(|t| (t & !0xfff) | 1).collect();
        let threads: alloc::vec::Vec<_> = one_slot
            .iter()
            .map(|&t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..500_000 {
                        m.mark(t, t >> 2);
                    }
                })
            })
            .collect();
        let slot = m.slot(one_slot[0]);
        for _ in 0..2_000_000 {
            // The seqlock read `state` makes: a tag read the same before and
            // after the deadline owns that deadline.
            let before = slot.tag.load(Ordering::Acquire);
            let deadline = slot.deadline.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let after = slot.tag.load(Ordering::Relaxed);
            if before == after && one_slot.contains(&before) {
                assert_eq!(
                    deadline,
                    before >> 2,
                    "a tag read with another writer's deadline"
                );
            }
        }
        for t in threads {
            t.join().expect("writer");
        }
        for &t in &one_slot {
            let slot = m.slot(t);
            let (tag, deadline) = (
                slot.tag.load(Ordering::Relaxed),
                slot.deadline.load(Ordering::Relaxed),
            );
            if tag == t {
                assert_eq!(deadline, t >> 2, "a tag with another writer's deadline");
            }
        }
    }
}
