//! [`CacheApiStorage`]: entries as responses in a `caches.open(name)` cache.

use std::cell::RefCell;

use js_sys::{Promise, Uint8Array};
use swre_core::{envelope, Clock, Entry, Storage, StorageError, StorageErrorKind};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, CacheStorage, Headers, Response, ResponseInit};

use crate::js::{bytes_of, global_property, storage_error};
use crate::runtime::StoreClock;

/// The prefix under which keys become request URLs (never fetched). The `k-`
/// keeps a key of `.` or `..` from being a dot segment that URL parsing removes.
const KEY_PREFIX: &str = "https://swre.cache/k-";

/// A [`Storage`] in the Cache API: browsers, service workers and Cloudflare
/// Workers.
///
/// Each key becomes the URL `https://swre.cache/k-<encodeURIComponent(key)>`
/// (so any key, `..`, `/`, `?`, `#`, NUL included, is one path segment), and each
/// entry a `200` response whose body is the versioned [`envelope`], with
/// `Cache-Control: max-age` set to the entry's remaining life so caches that
/// honour it (Workers) drop it when it is gone; the remaining life is counted
/// on `Date.now()`, or on the clock given to
/// [`open_with_clock`](Self::open_with_clock). A body that is not an intact
/// envelope for that key reads as a miss and is overwritten.
#[derive(Debug)]
pub struct CacheApiStorage {
    name: String,
    cache: RefCell<Option<Cache>>,
    clock: StoreClock,
}

fn caches() -> Result<CacheStorage, StorageError> {
    global_property("caches")
        .and_then(|c| c.dyn_into::<CacheStorage>().ok())
        .ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Unavailable,
                "the Cache API (`caches`) is not available in this context",
            )
        })
}

async fn settle(op: &str, p: Result<Promise, JsValue>) -> Result<JsValue, StorageError> {
    let p = p.map_err(|e| storage_error(StorageErrorKind::Io, op, &e))?;
    JsFuture::from(p)
        .await
        .map_err(|e| storage_error(StorageErrorKind::Io, op, &e))
}

/// The request URL for `key`.
pub(crate) fn url_for(key: &str) -> String {
    let encoded: String = js_sys::encode_uri_component(key).into();
    format!("{KEY_PREFIX}{encoded}")
}

impl CacheApiStorage {
    /// Opens (creating if needed) the cache called `name`.
    pub async fn open(name: &str) -> Result<Self, StorageError> {
        Self::open_clocked(name, StoreClock::default()).await
    }

    /// [`open`](Self::open), counting each entry's remaining life (its
    /// `max-age`) on `clock`, the engine's, rather than `Date.now()`.
    pub async fn open_with_clock(
        name: &str,
        clock: impl Clock + 'static,
    ) -> Result<Self, StorageError> {
        Self::open_clocked(name, StoreClock::new(clock)).await
    }

    async fn open_clocked(name: &str, clock: StoreClock) -> Result<Self, StorageError> {
        let storage = Self {
            name: name.to_owned(),
            cache: RefCell::new(None),
            clock,
        };
        storage.cache().await?;
        Ok(storage)
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn cache(&self) -> Result<Cache, StorageError> {
        if let Some(c) = self.cache.borrow().as_ref() {
            return Ok(c.clone());
        }
        let opened = settle("caches.open", Ok(caches()?.open(&self.name))).await?;
        let cache: Cache = opened
            .dyn_into()
            .map_err(|e| storage_error(StorageErrorKind::Unavailable, "caches.open", &e))?;
        *self.cache.borrow_mut() = Some(cache.clone());
        Ok(cache)
    }
}

impl Storage for CacheApiStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let cache = self.cache().await?;
        let found = settle("cache.match", Ok(cache.match_with_str(&url_for(key)))).await?;
        let Ok(response) = found.dyn_into::<Response>() else {
            return Ok(None);
        };
        let body = settle("response.arrayBuffer", response.array_buffer()).await?;
        Ok(bytes_of(&body).and_then(|b| envelope::decode_for(key, &b)))
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let bytes = envelope::seal(key, &entry)?;
        let remaining_s = entry.expires_at.saturating_sub(self.clock.now_ms()) / 1000;
        let headers = Headers::new()
            .map_err(|e| storage_error(StorageErrorKind::Other, "new Headers", &e))?;
        let _ = headers.set("content-type", "application/octet-stream");
        let _ = headers.set("cache-control", &format!("max-age={}", remaining_s.max(1)));
        let init = ResponseInit::new();
        init.set_status(200);
        init.set_headers(&headers);
        let body = Uint8Array::from(&bytes[..]);
        let response = Response::new_with_opt_buffer_source_and_init(Some(&body), &init)
            .map_err(|e| storage_error(StorageErrorKind::Other, "new Response", &e))?;
        let cache = self.cache().await?;
        settle(
            "cache.put",
            Ok(cache.put_with_str(&url_for(key), &response)),
        )
        .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let cache = self.cache().await?;
        settle("cache.delete", Ok(cache.delete_with_str(&url_for(key)))).await?;
        Ok(())
    }

    async fn clear(&self) -> Result<(), StorageError> {
        settle("caches.delete", Ok(caches()?.delete(&self.name))).await?;
        self.cache.borrow_mut().take();
        Ok(())
    }
}
