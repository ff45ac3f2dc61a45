//! Refresh leases from the Web Locks API (`navigator.locks`): one lock per
//! key, exclusive across every window, worker and service worker of the
//! origin, so one context fetches a key while the others wait for the value
//! it stores ([`Storage::try_lease`](swre_core::Storage::try_lease)).
//!
//! A lease is a lock requested with `ifAvailable`: the lock manager calls
//! back at once with the lock, or with `null` when another holder has it
//! (refused). A granted lock is held for as long as the promise the callback
//! returned is pending; that promise resolves on
//! [`release`](WebLocks::release), when the lease's TTL passes (a holder that
//! hangs holds it no longer), or when this store is dropped. The browser
//! releases the locks of a context that closes (a tab, a terminated worker).
//! Where there is no lock manager (an insecure context, an old browser,
//! Node, workerd) a lease request fails, and the engine goes on without one
//! ("storage failures degrade").

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use js_sys::{Function, Object, Promise, Reflect};
use swre_core::{LeaseToken, StorageError, StorageErrorKind};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::js::{global_property, storage_error};
use crate::runtime::{clear_timeout, set_timeout};

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (declared here: web-sys has it behind
    /// `web_sys_unstable_apis`).
    type LockManager;

    #[wasm_bindgen(method, catch)]
    fn request(
        this: &LockManager,
        name: &str,
        options: &Object,
        callback: &Function,
    ) -> Result<Promise, JsValue>;
}

/// What a store's leases have done since it was opened
/// ([`IndexedDbStorage::lease_stats`](crate::IndexedDbStorage::lease_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseStats {
    /// Leases granted: this context was to call upstream for the key while
    /// the others waited for the value it stored. A waiter granted the lock
    /// just after the holder stored and let go finds the value on its
    /// re-read and calls nothing, so grants can exceed upstream calls.
    pub lease_grants: u64,
    /// Lease requests refused because another context (or another cache in
    /// this one) held the key's lock; a waiting call asks again as it polls,
    /// and each refusal counts.
    pub lease_refusals: u64,
    /// Lease requests that failed (no lock manager in this context, or it
    /// refused the request): the call went on without a lease.
    pub lease_errors: u64,
}

impl LeaseStats {
    /// Every field with its name, in declaration order (the JS package's
    /// `stats()` adds them to the engine's).
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("lease_grants", self.lease_grants),
            ("lease_refusals", self.lease_refusals),
            ("lease_errors", self.lease_errors),
        ]
        .into_iter()
    }
}

/// A lock being held: resolving `resolve` lets it go.
struct Held {
    resolve: Function,
    /// The TTL's timer, which resolves it too.
    timer: Option<JsValue>,
    /// The request's promise, which settles once the lock manager has let
    /// the lock go.
    request: Option<Promise>,
}

struct State {
    /// Every lock name starts so: the store's database and object store.
    prefix: String,
    next: Cell<u64>,
    /// By token; few (one per key this context is fetching).
    held: RefCell<Vec<(u64, Held)>>,
    stats: Cell<LeaseStats>,
}

impl State {
    /// Lets go of the lock granted with `token`: the promise that settles
    /// once the lock manager has, if it was held.
    fn release(&self, token: u64) -> Option<Promise> {
        let held = {
            let mut held = self.held.borrow_mut();
            let at = held.iter().position(|(t, _)| *t == token);
            at.map(|i| held.swap_remove(i).1)
        }?;
        if let Some(timer) = &held.timer {
            clear_timeout(timer);
        }
        let _ = held.resolve.call0(&JsValue::UNDEFINED);
        held.request
    }

