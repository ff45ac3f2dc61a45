//! The task that replays what the backplane queued while Redis could not be
//! reached: each change conditional on the version Redis had assigned when
//! it failed, so it never overwrites a newer change another instance made
//! meanwhile, then published like any change.

use std::sync::Arc;
use std::time::Duration;

use swre_core::{Storage, Tiered};
use tokio::sync::Notify;

use super::message::Kind;
use super::pending::{Change, Item};
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
/// off from 100 ms to 2 s. Ends when the backplane is dropped (aborted).
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
            Outcome::Unreachable => delay = (delay * 2).min(Duration::from_secs(2)),
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
    if let Some(clear) = batch.clear {
        if clear.at.elapsed() > max_age {
            Counters::bump(&counters.replay_dropped);
        } else {
            match store.l2().clear_unchanged_since(clear.since).await {
                Ok(_) => Counters::bump(&counters.replayed),
                Err(e) if retryable(e.kind()) => {
                    publisher.pending.restore(batch);
                    return Outcome::Unreachable;
                }
                Err(_) => Counters::bump(&counters.replay_errors),
            }
        }
        // Made, or not to be made: either way the other instances empty
        // their L1 (this one's L1 was emptied when the clear was asked for).
        batch.clear = None;
        batch.clear_notice = true;
    }
    if batch.clear_notice {
        if !publisher.send(Kind::Clear, "").await {
            publisher.pending.restore(batch);
            return Outcome::Unreachable;
        }
        batch.clear_notice = false;
    }
    while let Some((key, item)) = batch.items.pop() {
        match replay_item(store, publisher, &key, &item, max_age).await {
            Ok(()) => {}
            Err(()) => {
                batch.items.push((key, item));
                publisher.pending.restore(batch);
                return Outcome::Unreachable;
            }
        }
    }
    publisher.pending.finish();
    Outcome::Done
}

/// One key's queued work; `Err` when Redis could not be reached (the item
/// is then queued again).
async fn replay_item<L1: Storage>(
    store: &Tiered<L1, RedisStorage>,
    publisher: &Publisher,
    key: &str,
    item: &Item,
    max_age: Duration,
) -> Result<(), ()> {
    let counters = &publisher.counters;
    let Some(change) = &item.change else {
        // Only a message to send again.
        let kind = item.notice.unwrap_or(Kind::Delete);
        return if publisher.send(kind, key).await {
            Ok(())
        } else {
            Err(())
        };
    };
    if item.at.elapsed() > max_age {
        // Older than a delete's tombstone: a delete made elsewhere meanwhile
        // may no longer be visible, so it is not made. This instance's L1
        // copy (of a write Redis never took) goes, so it answers what the
        // rest of the fleet does.
        Counters::bump(&counters.replay_dropped);
        let _ = store.remove_from_l1(key).await;
        return Ok(());
    }
    let l2 = store.l2();
    let made = match change {
        Change::Set(entry) => l2.set_if_unchanged(key, entry, item.since).await,
        Change::Delete => l2.delete_if_unchanged(key, item.since).await,
        Change::Expire(now) => l2.expire_if_unchanged(key, *now, item.since).await,
    };
    match made {
        Ok(true) => {
            Counters::bump(&counters.replayed);
            if !publisher.send(change.kind(), key).await {
                publisher.pending.notice(key, change.kind());
            }
            if let Change::Expire(now) = change {
                // L1's copy, if any, is expired too (it was when the change
                // was first made; a fill since may have brought it back).
                let _ = store.l1().expire(key, *now).await;
            }
        }
        Ok(false) => {
            // Another instance changed the key after this one's change
            // failed: its change is newer, and this instance's L1 copy goes.
            Counters::bump(&counters.replay_skipped);
            let _ = store.remove_from_l1(key).await;
        }
        Err(e) if retryable(e.kind()) => return Err(()),
        Err(_) => {
            Counters::bump(&counters.replay_errors);
            let _ = store.remove_from_l1(key).await;
        }
    }
    Ok(())
}
