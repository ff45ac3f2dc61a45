//! The task that applies other instances' changes to this one's L1, and
//! subscribes again when the subscription drops.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Client;
use swre_core::{Storage, StorageError, StorageErrorKind, Tiered};
use tokio::sync::Notify;

use super::message::{Kind, Message};
use super::stats::Counters;
use crate::observe::BackplaneGap;
use crate::redis_storage::io;
use crate::RedisStorage;

/// A subscription: the half that sends (pings) and the messages.
pub(crate) type Subscription = (PubSubSink, PubSubStream);

/// A subscription to `channel`, within `timeout`.
pub(crate) async fn subscribe(
    client: &Client,
    channel: &str,
    timeout: Duration,
) -> Result<Subscription, StorageError> {
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    tokio::time::timeout(timeout, subscribe)
        .await
        .map_err(|_| {
            StorageError::new(StorageErrorKind::Unavailable, "redis SUBSCRIBE: timed out")
        })?
        .map_err(io("SUBSCRIBE"))
}

/// What the listening task needs.
pub(crate) struct Listener<L1> {
    pub(crate) store: Arc<Tiered<L1, RedisStorage>>,
    pub(crate) client: Client,
    pub(crate) channel: Arc<str>,
    pub(crate) instance: u64,
    pub(crate) counters: Arc<Counters>,
    pub(crate) wake_replay: Arc<Notify>,
    pub(crate) connection_timeout: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) ping_timeout: Duration,
}

impl<L1: Storage> Listener<L1> {
    /// Listens on the subscription; when it ends (or stops answering
    /// pings) subscribes again, backing off from 50 ms to 500 ms, then
    /// empties L1 (it cannot know what it missed meanwhile) and wakes the
    /// replay. Runs until aborted (the backplane dropped).
    pub(crate) async fn run(self, mut subscription: Subscription) {
        loop {
            let gap = self.listen(&mut subscription).await;
            Counters::bump(&self.counters.subscription_lost);
            crate::observe::backplane_gap(gap);
            let mut delay = Duration::from_millis(50);
            subscription = loop {
                match subscribe(&self.client, &self.channel, self.connection_timeout).await {
                    Ok(s) => break s,
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_millis(500));
                    }
                }
            };
            // Every copy in L1 is from before the gap or during it: any may
            // be one another instance changed unheard. Emptied after the
            // subscription is back, so no change is missed in between.
            match self.store.clear_l1().await {
                Ok(()) => Counters::bump(&self.counters.l1_emptied),
                Err(_) => Counters::bump(&self.counters.apply_errors),
            }
            Counters::bump(&self.counters.resubscribed);
            self.wake_replay.notify_one();
        }
    }

    /// Applies each other instance's change until the stream ends or a
    /// ping goes unanswered; which of the two it was. Never panics on what it receives: a message
    /// it cannot read is counted and ignored.
    async fn listen(&self, (sink, stream): &mut Subscription) -> BackplaneGap {
        let mut next_ping = tokio::time::Instant::now() + self.heartbeat;
        loop {
            let msg = {
                let received = std::pin::pin!(stream.next());
                let beat = std::pin::pin!(tokio::time::sleep_until(next_ping));
                match futures::future::select(received, beat).await {
                    futures::future::Either::Left((msg, _)) => msg,
                    futures::future::Either::Right(((), _)) => {
                        next_ping = tokio::time::Instant::now() + self.heartbeat;
                        let ping = sink.ping::<redis::Value>();
                        match tokio::time::timeout(self.ping_timeout, ping).await {
                            Ok(Ok(_)) => {
                                // Keeps the version a failed write is
                                // conditional on recent.
                                let _ = self.store.l2().refresh_observed_version().await;
                                continue;
                            }
                            _ => {
                                Counters::bump(&self.counters.heartbeat_failures);
                                return BackplaneGap::Silent;
                            }
                        }
                    }
                }
            };
            let Some(msg) = msg else {
                return BackplaneGap::Disconnected;
            };
            let counters = &self.counters;
            Counters::bump(&counters.received);
            let Some(message) = Message::decode(msg.get_payload_bytes()) else {
                Counters::bump(&counters.malformed);
                continue;
            };
            if message.origin == self.instance {
                Counters::bump(&counters.ignored_own);
                continue;
            }
            // A set, delete or expire elsewhere: L2 holds what the key is
            // now (an expired entry included), so dropping the copy is
            // enough.
            let applied = match message.kind {
                Kind::Set | Kind::Delete | Kind::Expire => {
                    self.store.remove_from_l1(message.key).await
                }
                Kind::Clear => self.store.clear_l1().await,
            };
            match applied {
                Ok(()) => Counters::bump(&counters.applied),
                Err(_) => Counters::bump(&counters.apply_errors),
            }
        }
    }
}
