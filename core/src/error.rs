//! Errors: one public enum per concern, each with a message that says what
//! happened and what to do.

use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use core::time::Duration;

use crate::sync::{MaybeSend, MaybeSync};

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
    /// The fetch task ended without a result: the fetch panicked, or the
    /// platform dropped the task.
    Panicked,
    /// A value given to `set` is larger than `max_value_bytes`; nothing was stored.
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The builder (or a per-call TTL) rejected an option.
    Config(ConfigError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Upstream(e) => write!(f, "upstream fetch failed: {e}"),
            Error::Timeout { after } => write!(
                f,
                "upstream fetch did not finish within the refresh timeout ({} ms)",
                after.as_millis()
            ),
            Error::CircuitOpen => f.write_str(
                "circuit breaker is open after repeated upstream failures and no cached value can be served; retry after the breaker's open period",
            ),
            Error::InvalidKey(e) => write!(f, "invalid key: {e}"),
            Error::Storage(e) => write!(f, "storage error: {e}"),
            Error::Codec(e) => write!(f, "codec error: {e}"),
            Error::Shutdown => f.write_str("cache engine is shutting down; no upstream call was made or the call was abandoned"),
            Error::Panicked => f.write_str("upstream fetch ended without a result (it panicked or its task was dropped)"),
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
            Error::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// An error type an upstream fetch may return: any `core::error::Error` that can
/// cross tasks on this target.
pub trait FetchError: core::error::Error + MaybeSend + MaybeSync + 'static {}
impl<T: core::error::Error + MaybeSend + MaybeSync + 'static> FetchError for T {}

/// The error an upstream fetch returned, shared by every waiter.
#[derive(Clone)]
pub struct UpstreamError(Arc<dyn FetchError>);

impl UpstreamError {
    /// Wraps `e`.
    pub fn new(e: impl FetchError) -> Self {
        Self(Arc::new(e))
    }

    /// The original error.
    pub fn inner(&self) -> &(dyn core::error::Error + 'static) {
        // Upcast through the supertrait; no allocation.
        let e: &dyn FetchError = &*self.0;
        e
    }
}

impl fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
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
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => f.write_str("the key is empty; use a non-empty string"),
            KeyError::TooLong { len, max } => write!(
                f,
                "the key is {len} bytes, over the limit of {max} bytes (raise max_key_bytes or hash the key)"
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
        write!(f, "{:?}: {}", self.kind, self.message)
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
