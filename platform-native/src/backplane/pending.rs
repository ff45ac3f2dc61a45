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
    /// The message that tells other instances about it.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Change::Set(_) => Kind::Set,
            Change::Delete => Kind::Delete,
            Change::Expire(_) => Kind::Expire,
        }
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

/// A clear that L2 did not take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clear {
    pub(crate) since: u64,
    pub(crate) at: Instant,
}

/// Everything queued, taken at once for a replay.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) clear: Option<Clear>,
    /// A clear notice to publish (other instances empty their L1): a clear
    /// whose publish failed, or changes dropped because the queue was full.
    pub(crate) clear_notice: bool,
    pub(crate) items: Vec<(String, Item)>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.clear.is_none() && !self.clear_notice && self.items.is_empty()
    }
}

#[derive(Debug, Default)]
struct Inner {
    clear: Option<Clear>,
    clear_notice: bool,
    items: HashMap<String, Item>,
    /// How much of the queue a replay has taken and not finished.
    in_flight: usize,
}

/// The queue. Its lock is held only to insert or take, never across an
/// `.await`.
#[derive(Debug)]
pub(crate) struct Pending {
    inner: Mutex<Inner>,
    max: usize,
}

/// What queueing did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued (or merged into the key's item).
    Yes,
    /// The queue was full: dropped, and other instances will be told to
    /// empty their L1 instead.
    Overflow,
}

impl Pending {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max: max.max(1),
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
        inner.items.len()
            + usize::from(inner.clear.is_some() || inner.clear_notice)
            + inner.in_flight
    }

    /// Queues `change` of `key`, replacing what was queued for it.
    pub(crate) fn change(&self, key: &str, change: Change, since: u64) -> Queued {
        self.put(key, since, |item| {
            item.change = Some(change);
            item.notice = None;
        })
    }

    /// Queues a message about `key` that could not be published; a clear's
    /// (empty `key`) becomes a clear notice.
    pub(crate) fn notice(&self, key: &str, kind: Kind) -> Queued {
        if kind == Kind::Clear {
            self.lock().clear_notice = true;
            return Queued::Yes;
        }
        self.put(key, 0, |item| {
            if item.change.is_none() {
                item.notice = Some(kind);
            }
        })
    }

    /// Whether `key`'s queued change is the write of `entry`.
    pub(crate) fn holds_write_of(&self, key: &str, entry: &Entry) -> bool {
        matches!(
            self.lock().items.get(key),
            Some(Item { change: Some(Change::Set(e)), .. }) if e == entry
        )
    }

    /// Queues a clear: everything queued before it is superseded.
    pub(crate) fn clear(&self, since: u64) {
        let mut inner = self.lock();
        inner.items.clear();
        inner.clear = Some(Clear {
            since,
            at: Instant::now(),
        });
    }

    fn put(&self, key: &str, since: u64, apply: impl FnOnce(&mut Item)) -> Queued {
        let mut inner = self.lock();
        let full = inner.items.len() + inner.in_flight >= self.max;
        match inner.items.get_mut(key) {
            Some(item) => {
                apply(item);
                item.since = item.since.max(since);
                item.at = Instant::now();
                Queued::Yes
            }
            None if full => {
                inner.clear_notice = true;
                Queued::Overflow
            }
            None => {
                let mut item = Item {
                    change: None,
                    notice: None,
                    since,
                    at: Instant::now(),
                };
                apply(&mut item);
                inner.items.insert(key.to_owned(), item);
                Queued::Yes
            }
        }
    }

    /// Everything queued, leaving the queue empty, and counted as in
    /// flight until [`finish`](Self::finish) or [`restore`](Self::restore).
    pub(crate) fn take(&self) -> Batch {
        let mut inner = self.lock();
        let batch = Batch {
            clear: inner.clear.take(),
            clear_notice: std::mem::take(&mut inner.clear_notice),
            items: inner.items.drain().collect(),
        };
        inner.in_flight =
            batch.items.len() + usize::from(batch.clear.is_some() || batch.clear_notice);
        batch
    }

    /// The replay of what [`take`](Self::take) took is over.
    pub(crate) fn finish(&self) {
        self.lock().in_flight = 0;
    }

    /// Puts back what a replay could not do yet, unless newer work for the
    /// same key (or a clear) was queued meanwhile.
    pub(crate) fn restore(&self, batch: Batch) {
        let mut inner = self.lock();
        inner.in_flight = 0;
        if inner.clear.is_some() {
            // A clear queued during the replay supersedes the rest of it.
            inner.clear_notice |= batch.clear_notice;
            return;
        }
        inner.clear = batch.clear;
        inner.clear_notice |= batch.clear_notice;
        for (key, item) in batch.items {
            if inner.items.len() >= self.max && !inner.items.contains_key(&key) {
                inner.clear_notice = true;
                continue;
            }
            inner.items.entry(key).or_insert(item);
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

    #[test]
    fn the_newest_change_of_a_key_wins_and_keys_are_not_repeated() {
        let p = Pending::new(10);
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
        assert!(p.take().is_empty());
    }

    #[test]
    fn a_full_queue_drops_new_keys_and_asks_for_a_clear_notice() {
        let p = Pending::new(2);
        assert_eq!(p.change("a", Change::Delete, 1), Queued::Yes);
        assert_eq!(p.change("b", Change::Delete, 1), Queued::Yes);
        assert_eq!(p.change("c", Change::Delete, 1), Queued::Overflow);
        // A key already queued is still updated.
        assert_eq!(p.change("a", Change::Expire(9), 2), Queued::Yes);
        let batch = p.take();
        assert_eq!(batch.items.len(), 2);
        assert!(batch.clear_notice);
    }

    #[test]
    fn a_clear_supersedes_what_was_queued_before_it() {
        let p = Pending::new(10);
        p.change("a", Change::Delete, 1);
        p.clear(3);
        p.change("b", Change::Set(entry("b")), 4);
        let batch = p.take();
        assert_eq!(batch.clear.map(|c| c.since), Some(3));
        assert_eq!(batch.items.len(), 1);
        assert_eq!(batch.items[0].0, "b");
    }

    #[test]
    fn restored_work_never_replaces_newer_work() {
        let p = Pending::new(10);
        p.change("a", Change::Set(entry("old")), 1);
        let batch = p.take();
        p.change("a", Change::Set(entry("new")), 2);
        p.restore(batch);
        assert!(p.holds_write_of("a", &entry("new")));
        let batch = p.take();
        p.clear(5);
        p.restore(batch);
        let batch = p.take();
        assert!(batch.items.is_empty(), "the clear supersedes it");
        assert_eq!(batch.clear.map(|c| c.since), Some(5));
    }
}
