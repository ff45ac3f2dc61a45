//! [`Detail`]: why a value was served the way its [`Status`](crate::Status)
//! says — the reason behind a fallback, a throttled refresh, a soft timeout.

use core::fmt;

/// Why a lookup answered as it did, beside its [`Status`](crate::Status):
/// `Detail::None` for the plain cases, and a reason where the status alone
/// does not tell (a fallback after a soft timeout, a stale value whose
/// refresh the fail-safe throttle held back, an open breaker). The HTTP layer
/// renders it as `Cache-Status`'s `detail`.
///
/// Four bytes wide (`repr(u32)`), beside the four-byte `Status`: together
/// they fill eight bytes of [`Cached`](crate::Cached) without padding (see
/// `Status`'s docs for why padding there costs a fresh hit time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum Detail {
    /// Nothing beyond the status.
    #[default]
    None,
    /// A fallback: the refresh the caller waited on passed the soft timeout
    /// (`EngineBuilder::soft_timeout`); it goes on in background and stores
    /// its value if it succeeds.
    SoftTimeout,
    /// An old value served without calling upstream: a refresh of the key
    /// failed a moment ago and it is in its fail-safe throttle window
    /// (`EngineBuilder::fail_safe_throttle`).
    Throttled,
    /// The circuit breaker is open: a fallback served instead of a call, or
    /// a stale value served without starting its refresh.
    BreakerOpen,
    /// A fallback: upstream failed (or its call ended without a result).
    UpstreamError,
    /// A fallback: upstream did not answer by the deadline
    /// (`refresh_timeout`).
    Timeout,
    /// A stale value served without starting its refresh:
    /// `max_concurrent_refreshes` refreshes were running.
    RefreshSkipped,
    /// A fallback: the engine is shutting down and makes no new calls.
    Shutdown,
    /// A fresh hit that started an early refresh (`EngineBuilder::early_refresh`).
    EarlyRefresh,
}

impl Detail {
    /// Every detail, in declaration order.
    pub const ALL: [Detail; 9] = [
        Detail::None,
        Detail::SoftTimeout,
        Detail::Throttled,
        Detail::BreakerOpen,
        Detail::UpstreamError,
        Detail::Timeout,
        Detail::RefreshSkipped,
        Detail::Shutdown,
        Detail::EarlyRefresh,
    ];

    /// The kebab-case name (`"soft-timeout"`, `"throttled"`, …; `"none"`),
    /// as JS results and `Cache-Status` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Detail::None => "none",
            Detail::SoftTimeout => "soft-timeout",
            Detail::Throttled => "throttled",
            Detail::BreakerOpen => "breaker-open",
            Detail::UpstreamError => "upstream-error",
            Detail::Timeout => "timeout",
            Detail::RefreshSkipped => "refresh-skipped",
            Detail::Shutdown => "shutdown",
            Detail::EarlyRefresh => "early-refresh",
        }
    }

    /// The detail of a fallback served because the call failed with `e`.
    pub(crate) fn of_failure(e: &crate::Error) -> Detail {
        match e {
            crate::Error::CircuitOpen => Detail::BreakerOpen,
            crate::Error::Timeout { .. } => Detail::Timeout,
            crate::Error::Shutdown => Detail::Shutdown,
            _ => Detail::UpstreamError,
        }
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Detail;

    #[test]
    fn names_are_distinct_kebab_case() {
        let names: alloc::collections::BTreeSet<&str> =
            Detail::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(names.len(), Detail::ALL.len());
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
    }

    #[test]
    fn status_and_detail_fill_eight_bytes() {
        assert_eq!(
            core::mem::size_of::<crate::Status>() + core::mem::size_of::<Detail>(),
            8
        );
    }
}
