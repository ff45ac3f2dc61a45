//! [`FileStorage`]: one directory, one file per key, crash-safe writes.

mod disk;
mod index;
mod maintain;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use swre_core::{envelope, Clock, Entry, Storage, StorageError, StorageErrorKind};
use tokio::runtime::Handle;

use crate::runtime::SystemClock;
use index::Index;
pub use maintain::Maintenance;

/// How hard a write tries to reach the disk before it returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Write a temp file and rename it into place: a killed process never
    /// leaves a torn or mixed entry (the default).
    #[default]
    Rename,
    /// Also `fsync` the file before the rename and the directory after it, so
    /// a completed write survives power loss.
    Fsync,
}

/// Options for [`FileStorage::open_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOptions {
    /// Upper bound on the bytes of entry files; beyond it, expired entries and
    /// then the least recently used are deleted. Default 256 MiB.
    pub max_bytes: u64,
    /// Write durability. Default [`Durability::Rename`].
    pub durability: Durability,
    /// Writes between two maintenance passes
    /// ([`FileStorage::maintain`]), which take in what other processes
    /// sharing the directory wrote and deleted and hold the byte bound over
    /// the directory as a whole. A pass lists the directory and reads the
    /// header of each file it did not know. `0` runs passes only when
    /// called. Default 1,000.
    pub maintain_every: u64,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            durability: Durability::Rename,
            maintain_every: 1_000,
        }
    }
}

/// A [`Storage`] in one directory of the local filesystem.
///
/// - Each key lives in a file named by the SHA-256 of the key; no path is
///   ever built from a key, so no key (`../x`, `/etc/passwd`, NUL, …) reaches
///   outside the directory. The full key is stored in the file (the
///   [`envelope`]) and checked on read, so a hash collision or a file copied
///   under another name reads as a miss, never as another key's value.
/// - Writes go to a temp file that is renamed into place ([`Durability`]);
///   leftover temp files and corrupt entry files are deleted on open, and
///   expired entries are purged on open and when making room.
/// - Truncated, flipped or foreign files read as misses and are overwritten
///   by the next write.
/// - All file I/O runs on tokio's blocking pool, never on a worker thread.
/// - Expiry is judged by the system clock, or by the clock given to
///   [`open_with_clock`](Self::open_with_clock).
/// - Several processes (or instances) may share one directory. Each keeps
///   its own index; writes never fail or tear because of another, and each
///   [maintenance pass](Self::maintain) (at open, then every
///   [`maintain_every`](FileOptions::maintain_every) writes) indexes what
///   the others wrote, forgets what they deleted, and evicts until the
///   directory as a whole is within `max_bytes`.
#[derive(Clone, Debug)]
pub struct FileStorage {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    opts: FileOptions,
    index: Mutex<Index>,
    closed: AtomicBool,
    /// Writes since open, to pace maintenance passes.
    writes: AtomicU64,
    /// Judges expiry (the system clock unless opened with another).
    clock: ExpiryClock,
}

/// The clock a store judges expiry by.
struct ExpiryClock(Arc<dyn Clock + Send + Sync>);

impl std::fmt::Debug for ExpiryClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExpiryClock")
    }
}

impl ExpiryClock {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

fn io_error(what: &str, path: &Path, e: io::Error) -> StorageError {
    StorageError::new(
        StorageErrorKind::Io,
        format!("{what} {}: {e}", path.display()),
    )
}

fn closed() -> StorageError {
    StorageError::new(StorageErrorKind::Unavailable, "file storage is closed")
}

/// Runs blocking I/O off the async worker threads (inline when there is no
/// tokio runtime).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StorageError> {
    match Handle::try_current() {
        Ok(h) => h.spawn_blocking(f).await.map_err(|e| {
            StorageError::new(
                StorageErrorKind::Other,
                format!("file I/O task failed: {e}"),
            )
        }),
        Err(_) => Ok(f()),
    }
}

