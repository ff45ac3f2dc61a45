//! Observability for operators: what the engine and the backplane tell
//! `tracing` subscribers (feature `tracing`) and `metrics` recorders
//! (feature `metrics`).
//!
//! - Feature `tracing` (swre-core's): a span `swre.upstream` per upstream
//!   call and background refresh (fields `key_hash`, `background`,
//!   `outcome`, `duration_ms`), `swre.upstream.batch` per batch call
//!   (`keys`, `outcome`, `duration_ms`), and events with target `"swre"`:
//!   `swre.breaker.transition` (`scope`, `state`, `key_hash`),
//!   `swre.lease.wait`, `swre.storage.error` (`operation`),
//!   [`swre.backplane.gap`](backplane_gap), and the `log` feature's
//!   messages (a refresh that failed, a call abandoned, a value too large
//!   to store). A key is named by [`key_hash`](crate::key_hash) only.
//! - Feature `metrics`: `MetricsFacade`, a [`Metrics`](crate::Metrics)
//!   that feeds the `metrics` crate's facade, so any exporter (Prometheus,
//!   OpenTelemetry, StatsD) gets the engine's counters and histograms;
//!   [`names`] lists them.
//!
//! Neither emits anything per fresh hit but the lookup counter's one
//! atomic add ("nothing per hit but a counter"): spans are made only for
//! upstream calls, which a fresh hit never makes.

#[cfg(feature = "metrics")]
mod facade;
pub mod names;

#[cfg(feature = "metrics")]
pub use facade::MetricsFacade;

/// A gap in what a backplane received: changes other instances published
/// that this one missed, so its L1 copies of those keys may be stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneGap {
    /// Messages from one instance were skipped: its message count jumped
    /// by `missed + 1`.
    Sequence {
        /// The publishing instance's id.
        origin: u64,
        /// How many of its messages were not received.
        missed: u64,
    },
    /// The subscription was lost (its connection dropped): whatever was
    /// published until it is back is missed, how much is unknown.
    Disconnected,
}

impl BackplaneGap {
    /// The lower-case name of its kind (`"sequence"`, `"disconnected"`):
    /// the `reason` attribute of [`names::BACKPLANE_GAPS`].
    ///
    /// ```
    /// use swre_native::observe::BackplaneGap;
    /// assert_eq!(BackplaneGap::Disconnected.reason(), "disconnected");
    /// ```
    pub fn reason(self) -> &'static str {
        match self {
            BackplaneGap::Sequence { .. } => "sequence",
            BackplaneGap::Disconnected => "disconnected",
        }
    }

    /// Messages known to be missed (none known for a disconnection).
    pub fn missed(self) -> u64 {
        match self {
            BackplaneGap::Sequence { missed, .. } => missed,
            BackplaneGap::Disconnected => 0,
        }
    }
}

/// Tells operators of a backplane gap: with feature `tracing`, a warning
/// event named `swre.backplane.gap` (target `"swre"`, fields `reason`,
/// `missed`, and `origin` in hex for a sequence gap); with feature
/// `metrics`, one on the counter [`names::BACKPLANE_GAPS`] (attribute
/// `reason`) and `missed` on [`names::BACKPLANE_MISSED`], through the
/// recorder installed at the time of the call. Without either it does
/// nothing, so callers need no feature gate of their own. Gaps are rare: the
/// counters are looked up per call rather than held.
///
/// ```
/// use swre_native::observe::{backplane_gap, BackplaneGap};
/// backplane_gap(BackplaneGap::Sequence { origin: 0x2a, missed: 3 });
/// ```
pub fn backplane_gap(gap: BackplaneGap) {
    #[cfg(feature = "tracing")]
    match gap {
        BackplaneGap::Sequence { origin, missed } => tracing::event!(
            name: "swre.backplane.gap",
            target: "swre",
            tracing::Level::WARN,
            reason = gap.reason(),
            missed,
            origin = %Hex(origin),
            "backplane missed {missed} message(s) from instance {origin:016x}; L1 copies may be stale"
        ),
        BackplaneGap::Disconnected => tracing::event!(
            name: "swre.backplane.gap",
            target: "swre",
            tracing::Level::WARN,
            reason = gap.reason(),
            missed = 0u64,
            "backplane subscription lost; changes published meanwhile are missed and L1 copies may be stale"
        ),
    }
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(names::BACKPLANE_GAPS, names::attr::REASON => gap.reason()).increment(1);
        if gap.missed() > 0 {
            metrics::counter!(names::BACKPLANE_MISSED).increment(gap.missed());
        }
    }
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = gap;
}

/// An instance id as 16 hex digits, as the backplane's messages write it.
#[cfg(feature = "tracing")]
struct Hex(u64);

#[cfg(feature = "tracing")]
impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
