//! The negative cache ("errors can be remembered"): upstream errors remembered per key for
//! `negative_ttl`, so callers in that window get the error without a call.

use alloc::boxed::Box;
use hashbrown::HashMap;
use spin::Mutex;

use crate::error::Error;

/// Keys remembered at most; beyond this, expired ones are purged and, if the
/// cache is still full, new errors are not remembered.
pub(crate) const MAX_NEGATIVE_KEYS: usize = 10_000;

#[derive(Default)]
pub(crate) struct NegativeCache {
    map: Mutex<HashMap<Box<str>, (u64, Error)>>,
}

impl NegativeCache {
    /// The remembered error for `key`, if it is still in its window at `now`.
    pub(crate) fn get(&self, key: &str, now: u64) -> Option<Error> {
        let mut map = self.map.lock();
        match map.get(key) {
            Some((until, e)) if now < *until => Some(e.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `error` for `key` until `until`.
    pub(crate) fn insert(&self, key: &str, error: Error, now: u64, until: u64) {
        let mut map = self.map.lock();
        if map.len() >= MAX_NEGATIVE_KEYS && !map.contains_key(key) {
            map.retain(|_, (u, _)| now < *u);
            if map.len() >= MAX_NEGATIVE_KEYS {
                return;
            }
        }
        map.insert(Box::from(key), (until, error));
    }

    pub(crate) fn remove(&self, key: &str) {
        let mut map = self.map.lock();
        if !map.is_empty() {
            map.remove(key);
        }
    }

    /// Forgets every remembered error.
    pub(crate) fn clear(&self) {
        self.map.lock().clear();
    }

    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }
}
