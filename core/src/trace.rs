//! A span per upstream call (feature `tracing`), or nothing at all.
//!
//! Each spawned call — a fetch callers wait for, a background refresh, a
//! batch call — runs inside one span that records how it ended and how long
//! it took by the engine's clock. The span is made when the call is
//! spawned, never on a hit: a fresh hit makes no call, so it costs nothing
//! here ("nothing per hit but a counter"). Without the feature [`CallSpan`]
//! holds nothing and its methods compile away.
//!
//! Keys may carry user data, so a span names its key by [`key_hash`] only.

use core::fmt;
use core::future::Future;

use crate::time::Clock;

/// A stable 64-bit hash of `key` (FNV-1a over its UTF-8 bytes), the same in
/// every process, platform and version: spans and events name a key by it
/// (as 16 hex digits), never by the key itself, which may carry user data.
/// To find a key's calls in the traces, hash it the same way.
///
/// ```
/// assert_eq!(swre_core::key_hash(""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(format!("{:016x}", swre_core::key_hash("a")), "af63dc4c8601ec8c");
/// ```
pub fn key_hash(key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// A key's [`key_hash`] as 16 lower-case hex digits.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct KeyHash(pub(crate) u64);

#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
impl KeyHash {
    pub(crate) fn of(key: &str) -> Self {
        Self(key_hash(key))
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// How a spawned call ended: its span's `outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallEnd {
    /// Upstream answered with a value (stored, or returned only).
    Success,
    /// Upstream answered with an error.
    Error,
    /// Upstream did not answer by the call's deadline.
    Timeout,
    /// No upstream call: another call of this engine stored a fresh value
    /// meanwhile, or a batch's keys all were.
    Shared,
    /// No upstream call here: another process held the lease and its value
    /// was used.
    SharedFromStore,
    /// The deadline passed before upstream was called or while its value
    /// was being stored (a slow store, another process that did not deliver).
    GaveUp,
    /// Upstream answered, but the answer could not be used (an invalid tag,
    /// "not modified" with nothing cached).
    Rejected,
    /// The shutdown grace period ended first.
    Shutdown,
}

impl CallEnd {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            CallEnd::Success => "success",
            CallEnd::Error => "error",
            CallEnd::Timeout => "timeout",
            CallEnd::Shared => "shared",
            CallEnd::SharedFromStore => "shared_from_store",
            CallEnd::GaveUp => "gave_up",
            CallEnd::Rejected => "rejected",
            CallEnd::Shutdown => "shutdown",
        }
    }
}

/// The span of one spawned call. [`end`](Self::end) records its outcome and
/// duration; a call dropped before it ends (its task dropped or never polled
/// again) is recorded as `abandoned` when the span is dropped.
pub(crate) struct CallSpan<K: Clock> {
    #[cfg(feature = "tracing")]
    inner: Option<Traced<K>>,
    #[cfg(not(feature = "tracing"))]
    inner: core::marker::PhantomData<fn() -> K>,
}

#[cfg(feature = "tracing")]
struct Traced<K: Clock> {
    span: tracing::Span,
    clock: K,
    started_ms: u64,
}

impl<K: Clock + Clone> CallSpan<K> {
    /// The span of a call for `key` admitted at `started_ms`: a background
    /// refresh if `background`.
    #[inline]
    pub(crate) fn call(key: &str, background: bool, started_ms: u64, clock: &K) -> Self {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::info_span!(
                target: "swre",
                "swre.upstream",
                key_hash = %KeyHash::of(key),
                background,
                outcome = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            );
            Self::traced(span, started_ms, clock)
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (key, background, started_ms, clock);
            Self {
                inner: core::marker::PhantomData,
            }
        }
    }

    /// The span of a batch call for `keys` keys admitted at `started_ms`.
    #[inline]
    pub(crate) fn batch(keys: usize, started_ms: u64, clock: &K) -> Self {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::info_span!(
                target: "swre",
                "swre.upstream.batch",
                keys,
                outcome = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            );
            Self::traced(span, started_ms, clock)
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (keys, started_ms, clock);
            Self {
                inner: core::marker::PhantomData,
            }
        }
    }

    #[cfg(feature = "tracing")]
    fn traced(span: tracing::Span, started_ms: u64, clock: &K) -> Self {
        // No subscriber wants it: keep no clock either.
        let inner = (!span.is_disabled()).then(|| Traced {
            span,
            clock: clock.clone(),
            started_ms,
        });
        Self { inner }
    }

    /// `fut`, run inside the span (entered at each poll).
    #[inline]
    pub(crate) fn instrument<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        #[cfg(feature = "tracing")]
        {
            let span = match &self.inner {
                Some(t) => t.span.clone(),
                None => tracing::Span::none(),
            };
            tracing::Instrument::instrument(fut, span)
        }
        #[cfg(not(feature = "tracing"))]
        {
            fut
        }
    }

    /// Records how the call ended, and its duration by the engine's clock.
    #[inline]
    pub(crate) fn end(mut self, end: CallEnd) {
        #[cfg(feature = "tracing")]
        if let Some(t) = self.inner.take() {
            t.close(end.as_str());
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (&mut self, end);
        }
    }
}

#[cfg(feature = "tracing")]
impl<K: Clock> Traced<K> {
    fn close(self, outcome: &str) {
        let ms = self.clock.now_ms().saturating_sub(self.started_ms);
        self.span.record("outcome", outcome);
        self.span.record("duration_ms", ms);
    }
}

#[cfg(feature = "tracing")]
impl<K: Clock> Drop for CallSpan<K> {
    fn drop(&mut self) {
        // Dropped without `end`: the call's task ended without a result.
        if let Some(t) = self.inner.take() {
            t.close("abandoned");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_fnv_1a() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(key_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_hash("foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(
            alloc::format!("{}", KeyHash::of("foobar")),
            "85944171f73967e8"
        );
    }
}
