//! The task that replays what the backplane queued while Redis could not be
//! reached, then publishes it like any change: each write conditional on
//! the version Redis had assigned when it failed, so it never overwrites a
//! newer change another instance made meanwhile; invalidations (deletes,
//! expiries, clears) unconditionally.

use std::sync::Arc;
use std::time::Duration;

use swre_core::{Storage, StorageErrorKind, Tiered};
use tokio::sync::Notify;

use super::message::Kind;
use super::pending::{reserved, Change, Item};
use super::stats::Counters;
use super::{retryable, Publisher};
use crate::RedisStorage;

/// How a replay went.
enum Outcome {
    /// Everything queued was done (or dropped).
    Done,
    /// Redis could not be reached: the rest is queued again.
    Unreachable,
}

/// Replays the queue whenever it is told to (something was queued, or the
/// subscription came back) and, while it is not empty, at intervals backing
/// off from 100 ms to 1 s. Ends when the backplane is dropped (aborted).
pub(crate) async fn run<L1: Storage>(
    store: Arc<Tiered<L1, RedisStorage>>,
    publisher: Arc<Publisher>,
    wake: Arc<Notify>,
    max_age: Duration,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        if publisher.pending.len() == 0 {
            wake.notified().await;
        } else {
            let notified = std::pin::pin!(wake.notified());
            let slept = std::pin::pin!(tokio::time::sleep(delay));
            futures::future::select(notified, slept).await;
        }
        match replay(&store, &publisher, max_age).await {
            Outcome::Done => delay = Duration::from_millis(100),
            Outcome::Unreachable => delay = (delay * 2).min(Duration::from_secs(1)),
        }
    }
}

/// One pass over everything queued.
async fn replay<L1: Storage>(
    store: &Tiered<L1, RedisStorage>,
    publisher: &Publisher,
    max_age: Duration,
) -> Outcome {
    let mut batch = publisher.pending.take();
    if batch.is_empty() {
        publisher.pending.finish();
        return Outcome::Done;
    }
    let counters = &publisher.counters;
    if batch.clear {
        // Unconditional, as any invalidation: made over a newer write, it
        // costs a fetch; not made, old data would stay.
        match store.l2().clear().await {
            Ok(()) => {
                Counters::bump(&counters.replayed);
                let _ = store.clear_l1().await;
            }
            Err(e) if retryable(e.kind()) => {
                publisher.pending.restore(batch);
                return Outcome::Unreachable;
            }
            Err(_) => Counters::bump(&counters.replay_errors),
        }
        batch.clear = false;
        batch.clear_notice = true;
    }
    if batch.clear_notice {
        if !publisher.send(Kind::Clear, "").await {
            publisher.pending.restore(batch);
            return Outcome::Unreachable;
        }
        batch.clear_notice = false;
    }
    let mut later = Vec::new();
    while let Some((key, item)) = batch.items.pop() {
        match replay_item(store, publisher, &key, &item, max_age).await {
            Step::Done => {}
            Step::Later => later.push((key, item)),
            Step::Unreachable => {
                batch.items.push((key, item));
                batch.items.append(&mut later);
                publisher.pending.restore(batch);
                return Outcome::Unreachable;
            }
        }
    }
    if later.is_empty() {
        publisher.pending.finish();
        Outcome::Done
    } else {
        batch.items = later;
        publisher.pending.restore(batch);
        Outcome::Unreachable
    }
}

/// How one item's replay went.
enum Step {
    /// Made, skipped or dropped: nothing left to do.
    Done,
    /// Failed in a way that may pass (an I/O error): tried again later,
    /// while the rest of the pass goes on.
    Later,
    /// Redis could not be reached: the pass stops.
    Unreachable,
}

/// One key's queued work.
async fn replay_item<L1: Storage>(
    store: &Tiered<L1, RedisStorage>,
    publisher: &Publisher,
    key: &str,
    item: &Item,
    max_age: Duration,
) -> Step {
    let counters = &publisher.counters;
    let Some(change) = &item.change else {
        // Only a message to send again.
        let kind = item.notice.unwrap_or(Kind::Delete);
        return if publisher.send(kind, key).await {
            Step::Done
        } else {
            Step::Unreachable
        };
    };
    let l2 = store.l2();
    let made = match change {
        Change::Set(entry) => {
            if reserved(key) {
                // A tag record: written if nothing changed it since; if
                // something did, the order of the two operations is not
                // known, so the record goes (every entry of the tag is
                // then invalid: a fetch again, never an entry kept valid).
                match l2.set_if_unchanged(key, entry, item.since).await {
                    Ok(Some(_)) => Ok(Kind::Set),
                    Ok(None) => l2.delete(key).await.map(|()| Kind::Delete),
                    Err(e) => Err(e),
                }
            } else if item.at.elapsed() > max_age {
                // Older than a delete's tombstone: a delete made elsewhere
                // meanwhile may no longer be visible, so it is not made,
                // and this instance's copy (of a write Redis never took)
                // goes, so it answers what the rest of the fleet does.
                Counters::bump(&counters.replay_dropped);
                let _ = store.remove_from_l1(key).await;
                return Step::Done;
            } else {
                match l2.set_if_unchanged(key, entry, item.since).await {
                    Ok(Some(version)) => {
                        publisher.pending.raise(key, version);
                        Ok(Kind::Set)
                    }
                    Ok(None) => {
                        // Another instance changed the key (or cleared the
                        // store, or Redis lost its history) after this
                        // instance last saw a version: that change may be
                        // newer, and this instance's copy goes.
                        Counters::bump(&counters.replay_skipped);
                        let _ = store.remove_from_l1(key).await;
                        return Step::Done;
                    }
                    Err(e) => Err(e),
                }
            }
        }
        // Invalidations are made whatever happened since: over a newer
        // write they cost a fetch; not made, old data would stay.
        Change::Delete => l2.delete(key).await.map(|()| Kind::Delete),
        Change::Expire(now) => l2.expire(key, *now).await.map(|_| Kind::Expire),
    };
    match made {
        Ok(kind) => {
            Counters::bump(&counters.replayed);
            // This instance's copy goes too: a read between Redis coming
            // back and this replay may have filled it from Redis's older
            // state (its own message is ignored).
            let _ = store.remove_from_l1(key).await;
            if !publisher.send(kind, key).await {
                publisher.pending.notice(key, kind);
            }
            Step::Done
        }
        Err(e) if e.kind() == StorageErrorKind::Unavailable => Step::Unreachable,
        // Tried again while it may still pass; an error that persists past
        // the tombstones' lifetime (a value Redis keeps refusing) is given
        // up, so no item is retried for ever.
        Err(e) if retryable(e.kind()) && item.at.elapsed() <= max_age => Step::Later,
        Err(_) => {
            Counters::bump(&counters.replay_errors);
            let _ = store.remove_from_l1(key).await;
            Step::Done
        }
    }
}
