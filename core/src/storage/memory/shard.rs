//! One shard of a `MemoryStorage`: its entries, their eviction order and
//! the admission filter.
//!
//! Entries live in a slab of nodes; a `hashbrown::HashTable` of slab indices
//! finds them (the key is stored once, in the node), and a min-heap of expiry
//! times finds the expired. The nodes are threaded on two lists, as in
//! W-TinyLFU (Einziger, Friedman, Manes, 2017):
//!
//! - the **window**, about 1 % of the entries, where every new entry starts,
//!   so a write is always readable at once;
//! - the **main** list, evicted by SIEVE (Zhang et al., NSDI 2024): a hand
//!   walks from the oldest end, sparing once each node read since it last
//!   passed.
//!
//! When the shard is over its limits, expired entries go first. Otherwise
//! the window's oldest entry, once the window outgrows its share, competes
//! with the main list's SIEVE victim: it is admitted only if the
//! [`Sketch`] says it was wanted more often. A loop over slightly more keys
//! than fit, or a scan of keys never read again, thus leaves the main list
//! alone instead of flushing it.
//!
//! The sketch counts a write of a new key, and a read of a resident one when
//! the hand (under the write lock) finds its `visited` bit set: reads only
//! ever set that bit, so the read path writes nothing else.

use alloc::boxed::Box;
use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::sync::atomic::{AtomicBool, Ordering};

use hashbrown::hash_table::HashTable;

use super::sketch::Sketch;
use crate::entry::Entry;

pub(super) const NIL: u32 = u32::MAX;

/// Which list a node is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Segment {
    Window,
    Main,
}

pub(super) struct Node {
    key: Box<str>,
    pub(super) entry: Entry,
    hash: u64,
    charge: usize,
    pub(super) visited: AtomicBool,
    /// Bumped on every write so stale expiry records are recognised.
    generation: u32,
    newer: u32,
    older: u32,
    segment: Segment,
}

/// The two ends of one list of nodes.
#[derive(Clone, Copy)]
struct List {
    newest: u32,
    oldest: u32,
    len: usize,
}

impl List {
    const EMPTY: Self = Self {
        newest: NIL,
        oldest: NIL,
        len: 0,
    };
}

pub(super) struct Shard {
    pub(super) table: HashTable<u32>,
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    window: List,
    main: List,
    /// The SIEVE hand, on the main list.
    hand: u32,
    pub(super) len: usize,
    pub(super) bytes: usize,
    pub(super) max_bytes: usize,
    pub(super) max_entries: usize,
    next_generation: u32,
    pub(super) expiry: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Made when the shard first fills, sized by what it then holds.
    sketch: Option<Sketch>,
}

pub(super) fn key_is(nodes: &[Option<Node>], idx: u32, key: &str) -> bool {
    matches!(nodes.get(idx as usize), Some(Some(n)) if crate::key::same_key(&n.key, key))
}

impl Shard {
    pub(super) fn new(max_bytes: usize, max_entries: usize) -> Self {
        Self {
            table: HashTable::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            window: List::EMPTY,
            main: List::EMPTY,
            hand: NIL,
            len: 0,
            bytes: 0,
            max_bytes,
            max_entries,
            next_generation: 0,
            expiry: BinaryHeap::new(),
            sketch: None,
        }
    }

    pub(super) fn nodes(&self) -> &[Option<Node>] {
        &self.nodes
    }

    pub(super) fn node(&self, idx: u32) -> Option<&Node> {
        self.nodes.get(idx as usize).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, idx: u32) -> Option<&mut Node> {
        self.nodes.get_mut(idx as usize).and_then(Option::as_mut)
    }

    fn generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    fn list_mut(&mut self, segment: Segment) -> &mut List {
        match segment {
            Segment::Window => &mut self.window,
            Segment::Main => &mut self.main,
        }
    }

    /// Stores `entry` under `key`, evicting as needed.
    pub(super) fn insert(&mut self, hash: u64, key: &str, entry: Entry, charge: usize) {
        let now = entry.created_at;
        let expires_at = entry.expires_at;
        let generation = self.generation();
        if let Some(&idx) = self.table.find(hash, |&i| key_is(&self.nodes, i, key)) {
            let old_charge = match self.node_mut(idx) {
                Some(node) => {
                    let old = node.charge;
                    node.entry = entry;
                    node.charge = charge;
                    node.generation = generation;
                    old
                }
                None => return,
            };
            self.bytes = self.bytes - old_charge + charge;
            self.expiry.push(Reverse((expires_at, idx, generation)));
            self.make_room(now, idx);
            self.compact_expiry();
            return;
        }
        if let Some(sketch) = &mut self.sketch {
            sketch.increment(hash);
        }
        let node = Node {
            key: Box::from(key),
            entry,
            hash,
            charge,
            visited: AtomicBool::new(false),
            generation,
            newer: NIL,
            older: NIL,
            segment: Segment::Window,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = Some(node);
                i
            }
            None => {
                if self.nodes.len() == self.nodes.capacity() {
                    // Grow by a quarter, not double, so the slab's slack
                    // stays small beside what the entries are charged.
                    self.nodes.reserve_exact(self.nodes.len() / 4 + 4);
                }
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        };
        self.push_newest(idx, Segment::Window);
        self.len += 1;
        self.bytes += charge;
        let nodes = &self.nodes;
        self.table
            .insert_unique(hash, idx, |&i| match nodes.get(i as usize) {
                Some(Some(n)) => n.hash,
                _ => 0,
            });
        self.expiry.push(Reverse((expires_at, idx, generation)));
        self.make_room(now, idx);
        self.compact_expiry();
    }

