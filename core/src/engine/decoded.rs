//! The decoded-value tier: typed hits without a decode per hit.
//!
//! A typed lookup reads the stored entry as bytes, as every lookup does, and
//! then looks the *allocation* of those bytes up here: if it was decoded
//! before, as the same type, the hit is a reference-count bump on the
//! decoded value. The tier is keyed by the bytes' identity (their address),
//! and each slot holds a handle on the bytes it was decoded from, so an
//! address is never reused while its slot lives. It is therefore coherent by
//! construction: a write, invalidation, refresh or eviction changes or drops
//! the bytes the store holds, the next lookup finds other bytes (or none), and
//! decodes them. It is a cache of decodes, never a second source of truth.
//!
//! Bounded by entries and by bytes (each slot charged its value's size, its
//! source's length and a fixed overhead); when full, slots whose source the
//! store no longer holds (this tier holds the only handle) go first, then a
//! CLOCK hand spares slots read since it last passed.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, Ordering};

use hashbrown::hash_table::HashTable;

use crate::bytes::Bytes;
use crate::error::CodecError;
use crate::storage::memory::lock::ShardLock;

/// A decoded value of some type.
type AnyValue = Arc<dyn Any + Send + Sync>;

/// Bytes charged per slot beside the value's size and its source's length.
const SLOT_OVERHEAD: usize = 96;

/// Slots the hand looks at for an orphan before it evicts a live one.
const LOOK_AHEAD: usize = 32;

/// Limits of the decoded-value tier (see `EngineBuilder::decoded_values`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecodedLimits {
    pub(crate) max_entries: usize,
    pub(crate) max_bytes: usize,
}

/// Decoded values by the identity of the bytes they were decoded from.
pub(crate) struct Decoded {
    shards: Box<[ShardLock<Slots>]>,
    mask: usize,
}

struct Slot {
    /// Keeps the source's address from being reused while the slot lives.
    source: Bytes,
    value: AnyValue,
    charge: usize,
    visited: AtomicBool,
}

