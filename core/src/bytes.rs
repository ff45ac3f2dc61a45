//! [`Bytes`]: an immutable, reference-counted byte string.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;

/// An immutable byte string whose clones share one allocation.
///
/// Cloning bumps a reference count: a cache hit hands out the stored value
/// without copying or allocating. The empty byte string allocates nothing.
///
/// ```
/// use swre_core::Bytes;
///
/// let a = Bytes::from("hello");
/// let b = a.clone();
/// assert_eq!(&*b, b"hello");
/// assert!(Bytes::ptr_eq(&a, &b));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(Option<Arc<[u8]>>);

impl Bytes {
    /// An empty byte string.
    pub const fn new() -> Self {
        Self(None)
    }

    /// A copy of `data`.
    pub fn copy_from_slice(data: &[u8]) -> Self {
        Self::from_arc(Arc::from(data))
    }

    fn from_arc(a: Arc<[u8]>) -> Self {
        if a.is_empty() {
            Self(None)
        } else {
            Self(Some(a))
        }
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The bytes as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Some(a) => a,
            None => &[],
        }
    }

    /// The address of the shared allocation (its identity while any clone
    /// lives); `None` for an empty byte string.
    #[inline]
    pub(crate) fn addr(&self) -> Option<usize> {
        self.0.as_ref().map(|a| a.as_ptr() as usize)
    }

    /// Whether this is the only handle on its allocation (an empty byte
    /// string is).
    pub(crate) fn is_unique(&self) -> bool {
        self.0.as_ref().is_none_or(|a| Arc::strong_count(a) == 1)
    }

    /// Whether `a` and `b` share one allocation (two empty byte strings do).
    pub fn ptr_eq(a: &Bytes, b: &Bytes) -> bool {
        match (&a.0, &b.0) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Default for Bytes {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.as_slice()) {
            Ok(s) if s.len() <= 64 => write!(f, "Bytes({s:?})"),
            _ => write!(f, "Bytes({} bytes)", self.len()),
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        if v.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::from(v)))
        }
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Self::copy_from_slice(v)
    }
}

impl<const N: usize> From<&[u8; N]> for Bytes {
    fn from(v: &[u8; N]) -> Self {
        Self::copy_from_slice(v)
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Self {
        Self::copy_from_slice(v.as_bytes())
    }
}

impl From<String> for Bytes {
    fn from(v: String) -> Self {
        Self::from(v.into_bytes())
    }
}

impl From<Arc<[u8]>> for Bytes {
    fn from(v: Arc<[u8]>) -> Self {
        Self::from_arc(v)
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.as_slice().to_vec()
    }
}
