//! What the backplane could not write to Redis or publish, kept to be
//! replayed when Redis answers again: bounded, one item per key (the newest
//! change wins), a clear superseding everything queued before it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use swre_core::Entry;

use super::message::Kind;

/// A change of one key that L2 did not take.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    /// A write of this entry.
    Set(Entry),
    /// A delete.
    Delete,
    /// An expiry at this time (ms).
    Expire(u64),
}

impl Change {
    /// Whether it may be dropped when the queue is full: a write of a
    /// user's key (the worst is a fetch again). An invalidation (delete,
    /// expiry, a tag record's write) may not: dropped, old data would stay.
    fn droppable(&self, key: &str) -> bool {
        matches!(self, Change::Set(_)) && !reserved(key)
    }
}

/// One key's queued work.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// The change to make in L2 (its replay publishes it), if any.
    pub(crate) change: Option<Change>,
    /// A message that could not be published, if no change carries it.
    pub(crate) notice: Option<Kind>,
    /// The version the change is conditional on: the highest one this
    /// instance had seen Redis assign when the change failed.
    pub(crate) since: u64,
    /// When it was queued.
    pub(crate) at: Instant,
}

impl Item {
    fn bytes(&self) -> usize {
        match &self.change {
            Some(Change::Set(e)) => e.value.len(),
            _ => 0,
        }
    }
}

/// Everything queued, taken at once for a replay.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// A clear L2 did not take.
    pub(crate) clear: bool,
    /// A clear notice to publish (other instances empty their L1): a clear
    /// whose publish failed, or changes dropped because the queue was full.
    pub(crate) clear_notice: bool,
    pub(crate) items: Vec<(String, Item)>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        !self.clear && !self.clear_notice && self.items.is_empty()
    }
}

#[derive(Debug, Default)]
struct Inner {
    clear: bool,
    clear_notice: bool,
    items: HashMap<String, Item>,
    /// Bytes of the values of queued writes.
    bytes: usize,
    /// How much of the queue a replay has taken and not finished.
    in_flight: usize,
    /// The writes a replay has taken and not finished (values are shared,
    /// not copied): a removal that follows a write Redis did not take must
    /// still see that write while it is being replayed.
    flying: HashMap<String, Entry>,
}

impl Inner {
    fn remove(&mut self, key: &str) -> Option<Item> {
        let item = self.items.remove(key)?;
        self.bytes -= item.bytes();
        Some(item)
    }

    fn insert(&mut self, key: String, item: Item) {
        self.bytes += item.bytes();
        if let Some(old) = self.items.insert(key, item) {
            self.bytes -= old.bytes();
        }
    }

    /// Drops one queued write of a user's key (to make room for an
    /// invalidation); whether there was one.
    fn evict_a_write(&mut self) -> bool {
        let victim = self
            .items
            .iter()
            .find(|(k, i)| i.change.as_ref().is_some_and(|c| c.droppable(k)))
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                self.remove(&k);
                true
            }
            None => false,
        }
    }
}

/// Whether `key` is the engine's (a tag record): a write of it is an
/// invalidation, never dropped to make room.
pub(crate) fn reserved(key: &str) -> bool {
    key.starts_with(swre_core::tags::record::RESERVED_PREFIX)
}

/// The queue. Its lock is held only to insert or take, never across an
/// `.await`.
#[derive(Debug)]
pub(crate) struct Pending {
    inner: Mutex<Inner>,
    max: usize,
    max_bytes: usize,
}

/// What queueing did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued (or merged into the key's item).
    Yes,
    /// The queue was full: a write dropped (this one, or a queued one to
    /// make room for an invalidation), or everything queued replaced by a
    /// clear (no write left to drop). Other instances will be told to
    /// empty their L1.
    Overflow,
}