#[derive(Default)]
struct Slots {
    /// (source address, slab index): probes compare addresses without
    /// touching the slab.
    table: HashTable<(usize, u32)>,
    slab: Vec<Option<Slot>>,
    free: Vec<u32>,
    hand: usize,
    len: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

/// Spreads an address over 64 bits (addresses share their low bits).
#[inline(always)]
fn mix(addr: usize) -> u64 {
    (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn addr_of(slab: &[Option<Slot>], i: u32) -> Option<usize> {
    slab.get(i as usize)?.as_ref()?.source.addr()
}

impl Decoded {
    pub(crate) fn new(limits: DecodedLimits) -> Self {
        let mut n = 16;
        while n > 1 && limits.max_entries / n < 64 {
            n /= 2;
        }
        let share = |total: usize, i: usize| total / n + usize::from(i < total % n);
        let shards = (0..n)
            .map(|i| {
                ShardLock::new(Slots {
                    max_entries: share(limits.max_entries, i),
                    max_bytes: share(limits.max_bytes, i),
                    ..Slots::default()
                })
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self {
            shards,
            mask: n - 1,
        }
    }

    #[inline(always)]
    fn shard(&self, hash: u64) -> &ShardLock<Slots> {
        &self.shards[(hash >> 40) as usize & self.mask]
    }

    /// `source` decoded as `V`: the value decoded before from these very
    /// bytes, or `decode()`, kept for the next time.
    #[inline]
    pub(crate) fn get_or_decode<V: Any + Send + Sync>(
        &self,
        source: &Bytes,
        decode: impl FnOnce() -> Result<V, CodecError>,
    ) -> Result<Arc<V>, CodecError> {
        let Some(addr) = source.addr() else {
            return decode().map(Arc::new);
        };
        let hash = mix(addr);
        let shard = self.shard(hash);
        {
            let slots = shard.read();
            if let Some(&(_, i)) = slots.table.find(hash, |&(a, _)| a == addr) {
                if let Some(slot) = slots.slab.get(i as usize).and_then(Option::as_ref) {
                    // Another type's value: dropped again, decoded below.
                    if let Ok(value) = slot.value.clone().downcast::<V>() {
                        if !slot.visited.load(Ordering::Relaxed) {
                            slot.visited.store(true, Ordering::Relaxed);
                        }
                        return Ok(value);
                    }
                }
            }
        }
        let value = Arc::new(decode()?);
        let charge = core::mem::size_of::<V>() + source.len() + SLOT_OVERHEAD;
        shard
            .write()
            .insert(hash, addr, source, value.clone(), charge);
        Ok(value)
    }

    /// Slots held, over all shards.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len).sum()
    }
}

impl Slots {
    fn insert(&mut self, hash: u64, addr: usize, source: &Bytes, value: AnyValue, charge: usize) {
        if self.max_entries == 0 || charge > self.max_bytes {
            return;
        }
        if let Some(&(_, i)) = self.table.find(hash, |&(a, _)| a == addr) {
            // Decoded as another type before (or by a racing lookup): the
            // latest type wins the slot.
            if let Some(slot) = self.slab.get_mut(i as usize).and_then(Option::as_mut) {
                self.bytes = self.bytes - slot.charge + charge;
                slot.value = value;
                slot.charge = charge;
            }
            self.make_room(i);
            return;
        }
        self.len += 1;
        self.bytes += charge;
        let slot = Slot {
            source: source.clone(),
            value,
            charge,
            visited: AtomicBool::new(false),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(slot);
                i
            }
            None => {
                self.slab.push(Some(slot));
                (self.slab.len() - 1) as u32
            }
        };
        self.table.insert_unique(hash, (addr, i), |&(a, _)| mix(a));
        self.make_room(i);
    }

    /// Drops slots until within the limits, sparing `keep`: an orphan (its
    /// source no longer held by the store) at once; a live slot read since
    /// the hand last passed is spared once; an unread live slot goes only
    /// if no orphan turns up in the next [`LOOK_AHEAD`] slots.
    fn make_room(&mut self, keep: u32) {
        let mut steps = 3 * self.slab.len() + 3;
        let mut victim: Option<u32> = None;
        let mut looked = 0;
        while self.len > self.max_entries || self.bytes > self.max_bytes {
            if steps == 0 || self.slab.is_empty() {
                match victim.take() {
                    Some(v) => {
                        self.remove(v);
                        continue;
                    }
                    None => return,
                }
            }
            steps -= 1;
            self.hand = (self.hand + 1) % self.slab.len();
            let i = self.hand as u32;
            let Some(slot) = self.slab[self.hand].as_ref() else {
                continue;
            };
            if i == keep || Some(i) == victim {
                continue;
            }
            if slot.source.is_unique() {
                self.remove(i);
                continue;
            }
            if slot.visited.swap(false, Ordering::Relaxed) {
                continue;
            }
            victim.get_or_insert(i);
            looked += 1;
            if looked >= LOOK_AHEAD {
                looked = 0;
                if let Some(v) = victim.take() {
                    self.remove(v);
                }
            }
        }
    }

    fn remove(&mut self, i: u32) {
        let Some(addr) = addr_of(&self.slab, i) else {
            return;
        };
        if let Ok(found) = self.table.find_entry(mix(addr), |&(_, j)| j == i) {
            found.remove();
        }
        if let Some(slot) = self.slab.get_mut(i as usize).and_then(Option::take) {
            self.len -= 1;
            self.bytes -= slot.charge;
            self.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn tier(max_entries: usize) -> Decoded {
        Decoded::new(DecodedLimits {
            max_entries,
            max_bytes: usize::MAX / 2,
        })
    }

    fn decode_count(calls: &core::cell::Cell<u32>, v: &'static str) -> Result<String, CodecError> {
        calls.set(calls.get() + 1);
        Ok(String::from(v))
    }

    #[test]
    fn the_same_bytes_decode_once_other_bytes_again() {
        let t = tier(100);
        let calls = core::cell::Cell::new(0);
        let a = Bytes::from("a");
        let first = t.get_or_decode(&a, || decode_count(&calls, "A")).unwrap();
        let again = t
            .get_or_decode(&a.clone(), || decode_count(&calls, "X"))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(calls.get(), 1);
        // Equal contents in another allocation (a rewrite): decoded anew.
        let b = Bytes::from("a");
        let other = t.get_or_decode(&b, || decode_count(&calls, "B")).unwrap();
        assert_eq!((other.as_str(), calls.get()), ("B", 2));
    }

    #[test]
    fn another_type_is_decoded_not_confused() {
        let t = tier(100);
        let a = Bytes::from("7");
        let s = t.get_or_decode(&a, || Ok(String::from("7"))).unwrap();
        let n = t.get_or_decode(&a, || Ok(7u32)).unwrap();
        assert_eq!((s.as_str(), *n), ("7", 7));
        let n2 = t.get_or_decode(&a, || Ok(8u32)).unwrap();
        assert_eq!(*n2, 7, "the u32 decode is kept");
    }

    #[test]
    fn the_limits_hold_and_orphans_go_first() {
        let t = tier(64);
        let kept: Vec<Bytes> = (0..16)
            .map(|i| Bytes::from(alloc::format!("kept{i}")))
            .collect();
        for b in &kept {
            t.get_or_decode(b, || Ok(1u8)).unwrap();
        }
        // Bytes dropped right after their decode: their slots are orphans.
        for i in 0..1_000 {
            let b = Bytes::from(alloc::format!("gone{i}"));
            t.get_or_decode(&b, || Ok(2u8)).unwrap();
            assert!(t.len() <= 64);
        }
        let calls = core::cell::Cell::new(0);
        for b in &kept {
            t.get_or_decode(b, || {
                calls.set(calls.get() + 1);
                Ok(1u8)
            })
            .unwrap();
        }
        assert_eq!(
            calls.get(),
            0,
            "values whose bytes live were evicted before orphans"
        );
    }

    #[test]
    fn zero_entries_turns_the_tier_off() {
        let t = tier(0);
        let a = Bytes::from("a");
        let calls = core::cell::Cell::new(0);
        t.get_or_decode(&a, || decode_count(&calls, "A")).unwrap();
        t.get_or_decode(&a, || decode_count(&calls, "A")).unwrap();
        assert_eq!((calls.get(), t.len()), (2, 0));
    }
}
