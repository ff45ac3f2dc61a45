//! [`TagFence`]: which tags this engine invalidated or expired (or whether
//! it cleared) since a call began, so that a call that fetched before the
//! operation does not store its value over it ("the latest write wins" for
//! tags). A short log of recent operations, numbered; a call remembers the
//! number current when its fetch started and asks at the end.

use alloc::collections::VecDeque;

use portable_atomic::{AtomicU64, Ordering};

use crate::key::fingerprint;

/// How many recent operations are remembered; a call older than all of them
/// is treated as fenced.
const LOG: usize = 256;

/// A fingerprint that stands for "every tag" (a `clear`).
const ALL: u64 = 0;

/// See the module docs.
pub(crate) struct TagFence {
    /// The number of the latest operation (0: none yet).
    seq: AtomicU64,
    /// `(number, fingerprint of the tag or ALL)`, oldest first.
    log: spin::Mutex<VecDeque<(u64, u64)>>,
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
    pub(crate) fn record(&self, tag: Option<&str>) {
        let print = tag.map_or(ALL, print);
        let mut log = self.log.lock();
        let n = self.seq.load(Ordering::Relaxed) + 1;
        if log.len() == LOG {
            log.pop_front();
        }
        log.push_back((n, print));
        self.seq.store(n, Ordering::Release);
    }

    /// Whether an operation on one of `tags` (or a clear) was recorded after
    /// `since`. With `since` older than the log, yes (it cannot tell).
    pub(crate) fn touched<'a>(&self, since: u64, mut tags: impl Iterator<Item = &'a str>) -> bool {
        if self.now() == since {
            return false;
        }
        let log = self.log.lock();
        match log.front() {
            Some(&(first, _)) if first <= since + 1 => {}
            _ => return true,
        }
        let recent = || log.iter().filter(|(n, _)| *n > since);
        if recent().any(|(_, p)| *p == ALL) {
            return true;
        }
        tags.any(|t| {
            let p = print(t);
            recent().any(|(_, q)| *q == p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_later_operations_on_the_call_s_tags_fence_it() {
        let f = TagFence::default();
        f.record(Some("a"));
        let since = f.now();
        assert!(!f.touched(since, ["a", "b"].into_iter()));
        f.record(Some("c"));
        assert!(!f.touched(since, ["a", "b"].into_iter()));
        f.record(Some("b"));
        assert!(f.touched(since, ["a", "b"].into_iter()));
        assert!(!f.touched(f.now(), ["b"].into_iter()));
        let since = f.now();
        f.record(None);
        assert!(f.touched(since, core::iter::empty()));
    }

    #[test]
    fn a_call_older_than_the_log_counts_as_fenced() {
        let f = TagFence::default();
        let since = f.now();
        for _ in 0..LOG + 1 {
            f.record(Some("other"));
        }
        assert!(f.touched(since, ["mine"].into_iter()));
        let recent = f.now() - 3;
        assert!(!f.touched(recent, ["mine"].into_iter()));
    }
}
