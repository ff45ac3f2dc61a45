//! [`Broadcast`]: a [`Tiered`] store whose browser contexts tell each other
//! what they change, over a `BroadcastChannel`, so that none keeps serving a
//! memory copy another context replaced, removed, expired or cleared (the
//! browser's counterpart of swre-native's Redis `Backplane`).

use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use js_sys::Array;
use swre_core::{Entry, LeaseToken, Storage, StorageError, Tiered};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent};

/// What a [`Broadcast`] store has sent and received since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastStats {
    /// Changes announced to the other contexts (each successful write,
    /// delete, expire, `remove_older` and clear).
    pub broadcasts_sent: u64,
    /// Other contexts' changes received: the key's memory copy dropped (all
    /// of them for a clear).
    pub broadcasts_received: u64,
    /// Changes not announced because this context has no `BroadcastChannel`
    /// (or posting failed): the other contexts keep their memory copies
    /// until they stop being fresh.
    pub broadcasts_unsent: u64,
}

impl BroadcastStats {
    /// Every field with its name, in declaration order (the JS package's
    /// `stats()` adds them to the engine's).
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("broadcasts_sent", self.broadcasts_sent),
            ("broadcasts_received", self.broadcasts_received),
            ("broadcasts_unsent", self.broadcasts_unsent),
        ]
        .into_iter()
    }
}

/// The channel and its listener; closed when dropped.
struct Channel {
    port: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.port.set_onmessage(None);
        self.port.close();
    }
}

/// A [`Tiered`] store shared by several browser contexts (windows, workers,
/// service workers of one origin: L2 is IndexedDB, say), each with its own
/// L1, kept coherent over a `BroadcastChannel`.
///
/// - After each successful `set`, `delete`, `expire`, `remove_older` and
///   `clear` it posts `[kind, key]` (`["clear"]` for a clear) on the channel:
///   never the value, which the other contexts read from L2 when they need
///   it. Tag operations write their records through `set`, so they are
///   announced like any write.
/// - It listens on the channel and, for each change another context made,
///   drops the key's L1 copy ([`Tiered::remove_from_l1`], as a write of the
///   key, so a read in flight does not put the older copy back), or empties
///   L1 for a clear ([`Tiered::clear_l1`]). The channel does not deliver a
///   context's messages to the object that posted them, so its own changes
///   are not applied twice; another `Broadcast` on the same channel in the
///   same context does receive them, as it has its own L1.
/// - Where `BroadcastChannel` is missing (or cannot be made), or a post
///   fails, the change is still made and counted as unsent
///   ([`BroadcastStats::broadcasts_unsent`]): the other contexts then serve
///   their L1 copies until those stop being fresh.
/// - Every read and the leases are the wrapped store's.
///
/// The channel closes when the store is dropped.
pub struct Broadcast<L1, L2> {
    tiered: Rc<Tiered<L1, L2>>,
    channel: Option<Channel>,
    stats: Rc<Cell<BroadcastStats>>,
}

impl<L1, L2> std::fmt::Debug for Broadcast<L1, L2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("channel", &self.channel.as_ref().map(|c| c.port.name()))
            .field("stats", &self.stats.get())
            .finish()
    }
}

fn count(stats: &Cell<BroadcastStats>, f: impl FnOnce(&mut BroadcastStats)) {
    let mut s = stats.get();
    f(&mut s);
    stats.set(s);
}

impl<L1: Storage, L2: Storage> Broadcast<L1, L2> {
    /// `tiered`, announcing its changes on the `BroadcastChannel` named
    /// `channel` and applying the other contexts' (every context sharing L2
    /// must use the same name; contexts not sharing it, different ones).
    pub fn new(tiered: Tiered<L1, L2>, channel: &str) -> Self {
        let tiered = Rc::new(tiered);
        let stats = Rc::new(Cell::new(BroadcastStats::default()));
        let channel = BroadcastChannel::new(channel).ok().map(|port| {
            let on_message = listener(Rc::downgrade(&tiered), Rc::downgrade(&stats));
            port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            Channel {
                port,
                _on_message: on_message,
            }
        });
        Self {
            tiered,
            channel,
            stats,
        }
    }

    /// The store it wraps.
    pub fn tiered(&self) -> &Tiered<L1, L2> {
        &self.tiered
    }

    /// Whether it has a channel (`BroadcastChannel` exists here).
    pub fn is_connected(&self) -> bool {
        self.channel.is_some()
    }

    /// Counters since it was made.
    pub fn stats(&self) -> BroadcastStats {
        self.stats.get()
    }

