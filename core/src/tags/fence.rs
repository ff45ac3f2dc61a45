//! [`TagFence`]: which tags this engine invalidated or expired (or whether
//! it cleared) since a call was admitted, and how, so that a call that fetched before the
//! operation does not store its value over it ("the latest write wins" for
//! tags). A short log of recent operations, numbered; a call remembers the
//! number current when its fetch started and asks at the end.

use alloc::collections::VecDeque;

use portable_atomic::{AtomicU64, Ordering};

use crate::key::fingerprint;

/// What tag operations did to a call's tags since it began, least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Change {
    /// Nothing.
    None,
    /// A tag was expired: the call's value predates that, so it is stale.
    Soft,
    /// A tag was invalidated, or the cache cleared: the value is not stored.
    Hard,
}

/// How many recent operations are remembered; a call older than all of them
/// is treated as fenced.
const LOG: usize = 256;

/// A fingerprint that stands for "every tag" (a `clear`).
const ALL: u64 = 0;

/// See the module docs.
pub(crate) struct TagFence {
    /// The number of the latest operation (0: none yet).
    seq: AtomicU64,
    /// `(number, fingerprint of the tag or ALL, what it did)`, oldest first.
    log: spin::Mutex<VecDeque<(u64, u64, Change)>>,
}

impl Default for TagFence {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            log: spin::Mutex::new(VecDeque::new()),
        }
    }
}

fn print(tag: &str) -> u64 {
    // Never ALL: the low bit set.
    fingerprint(0x7461_6773, tag) | 1
}

impl TagFence {
    /// The number a call remembers when its fetch starts.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Records an operation on `tag` (`None`: on every tag, a `clear`).
    pub(crate) fn record(&self, tag: Option<&str>, change: Change) {
        let print = tag.map_or(ALL, print);
        let mut log = self.log.lock();
        let n = self.seq.load(Ordering::Relaxed) + 1;
        if log.len() == LOG {
            log.pop_front();
        }
        log.push_back((n, print, change));
        self.seq.store(n, Ordering::Release);
    }

    /// What operations on one of `tags` (or a clear) recorded after `since`
    /// did. With `since` older than the log, `Hard` (it cannot tell).
    pub(crate) fn touched<'a>(&self, since: u64, tags: impl Iterator<Item = &'a str>) -> Change {
        if self.now() == since {
            return Change::None;
        }
        let log = self.log.lock();
        match log.front() {
            Some(&(first, _, _)) if first <= since + 1 => {}
            _ => return Change::Hard,
        }
        let recent = || log.iter().filter(|(n, _, _)| *n > since);
        let mut change = recent()
            .filter(|(_, p, _)| *p == ALL)
            .map(|(_, _, c)| *c)
            .max()
            .unwrap_or(Change::None);
        for t in tags {
            let p = print(t);
            let c = recent()
                .filter(|(_, q, _)| *q == p)
                .map(|(_, _, c)| *c)
                .max();
            change = change.max(c.unwrap_or(Change::None));
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_later_operations_on_the_call_s_tags_fence_it() {
        let f = TagFence::default();
        f.record(Some("a"), Change::Hard);
        let since = f.now();
        assert_eq!(f.touched(since, ["a", "b"].into_iter()), Change::None);
        f.record(Some("c"), Change::Hard);
        assert_eq!(f.touched(since, ["a", "b"].into_iter()), Change::None);
        f.record(Some("b"), Change::Soft);
        assert_eq!(f.touched(since, ["a", "b"].into_iter()), Change::Soft);
        f.record(Some("a"), Change::Hard);
        assert_eq!(f.touched(since, ["a", "b"].into_iter()), Change::Hard);
        assert_eq!(f.touched(f.now(), ["b"].into_iter()), Change::None);
        let since = f.now();
        f.record(None, Change::Hard);
        assert_eq!(f.touched(since, core::iter::empty()), Change::Hard);
    }

    #[test]
    fn a_call_older_than_the_log_counts_as_fenced() {
        let f = TagFence::default();
        let since = f.now();
        for _ in 0..LOG + 1 {
            f.record(Some("other"), Change::Soft);
        }
        assert_eq!(f.touched(since, ["mine"].into_iter()), Change::Hard);
        let recent = f.now() - 3;
        assert_eq!(f.touched(recent, ["mine"].into_iter()), Change::None);
    }
}
