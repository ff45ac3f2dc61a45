//! [`Bytes`]: an immutable, reference-counted byte string.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;

/// An immutable byte string whose clones share one allocation.
///
/// Cloning bumps a reference count: a cache hit hands out the stored value
/// without copying or allocating.
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
pub struct Bytes(Arc<[u8]>);

impl Bytes {
    /// An empty byte string.
    pub fn new() -> Self {
        Self(Arc::from(&[][..]))
    }

    /// A copy of `data`.
    pub fn copy_from_slice(data: &[u8]) -> Self {
        Self(Arc::from(data))
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes as a slice.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Whether `a` and `b` share one allocation.
    pub fn ptr_eq(a: &Bytes, b: &Bytes) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
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
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(&self.0) {
            Ok(s) if s.len() <= 64 => write!(f, "Bytes({s:?})"),
            _ => write!(f, "Bytes({} bytes)", self.0.len()),
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(Arc::from(v))
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Self(Arc::from(v))
    }
}

impl<const N: usize> From<&[u8; N]> for Bytes {
    fn from(v: &[u8; N]) -> Self {
        Self(Arc::from(&v[..]))
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Self {
        Self(Arc::from(v.as_bytes()))
    }
}

impl From<String> for Bytes {
    fn from(v: String) -> Self {
        Self(Arc::from(v.into_bytes()))
    }
}

impl From<Arc<[u8]>> for Bytes {
    fn from(v: Arc<[u8]>) -> Self {
        Self(v)
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.0.to_vec()
    }
}
