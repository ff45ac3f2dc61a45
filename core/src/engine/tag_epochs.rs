//! Tags at work in the engine (see [`crate::tags`]): checking a read
//! entry's stamps against its tags' records, stamping an entry before it is
//! written, and changing a tag's epoch.

use alloc::vec::Vec;

use super::shared::Shared;
use crate::entry::Entry;
use crate::error::{StorageError, StorageErrorKind};
use crate::metrics::StorageOp;
use crate::runtime::Runtime;
use crate::storage::{expire_entry, Storage};
use crate::sync::{MaybeSend, MaybeSync};
use crate::tags::fence::Change;
use crate::tags::record::{Kind, Record, RecordKey};
use crate::tags::{TagNames, TagStamp, Tags};

/// What an entry's tags make of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TagState {
    /// No tag of it changed since it was written.
    Valid,
    /// A tag was expired (`expire_tag`), or its soft record is gone: stale.
    Expired,
    /// A tag was invalidated (`invalidate_tag`, `clear`), or its hard record
    /// is gone: absent.
    Invalidated,
}

impl TagState {
    /// What becomes of `entry`: kept, made stale, or dropped.
    pub(crate) fn apply(self, mut entry: Entry, now: u64) -> Option<Entry> {
        match self {
            TagState::Valid => Some(entry),
            TagState::Expired => {
                // Stale from its creation, not from `now`: a caller that
                // decides with a clock read a moment earlier must see it
                // stale too.
                let since = entry.created_at.min(now);
                expire_entry(&mut entry, since);
                Some(entry)
            }
            TagState::Invalidated => None,
        }
    }
}

/// The state one stamp's records give it.
fn judge(stamp: &TagStamp, hard: Option<Record>, soft: Option<Record>) -> TagState {
    match (hard, soft) {
        (Some(h), _) if h.epoch != stamp.hard => TagState::Invalidated,
        (None, _) => TagState::Invalidated,
        (Some(_), Some(s)) if s.epoch == stamp.soft => TagState::Valid,
        _ => TagState::Expired,
    }
}

/// The record in what a store answered, if it holds a live one.
fn record_of(read: Option<Entry>, now: u64) -> Option<Record> {
    read.filter(|e| now < e.expires_at)
        .as_ref()
        .and_then(Record::of)
}

