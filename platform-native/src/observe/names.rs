//! The names of the metrics `MetricsFacade` (feature `metrics`) and
//! [`backplane_gap`](super::backplane_gap) record, and of their
//! attributes, in the OpenTelemetry semantic-convention style: dot-separated,
//! lower-case, counters named for what they count, durations in seconds.
//! Exporters adapt them to their own rules (Prometheus: `swre_cache_lookups`).

/// Counter: lookups answered with a value, by attribute `status` (`hit`,
/// `stale`, `miss`, `expired`, `fallback`).
pub const LOOKUPS: &str = "swre.cache.lookups";
/// Counter: lookups that returned an error, by attribute `error.type`
/// (`upstream`, `timeout`, `circuit_open`, `invalid_key`, `invalid_tag`,
/// `storage`, `codec`, `shutdown`, `abandoned`, `value_too_large`,
/// `config`, `other`).
pub const LOOKUP_ERRORS: &str = "swre.cache.lookup.errors";
/// Counter: upstream calls ended, by attribute `outcome` (`success`,
/// `error`, `timeout`, `abandoned`).
pub const UPSTREAM_CALLS: &str = "swre.upstream.calls";
/// Histogram, seconds (by the engine's clock): how long upstream calls
/// took from admission to their answer, by attribute `outcome` (`success`,
/// `error`, `timeout`; an abandoned call's duration is unknown, so it is
/// counted in [`UPSTREAM_CALLS`] only).
pub const UPSTREAM_DURATION: &str = "swre.upstream.duration";
/// Counter: background refreshes not started because
/// `max_concurrent_refreshes` were running (the stale value was served).
pub const REFRESH_SKIPPED: &str = "swre.refresh.skipped";
/// Counter: circuit breaker transitions, by attributes `scope` (`global`,
/// `key`) and `state` (`open`, `half_open`, `closed`: the state entered).
pub const BREAKER_TRANSITIONS: &str = "swre.breaker.transitions";
/// Counter: storage operations that failed and were degraded, by attribute
/// `operation` (`get`, `set`, `delete`).
pub const STORAGE_ERRORS: &str = "swre.storage.errors";
/// Counter: upstream calls not made here because another process held the
/// key's refresh lease (its value was waited for).
pub const LEASE_WAITS: &str = "swre.lease.waits";
/// Counter: backplane gaps (lost subscriptions), by attribute `reason`
/// (`disconnected`, `silent`).
pub const BACKPLANE_GAPS: &str = "swre.backplane.gaps";

/// Attribute (label) names.
pub mod attr {
    /// A lookup's status.
    pub const STATUS: &str = "status";
    /// The kind of error a lookup returned (OpenTelemetry's `error.type`).
    pub const ERROR_TYPE: &str = "error.type";
    /// How an upstream call ended.
    pub const OUTCOME: &str = "outcome";
    /// Which breaker changed state.
    pub const SCOPE: &str = "scope";
    /// The state a breaker entered.
    pub const STATE: &str = "state";
    /// The storage operation that failed.
    pub const OPERATION: &str = "operation";
    /// Why a backplane gap happened.
    pub const REASON: &str = "reason";
}
