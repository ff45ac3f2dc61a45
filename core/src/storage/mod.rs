//! The [`Storage`] trait and the storages that live in core.

use core::future::Future;
use core::time::Duration;

use crate::entry::Entry;
use crate::error::{StorageError, StorageErrorKind};
use crate::sync::{MaybeSend, MaybeSync};

pub mod memory;
pub mod tiered;

/// Where entries live: memory, files, Redis, IndexedDB, …
///
/// Implementors write `async fn`; the engine calls them through static
/// dispatch, with no boxing per lookup.
///
/// Contract:
/// - `get` of a key never set (or deleted) MUST return `Ok(None)`.
/// - `get` after `set(key, e)` MUST return `e` with all its times exactly, or
///   `Ok(None)` if the store evicted or dropped it; never another key's value and
///   never a mix of two writes.
/// - Concurrent `set`s of one key MUST leave one of the written entries whole.
/// - A corrupt or undecodable stored value MUST read as `Ok(None)` (it is then
///   overwritten by the next `set`), never as an error that hides the key forever
///   and never as a panic.
/// - Methods MUST NOT panic on any key: keys are any non-empty UTF-8 string the
///   engine accepted (spaces, `/`, `..`, NUL and newlines included).
pub trait Storage: MaybeSend + MaybeSync + 'static {
    /// The entry stored under `key`, if any.
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Entry>, StorageError>> + MaybeSend;

    /// Stores `entry` under `key`, replacing what was there.
    fn set(
        &self,
        key: &str,
        entry: Entry,
    ) -> impl Future<Output = Result<(), StorageError>> + MaybeSend;

    /// A read that completes without waiting, for stores that can answer at
    /// once (memory): `Some(result)` with what [`get`](Storage::get) would
    /// return, or `None` to make the caller await `get`. The engine tries it
    /// first so that a memory hit never builds or awaits a storage future.
    /// The default is `None`.
    #[inline]
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        let _ = key;
        None
    }

    /// The entry under `key` as the store shared by every process holds it:
    /// what a call re-reads before it calls upstream, so it finds a value
    /// another process has just stored. For a store in front of a shared one
    /// ([`Tiered`](crate::Tiered)) that is the shared store's entry, not a
    /// possibly older local copy. The default is [`get`](Storage::get).
    fn get_shared(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Entry>, StorageError>> + MaybeSend {
        self.get(key)
    }

    /// [`get_ready`](Storage::get_ready) without a copy of the entry: `f`
    /// is given the stored entry where it lies and its answer is returned
    /// (`Some(Ok(None))` for a missing key, `None` to make the caller await
    /// `get`). The engine's fresh hits read this way, taking only the value
    /// and the times. `f` may run under the store's read guard: it must be
    /// short and must not call the store. The default calls `get_ready`.
    #[inline]
    fn peek_ready<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Entry) -> T,
    ) -> Option<Result<Option<T>, StorageError>> {
        Some(self.get_ready(key)?.map(|found| found.map(|e| f(&e))))
    }

    /// [`get_shared`](Storage::get_shared) answered at once, as
    /// [`get_ready`](Storage::get_ready) answers `get`: `None` to make the
    /// caller await `get_shared`. The engine reads tag records this way, so
    /// that a front copy never hides another process's tag operation. The
    /// default is `get_ready`; [`Tiered`](crate::Tiered) asks its shared
    /// store.
    #[inline]
    fn get_shared_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        self.get_ready(key)
    }

    /// Removes `key`; removing a missing key succeeds.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StorageError>> + MaybeSend;

    /// Called after `set(key, written)` failed: removes what the store holds
    /// for `key` unless it is `written` itself or newer (a later
    /// `created_at`), so no older value is served in place of `written`
    /// ("the latest write wins") and no newer one is lost. The default reads,
    /// compares and deletes (deleting when the read fails; another process
    /// may write between the read and the delete); stores that can do it atomically do ([`MemoryStorage`],
    /// FileStorage within one process, RedisStorage in one script). A store
    /// in front of another ([`Tiered`](crate::Tiered)) keeps a front copy
    /// that is `written` or newer, so a process whose shared store is down
    /// keeps serving what it fetched.
    ///
    /// [`MemoryStorage`]: crate::MemoryStorage
    fn remove_older(
        &self,
        key: &str,
        written: &Entry,
    ) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        async move {
            match self.get(key).await {
                Ok(Some(current)) if supersedes(&current, written) => Ok(()),
                Ok(None) => Ok(()),
                // Older, or unknown (the read failed): a refetch costs less
                // than serving an older value.
                _ => self.delete(key).await,
            }
        }
    }

    /// Makes `key`'s entry stale at `now` if it is fresh: its `fresh_until`
    /// becomes `now` (or its `created_at`, if the clock reads earlier), its
    /// stale and expired phases stay, so it is served stale, refreshed, and
    /// kept as a fallback (`Engine::expire`). Returns the entry as it stands
    /// afterwards, `None` if there is none. The default reads, reads again
    /// just before writing back, and writes only if the entry is still the
    /// one it read: a write from elsewhere can still land between that second
    /// read and the write-back and be lost. Stores that can do it atomically
    /// do ([`MemoryStorage`], the JS table, and [`Tiered`](crate::Tiered) over
    /// stores that do).
    ///
    /// [`MemoryStorage`]: crate::MemoryStorage
    fn expire(
        &self,
        key: &str,
        now: u64,
    ) -> impl Future<Output = Result<Option<Entry>, StorageError>> + MaybeSend {
        async move {
            let Some(read) = self.get(key).await? else {
                return Ok(None);
            };
            let mut entry = read.clone();
            if !expire_entry(&mut entry, now) {
                return Ok(Some(entry));
            }
            // Another write landed meanwhile: it is newer than the expiry.
            match self.get(key).await? {
                Some(current) if current == read => {}
                current => return Ok(current),
            }
            self.set(key, entry.clone()).await?;
            Ok(Some(entry))
        }
    }

    /// Removes every entry. The default fails, saying the store cannot clear
    /// (a store that shares a backend with other data may not support it):
    /// succeeding without clearing would leave callers serving what they
    /// meant to drop.
    fn clear(&self) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        async {
            Err(StorageError::new(
                StorageErrorKind::Other,
                "this store cannot clear (its Storage impl has no clear)",
            ))
        }
    }

    /// Tries to take the fleet-wide refresh lease for `key` for `ttl`:
    /// `Some(token)` if this process may call upstream for it, `None` while
    /// another holder has it. Stores not shared between processes keep the
    /// default, which always grants it.
    ///
    /// Contract: a granted lease MUST expire by itself after `ttl` (its
    /// holder may die), and each grant MUST carry a token no other grant of
    /// the key carries while it lives.
    fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<LeaseToken>, StorageError>> + MaybeSend {
        let _ = (key, ttl);
        async { Ok(Some(LeaseToken::LOCAL)) }
    }

    /// Releases the lease on `key` granted with `token`. It MUST NOT release
    /// a lease granted to another token (a later holder's, after this one
    /// expired). The default does nothing.
    fn release_lease(&self, key: &str, token: LeaseToken) -> impl Future<Output = ()> + MaybeSend {
        let _ = (key, token);
        async {}
    }
}

