//! The maintenance pass: bring the index in step with the directory, which
//! other processes (or other instances in this one) write too, then enforce
//! the byte bound over everything found.

use std::collections::HashMap;
use std::fs;

use swre_core::StorageError;

use super::disk::{self, Stamp};
use super::{io_error, Shared};

/// What one maintenance pass changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Entry files found on disk that the index did not know (written by
    /// another process or instance), now indexed.
    pub adopted: usize,
    /// Indexed files no longer on disk (deleted or evicted by another
    /// process), now forgotten.
    pub forgotten: usize,
    /// Indexed files overwritten on disk by another process (another size,
    /// modification time or inode), now re-read.
    pub changed: usize,
    /// Files deleted: expired, corrupt, dead writers' temp files, and the
    /// least recently used beyond the byte bound.
    pub deleted: usize,
}

/// One file the listing found, as the index should know it.
struct Listed {
    stamp: Stamp,
    expires_at: u64,
    created_at: u64,
}

impl Shared {
    /// Lists the directory, indexes entry files the index does not know (or
    /// knows in another version: another stamp), forgets indexed files that are gone, deletes
    /// debris and expired entries, then evicts down to the byte bound.
    ///
    /// File I/O happens outside the index lock; each change is re-checked
    /// against the disk under it, so a `set` of this process racing the pass
    /// is never forgotten.
    pub(super) fn maintain_blocking(&self) -> Result<Maintenance, StorageError> {
        let now = self.clock.now_ms();
        let mut report = Maintenance::default();
        let mut on_disk: HashMap<String, Stamp> = HashMap::new();
        let listing =
            fs::read_dir(&self.dir).map_err(|e| io_error("cannot list directory", &self.dir, e))?;
        let mut temps = Vec::new();
        for item in listing {
            let item = item.map_err(|e| io_error("cannot list directory", &self.dir, e))?;
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            let Ok(meta) = item.metadata() else {
                continue; // gone since the listing
            };
            if !meta.is_file() {
                continue; // a directory (or anything not a file) is not ours, whatever its name
            }
            if name.starts_with(disk::TEMP_PREFIX) {
                temps.push(name);
            } else if disk::is_entry_name(&name) {
                on_disk.insert(name, Stamp::of(&meta));
            }
        }
        for name in temps {
            if let disk::Found::Debris(path) = disk::inspect(&self.dir, &name) {
                disk::remove(&path).map_err(|e| io_error("cannot remove leftover", &path, e))?;
                report.deleted += 1;
            }
        }

        // Which names to (re-)read and which to forget, from a snapshot.
        let (to_read, to_forget) = {
            let index = self.index();
            let to_read: Vec<String> = on_disk
                .iter()
                .filter(|(name, stamp)| index.stamp_of(name) != Some(**stamp))
                .map(|(name, _)| name.clone())
                .collect();
            let to_forget: Vec<String> = index
                .names()
                .filter(|name| !on_disk.contains_key(*name))
                .cloned()
                .collect();
            (to_read, to_forget)
        };

        let mut found = Vec::new();
        for name in to_read {
            // The stamp before the read: if the file changes during it, the
            // check under the lock below sees another stamp and skips it.
            let Ok(stamp) = fs::metadata(self.dir.join(&name)).map(|m| Stamp::of(&m)) else {
                continue;
            };
            match disk::inspect(&self.dir, &name) {
                disk::Found::Entry {
                    name,
                    expires_at,
                    created_at,
                    ..
                } => found.push((
                    name,
                    Listed {
                        stamp,
                        expires_at,
                        created_at,
                    },
                )),
                disk::Found::Debris(path) => {
                    // Corrupt or truncated: a miss either way; delete it
                    // unless a write replaced it meanwhile.
                    let mut index = self.index();
                    if disk::inspect(&self.dir, &name).is_debris() {
                        index.remove(&name);
                        let _ = disk::remove(&path);
                        report.deleted += 1;
                    }
                }
                disk::Found::Foreign => {}
            }
        }
        {
            let mut index = self.index();
            for name in to_forget {
                if index.stamp_of(&name).is_some() && !self.dir.join(&name).exists() {
                    index.remove(&name);
                    report.forgotten += 1;
                }
            }
            for (name, listed) in found {
                let path = self.dir.join(&name);
                let on_disk_now = fs::metadata(&path).ok().map(|m| Stamp::of(&m));
                if on_disk_now != Some(listed.stamp) {
                    continue; // changed again since it was read: the next pass sees it
                }
                match index.stamp_of(&name) {
                    None => report.adopted += 1,
                    Some(stamp) if stamp != listed.stamp => report.changed += 1,
                    Some(_) => continue, // this process wrote it meanwhile
                }
                if listed.expires_at <= now {
                    index.remove(&name);
                    let _ = disk::remove(&path);
                    report.deleted += 1;
                } else {
                    index.insert(&name, listed.stamp, listed.expires_at, listed.created_at);
                }
            }
            for name in index.take_expired(now) {
                let _ = disk::remove(&self.dir.join(name));
                report.deleted += 1;
            }
        }
        report.deleted += self.make_room(now, "");
        Ok(report)
    }
}
