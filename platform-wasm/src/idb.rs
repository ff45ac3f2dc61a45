//! [`IndexedDbStorage`]: entries as envelope bytes in one IndexedDB object store.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use js_sys::Uint8Array;
use swre_core::{envelope, Entry, LeaseToken, Storage, StorageError, StorageErrorKind};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    IdbDatabase, IdbFactory, IdbObjectStore, IdbOpenDbRequest, IdbRequest, IdbTransactionMode,
};

use crate::js::{bytes_of, describe, global_property, storage_error, EventWait};
use crate::web_locks::{LeaseStats, WebLocks};

type Handler = Closure<dyn FnMut(web_sys::Event)>;

struct Connection {
    db: IdbDatabase,
    /// Closes `db` when another connection needs to upgrade or delete the
    /// database, or when the browser closes it; kept alive with the connection.
    _on_lost: Handler,
}

struct Inner {
    db_name: String,
    store: String,
    connection: RefCell<Option<Connection>>,
    closed: Cell<bool>,
    locks: WebLocks,
}

/// A [`Storage`] in an IndexedDB object store; works in windows and workers.
///
/// - Values are the versioned [`envelope`] as `Uint8Array`s keyed by the
///   cache key; anything else found under a key (garbage written by other
///   code, another key's envelope) reads as a miss and is overwritten.
/// - Opening creates the object store, upgrading the database version when the
///   database exists without it. An open that is `blocked` waits for the other
///   connections, which receive `versionchange`; this storage's own
///   connections close themselves on `versionchange` (and on a forced close)
///   and reopen lazily on the next operation.
/// - A database that cannot be opened or used returns `StorageError`s, which
///   the engine degrades ("storage failures degrade"): requests are answered by upstream.
/// - Writes resolve when their transaction has committed.
/// - Refresh leases ([`Storage::try_lease`]) are Web Locks (`navigator.locks`),
///   one per key, named after the database, the object store and the key:
///   every window, worker and service worker of the origin shares them, so
///   engines over the same database in different contexts make one upstream
///   call per key, as Redis's leases make one per fleet. A lock is held until
///   the engine releases it, its TTL passes, or its context closes. Without a
///   lock manager (an insecure context) a lease request fails and each
///   engine fetches for itself. Clones share their leases.
#[derive(Clone)]
pub struct IndexedDbStorage {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for IndexedDbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexedDbStorage")
            .field("db_name", &self.inner.db_name)
            .field("store", &self.inner.store)
            .field("connected", &self.inner.connection.borrow().is_some())
            .finish()
    }
}

fn unavailable(op: &str, e: &JsValue) -> StorageError {
    storage_error(StorageErrorKind::Unavailable, op, e)
}

fn factory() -> Result<IdbFactory, StorageError> {
    global_property("indexedDB")
        .and_then(|f| f.dyn_into::<IdbFactory>().ok())
        .ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Unavailable,
                "IndexedDB is not available in this context",
            )
        })
}

/// Waits for `req`'s `success` (`true`) or `error` (`false`) event, then
/// detaches the handlers.
async fn request_done(req: &IdbRequest) -> bool {
    let done = EventWait::new(|ok, err| {
        req.set_onsuccess(Some(ok));
        req.set_onerror(Some(err));
    });
    let ok = done.wait().await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    ok
}

async fn open_version(
    factory: &IdbFactory,
    name: &str,
    version: Option<u32>,
    store: &str,
) -> Result<IdbDatabase, StorageError> {
    let req: IdbOpenDbRequest = match version {
        None => factory.open(name),
        Some(v) => factory.open_with_u32(name, v),
    }
    .map_err(|e| unavailable("open IndexedDB", &e))?;
    let store_name = store.to_owned();
    let upgrading = req.clone();
    let on_upgrade = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
        let Ok(db) = upgrading.result().and_then(|r| r.dyn_into::<IdbDatabase>()) else {
            return;
        };
        if !db.object_store_names().contains(&store_name) {
            let _ = db.create_object_store(&store_name);
        }
    });
    req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let ok = request_done(&req).await;
    req.set_onupgradeneeded(None);
    drop(on_upgrade);
    if !ok {
        let why = req
            .error()
            .ok()
            .flatten()
            .map(JsValue::from)
            .unwrap_or(JsValue::NULL);
        return Err(unavailable("open IndexedDB", &why));
    }
    req.result()
        .and_then(|r| r.dyn_into::<IdbDatabase>())
        .map_err(|e| unavailable("open IndexedDB", &e))
}

impl IndexedDbStorage {
    /// Opens (creating if needed) `store_name` in database `db_name`.
    pub async fn open(db_name: &str, store_name: &str) -> Result<Self, StorageError> {
        if store_name.is_empty() {
            return Err(StorageError::new(
                StorageErrorKind::InvalidKey,
                "IndexedDbStorage::open: the object store name is empty",
            ));
        }
        let storage = Self {
            inner: Rc::new(Inner {
                db_name: db_name.to_owned(),
                store: store_name.to_owned(),
                connection: RefCell::new(None),
                closed: Cell::new(false),
                locks: WebLocks::new(format!(
                    "swre lease {}:{db_name} {}:{store_name} ",
                    db_name.len(),
                    store_name.len()
                )),
            }),
        };
        storage.database().await?;
        Ok(storage)
    }