    fn over_limits(&self) -> bool {
        self.len > self.max_entries || self.bytes > self.max_bytes
    }

    /// The window's share of the entries: about 1 %, at least one.
    fn window_target(&self) -> usize {
        (self.len / 100).max(1)
    }

    /// Evicts until the shard is within its limits, sparing `keep` (the node
    /// just written), then moves the window's overflow to the main list.
    fn make_room(&mut self, now: u64, keep: u32) {
        while self.over_limits() {
            if let Some(idx) = self.expired_victim(now, keep) {
                self.evict(idx);
                continue;
            }
            if self.sketch.is_none() {
                self.sketch = Some(Sketch::new(self.len));
            }
            let candidate = if self.window.len > self.window_target() || self.main.len == 0 {
                self.window_oldest(keep)
            } else {
                None
            };
            let victim = self.sieve_victim(keep);
            match (candidate, victim) {
                (Some(c), Some(v)) => {
                    if self.frequency_of(c) > self.frequency_of(v) {
                        self.evict(v);
                        self.promote(c);
                    } else {
                        self.evict(c);
                    }
                }
                (Some(c), None) => self.evict(c),
                (None, Some(v)) => self.evict(v),
                (None, None) => match self.window_oldest(keep) {
                    Some(c) => self.evict(c),
                    None => break, // only `keep` is left
                },
            }
        }
        while self.window.len > self.window_target() {
            match self.window_oldest(NIL) {
                Some(c) => self.promote(c),
                None => break,
            }
        }
    }

    /// How often the node's key was wanted, counting a read since it was
    /// last looked at.
    fn frequency_of(&mut self, idx: u32) -> u8 {
        let Some(node) = self.nodes.get(idx as usize).and_then(Option::as_ref) else {
            return 0;
        };
        let hash = node.hash;
        let read = node.visited.swap(false, Ordering::Relaxed);
        match &mut self.sketch {
            Some(sketch) => {
                if read && node.segment == Segment::Window {
                    sketch.increment(hash);
                }
                sketch.frequency(hash)
            }
            None => 0,
        }
    }

    fn window_oldest(&self, keep: u32) -> Option<u32> {
        let oldest = self.window.oldest;
        if oldest != keep {
            return (oldest != NIL).then_some(oldest);
        }
        let next = self.node(oldest)?.newer;
        (next != NIL).then_some(next)
    }

    fn expired_victim(&mut self, now: u64, keep: u32) -> Option<u32> {
        while let Some(&Reverse((at, idx, generation))) = self.expiry.peek() {
            if at > now {
                return None;
            }
            self.expiry.pop();
            let live = matches!(self.node(idx), Some(n) if n.generation == generation);
            if live && idx != keep {
                return Some(idx);
            }
        }
        None
    }

    /// The main list's next SIEVE victim; the hand stops on it. Each
    /// `visited` bit the hand clears counts as a read in the sketch.
    fn sieve_victim(&mut self, keep: u32) -> Option<u32> {
        // Two passes over the list are enough: the first clears every visited bit.
        let mut steps = 2 * self.main.len + 2;
        let mut hand = if self.hand == NIL {
            self.main.oldest
        } else {
            self.hand
        };
        while steps > 0 {
            steps -= 1;
            let Some(node) = self.nodes.get(hand as usize).and_then(Option::as_ref) else {
                hand = self.main.oldest;
                if hand == NIL {
                    return None;
                }
                continue;
            };
            let newer = node.newer;
            let next = if newer == NIL {
                self.main.oldest
            } else {
                newer
            };
            if node.visited.swap(false, Ordering::Relaxed) {
                if let Some(sketch) = &mut self.sketch {
                    sketch.increment(node.hash);
                }
                hand = next;
                continue;
            }
            if hand == keep {
                hand = next;
                continue;
            }
            self.hand = hand;
            return Some(hand);
        }
        None
    }

    fn push_newest(&mut self, idx: u32, segment: Segment) {
        let list = *self.list_mut(segment);
        if let Some(node) = self.node_mut(idx) {
            node.segment = segment;
            node.newer = NIL;
            node.older = list.newest;
        }
        if let Some(prev) = self.node_mut(list.newest) {
            prev.newer = idx;
        }
        let list = self.list_mut(segment);
        list.newest = idx;
        if list.oldest == NIL {
            list.oldest = idx;
        }
        list.len += 1;
    }

