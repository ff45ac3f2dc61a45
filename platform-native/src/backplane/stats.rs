//! The backplane's counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`Backplane`](super::Backplane) has sent and received since it
/// was built (`Backplane::stats`).
///
/// Every message received is counted once in `received` and once in one of
/// `applied`, `ignored_own`, `malformed` or `apply_errors`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Changes published (each successful write, delete, expire,
    /// `remove_older` and clear).
    pub published: u64,
    /// Changes that could not be published (the write itself succeeded;
    /// other instances keep their L1 copies until they expire).
    pub publish_errors: u64,
    /// Messages received on the channel, this instance's own included.
    pub received: u64,
    /// Other instances' changes applied: the key's L1 copy dropped (L1
    /// emptied for a clear).
    pub applied: u64,
    /// This instance's own messages, ignored.
    pub ignored_own: u64,
    /// Messages that are not the backplane's format, ignored.
    pub malformed: u64,
    /// Other instances' changes whose L1 removal failed.
    pub apply_errors: u64,
    /// Times the subscription ended (its connection dropped): until it is
    /// back, no change from another instance is received.
    pub subscription_lost: u64,
    /// Times it subscribed again after losing the subscription.
    pub resubscribed: u64,
    /// Pings of the subscription's connection that went unanswered (each
    /// counts as a lost subscription too).
    pub heartbeat_failures: u64,
    /// Times L1 was emptied because changes may have been missed (after
    /// each new subscription).
    pub l1_emptied: u64,
    /// Changes and messages queued because Redis could not be reached
    /// (a change of a key already queued counts again).
    pub queued: u64,
    /// Times the queue was full: a write dropped (the new one, or a queued
    /// one to make room for an invalidation), or the queue replaced by a
    /// clear when it held only invalidations. Every instance is then told
    /// to empty its L1.
    pub overflowed: u64,
    /// Queued changes made in Redis once it answered again.
    pub replayed: u64,
    /// Queued writes not made because the key was changed (or the store
    /// cleared, or Redis lost its history) after the version this instance
    /// had seen when the write failed: the other change may be newer.
    pub replay_skipped: u64,
    /// Queued writes dropped unmade because they were older than the
    /// store's `tombstone_ttl` (invalidations are made whatever their age).
    pub replay_dropped: u64,
    /// Queued changes Redis refused for another reason than being
    /// unreachable (dropped).
    pub replay_errors: u64,
    /// Keys with work queued now; a queued clear, or a queued notice that
    /// every L1 be emptied, counts as one more.
    pub pending: u64,
}

/// The live counters behind [`BackplaneStats`], shared with the subscriber
/// task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) applied: AtomicU64,
    pub(crate) ignored_own: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) apply_errors: AtomicU64,
    pub(crate) subscription_lost: AtomicU64,
    pub(crate) resubscribed: AtomicU64,
    pub(crate) heartbeat_failures: AtomicU64,
    pub(crate) l1_emptied: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) overflowed: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) replay_skipped: AtomicU64,
    pub(crate) replay_dropped: AtomicU64,
    pub(crate) replay_errors: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub(crate) fn snapshot(&self) -> BackplaneStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BackplaneStats {
            published: read(&self.published),
            publish_errors: read(&self.publish_errors),
            received: read(&self.received),
            applied: read(&self.applied),
            ignored_own: read(&self.ignored_own),
            malformed: read(&self.malformed),
            apply_errors: read(&self.apply_errors),
            subscription_lost: read(&self.subscription_lost),
            resubscribed: read(&self.resubscribed),
            heartbeat_failures: read(&self.heartbeat_failures),
            l1_emptied: read(&self.l1_emptied),
            queued: read(&self.queued),
            overflowed: read(&self.overflowed),
            replayed: read(&self.replayed),
            replay_skipped: read(&self.replay_skipped),
            replay_dropped: read(&self.replay_dropped),
            replay_errors: read(&self.replay_errors),
            pending: 0,
        }
    }
}