impl Pending {
    pub(crate) fn new(max: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max: max.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it cannot leave it half-changed (each
        // change is one map operation), so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many keys have queued work, taken by a replay not finished
    /// included; a clear, or a clear notice, counts as one more.
    pub(crate) fn len(&self) -> usize {
        let inner = self.lock();
        inner.items.len() + usize::from(inner.clear || inner.clear_notice) + inner.in_flight
    }

    /// Queues `change` of `key`, replacing what was queued for it.
    pub(crate) fn change(&self, key: &str, change: Change, since: u64) -> Queued {
        let mut inner = self.lock();
        let item = Item {
            change: Some(change),
            notice: None,
            since,
            at: Instant::now(),
        };
        self.admit(&mut inner, key.to_owned(), item)
    }

    /// Puts `item` under `key`, within the bounds.
    fn admit(&self, inner: &mut Inner, key: String, item: Item) -> Queued {
        let previous = inner.remove(&key);
        let item = match previous {
            // A message waiting for the key is carried by the change.
            Some(old) if item.change.is_none() => Item {
                notice: item.notice.or(old.notice),
                ..old
            },
            _ => item,
        };
        let droppable = item.change.as_ref().is_none_or(|c| c.droppable(&key));
        // What a replay has in flight counts against a write, not against
        // an invalidation (which holds no value): a queue taken whole by a
        // replay would otherwise turn the next invalidation into a clear
        // of the whole store. Keys stay within twice `max`.
        let in_flight = if droppable { inner.in_flight } else { 0 };
        let fits = |inner: &Inner| {
            inner.items.len() + in_flight < self.max && inner.bytes + item.bytes() <= self.max_bytes
        };
        if fits(inner) {
            inner.insert(key, item);
            return Queued::Yes;
        }
        inner.clear_notice = true;
        if droppable {
            return Queued::Overflow;
        }
        while !fits(inner) && inner.evict_a_write() {}
        if fits(inner) {
            inner.insert(key, item);
        } else {
            // Only invalidations queued, and no room for one more: a clear
            // stands for all of them.
            inner.items.clear();
            inner.bytes = 0;
            inner.clear = true;
        }
        Queued::Overflow
    }

    /// Queues a message about `key` that could not be published; a clear's
    /// (empty `key`) becomes a clear notice.
    pub(crate) fn notice(&self, key: &str, kind: Kind) -> Queued {
        let mut inner = self.lock();
        if kind == Kind::Clear {
            inner.clear_notice = true;
            return Queued::Yes;
        }
        let item = Item {
            change: None,
            notice: Some(kind),
            since: 0,
            at: Instant::now(),
        };
        self.admit(&mut inner, key.to_owned(), item)
    }

    /// After this instance's replayed write of `key` got `version`: a
    /// change of the key queued since is conditional on at least it (its
    /// own replay must not block it).
    pub(crate) fn raise(&self, key: &str, version: u64) {
        if let Some(item) = self.lock().items.get_mut(key) {
            item.since = item.since.max(version);
        }
    }

    /// Whether `key`'s queued change (or the one a replay is making) is the
    /// write of `entry`.
    pub(crate) fn holds_write_of(&self, key: &str, entry: &Entry) -> bool {
        let inner = self.lock();
        matches!(
            inner.items.get(key),
            Some(Item { change: Some(Change::Set(e)), .. }) if e == entry
        ) || inner.flying.get(key) == Some(entry)
    }

    /// Queues a clear: everything queued before it is superseded.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.items.clear();
        inner.bytes = 0;
        inner.clear = true;
    }

    /// Everything queued, leaving the queue empty, and counted as in
    /// flight until [`finish`](Self::finish) or [`restore`](Self::restore).
    pub(crate) fn take(&self) -> Batch {
        let mut inner = self.lock();
        let batch = Batch {
            clear: std::mem::take(&mut inner.clear),
            clear_notice: std::mem::take(&mut inner.clear_notice),
            items: inner.items.drain().collect(),
        };
        inner.bytes = 0;
        inner.flying = batch
            .items
            .iter()
            .filter_map(|(k, i)| match &i.change {
                Some(Change::Set(e)) => Some((k.clone(), e.clone())),
                _ => None,
            })
            .collect();
        inner.in_flight = batch.items.len() + usize::from(batch.clear || batch.clear_notice);
        batch
    }

    /// The replay of what [`take`](Self::take) took is over.
    pub(crate) fn finish(&self) {
        let mut inner = self.lock();
        inner.in_flight = 0;
        inner.flying.clear();
    }

    /// Puts back what a replay could not do yet, unless newer work for the
    /// same key (or a clear) was queued meanwhile.
    pub(crate) fn restore(&self, batch: Batch) {
        let mut inner = self.lock();
        inner.in_flight = 0;
        inner.flying.clear();
        if inner.clear {
            // A clear queued during the replay supersedes the rest of it.
            inner.clear_notice |= batch.clear_notice;
            return;
        }
        inner.clear = batch.clear;
        inner.clear_notice |= batch.clear_notice;
        for (key, item) in batch.items {
            if !inner.items.contains_key(&key) {
                self.admit(&mut inner, key, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swre_core::CacheTtl;

    fn entry(v: &str) -> Entry {
        Entry::new(v.to_owned(), 1_000, CacheTtl::default())
    }

    fn pending(max: usize) -> Pending {
        Pending::new(max, usize::MAX)
    }

    #[test]
    fn the_newest_change_of_a_key_wins_and_keys_are_not_repeated() {
        let p = pending(10);
        assert_eq!(p.change("k", Change::Set(entry("1")), 5), Queued::Yes);
        assert_eq!(p.notice("k", Kind::Set), Queued::Yes);
        assert_eq!(p.change("k", Change::Set(entry("2")), 7), Queued::Yes);
        assert!(p.holds_write_of("k", &entry("2")));
        assert!(!p.holds_write_of("k", &entry("1")));
        assert_eq!(p.len(), 1);
        let batch = p.take();
        assert_eq!(batch.items.len(), 1);
        let (key, item) = &batch.items[0];
        assert_eq!(key, "k");
        assert_eq!(item.change, Some(Change::Set(entry("2"))));
        assert_eq!(item.notice, None, "the change's replay publishes it");
        assert_eq!(item.since, 7);
        assert_eq!(p.len(), 1, "in flight until the replay finishes");
        p.finish();
        assert!(p.take().is_empty());
    }

    #[test]
    fn a_full_queue_drops_new_writes_and_asks_for_a_clear_notice() {
        let p = pending(2);
        assert_eq!(p.change("a", Change::Delete, 1), Queued::Yes);
        assert_eq!(p.change("b", Change::Set(entry("b")), 1), Queued::Yes);
        assert_eq!(p.change("c", Change::Set(entry("c")), 1), Queued::Overflow);
        // A key already queued is still updated.
        assert_eq!(p.change("b", Change::Set(entry("b2")), 2), Queued::Yes);
        let batch = p.take();
        assert_eq!(batch.items.len(), 2);
        assert!(batch.clear_notice);
        assert!(!batch.clear);
    }

    #[test]
    fn an_invalidation_takes_the_place_of_a_queued_write() {
        let p = pending(2);
        p.change("w", Change::Set(entry("w")), 1);
        p.change("d", Change::Delete, 1);
        assert_eq!(p.change("e", Change::Expire(5), 1), Queued::Overflow);
        let tag = "\0swre:tag:t";
        assert_eq!(p.change(tag, Change::Set(entry("r")), 1), Queued::Overflow);
        let batch = p.take();
        assert!(
            batch.clear,
            "no write left to drop: a clear stands for them"
        );
        assert!(batch.items.is_empty());
    }

    #[test]
    fn an_invalidation_evicts_a_write_before_it_escalates() {
        let p = pending(2);
        p.change("w", Change::Set(entry("w")), 1);
        p.change("d", Change::Delete, 1);
        assert_eq!(p.change("e", Change::Expire(5), 1), Queued::Overflow);
        let mut keys: Vec<String> = p.take().items.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, ["d", "e"]);
    }

    #[test]
    fn an_invalidation_during_a_replay_of_a_full_queue_is_queued_not_a_clear() {
        let p = pending(2);
        p.change("a", Change::Set(entry("a")), 1);
        p.change("b", Change::Set(entry("b")), 1);
        let _replaying = p.take();
        assert_eq!(p.change("w", Change::Set(entry("w")), 1), Queued::Overflow);
        assert_eq!(p.change("d", Change::Delete, 1), Queued::Yes);
        p.finish();
        let batch = p.take();
        assert!(!batch.clear, "no clear for one invalidation");
        assert_eq!(batch.items.len(), 1);
        assert_eq!(batch.items[0].0, "d");
    }

    #[test]
    fn the_bytes_of_queued_writes_are_bounded() {
        let p = Pending::new(100, 5);
        assert_eq!(p.change("a", Change::Set(entry("abc")), 1), Queued::Yes);
        assert_eq!(
            p.change("b", Change::Set(entry("abc")), 1),
            Queued::Overflow
        );
        // Replacing a write frees its bytes.
        assert_eq!(p.change("a", Change::Set(entry("abcde")), 1), Queued::Yes);
        assert_eq!(p.change("c", Change::Delete, 1), Queued::Yes);
    }

    #[test]
    fn a_clear_supersedes_what_was_queued_before_it() {
        let p = pending(10);
        p.change("a", Change::Delete, 1);
        p.clear();
        p.change("b", Change::Set(entry("b")), 4);
        let batch = p.take();
        assert!(batch.clear);
        assert_eq!(batch.items.len(), 1);
        assert_eq!(batch.items[0].0, "b");
    }

    #[test]
    fn restored_work_never_replaces_newer_work_and_a_replay_raises_since() {
        let p = pending(10);
        p.change("a", Change::Set(entry("old")), 1);
        let batch = p.take();
        p.change("a", Change::Set(entry("new")), 2);
        p.raise("a", 9);
        p.restore(batch);
        assert!(p.holds_write_of("a", &entry("new")));
        let batch = p.take();
        assert_eq!(batch.items[0].1.since, 9);
        p.clear();
        p.restore(batch);
        let batch = p.take();
        assert!(batch.items.is_empty(), "the clear supersedes it");
        assert!(batch.clear);
    }
}