    /// Takes `idx` off its list (it stays in the slab and the table).
    fn unlink(&mut self, idx: u32) {
        let Some(node) = self.node(idx) else { return };
        let (newer, older, segment) = (node.newer, node.older, node.segment);
        if self.hand == idx {
            self.hand = newer;
        }
        match self.node_mut(newer) {
            Some(n) => n.older = older,
            None => self.list_mut(segment).newest = older,
        }
        match self.node_mut(older) {
            Some(n) => n.newer = newer,
            None => self.list_mut(segment).oldest = newer,
        }
        self.list_mut(segment).len -= 1;
    }

    /// Moves a window node to the main list's newest end.
    fn promote(&mut self, idx: u32) {
        self.unlink(idx);
        self.push_newest(idx, Segment::Main);
    }

    fn evict(&mut self, idx: u32) {
        let Some(node) = self.node(idx) else { return };
        if let Ok(found) = self.table.find_entry(node.hash, |&i| i == idx) {
            found.remove();
        }
        self.unlink_and_free(idx);
    }

    /// Removes `key` unless it holds `written` or a newer entry.
    pub(super) fn remove_older(&mut self, hash: u64, key: &str, written: &Entry) {
        let keep = self
            .table
            .find(hash, |&i| key_is(&self.nodes, i, key))
            .and_then(|&i| self.node(i))
            .is_none_or(|n| crate::storage::supersedes(&n.entry, written));
        if !keep {
            self.remove(hash, key);
        }
    }

    /// Ends `key`'s fresh phase at `now` ([`Storage::expire`](crate::Storage::expire)):
    /// the entry as it stands afterwards.
    pub(super) fn expire(&mut self, hash: u64, key: &str, now: u64) -> Option<Entry> {
        let i = *self.table.find(hash, |&i| key_is(&self.nodes, i, key))?;
        let node = self.nodes.get_mut(i as usize)?.as_mut()?;
        crate::storage::expire_entry(&mut node.entry, now);
        Some(node.entry.clone())
    }

    /// Removes `key`, if held.
    pub(super) fn remove(&mut self, hash: u64, key: &str) {
        let nodes = &self.nodes;
        if let Ok(found) = self.table.find_entry(hash, |&i| key_is(nodes, i, key)) {
            let (idx, _) = found.remove();
            self.unlink_and_free(idx);
        }
    }

    /// Takes `idx` off its list and out of the slab (the caller has taken it
    /// out of the table).
    fn unlink_and_free(&mut self, idx: u32) {
        self.unlink(idx);
        let Some(node) = self.nodes.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        self.len -= 1;
        self.bytes -= node.charge;
        self.free.push(idx);
    }

    /// Drops superseded expiry records once they outnumber live ones.
    fn compact_expiry(&mut self) {
        if self.expiry.len() <= 2 * self.len + 16 {
            return;
        }
        let nodes = &self.nodes;
        self.expiry
            .retain(|Reverse((_, idx, g))| matches!(nodes.get(*idx as usize), Some(Some(n)) if n.generation == *g));
    }
}

#[cfg(test)]
impl Shard {
    /// Panics if the lists, table, slab or counters disagree.
    pub(super) fn check(&self) {
        let mut seen = alloc::vec![0u8; self.nodes.len()];
        for (segment, list) in [(Segment::Window, self.window), (Segment::Main, self.main)] {
            let mut n = 0;
            let mut prev = NIL;
            let mut cur = list.oldest;
            while cur != NIL {
                let node = self.node(cur).expect("list points at a freed slot");
                assert!(node.segment == segment, "node on the wrong list");
                assert_eq!(node.older, prev, "broken older link");
                seen[cur as usize] += 1;
                n += 1;
                assert!(n <= self.nodes.len(), "cycle in a list");
                prev = cur;
                cur = node.newer;
            }
            assert_eq!(list.newest, prev, "newest end wrong");
            assert_eq!(list.len, n, "list length wrong");
        }
        let live = self.nodes.iter().filter(|n| n.is_some()).count();
        assert_eq!(live, self.len, "len");
        assert_eq!(self.table.len(), self.len, "table len");
        let bytes: usize = self.nodes.iter().flatten().map(|n| n.charge).sum();
        assert_eq!(bytes, self.bytes, "bytes");
        for (i, n) in self.nodes.iter().enumerate() {
            assert_eq!(
                usize::from(seen[i]),
                usize::from(n.is_some()),
                "node {i} on {} lists",
                seen[i]
            );
        }
        for i in &self.free {
            assert!(self.nodes[*i as usize].is_none(), "free slot in use");
        }
        if self.hand != NIL {
            let node = self.node(self.hand).expect("hand on a freed slot");
            assert!(node.segment == Segment::Main, "hand on the window");
        }
        assert!(
            self.len <= self.max_entries && self.bytes <= self.max_bytes,
            "over limits"
        );
    }
}