/// Names one grant of a fleet-wide refresh lease ([`Storage::try_lease`]),
/// so that only its holder can release it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub u64);

impl LeaseToken {
    /// The token of leases granted by stores no other process shares.
    pub const LOCAL: LeaseToken = LeaseToken(0);
}

/// Whether `current`, found in a store after a write of `written` failed,
/// may stay: it is `written` itself, or newer.
pub fn supersedes(current: &Entry, written: &Entry) -> bool {
    current.created_at > written.created_at || current == written
}

/// Ends `entry`'s fresh phase at `now` if it is fresh (at its `created_at`
/// if the clock reads earlier, keeping the times ordered); whether it changed.
pub fn expire_entry(entry: &mut Entry, now: u64) -> bool {
    let before = entry.fresh_until;
    entry.fresh_until = now.max(entry.created_at).min(before);
    entry.fresh_until != before
}

/// One store shared by several engines (or an engine and its owner): every
/// call goes to the store behind the `Arc`.
impl<S: Storage> Storage for alloc::sync::Arc<S> {
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Entry>, StorageError>> + MaybeSend {
        (**self).get(key)
    }

    fn set(
        &self,
        key: &str,
        entry: Entry,
    ) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        (**self).set(key, entry)
    }

    #[inline]
    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        (**self).get_ready(key)
    }

    fn get_shared(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Entry>, StorageError>> + MaybeSend {
        (**self).get_shared(key)
    }

    #[inline]
    fn get_shared_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        (**self).get_shared_ready(key)
    }

    #[inline]
    fn peek_ready<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Entry) -> T,
    ) -> Option<Result<Option<T>, StorageError>> {
        (**self).peek_ready(key, f)
    }

    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        (**self).delete(key)
    }

    fn remove_older(
        &self,
        key: &str,
        written: &Entry,
    ) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        (**self).remove_older(key, written)
    }

    fn expire(
        &self,
        key: &str,
        now: u64,
    ) -> impl Future<Output = Result<Option<Entry>, StorageError>> + MaybeSend {
        (**self).expire(key, now)
    }

    fn clear(&self) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        (**self).clear()
    }

    fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<LeaseToken>, StorageError>> + MaybeSend {
        (**self).try_lease(key, ttl)
    }

    fn release_lease(&self, key: &str, token: LeaseToken) -> impl Future<Output = ()> + MaybeSend {
        (**self).release_lease(key, token)
    }
}
