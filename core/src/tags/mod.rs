//! Tags: names given to entries when they are written, so that every entry
//! of a tag can be invalidated ([`Engine::invalidate_tag`]) or expired
//! ([`Engine::expire_tag`]) at once, in O(1) in the number of entries.
//!
//! Lazily, by epochs (as FusionCache does it, with its timestamps replaced
//! by epochs so that a lost record can never make an entry valid): each tag
//! has two records in the store itself, under reserved keys ([`record`]),
//! each holding an epoch (a random 64-bit number). An entry written with a
//! tag carries the tag's epochs as they were when it was written
//! ([`TagStamp`]). A read compares them with the records: a different *hard*
//! epoch, or a missing hard record, means the entry was invalidated (it
//! reads as absent); a different or missing *soft* epoch means it was
//! expired (it reads as stale and is kept as a fallback). Invalidating a
//! tag writes a new hard epoch; expiring it a new soft one. As the records
//! live in the store, a restart, or another instance reading the same
//! shared store, sees them.
//!
//! [`Engine::invalidate_tag`]: crate::Engine::invalidate_tag
//! [`Engine::expire_tag`]: crate::Engine::expire_tag

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

pub(crate) mod fence;
pub mod record;

/// The most tags one entry may carry.
pub const MAX_TAGS: usize = 32;
/// The longest tag name, in bytes.
pub const MAX_TAG_BYTES: usize = 256;

/// One tag of an entry, with the epochs its records held when the entry was
/// written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagStamp {
    /// The tag's name.
    pub name: Box<str>,
    /// The tag's hard (invalidation) epoch when the entry was written.
    pub hard: u64,
    /// The tag's soft (expiry) epoch when the entry was written.
    pub soft: u64,
}

/// The tags an entry carries (none for most entries: then it costs one
/// word and a test on reads; a thin pointer, so that every entry's copy on a
/// hit carries one word, not two).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tags(Option<Arc<Vec<TagStamp>>>);

impl Tags {
    /// No tags.
    pub const NONE: Tags = Tags(None);

    /// Tags with these stamps (none if `stamps` is empty).
    pub fn new(stamps: Vec<TagStamp>) -> Self {
        if stamps.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::new(stamps)))
        }
    }

    /// Whether there are none.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The stamps.
    pub fn stamps(&self) -> &[TagStamp] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stamps().iter().map(|s| &*s.name)
    }

    /// Heap bytes the stamps take (for a store's memory charge).
    pub fn heap_bytes(&self) -> usize {
        self.stamps()
            .iter()
            .map(|s| core::mem::size_of::<TagStamp>() + s.name.len())
            .sum::<usize>()
            + if self.is_empty() { 0 } else { 16 }
    }
}

/// A list of tag names given to a write or a call ([`CallOptions::tags`],
/// [`Fetched::tags`]): checked, deduplicated, in the order given.
///
/// [`CallOptions::tags`]: crate::CallOptions::tags
/// [`Fetched::tags`]: crate::Fetched::tags
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TagNames(Arc<[Box<str>]>);

impl TagNames {
    /// The names in `tags`, deduplicated. An empty list means "no tags".
    pub fn new<I, T>(tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut names: Vec<Box<str>> = Vec::new();
        for t in tags {
            let t = t.as_ref();
            if !names.iter().any(|n| &**n == t) {
                names.push(t.into());
            }
        }
        Self(names.into())
    }

    /// The names.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names an entry's stamps carry.
    pub(crate) fn of(tags: &Tags) -> Self {
        Self::new(tags.names())
    }

    /// "Bad input changes nothing": at most [`MAX_TAGS`] names, each
    /// non-empty and at most [`MAX_TAG_BYTES`] bytes.
    pub fn check(&self) -> Result<(), TagError> {
        if self.len() > MAX_TAGS {
            return Err(TagError::TooMany {
                count: self.len(),
                max: MAX_TAGS,
            });
        }
        self.iter().try_for_each(check_name)
    }
}

/// "Bad input changes nothing" for one tag name.
pub fn check_name(name: &str) -> Result<(), TagError> {
    if name.is_empty() {
        Err(TagError::Empty)
    } else if name.len() > MAX_TAG_BYTES {
        Err(TagError::TooLong {
            len: name.len(),
            max: MAX_TAG_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Why a tag was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagError {
    /// A tag name is the empty string.
    Empty,
    /// A tag name is longer than [`MAX_TAG_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_TAGS`] tags for one entry.
    TooMany {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl core::fmt::Display for TagError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TagError::Empty => f.write_str("a tag is empty; use non-empty names"),
            TagError::TooLong { len, max } => {
                write!(f, "a tag is {len} bytes, over the limit of {max} bytes")
            }
            TagError::TooMany { count, max } => {
                write!(f, "{count} tags given, over the limit of {max} per entry")
            }
        }
    }
}

impl core::error::Error for TagError {}
