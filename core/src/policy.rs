//! [`ExpiredMode`] and [`TtlPolicy`]: the choices of how entries age.

use crate::entry::CacheTtl;
use crate::sync::{MaybeSend, MaybeSync};

/// What a lookup does with an entry in its expired phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExpiredMode {
    /// Wait for a refresh (bounded by `refresh_timeout`); on failure, timeout or
    /// an open breaker, serve the old value as [`Status::Fallback`](crate::Status::Fallback)
    /// (RFC 5861 stale-if-error). The default.
    #[default]
    Revalidate,
    /// Serve the old value at once as [`Status::Expired`](crate::Status::Expired)
    /// and refresh in background (the Go library's behaviour).
    ServeStale,
}

/// Chooses the TTL of a freshly fetched value from its key and encoded bytes.
///
/// Returning `None`, or a TTL that fails [`CacheTtl::is_valid`], keeps the
/// engine's default. A per-call TTL override takes precedence over the policy.
/// Closures `Fn(&str, &[u8]) -> Option<CacheTtl>` are policies.
///
/// ```
/// use core::time::Duration;
/// use swre_core::{CacheTtl, TtlPolicy};
///
/// let policy = |key: &str, _value: &[u8]| {
///     key.starts_with("config/").then(|| CacheTtl::new(Duration::from_secs(600), Duration::from_secs(3600), Duration::ZERO))
/// };
/// assert!(policy.ttl_for("config/a", b"v").is_some());
/// assert!(policy.ttl_for("user/1", b"v").is_none());
/// ```
pub trait TtlPolicy: MaybeSend + MaybeSync + 'static {
    /// The TTL for `value` fetched under `key`, or `None` for the default.
    fn ttl_for(&self, key: &str, value: &[u8]) -> Option<CacheTtl>;
}

impl<F> TtlPolicy for F
where
    F: Fn(&str, &[u8]) -> Option<CacheTtl> + MaybeSend + MaybeSync + 'static,
{
    fn ttl_for(&self, key: &str, value: &[u8]) -> Option<CacheTtl> {
        self(key, value)
    }
}
