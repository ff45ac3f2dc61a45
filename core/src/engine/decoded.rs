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

/// The address a held slot is keyed by (`Some(None)` for empty bytes).
fn addr_of(slab: &[Option<Slot>], i: u32) -> Option<Option<usize>> {
    Some(slab.get(i as usize)?.as_ref()?.source.addr())
}

impl Decoded {
    pub(crate) fn new(limits: DecodedLimits) -> Self {
        // Like MemoryStorage: each shard keeps at least 64 values and 4 MiB,
        // so a value well under the total budget fits a shard's.
        let mut n = 16;
        while n > 1 && (limits.max_entries / n < 64 || limits.max_bytes / n < (4 << 20)) {
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
        // Every empty byte string has the same contents: one slot (address
        // 0) per type serves them all.
        let addr = source.addr().unwrap_or(0);
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
        if addr != 0 && source.is_unique() {
            // Nothing else holds these bytes (a store that copies on every
            // read, such as files or Redis): no later lookup can find them.
            return Ok(value);
        }
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
    /// if no orphan turns up in the next [`LOOK_AHEAD`] slots. Once the
    /// hand has gone round three times, any slot but `keep` goes: the limits
    /// always hold.
    fn make_room(&mut self, keep: u32) {
        let mut steps = 3 * self.slab.len() + 3;
        let mut victim: Option<u32> = None;
        let mut looked = 0;
        while self.over_limits() && !self.slab.is_empty() {
            if steps == 0 {
                let next = victim.take().or_else(|| self.any_but(keep));
                match next {
                    Some(v) => {
                        self.remove(v);
                        continue;
                    }
                    None => return, // only `keep`, which fits on its own
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
            if slot.source.addr().is_some() && slot.source.is_unique() {
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

    fn over_limits(&self) -> bool {
        self.len > self.max_entries || self.bytes > self.max_bytes
    }

    /// Some held slot other than `keep`.
    fn any_but(&self, keep: u32) -> Option<u32> {
        self.slab
            .iter()
            .enumerate()
            .find(|(i, s)| s.is_some() && *i as u32 != keep)
            .map(|(i, _)| i as u32)
    }

    fn remove(&mut self, i: u32) {
        let Some(addr) = addr_of(&self.slab, i) else {
            return;
        };
        let addr = addr.unwrap_or(0);
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
        let _held_by_the_store = a.clone();
        let first = t.get_or_decode(&a, || decode_count(&calls, "A")).unwrap();
        let again = t
            .get_or_decode(&a.clone(), || decode_count(&calls, "X"))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(calls.get(), 1);
        // Equal contents in another allocation (a rewrite): decoded anew.
        let b = Bytes::from("a");
        let _held_too = b.clone();
        let other = t.get_or_decode(&b, || decode_count(&calls, "B")).unwrap();
        assert_eq!((other.as_str(), calls.get()), ("B", 2));
    }

    #[test]
    fn another_type_is_decoded_not_confused() {
        let t = tier(100);
        let a = Bytes::from("7");
        let _held_by_the_store = a.clone();
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
        let _held_by_the_store = kept.clone();
        for b in &kept {
            t.get_or_decode(b, || Ok(1u8)).unwrap();
        }
        // Bytes the store drops right after the decode: their slots become
        // orphans.
        for i in 0..1_000 {
            let b = Bytes::from(alloc::format!("gone{i}"));
            let store = b.clone();
            t.get_or_decode(&b, || Ok(2u8)).unwrap();
            drop(store);
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

    /// Bytes charged over all shards.
    fn charged(t: &Decoded) -> usize {
        t.shards.iter().map(|s| s.read().bytes).sum()
    }

    /// A tier with the given limits.
    fn limited(max_entries: usize, max_bytes: usize) -> Decoded {
        Decoded::new(DecodedLimits {
            max_entries,
            max_bytes,
        })
    }

    /// `contents` as byte strings the store holds (so the tier keeps their
    /// decodes), each decoded once as `1u8`; keep the result alive.
    fn held_and_decoded(t: &Decoded, contents: impl IntoIterator<Item = String>) -> Vec<Bytes> {
        let held: Vec<Bytes> = contents.into_iter().map(Bytes::from).collect();
        for b in &held {
            t.get_or_decode(&b.clone(), || Ok(1u8)).unwrap();
        }
        assert_eq!(t.len(), held.len(), "the tier kept every live value");
        held
    }

    #[test]
    fn the_byte_limit_holds_when_a_large_value_comes_in() {
        // One shard (8 entries), 1,000 bytes. Five live one-byte values
        // (charge 98 each), then a live 700-byte one (charge 797): three
        // small ones must go for the total to fit.
        let t = limited(8, 1_000);
        let _kept = held_and_decoded(&t, (0..5).map(|i| alloc::format!("{i}")));
        assert!(charged(&t) <= 1_000);
        let big = Bytes::from(alloc::vec![7u8; 700]);
        t.get_or_decode(&big.clone(), || Ok(2u8)).unwrap();
        assert!(
            charged(&t) <= 1_000,
            "{} bytes charged over a limit of 1,000 ({} slots)",
            charged(&t),
            t.len()
        );
    }

    #[test]
    fn the_byte_limit_holds_with_many_small_values_and_one_large() {
        // One shard (127 entries), 20,000 bytes: 100 live small values
        // (charge 101 each), then one live value charged 15,000: about 51
        // small ones must go.
        let t = limited(127, 20_000);
        assert_eq!(t.shards.len(), 1);
        let _kept = held_and_decoded(&t, (0..100).map(|i| alloc::format!("{i:04}")));
        let big = Bytes::from(alloc::vec![7u8; 15_000 - 97]);
        t.get_or_decode(&big.clone(), || Ok(2u8)).unwrap();
        assert!(
            charged(&t) <= 20_000,
            "{} bytes charged over a limit of 20,000 ({} slots)",
            charged(&t),
            t.len()
        );
    }

    #[test]
    fn the_byte_limit_holds_when_a_slot_changes_type() {
        // The same bytes decoded as a larger type: the slot's charge grows.
        let t = limited(8, 1_000);
        let kept = held_and_decoded(&t, (0..5).map(|i| alloc::format!("{i}")));
        t.get_or_decode(&kept[0].clone(), || Ok([0u8; 700]))
            .unwrap();
        assert!(
            charged(&t) <= 1_000,
            "{} bytes charged over a limit of 1,000",
            charged(&t)
        );
    }

    #[test]
    fn a_value_under_the_total_byte_limit_is_kept() {
        // 10,000 entries and 1 MiB: a 100 KiB value fits the limit, and the
        // tier is not cut into shards too small to keep it.
        let t = Decoded::new(DecodedLimits {
            max_entries: 10_000,
            max_bytes: 1 << 20,
        });
        let b = Bytes::from(alloc::vec![1u8; 100 << 10]);
        let _held_by_the_store = b.clone();
        let calls = core::cell::Cell::new(0);
        for _ in 0..3 {
            t.get_or_decode(&b, || decode_count(&calls, "big")).unwrap();
        }
        assert_eq!(calls.get(), 1, "decoded on every lookup");
    }

    #[test]
    fn threads_always_get_the_decode_of_their_bytes() {
        extern crate std;
        use alloc::string::ToString;
        use std::sync::Mutex;
        let t = Arc::new(Decoded::new(DecodedLimits {
            max_entries: 16,
            max_bytes: 16 * 200,
        }));
        let store: Arc<Mutex<Vec<Bytes>>> = Arc::new(Mutex::new(
            (0..32u64).map(|i| Bytes::from(i.to_string())).collect(),
        ));
        let next = Arc::new(core::sync::atomic::AtomicU64::new(1_000));
        let threads: Vec<_> = (0..6u64)
            .map(|th| {
                let (t, store, next) = (t.clone(), store.clone(), next.clone());
                std::thread::spawn(move || {
                    let mut x = th.wrapping_mul(0x9E37_79B9) | 1;
                    for _ in 0..200_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let i = (x % 32) as usize;
                        if x % 7 == 0 {
                            // A write: the old bytes go (maybe freed at once).
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            store.lock().unwrap()[i] = Bytes::from(n.to_string());
                            continue;
                        }
                        let b = store.lock().unwrap()[i].clone();
                        let want: u64 = core::str::from_utf8(&b).unwrap().parse().unwrap();
                        if x % 3 == 0 {
                            let v = t
                                .get_or_decode(&b, || {
                                    Ok(core::str::from_utf8(&b).unwrap().to_string())
                                })
                                .unwrap();
                            assert_eq!(v.parse::<u64>().unwrap(), want);
                        } else {
                            let v = t
                                .get_or_decode(&b, || {
                                    Ok(core::str::from_utf8(&b).unwrap().parse::<u64>().unwrap())
                                })
                                .unwrap();
                            assert_eq!(*v, want);
                        }
                        drop(b);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        for s in t.shards.iter() {
            let s = s.read();
            assert!(s.len <= s.max_entries && s.bytes <= s.max_bytes);
            assert_eq!(s.len, s.table.len());
        }
    }

    #[test]
    fn zero_entries_turns_the_tier_off() {
        let t = tier(0);
        let a = Bytes::from("a");
        let _held_by_the_store = a.clone();
        let calls = core::cell::Cell::new(0);
        t.get_or_decode(&a, || decode_count(&calls, "A")).unwrap();
        t.get_or_decode(&a, || decode_count(&calls, "A")).unwrap();
        assert_eq!((calls.get(), t.len()), (2, 0));
    }

    #[test]
    fn bytes_only_the_caller_holds_are_not_kept() {
        // A store that copies on every read (files, Redis): nothing another
        // lookup could find, so nothing is kept.
        let t = tier(100);
        for i in 0..50 {
            let b = Bytes::from(alloc::format!("copy{i}"));
            t.get_or_decode(&b, || Ok(1u8)).unwrap();
        }
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn an_empty_encoding_is_decoded_once_per_type() {
        let t = tier(100);
        let calls = core::cell::Cell::new(0);
        for _ in 0..5 {
            t.get_or_decode(&Bytes::new(), || decode_count(&calls, ""))
                .unwrap();
        }
        assert_eq!(calls.get(), 1);
    }
}