    /// Deletes database `db_name` (every store in it); waits while other
    /// connections are open and do not close.
    pub async fn delete_database(db_name: &str) -> Result<(), StorageError> {
        let req = factory()?
            .delete_database(db_name)
            .map_err(|e| unavailable("delete IndexedDB", &e))?;
        if request_done(&req).await {
            Ok(())
        } else {
            Err(StorageError::new(
                StorageErrorKind::Io,
                "delete IndexedDB failed",
            ))
        }
    }

    /// Closes the connection; every later operation fails with
    /// `StorageErrorKind::Unavailable` (the engine answers from upstream).
    pub fn close(&self) {
        self.inner.closed.set(true);
        if let Some(c) = self.inner.connection.borrow_mut().take() {
            c.db.close();
        }
    }

    /// The open connection, opening (or reopening) it if needed.
    async fn database(&self) -> Result<IdbDatabase, StorageError> {
        if self.inner.closed.get() {
            return Err(StorageError::new(
                StorageErrorKind::Unavailable,
                "IndexedDB storage is closed",
            ));
        }
        if let Some(c) = self.inner.connection.borrow().as_ref() {
            return Ok(c.db.clone());
        }
        let factory = factory()?;
        let (name, store) = (&self.inner.db_name, &self.inner.store);
        let mut db = open_version(&factory, name, None, store).await?;
        if !db.object_store_names().contains(store) {
            let next = (db.version() as u32).saturating_add(1);
            db.close();
            db = open_version(&factory, name, Some(next), store).await?;
        }
        let weak: Weak<Inner> = Rc::downgrade(&self.inner);
        let lost_db = db.clone();
        let on_lost = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            lost_db.close();
            if let Some(inner) = weak.upgrade() {
                inner.connection.borrow_mut().take();
            }
        });
        db.set_onversionchange(Some(on_lost.as_ref().unchecked_ref()));
        db.set_onclose(Some(on_lost.as_ref().unchecked_ref()));
        *self.inner.connection.borrow_mut() = Some(Connection {
            db: db.clone(),
            _on_lost: on_lost,
        });
        Ok(db)
    }

    /// What this store's refresh leases (Web Locks) have done since it was
    /// opened; clones share the counts.
    pub fn lease_stats(&self) -> LeaseStats {
        self.inner.locks.stats()
    }

    fn forget_connection(&self) {
        if let Some(c) = self.inner.connection.borrow_mut().take() {
            c.db.close();
        }
    }

    /// Runs one request in its own transaction; resolves with the request's
    /// result once the transaction has completed.
    async fn run(
        &self,
        op: &str,
        mode: IdbTransactionMode,
        request: impl FnOnce(&IdbObjectStore) -> Result<IdbRequest, JsValue>,
    ) -> Result<JsValue, StorageError> {
        let store_name = self.inner.store.as_str();
        let tx = match self
            .database()
            .await?
            .transaction_with_str_and_mode(store_name, mode)
        {
            Ok(tx) => tx,
            Err(_) => {
                // The connection was closing: reopen once.
                self.forget_connection();
                self.database()
                    .await?
                    .transaction_with_str_and_mode(store_name, mode)
                    .map_err(|e| unavailable(op, &e))?
            }
        };
        let committed = EventWait::new(|ok, err| {
            tx.set_oncomplete(Some(ok));
            tx.set_onerror(Some(err));
            tx.set_onabort(Some(err));
        });
        let store = tx
            .object_store(store_name)
            .map_err(|e| unavailable(op, &e))?;
        let req = request(&store).map_err(|e| storage_error(StorageErrorKind::Io, op, &e))?;
        let result = if request_done(&req).await {
            Ok(req.result().unwrap_or(JsValue::UNDEFINED))
        } else {
            let why = req
                .error()
                .ok()
                .flatten()
                .map(JsValue::from)
                .unwrap_or(JsValue::NULL);
            Err(storage_error(StorageErrorKind::Io, op, &why))
        };
        let tx_ok = committed.wait().await;
        tx.set_oncomplete(None);
        tx.set_onerror(None);
        tx.set_onabort(None);
        let result = result?;
        if tx_ok {
            Ok(result)
        } else {
            let why = tx.error().map(JsValue::from).unwrap_or(JsValue::NULL);
            Err(StorageError::new(
                StorageErrorKind::Io,
                format!("{op}: transaction failed: {}", describe(&why)),
            ))
        }
    }
}

impl Storage for IndexedDbStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let k = JsValue::from_str(key);
        let value = self
            .run("IndexedDB get", IdbTransactionMode::Readonly, |s| s.get(&k))
            .await?;
        Ok(bytes_of(&value).and_then(|b| envelope::decode_for(key, &b)))
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let bytes = envelope::seal(key, &entry)?;
        let value = Uint8Array::from(&bytes[..]);
        let k = JsValue::from_str(key);
        self.run("IndexedDB put", IdbTransactionMode::Readwrite, |s| {
            s.put_with_key(&value, &k)
        })
        .await
        .map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let k = JsValue::from_str(key);
        self.run("IndexedDB delete", IdbTransactionMode::Readwrite, |s| {
            s.delete(&k)
        })
        .await
        .map(|_| ())
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.run("IndexedDB clear", IdbTransactionMode::Readwrite, |s| {
            s.clear()
        })
        .await
        .map(|_| ())
    }

    async fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StorageError> {
        self.inner.locks.try_lease(key, ttl).await
    }

    async fn release_lease(&self, key: &str, token: LeaseToken) {
        let _ = key;
        self.inner.locks.release(token).await;
    }
}