    fn count(&self, f: impl FnOnce(&mut LeaseStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

impl Drop for State {
    /// A store dropped while holding locks lets them go (rather than at
    /// their TTL).
    fn drop(&mut self) {
        for (_, h) in self.held.get_mut().drain(..) {
            if let Some(timer) = &h.timer {
                clear_timeout(timer);
            }
            let _ = h.resolve.call0(&JsValue::UNDEFINED);
        }
    }
}

/// Releases a grant nobody will see: the lease future was dropped after the
/// lock manager granted the lock and before the grant was read.
struct Unclaimed {
    state: Rc<State>,
    token: u64,
    claimed: bool,
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if !self.claimed {
            let _ = self.state.release(self.token);
        }
    }
}

/// The leases of one shared store, as Web Locks named after it.
pub(crate) struct WebLocks {
    state: Rc<State>,
}

impl WebLocks {
    /// Leases on locks named `prefix` followed by the key.
    pub(crate) fn new(prefix: String) -> Self {
        Self {
            state: Rc::new(State {
                prefix,
                next: Cell::new(0),
                held: RefCell::new(Vec::new()),
                stats: Cell::new(LeaseStats::default()),
            }),
        }
    }

    /// Counters since this store was opened.
    pub(crate) fn stats(&self) -> LeaseStats {
        self.state.stats.get()
    }

    /// Takes `key`'s lock if no one holds it, for at most `ttl`.
    pub(crate) async fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StorageError> {
        let state = &self.state;
        let Some(locks) = lock_manager() else {
            state.count(|s| s.lease_errors += 1);
            return Err(StorageError::new(
                StorageErrorKind::Unavailable,
                "Web Locks (navigator.locks) are not available in this context",
            ));
        };
        let token = state.next.get().wrapping_add(1).max(1);
        state.next.set(token);
        let (granted_tx, granted) = oneshot::channel::<bool>();
        let holder = state.clone();
        // The request's promise, set as soon as `request` returns: the lock
        // manager calls back later, from a task of its own.
        let request_slot: Rc<RefCell<Option<Promise>>> = Rc::default();
        let request_seen = request_slot.clone();
        let ttl_ms = ttl.as_millis().min(i32::MAX as u128) as f64;
        // Called once by the lock manager, at once (`ifAvailable`). Should
        // this future be dropped first, the closure goes with it, the call
        // throws, and the lock manager releases the lock.
        let callback = Closure::once(move |lock: JsValue| -> JsValue {
            if lock.is_null() || lock.is_undefined() {
                let _ = granted_tx.send(false);
                return JsValue::UNDEFINED;
            }
            let mut resolve = None;
            let hold = Promise::new(&mut |r, _| resolve = Some(r));
            // The executor runs synchronously, so `resolve` is set; were it
            // not, the lock is let go at once (resolved with `undefined`).
            let Some(resolve) = resolve else {
                let _ = granted_tx.send(false);
                return JsValue::UNDEFINED;
            };
            let timer = set_timeout(&resolve, ttl_ms);
            let request = request_seen.borrow_mut().take();
            let held = Held {
                resolve,
                timer,
                request,
            };
            holder.held.borrow_mut().push((token, held));
            if granted_tx.send(true).is_err() {
                let _ = holder.release(token);
            }
            hold.into()
        });
        let request = locks
            .request(
                &format!("{}{key}", state.prefix),
                &request_options(),
                callback.as_ref().unchecked_ref(),
            )
            .map_err(|e| {
                state.count(|s| s.lease_errors += 1);
                storage_error(StorageErrorKind::Unavailable, "navigator.locks.request", &e)
            })?;
        *request_slot.borrow_mut() = Some(request.clone());
        let mut unclaimed = Unclaimed {
            state: state.clone(),
            token,
            claimed: false,
        };
        // The request's promise settles when the lock is let go, or rejects
        // without calling back (a document that is not fully active, say).
        match select(granted, JsFuture::from(request)).await {
            Either::Left((Ok(true), _)) => {
                unclaimed.claimed = true;
                state.count(|s| s.lease_grants += 1);
                Ok(Some(LeaseToken(token)))
            }
            Either::Left((Ok(false), _)) => {
                state.count(|s| s.lease_refusals += 1);
                Ok(None)
            }
            Either::Left((Err(_), _)) | Either::Right((Ok(_), _)) => {
                state.count(|s| s.lease_errors += 1);
                Err(StorageError::new(
                    StorageErrorKind::Unavailable,
                    "navigator.locks.request ended without granting or refusing the lock",
                ))
            }
            Either::Right((Err(e), _)) => {
                state.count(|s| s.lease_errors += 1);
                Err(storage_error(
                    StorageErrorKind::Unavailable,
                    "navigator.locks.request",
                    &e,
                ))
            }
        }
    }

    /// Lets go of the lock granted with `token`, if this store still holds
    /// it (not after its TTL let it go and another context took it: that
    /// one's grant has another owner). Resolves once the lock manager has
    /// let it go, so that a lease asked for next (by this context too) is
    /// granted.
    pub(crate) async fn release(&self, token: LeaseToken) {
        if let Some(request) = self.state.release(token.0) {
            let _ = JsFuture::from(request).await;
        }
    }
}

thread_local! {
    /// `{ mode: "exclusive", ifAvailable: true }`, made once.
    static OPTIONS: Object = {
        let o = Object::new();
        let _ = Reflect::set(&o, &"mode".into(), &"exclusive".into());
        let _ = Reflect::set(&o, &"ifAvailable".into(), &JsValue::TRUE);
        o
    };
}

fn request_options() -> Object {
    OPTIONS.with(Object::clone)
}

/// `navigator.locks`, if this context has a lock manager.
fn lock_manager() -> Option<LockManager> {
    let navigator = global_property("navigator")?;
    Reflect::get(&navigator, &JsValue::from_str("locks"))
        .ok()
        .filter(JsValue::is_object)
        .map(JsCast::unchecked_into)
}