    /// Tells the other contexts that `key` (all keys: `None`) changed.
    fn announce(&self, kind: &str, key: Option<&str>) {
        let message = match key {
            Some(k) => Array::of2(&JsValue::from_str(kind), &JsValue::from_str(k)),
            None => Array::of1(&JsValue::from_str(kind)),
        };
        let sent = self
            .channel
            .as_ref()
            .is_some_and(|c| c.port.post_message(&message).is_ok());
        count(&self.stats, |s| match sent {
            true => s.broadcasts_sent += 1,
            false => s.broadcasts_unsent += 1,
        });
    }

    /// A change about to be made: announced when it succeeds, and also
    /// when the caller stops waiting for it (a deadline drops the future),
    /// since IndexedDB may still commit what was started; a needless
    /// announcement costs the others one read.
    fn pending<'a>(&'a self, kind: &'static str, key: Option<&'a str>) -> Pending<'a, L1, L2> {
        Pending {
            broadcast: self,
            kind,
            key,
            armed: true,
        }
    }
}

/// See [`Broadcast::pending`].
struct Pending<'a, L1: Storage, L2: Storage> {
    broadcast: &'a Broadcast<L1, L2>,
    kind: &'static str,
    key: Option<&'a str>,
    armed: bool,
}

impl<L1: Storage, L2: Storage> Pending<'_, L1, L2> {
    /// `r`, announced if it is a success.
    fn settled<T>(mut self, r: Result<T, StorageError>) -> Result<T, StorageError> {
        self.armed = false;
        if r.is_ok() {
            self.broadcast.announce(self.kind, self.key);
        }
        r
    }
}

impl<L1: Storage, L2: Storage> Drop for Pending<'_, L1, L2> {
    fn drop(&mut self) {
        if self.armed {
            self.broadcast.announce(self.kind, self.key);
        }
    }
}

/// The channel's `onmessage`: drops the L1 copy of the key another context
/// changed (or all of L1), from a task of its own (the drop is async).
fn listener<L1: Storage, L2: Storage>(
    tiered: Weak<Tiered<L1, L2>>,
    stats: Weak<Cell<BroadcastStats>>,
) -> Closure<dyn FnMut(MessageEvent)> {
    Closure::new(move |e: MessageEvent| {
        let Some(message) = e.data().dyn_into::<Array>().ok() else {
            return;
        };
        let kind = message.get(0).as_string();
        let key = message.get(1).as_string();
        let clear = match (kind.as_deref(), &key) {
            (Some("clear"), None) => true,
            (Some("set" | "delete" | "expire" | "remove"), Some(_)) => false,
            _ => return,
        };
        let (Some(tiered), Some(stats)) = (tiered.upgrade(), stats.upgrade()) else {
            return;
        };
        count(&stats, |s| s.broadcasts_received += 1);
        // As a promise nobody awaits (the engine's task glue, not another
        // executor). A failed removal (an L1 that cannot be changed) leaves
        // the copy to its fresh window, as with no channel at all.
        let _ = crate::js::boxed_promise(Box::pin(async move {
            let _ = match key {
                Some(k) if !clear => tiered.remove_from_l1(&k).await,
                _ => tiered.clear_l1().await,
            };
            Ok(JsValue::UNDEFINED)
        }));
    })
}

impl<L1: Storage, L2: Storage> Storage for Broadcast<L1, L2> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.tiered.get(key).await
    }

    async fn get_shared(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.tiered.get_shared(key).await
    }

    #[inline]
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        self.tiered.get_ready(key)
    }

    #[inline]
    fn get_shared_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        self.tiered.get_shared_ready(key)
    }

    #[inline]
    fn peek_ready<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Entry) -> T,
    ) -> Option<Result<Option<T>, StorageError>> {
        self.tiered.peek_ready(key, f)
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let guard = self.pending("set", Some(key));
        let r = self.tiered.set(key, entry).await;
        guard.settled(r)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let guard = self.pending("delete", Some(key));
        let r = self.tiered.delete(key).await;
        guard.settled(r)
    }

    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        let guard = self.pending("remove", Some(key));
        let r = self.tiered.remove_older(key, written).await;
        guard.settled(r)
    }

    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        let guard = self.pending("expire", Some(key));
        let r = self.tiered.expire(key, now).await;
        guard.settled(r)
    }

    async fn clear(&self) -> Result<(), StorageError> {
        let guard = self.pending("clear", None);
        let r = self.tiered.clear().await;
        guard.settled(r)
    }

    async fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StorageError> {
        self.tiered.try_lease(key, ttl).await
    }

    async fn release_lease(&self, key: &str, token: LeaseToken) {
        self.tiered.release_lease(key, token).await
    }
}
