//! The blocking file operations behind FileStorage. Every path is the
//! storage directory joined with a name this module made: a hex digest of the
//! key, or a temp name built from it — never anything taken from a key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use swre_core::envelope;

/// Suffix of entry files.
pub(crate) const SUFFIX: &str = ".swre";
/// Prefix of temp files (cleaned on open).
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// The entry file name for `key`: 64 hex digits of SHA-256, then `.swre`.
pub(crate) fn file_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut name = String::with_capacity(64 + SUFFIX.len());
    for b in digest {
        name.push(char::from(HEX[usize::from(b >> 4)]));
        name.push(char::from(HEX[usize::from(b & 15)]));
    }
    name.push_str(SUFFIX);
    name
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `name` has the shape of an entry file this storage writes.
pub(crate) fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(SUFFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| HEX.contains(&b)))
}

/// Reads a whole file; `Ok(None)` if it does not exist.
pub(crate) fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a new temp file in `dir` and returns its path; the file
/// is flushed to disk first when `fsync`.
pub(crate) fn write_temp(
    dir: &Path,
    temp_name: &str,
    bytes: &[u8],
    fsync: bool,
) -> io::Result<PathBuf> {
    let path = dir.join(temp_name);
    // `create_new`: if the name is taken, the file is someone else's, and
    // only a file this call created is removed when the write fails.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let result = (|| {
        f.write_all(bytes)?;
        if fsync {
            f.sync_all()?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            drop(f);
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// The next temp-file sequence number, shared by every `FileStorage` in the
/// process: with the process id in the name, no two writers on one
/// directory, in one process or two, ever pick the same temp name.
pub(crate) fn next_temp_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A temp file older than this is debris whoever wrote it.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Whether the temp file `name` (`.tmp-<pid>-…`) may belong to a write in
/// progress: its process is this one or still running (where `/proc` tells),
/// and it is younger than an hour. Such a file is left alone at open.
fn temp_may_be_live(path: &Path, name: &str) -> bool {
    let young = match fs::metadata(path).and_then(|m| m.modified()) {
        // A time ahead of ours (a clock stepped back, a file server's
        // clock) is not old.
        Ok(t) => t.elapsed().map_or(true, |age| age < STALE_TEMP),
        Err(_) => true, // gone or unreadable: not ours to judge old
    };
    if !young {
        return false;
    }
    let pid = name[TEMP_PREFIX.len()..]
        .split('-')
        .next()
        .and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(pid) if pid == std::process::id() => true,
        Some(pid) if Path::new("/proc/self").exists() => {
            Path::new("/proc").join(pid.to_string()).exists()
        }
        // No way to tell: a young file may be live.
        _ => true,
    }
}

/// What tells one version of a file from another without reading it: size,
/// modification time and inode (a rename brings a new one), so an overwrite
/// by another process is noticed even when the size is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) size: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl Stamp {
    pub(crate) fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            size: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }

    /// The stamp of the file at `path`; one that matches no listing (so the
    /// next pass re-reads the file) if it cannot be read.
    pub(crate) fn at(path: &Path, size: u64) -> Self {
        fs::metadata(path).map_or(
            Self {
                size,
                modified: None,
                inode: u64::MAX,
            },
            |m| Self::of(&m),
        )
    }
}

/// Flushes the directory entry (after a rename) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file; a missing file is not an error.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What opening found in one directory entry.
pub(crate) enum Found {
    /// A whole entry file with its expiry and creation time.
    Entry {
        name: String,
        expires_at: u64,
        created_at: u64,
    },
    /// A leftover temp file or an unreadable/corrupt entry file (to delete).
    Debris(PathBuf),
    /// Something that is not ours.
    Foreign,
}

impl Found {
    /// Whether this is debris to delete.
    pub(crate) fn is_debris(&self) -> bool {
        matches!(self, Found::Debris(_))
    }
}

/// Classifies one directory entry by name and (for entry files) header.
pub(crate) fn inspect(dir: &Path, name: &str) -> Found {
    let path = dir.join(name);
    if name.starts_with(TEMP_PREFIX) {
        // Another writer's (another process's, or another instance's in
        // this one) temp file is left alone while that write may be running.
        if temp_may_be_live(&path, name) {
            return Found::Foreign;
        }
        return Found::Debris(path);
    }
    if !is_entry_name(name) {
        return Found::Foreign;
    }
    let header = (|| {
        let mut f = File::open(&path).ok()?;
        let size = f.metadata().ok()?.len();
        // Up to the newest header's length: an older envelope may be shorter.
        let mut buf = Vec::with_capacity(envelope::HEADER_LEN);
        (&mut f)
            .take(envelope::HEADER_LEN as u64)
            .read_to_end(&mut buf)
            .ok()?;
        let h = envelope::header(&buf)?;
        (h.envelope_len() == size).then_some((size, h))
    })();
    match header {
        Some((_, h)) => Found::Entry {
            name: name.to_owned(),
            expires_at: h.expires_at,
            created_at: h.created_at,
        },
        None => Found::Debris(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hex_digests_whatever_the_key() {
        for key in ["../x", "/etc/passwd", "a\0b", "..", "", "ü/🚀"] {
            let name = file_name(key);
            assert!(is_entry_name(&name), "{name}");
            assert!(!name.contains('/') && !name.contains(".."));
        }
        assert_ne!(file_name("a"), file_name("A"));
        assert!(!is_entry_name("notes.txt"));
        assert!(!is_entry_name(&format!("{}.swre", "g".repeat(64))));
    }
}
