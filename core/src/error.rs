//! Errors: one public enum per concern, each with a message that says what
//! happened and what to do.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use core::time::Duration;

/// An error from a lookup or from building an engine.
///
/// Cloning is cheap: errors shared by every waiter of one upstream call hold an `Arc`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// Upstream (the fetch function) returned an error; the original is inside.
    Upstream(UpstreamError),
    /// Upstream did not answer within `refresh_timeout`.
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The circuit breaker for upstream (globally or for this key) is open and
    /// there is no usable value to fall back on.
    CircuitOpen,
    /// The key was rejected before anything was read or written.
    InvalidKey(KeyError),
    /// Storage failed in a way that could not be degraded (e.g. `set` or `delete`
    /// called directly).
    Storage(StorageError),
    /// A value could not be encoded or decoded by the engine's codec.
    Codec(CodecError),
    /// The engine is shutting down: no new upstream calls are made, and a call
    /// still running when the shutdown grace period ended was dropped.
    Shutdown,
    /// The upstream call ended without a result: the fetch panicked, or the
    /// platform dropped (or stopped polling) its task. Counted as
    /// `upstream_abandoned`; JS `kind: "abandoned"`.
    Abandoned,
    /// A value given to `set` is larger than `max_value_bytes`; nothing was stored.
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The builder (or a per-call TTL) rejected an option.
    Config(ConfigError),
    /// A tag given to a write, a call or a tag operation was rejected before
    /// anything was read or written.
    InvalidTag(crate::tags::TagError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Upstream(e) => write!(f, "upstream fetch failed: {e}"),
            Error::Timeout { after } => write!(
                f,
                "upstream fetch did not finish within the refresh timeout ({} ms)",
                // u64, not u128: u128 formatting is kilobytes of wasm.
                u64::try_from(after.as_millis()).unwrap_or(u64::MAX)
            ),
            Error::CircuitOpen => f.write_str(
                "circuit breaker is open after repeated upstream failures and no cached value can be served; retry after the breaker's open period",
            ),
            Error::InvalidKey(e) => write!(f, "invalid key: {e}"),
            Error::InvalidTag(e) => write!(f, "invalid tag: {e}"),
            Error::Storage(e) => write!(f, "storage error: {e}"),
            Error::Codec(e) => write!(f, "codec error: {e}"),
            Error::Shutdown => f.write_str("cache engine is shutting down; no upstream call was made or the call was abandoned"),
            Error::Abandoned => f.write_str("upstream fetch was abandoned without a result (it panicked, or its task was dropped or never polled again)"),
            Error::ValueTooLarge { len, max } => write!(
                f,
                "value of {len} bytes is over max_value_bytes ({max}); it was not stored"
            ),
            Error::Config(e) => write!(f, "invalid configuration: {e}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Upstream(e) => Some(e.inner()),
            Error::Storage(e) => Some(e),
            Error::Codec(e) => Some(e),
            Error::InvalidKey(e) => Some(e),
            Error::InvalidTag(e) => Some(e),
            Error::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// A boxed error as fetches return them: `Send + Sync` on every target but
/// `wasm32` (where JS errors are neither).
#[cfg(not(target_arch = "wasm32"))]
pub type BoxError = Box<dyn core::error::Error + Send + Sync>;
/// A boxed error as fetches return them: `Send + Sync` on every target but
/// `wasm32` (where JS errors are neither).
#[cfg(target_arch = "wasm32")]
pub type BoxError = Box<dyn core::error::Error>;

/// An error type an upstream fetch may return: anything that converts into a
/// [`BoxError`] — every `core::error::Error + Send + Sync` type,
/// `Box<dyn Error + Send + Sync>`, `anyhow::Error`, `String` and `&str`.
///
/// Every error counts against the circuit breaker unless the fetch wraps it
/// in [`NotCounted`] (not found, the caller's own bad request).
pub trait FetchError: Into<BoxError> + 'static {}
impl<T: Into<BoxError> + 'static> FetchError for T {}

/// A fetch error that says nothing about upstream's health — "not found", or
/// a request the caller got wrong — so it never moves a circuit breaker.
/// Waiters still receive it as [`Error::Upstream`].
///
/// ```
/// use swre_core::{NotCounted, UpstreamError};
///
/// let e = UpstreamError::new(NotCounted::new("no user 42"));
/// assert!(!e.counts_against_breaker());
/// assert_eq!(e.to_string(), "no user 42");
/// assert!(UpstreamError::new("connection refused").counts_against_breaker());
/// ```
#[derive(Debug)]
pub struct NotCounted(BoxError);

impl NotCounted {
    /// Wraps `e`.
    pub fn new(e: impl Into<BoxError>) -> Self {
        Self(e.into())
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn core::error::Error + 'static) {
        &*self.0
    }
}

impl fmt::Display for NotCounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl core::error::Error for NotCounted {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(not(target_arch = "wasm32"))]
type SharedError = Arc<dyn core::error::Error + Send + Sync>;
#[cfg(target_arch = "wasm32")]
type SharedError = Arc<dyn core::error::Error>;

/// The error an upstream fetch returned, shared by every waiter.
#[derive(Clone)]
pub struct UpstreamError {
    error: SharedError,
    counts: bool,
}

impl UpstreamError {
    /// Wraps `e`; a [`NotCounted`] error is marked as not counting against
    /// the breaker.
    pub fn new(e: impl Into<BoxError>) -> Self {
        let boxed: BoxError = e.into();
        let counts = !boxed.is::<NotCounted>();
        Self {
            error: Arc::from(boxed),
            counts,
        }
    }

    /// The original error (inside [`NotCounted`], the wrapped one).
    pub fn inner(&self) -> &(dyn core::error::Error + 'static) {
        match self.error.downcast_ref::<NotCounted>() {
            Some(nc) => nc.inner(),
            None => &*self.error,
        }
    }

    /// Whether the error counts against the circuit breaker (it does unless
    /// the fetch wrapped it in [`NotCounted`]).
    pub fn counts_against_breaker(&self) -> bool {
        self.counts
    }
}

impl fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.error, f)
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.error, f)
    }
}

