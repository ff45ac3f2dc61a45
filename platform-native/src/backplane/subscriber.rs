//! The task that applies other instances' changes to this one's L1.

use std::sync::Arc;

use futures::StreamExt;
use redis::aio::PubSubStream;
use swre_core::{Storage, Tiered};

use super::message::{Kind, Message};
use super::stats::Counters;

/// Reads `stream` until it ends (the connection dropped) or the task is
/// aborted (the backplane dropped): each other instance's change drops the
/// key's L1 copy in `store` (empties L1 for a clear), so the next read
/// finds L2. Never panics on what it receives: a message it cannot read is
/// counted and ignored.
pub(crate) async fn run<L1: Storage, L2: Storage>(
    mut stream: PubSubStream,
    store: Arc<Tiered<L1, L2>>,
    instance: u64,
    counters: Arc<Counters>,
) {
    while let Some(msg) = stream.next().await {
        Counters::bump(&counters.received);
        let Some(message) = Message::decode(msg.get_payload_bytes()) else {
            Counters::bump(&counters.malformed);
            continue;
        };
        if message.origin == instance {
            Counters::bump(&counters.ignored_own);
            continue;
        }
        // A set, delete or expire elsewhere: L2 holds what the key is now
        // (an expired entry included), so dropping the copy is enough.
        let applied = match message.kind {
            Kind::Set | Kind::Delete | Kind::Expire => store.remove_from_l1(message.key).await,
            Kind::Clear => store.clear_l1().await,
        };
        match applied {
            Ok(()) => Counters::bump(&counters.applied),
            Err(_) => Counters::bump(&counters.apply_errors),
        }
    }
    Counters::bump(&counters.subscription_lost);
}
