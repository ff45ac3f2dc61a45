//! [`KeyTable`]: the per-key breakers, bounded, dropping the least recently
//! used when a new key needs room.
//!
//! Each use of a key stamps its breaker with the next tick and appends
//! `(tick, hash)` to a queue, oldest first. The least recently used breaker is
//! the one named by the oldest record whose tick is still its breaker's last
//! use: older records of a key that was used again (or removed) are stale and
//! skipped. Finding a victim is therefore amortised O(1), not a scan of every
//! key, and the queue is compacted whenever it grows past twice the table,
//! so it stays O(keys) in size.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::hash::BuildHasher;

use hashbrown::hash_table::HashTable;
use hashbrown::DefaultHashBuilder;

use super::Machine;

struct KeyBreaker {
    name: Box<str>,
    machine: Machine,
    last_used: u64,
}

/// Per-key breaker machines with least-recently-used eviction.
pub(super) struct KeyTable {
    table: HashTable<KeyBreaker>,
    /// Uses, oldest first: `(tick, hash of the key)`.
    order: VecDeque<(u64, u64)>,
    tick: u64,
    hasher: DefaultHashBuilder,
}

impl KeyTable {
    pub(super) fn new() -> Self {
        Self {
            table: HashTable::new(),
            order: VecDeque::new(),
            tick: 0,
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The number of keys with a breaker.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// `key`'s machine, if it has one.
    pub(super) fn get(&self, key: &str) -> Option<&Machine> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |k| &*k.name == key)
            .map(|k| &k.machine)
    }

    /// `key`'s machine, if it has one, without counting this as a use.
    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Machine> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find_mut(hash, |k| &*k.name == key)
            .map(|k| &mut k.machine)
    }

    /// `key`'s machine, if it has one, marked as just used.
    pub(super) fn use_existing(&mut self, key: &str) -> Option<&mut Machine> {
        let hash = self.hasher.hash_one(key);
        let tick = self.next_tick(hash);
        let k = self.table.find_mut(hash, |k| &*k.name == key)?;
        k.last_used = tick;
        Some(&mut k.machine)
    }

    /// `key`'s machine, created closed if it has none (first dropping the
    /// least recently used breaker when `max` are kept), marked as just used.
    pub(super) fn use_or_insert(&mut self, key: &str, max: usize) -> &mut Machine {
        let hash = self.hasher.hash_one(key);
        if self.table.find(hash, |k| &*k.name == key).is_none() && self.table.len() >= max {
            self.evict_least_recently_used();
        }
        let tick = self.next_tick(hash);
        let hasher = &self.hasher;
        let entry = self
            .table
            .entry(hash, |k| &*k.name == key, |k| hasher.hash_one(&*k.name));
        let k = entry
            .or_insert_with(|| KeyBreaker {
                name: Box::from(key),
                machine: Machine::CLOSED,
                last_used: tick,
            })
            .into_mut();
        k.last_used = tick;
        &mut k.machine
    }

    /// Forgets `key`'s breaker.
    pub(super) fn remove(&mut self, key: &str) {
        let hash = self.hasher.hash_one(key);
        if let Ok(found) = self.table.find_entry(hash, |k| &*k.name == key) {
            found.remove();
        }
    }

    /// Forgets every breaker.
    pub(super) fn clear(&mut self) {
        self.table.clear();
        self.order.clear();
    }

    /// Whether `key` has a breaker (tests).
    #[cfg(test)]
    pub(super) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The queue's length (tests: it must stay bounded).
    #[cfg(test)]
    pub(super) fn queue_len(&self) -> usize {
        self.order.len()
    }

    /// The next tick, recorded as a use of the key hashing to `hash`.
    fn next_tick(&mut self, hash: u64) -> u64 {
        self.tick += 1;
        if self.order.len() >= 2 * self.table.len() + 16 {
            self.compact();
        }
        self.order.push_back((self.tick, hash));
        self.tick
    }

    /// Drops the records that no longer name a breaker's last use.
    fn compact(&mut self) {
        let table = &self.table;
        self.order
            .retain(|&(tick, hash)| table.find(hash, |k| k.last_used == tick).is_some());
    }

    fn evict_least_recently_used(&mut self) {
        while let Some((tick, hash)) = self.order.pop_front() {
            if let Ok(found) = self.table.find_entry(hash, |k| k.last_used == tick) {
                found.remove();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