/// Why a key was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is the empty string.
    Empty,
    /// The key is longer than the engine's `max_key_bytes`.
    TooLong {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key starts with the engine's reserved prefix
    /// ([`RESERVED_PREFIX`](crate::tags::record::RESERVED_PREFIX), a NUL then
    /// `swre:`), under which it keeps tag records.
    Reserved,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => f.write_str("the key is empty; use a non-empty string"),
            KeyError::TooLong { len, max } => write!(
                f,
                "the key is {len} bytes, over the limit of {max} bytes (raise max_key_bytes or hash the key)"
            ),
            KeyError::Reserved => f.write_str(
                "the key starts with \"\\0swre:\", which the engine reserves for tag records",
            ),
        }
    }
}

impl core::error::Error for KeyError {}

/// The kind of a [`StorageError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The store cannot be reached (closed database, connection refused).
    Unavailable,
    /// An I/O operation failed.
    Io,
    /// The value is too large for this store.
    TooLarge,
    /// The key cannot be used with this store.
    InvalidKey,
    /// Anything else.
    Other,
}

impl fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageErrorKind::Unavailable => "store unavailable",
            StorageErrorKind::Io => "I/O error",
            StorageErrorKind::TooLarge => "value too large for the store",
            StorageErrorKind::InvalidKey => "key not usable with the store",
            StorageErrorKind::Other => "store error",
        })
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::Codec(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// A storage failure: a kind and a message from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError {
    kind: StorageErrorKind,
    message: String,
}

impl StorageError {
    /// An error of `kind` with a message saying what failed.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The kind.
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    /// The store's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl core::error::Error for StorageError {}

/// A value could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError {
    codec: &'static str,
    message: String,
}

impl CodecError {
    /// An error from the codec named `codec`.
    pub fn new(codec: &'static str, message: impl Into<String>) -> Self {
        Self {
            codec,
            message: message.into(),
        }
    }

    /// The codec's name.
    pub fn codec(&self) -> &'static str {
        self.codec
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.codec, self.message)
    }
}

impl core::error::Error for CodecError {}

/// An option the builder rejected, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The option's name as the builder spells it.
    pub option: &'static str,
    /// What is wrong and what is accepted.
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.option, self.reason)
    }
}

impl core::error::Error for ConfigError {}

/// The error of a key a batch fetch
/// ([`Engine::get_many_or_fetch`](crate::Engine::get_many_or_fetch)) was
/// asked for and returned no value for: the key is treated as not found. It
/// reaches the caller as [`Error::Upstream`] wrapping [`NotCounted`], so it
/// never moves a circuit breaker, and is remembered by the negative cache
/// like any fetch error; the other keys of the batch are unaffected.
///
/// ```
/// use swre_core::{Error, MissingFromBatch};
///
/// fn not_returned(e: &Error) -> bool {
///     matches!(e, Error::Upstream(u) if u.inner().is::<MissingFromBatch>())
/// }
/// # let _ = not_returned;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MissingFromBatch;

impl fmt::Display for MissingFromBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the batch fetch returned no value for this key (treated as not found; return every key asked for, or cache a marker for absent ones)",
        )
    }
}

impl core::error::Error for MissingFromBatch {}