impl FileStorage {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::open_with(dir, FileOptions::default()).await
    }

    /// Opens (creating if needed) the store in `dir`: deletes leftover temp
    /// files, corrupt entry files and expired entries, and indexes the rest.
    pub async fn open_with(
        dir: impl Into<PathBuf>,
        opts: FileOptions,
    ) -> Result<Self, StorageError> {
        Self::open_with_clock(dir, opts, SystemClock).await
    }

    /// [`open_with`](Self::open_with), judging expiry (at open and when
    /// making room) by `clock` rather than the system clock: give it the
    /// engine's clock (a `ManualClock` in tests, a `CoarseClock`) so the
    /// store and the engine agree on what has expired.
    pub async fn open_with_clock(
        dir: impl Into<PathBuf>,
        opts: FileOptions,
        clock: impl Clock + Send + Sync + 'static,
    ) -> Result<Self, StorageError> {
        let dir = dir.into();
        let clock: Arc<dyn Clock + Send + Sync> = Arc::new(clock);
        blocking(move || Self::open_blocking(dir, opts, clock)).await?
    }

    fn open_blocking(
        dir: PathBuf,
        opts: FileOptions,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Result<Self, StorageError> {
        fs::create_dir_all(&dir).map_err(|e| io_error("cannot create directory", &dir, e))?;
        let storage = Self {
            shared: Arc::new(Shared {
                dir,
                opts,
                index: Mutex::new(Index::default()),
                closed: AtomicBool::new(false),
                writes: AtomicU64::new(0),
                clock: ExpiryClock(clock),
            }),
        };
        storage.shared.maintain_blocking()?;
        Ok(storage)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The path of the file that holds `key` (whether or not it exists).
    pub fn path_for(&self, key: &str) -> PathBuf {
        self.shared.dir.join(disk::file_name(key))
    }

    /// Bytes of entry files known to the store.
    pub fn bytes(&self) -> u64 {
        self.shared.index().bytes()
    }

    /// Entry files known to the store.
    pub fn len(&self) -> usize {
        self.shared.index().len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs a maintenance pass now: indexes entry files other processes
    /// wrote, forgets files they deleted, deletes dead writers' temp files,
    /// corrupt and expired files, then evicts the least recently used until
    /// the directory as a whole is within `max_bytes`. Afterwards every
    /// entry file in the directory is known to this store's index (unless
    /// another process wrote it during the pass).
    pub async fn maintain(&self) -> Result<Maintenance, StorageError> {
        self.check_open()?;
        let shared = self.shared.clone();
        blocking(move || shared.maintain_blocking()).await?
    }

    /// Deletes entries whose `expires_at` is at or before `now_ms`; returns how many.
    pub async fn purge_expired(&self, now_ms: u64) -> Result<usize, StorageError> {
        let shared = self.shared.clone();
        blocking(move || {
            let mut index = shared.index();
            let names = index.take_expired(now_ms);
            for n in &names {
                let _ = disk::remove(&shared.dir.join(n));
            }
            names.len()
        })
        .await
    }

    /// Closes the store: every later operation fails with
    /// `StorageErrorKind::Unavailable` (the engine then answers from upstream).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(closed())
        } else {
            Ok(())
        }
    }
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index inconsistent
        // with more than one file; keep serving.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes files until the byte bound holds; call with no lock held.
    /// Returns how many were deleted.
    fn make_room(&self, now: u64, keep: &str) -> usize {
        let mut index = self.index();
        let victims = index.evict(self.opts.max_bytes, now, keep);
        for name in &victims {
            let _ = disk::remove(&self.dir.join(name));
        }
        victims.len()
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let name = disk::file_name(key);
        let path = self.dir.join(&name);
        let Some(bytes) = disk::read(&path).map_err(|e| io_error("cannot read", &path, e))? else {
            // Forget a file that vanished behind our back, but only if it is
            // still missing under the index lock: a `set` renames its file
            // in and indexes it under that lock, and must not be forgotten.
            let mut index = self.index();
            if !path.exists() {
                index.remove(&name);
            }
            return Ok(None);
        };
        match envelope::decode_for(key, &bytes) {
            Some(entry) => {
                self.index().touch(&name, self.clock.now_ms());
                Ok(Some(entry))
            }
            // Corrupt, truncated or another key's: a miss, overwritten by the next set.
            None => Ok(None),
        }
    }

    fn set_blocking(&self, key: &str, entry: &Entry) -> Result<(), StorageError> {
        let bytes = envelope::seal(key, entry)?;
        let size = bytes.len() as u64;
        if size > self.opts.max_bytes {
            return Err(StorageError::new(
                StorageErrorKind::TooLarge,
                format!(
                    "entry of {size} bytes exceeds the store's bound of {} bytes",
                    self.opts.max_bytes
                ),
            ));
        }
        let name = disk::file_name(key);
        let seq = disk::next_temp_seq();
        let temp_name = format!("{}{}-{}-{name}", disk::TEMP_PREFIX, std::process::id(), seq);
        let fsync = self.opts.durability == Durability::Fsync;
        let temp = disk::write_temp(&self.dir, &temp_name, &bytes, fsync)
            .map_err(|e| io_error("cannot write", &self.dir.join(&temp_name), e))?;
        let target = self.dir.join(&name);
        {
            // Rename and index update under one lock, so eviction never
            // deletes a file the index does not describe.
            let mut index = self.index();
            if let Err(e) = fs::rename(&temp, &target) {
                let _ = disk::remove(&temp);
                return Err(io_error("cannot rename into", &target, e));
            }
            let stamp = disk::Stamp::at(&target, size);
            index.insert(&name, stamp, entry.expires_at, self.clock.now_ms());
        }
        if fsync {
            disk::sync_dir(&self.dir)
                .map_err(|e| io_error("cannot sync directory", &self.dir, e))?;
        }
        let every = self.opts.maintain_every;
        let writes = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if every > 0 && writes.is_multiple_of(every) {
            // Other processes' writes count against the bound too. The
            // write itself succeeded: a pass that fails (the listing, say)
            // falls back to this process's own bound.
            if self.maintain_blocking().is_err() {
                self.make_room(self.clock.now_ms(), &name);
            }
        } else {
            self.make_room(self.clock.now_ms(), &name);
        }
        Ok(())
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StorageError> {
        let name = disk::file_name(key);
        let path = self.dir.join(&name);
        let mut index = self.index();
        index.remove(&name);
        disk::remove(&path).map_err(|e| io_error("cannot delete", &path, e))
    }

    /// Under the index lock, so no `set` of this process lands between the
    /// comparison and the delete.
    fn remove_older_blocking(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        let name = disk::file_name(key);
        let path = self.dir.join(&name);
        let mut index = self.index();
        let current = disk::read(&path)
            .map_err(|e| io_error("cannot read", &path, e))?
            .and_then(|bytes| envelope::decode_for(key, &bytes));
        if current.is_some_and(|c| swre_core::storage::supersedes(&c, written)) {
            return Ok(());
        }
        index.remove(&name);
        disk::remove(&path).map_err(|e| io_error("cannot delete", &path, e))
    }

    fn clear_blocking(&self) -> Result<(), StorageError> {
        let mut index = self.index();
        index.take_all();
        let listing =
            fs::read_dir(&self.dir).map_err(|e| io_error("cannot list directory", &self.dir, e))?;
        for item in listing.flatten() {
            if !item.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if let Ok(name) = item.file_name().into_string() {
                if disk::is_entry_name(&name) {
                    disk::remove(&item.path())
                        .map_err(|e| io_error("cannot delete", &item.path(), e))?;
                }
            }
        }
        Ok(())
    }
}

impl Storage for FileStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.check_open()?;
        let shared = self.shared.clone();
        let key = key.to_owned();
        blocking(move || shared.get_blocking(&key)).await?
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.check_open()?;
        let shared = self.shared.clone();
        let key = key.to_owned();
        blocking(move || shared.set_blocking(&key, &entry)).await?
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check_open()?;
        let shared = self.shared.clone();
        let key = key.to_owned();
        blocking(move || shared.delete_blocking(&key)).await?
    }

    async fn remove_older(&self, key: &str, written: &Entry) -> Result<(), StorageError> {
        self.check_open()?;
        let shared = self.shared.clone();
        let key = key.to_owned();
        let written = written.clone();
        blocking(move || shared.remove_older_blocking(&key, &written)).await?
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.check_open()?;
        let shared = self.shared.clone();
        blocking(move || shared.clear_blocking()).await?
    }
}
