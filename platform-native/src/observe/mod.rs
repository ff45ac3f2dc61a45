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
/// that this one missed, so its L1 copies of those keys may be stale (the
/// backplane empties its L1 once it has subscribed again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneGap {
    /// The subscription was lost (its connection dropped): whatever was
    /// published until it is back is missed, how much is unknown.
    Disconnected,
    /// The subscription's connection stopped answering its heartbeat (it
    /// died silently: a partition, a NAT's idle timeout) and was replaced.
    Silent,
}

impl BackplaneGap {
    /// The lower-case name of its kind (`"disconnected"`, `"silent"`): the
    /// `reason` attribute of [`names::BACKPLANE_GAPS`].
    ///
    /// ```
    /// use swre_native::observe::BackplaneGap;
    /// assert_eq!(BackplaneGap::Disconnected.reason(), "disconnected");
    /// ```
    pub fn reason(self) -> &'static str {
        match self {
            BackplaneGap::Disconnected => "disconnected",
            BackplaneGap::Silent => "silent",
        }
    }
}

/// Tells operators of a backplane gap: with feature `tracing`, a warning
/// event named `swre.backplane.gap` (target `"swre"`, field `reason`); with
/// feature `metrics`, one on the counter [`names::BACKPLANE_GAPS`]
/// (attribute `reason`), through the recorder installed at the time of the
/// call. Without either it does nothing, so callers need no feature gate of
/// their own. Gaps are rare: the counter is looked up per call rather than
/// held.
///
/// ```
/// use swre_native::observe::{backplane_gap, BackplaneGap};
/// backplane_gap(BackplaneGap::Silent);
/// ```
pub fn backplane_gap(gap: BackplaneGap) {
    #[cfg(feature = "tracing")]
    tracing::event!(
        name: "swre.backplane.gap",
        target: "swre",
        tracing::Level::WARN,
        reason = gap.reason(),
        "backplane subscription lost ({}); changes published meanwhile are missed, and L1 is emptied once it is back",
        gap.reason()
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(names::BACKPLANE_GAPS, names::attr::REASON => gap.reason()).increment(1);
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = gap;
}