impl<S: Storage, R: Runtime, C: MaybeSend + MaybeSync + 'static> Shared<S, R, C> {
    /// A storage read degraded per "storage failures degrade", as the
    /// entry's tags leave it.
    pub(crate) async fn read(&self, key: &str) -> Option<Entry> {
        self.read_settled(key, false).await
    }

    /// [`read`](Self::read) of what the store shared by the fleet holds
    /// (`Storage::get_shared`): a call's re-read before it calls upstream.
    pub(crate) async fn read_shared(&self, key: &str) -> Option<Entry> {
        self.read_settled(key, true).await
    }

    /// A read whose tags are resolved against a store that may have
    /// replaced the entry while its records were being read: the entry is
    /// read again, and only an entry that stayed is answered (a write that
    /// landed meanwhile is newer than what was resolved). Three tries, then
    /// absent (the caller fetches).
    async fn read_settled(&self, key: &str, shared: bool) -> Option<Entry> {
        let mut entry = self.read_once(key, shared).await;
        for _ in 0..3 {
            let found = entry?;
            if found.tags.is_empty() {
                return Some(found);
            }
            let now = self.now();
            let state = self.tags_state(&found.tags, now).await;
            let again = self.read_once(key, shared).await;
            if again.as_ref() == Some(&found) {
                return state.apply(found, now);
            }
            entry = again;
        }
        None
    }

    /// One read of `key`'s entry, degraded.
    async fn read_once(&self, key: &str, shared: bool) -> Option<Entry> {
        let read = if shared {
            self.storage().get_shared(key).await
        } else {
            self.storage().get(key).await
        };
        self.degrade_read(read)
    }

    /// `tags`' state from records the store can answer at once, or `None`
    /// when one must be awaited. A record read that fails counts as a
    /// missing record ("never valid"). Records are always read from the
    /// store shared by the fleet (`get_shared`): a front copy (`Tiered`'s
    /// L1) could hide another process's operation, and an entry this process
    /// stamped from the shared records would then read as changed.
    pub(crate) fn tags_ready(&self, tags: &Tags, now: u64) -> Option<TagState> {
        let mut state = TagState::Valid;
        for stamp in tags.stamps() {
            let read = |kind| {
                let key = RecordKey::new(kind, &stamp.name)?;
                let read = self.storage().get_shared_ready(key.as_str())?;
                Some(record_of(self.degrade_read(read), now))
            };
            let hard = read(Kind::Hard)?;
            let soft = read(Kind::Soft)?;
            state = state.max(judge(stamp, hard, soft));
        }
        Some(state)
    }

    /// `tags`' state, reading the records from the shared store. They are
    /// read together: a lookup of a tagged entry waits for the store twice
    /// (the entry, then its records), not once per record.
    pub(crate) async fn tags_state(&self, tags: &Tags, now: u64) -> TagState {
        let reads = tags.stamps().iter().map(|stamp| async move {
            let hard = self.read_record(Kind::Hard, &stamp.name, now);
            let soft = self.read_record(Kind::Soft, &stamp.name, now);
            let ((hard, _), (soft, _)) = futures::future::join(hard, soft).await;
            judge(stamp, hard, soft)
        });
        futures::future::join_all(reads)
            .await
            .into_iter()
            .max()
            .unwrap_or(TagState::Valid)
    }

    /// A tag's record of `kind` and the entry holding it; a failed read
    /// reads as none (counted).
    async fn read_record(
        &self,
        kind: Kind,
        tag: &str,
        now: u64,
    ) -> (Option<Record>, Option<Entry>) {
        let Some(key) = RecordKey::new(kind, tag) else {
            return (None, None);
        };
        let read = self.storage().get_shared(key.as_str()).await;
        let entry = self.degrade_read(read);
        (record_of(entry.clone(), now), entry)
    }

    /// The stamps of an entry written now with `names`, and what another
    /// engine did to those tags since `since` (its clock; `None`: nothing is
    /// asked): a record it changed at or after that time counts as changed
    /// during the call (a millisecond is ambiguous; this engine's own
    /// operations are judged by its fence log, not by time). A missing
    /// record is created with a new epoch and read back: of two engines
    /// creating it at once, both stamp with the one that stayed.
    pub(crate) async fn stamp_tags(
        &self,
        names: &TagNames,
        since: Option<u64>,
    ) -> Result<(Tags, Change), StorageError> {
        let mut stamps = Vec::with_capacity(names.len());
        let mut change = Change::None;
        for name in names.iter() {
            let mut epochs = [0; 2];
            for (i, kind) in [Kind::Hard, Kind::Soft].into_iter().enumerate() {
                let key = RecordKey::new(kind, name).ok_or_else(|| {
                    StorageError::new(StorageErrorKind::InvalidKey, "tag name over the limit")
                })?;
                let record = match self.shared_record(key.as_str()).await? {
                    Some(r) => r,
                    None => {
                        let now = self.now();
                        let created = Record {
                            epoch: self.new_epoch(now),
                            changed_at: now,
                            writer: self.id(),
                        };
                        self.storage().set(key.as_str(), created.entry(now)).await?;
                        // Read back: another engine may have created it too.
                        self.shared_record(key.as_str()).await?.unwrap_or(created)
                    }
                };
                let theirs = record.writer != self.id();
                if theirs && since.is_some_and(|t| record.changed_at >= t) {
                    change = change.max(match kind {
                        Kind::Hard => Change::Hard,
                        Kind::Soft => Change::Soft,
                    });
                }
                epochs[i] = record.epoch;
            }
            stamps.push(TagStamp {
                name: name.into(),
                hard: epochs[0],
                soft: epochs[1],
            });
        }
        Ok((Tags::new(stamps), change))
    }

    /// The live record under `key` in the shared store; read errors are
    /// errors here (a stamp must not guess).
    async fn shared_record(&self, key: &str) -> Result<Option<Record>, StorageError> {
        let read = self.storage().get_shared(key).await?;
        Ok(record_of(read, self.now()))
    }

    /// Gives `tag` a new epoch of `kind`: every entry stamped with the old
    /// one is invalidated (hard) or expired (soft) from now on.
    pub(crate) async fn change_epoch(&self, tag: &str, kind: Kind) -> Result<(), StorageError> {
        let now = self.now();
        let key = RecordKey::new(kind, tag).ok_or_else(|| {
            StorageError::new(StorageErrorKind::InvalidKey, "tag name over the limit")
        })?;
        let record = Record {
            epoch: self.new_epoch(now),
            changed_at: now,
            writer: self.id(),
        };
        let change = match kind {
            Kind::Hard => Change::Hard,
            Kind::Soft => Change::Soft,
        };
        self.tag_fence().record(Some(tag), change);
        let written = self.storage().set(key.as_str(), record.entry(now)).await;
        // Recorded again once written: a call admitted between the first
        // record and the write is fenced too.
        self.tag_fence().record(Some(tag), change);
        written.inspect_err(|_| self.storage_error(StorageOp::Set))
    }

    /// A new epoch: a random draw mixed with the clock and this engine's
    /// count of tag operations.
    fn new_epoch(&self, now: u64) -> u64 {
        let n = self.tag_fence().now();
        crate::key::fold(
            self.random().next_u64() ^ now.rotate_left(29),
            n.wrapping_add(0x9e37_79b9_7f4a_7c15),
        )
    }
}
