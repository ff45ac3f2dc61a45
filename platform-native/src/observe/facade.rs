//! [`MetricsFacade`]: the engine's [`Metrics`] fed to the `metrics` crate.

use std::time::Duration;

use metrics::{Counter, Histogram, Label, SharedString, Unit};
use swre_core::{BreakerScope, BreakerState, Error, Metrics, Status, StorageOp, UpstreamOutcome};

use super::names::{self, attr};

/// Lookup statuses in counter order; the last counter is for a status
/// added later (`Status` is non-exhaustive).
const STATUSES: [&str; 6] = ["hit", "stale", "miss", "expired", "fallback", "other"];

/// `error.type` values in counter order.
const ERROR_TYPES: [&str; 12] = [
    "upstream",
    "timeout",
    "circuit_open",
    "invalid_key",
    "invalid_tag",
    "storage",
    "codec",
    "shutdown",
    "abandoned",
    "value_too_large",
    "config",
    "other",
];

const OUTCOMES: [UpstreamOutcome; 4] = [
    UpstreamOutcome::Success,
    UpstreamOutcome::Error,
    UpstreamOutcome::Timeout,
    UpstreamOutcome::Abandoned,
];

const SCOPES: [BreakerScope; 2] = [BreakerScope::Global, BreakerScope::Key];

const STATES: [BreakerState; 3] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
];

const OPERATIONS: [StorageOp; 3] = [StorageOp::Get, StorageOp::Set, StorageOp::Delete];

/// A [`Metrics`] that feeds the [`metrics`] crate's facade, so whichever
/// exporter the application installed (Prometheus, OpenTelemetry, StatsD…)
/// receives the engine's events. Feature `metrics`.
///
/// Every counter and histogram it can touch is registered once, when it is
/// made, with the recorder installed then (the global one, or a
/// thread-local one set with [`metrics::with_local_recorder`]): make it
/// after installing the recorder, or its handles go nowhere. From then on
/// an event is one atomic add in the exporter's handle, and a hit nothing
/// more ("nothing per hit but a counter"); no key is ever a label.
///
/// What it records (names in the OpenTelemetry semantic-convention style;
/// [`names`](super::names) holds them as constants):
///
/// | name | kind | attributes | from |
/// |---|---|---|---|
/// | `swre.cache.lookups` | counter | `status`: `hit`, `stale`, `miss`, `expired`, `fallback` | [`Metrics::lookup`] |
/// | `swre.cache.lookup.errors` | counter | `error.type`: `upstream`, `timeout`, `circuit_open`, `invalid_key`, `invalid_tag`, `storage`, `codec`, `shutdown`, `abandoned`, `value_too_large`, `config`, `other` | [`Metrics::lookup_error`] |
/// | `swre.upstream.calls` | counter | `outcome`: `success`, `error`, `timeout`, `abandoned` | [`Metrics::upstream`] |
/// | `swre.upstream.duration` | histogram, seconds | `outcome`: `success`, `error`, `timeout` | [`Metrics::upstream`] |
/// | `swre.refresh.skipped` | counter | | [`Metrics::refresh_skipped`] |
/// | `swre.breaker.transitions` | counter | `scope`: `global`, `key`; `state`: `open`, `half_open`, `closed` | [`Metrics::breaker`] |
/// | `swre.storage.errors` | counter | `operation`: `get`, `set`, `delete` | [`Metrics::storage_error`] |
/// | `swre.lease.waits` | counter | | [`Metrics::lease_wait`] |
/// | `swre.backplane.gaps` | counter | `reason`: `disconnected`, `silent` | [`backplane_gap`](super::backplane_gap) |
///
/// Labels given to [`with_labels`](Self::with_labels) are added to every
/// one of them (e.g. which cache, in a process with several engines).
///
/// ```
/// use swre_native::{Engine, MemoryStorage, MetricsFacade, TokioRuntime};
///
/// // After the application installed its recorder (an exporter's).
/// let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
///     .metrics(MetricsFacade::with_labels([("cache", "users")]))
///     .build()
///     .expect("valid configuration");
/// # drop(engine);
/// ```
#[derive(Clone, Debug)]
pub struct MetricsFacade {
    lookups: [Counter; STATUSES.len()],
    lookup_errors: [Counter; ERROR_TYPES.len()],
    upstream_calls: [Counter; OUTCOMES.len()],
    /// Success, error, timeout: an abandoned call has no duration.
    upstream_duration: [Histogram; 3],
    refresh_skipped: Counter,
    /// By scope, then state, in the orders of `SCOPES` and `STATES`.
    breaker: [Counter; SCOPES.len() * STATES.len()],
    storage_errors: [Counter; OPERATIONS.len()],
    lease_waits: Counter,
}

impl Default for MetricsFacade {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsFacade {
    /// Registers every metric with the recorder installed now, with no
    /// labels of its own.
    pub fn new() -> Self {
        Self::with_labels(std::iter::empty::<(&'static str, &'static str)>())
    }

    /// Registers every metric with the recorder installed now, each with
    /// `labels` besides its own attributes.
    pub fn with_labels<K, V>(labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<SharedString>,
        V: Into<SharedString>,
    {
        let base: Vec<Label> = labels.into_iter().map(|(k, v)| Label::new(k, v)).collect();
        describe();
        let counter = |name: &'static str, attrs: &[(&'static str, &'static str)]| {
            metrics::counter!(name, with(&base, attrs))
        };
        let histogram = |name: &'static str, attrs: &[(&'static str, &'static str)]| {
            metrics::histogram!(name, with(&base, attrs))
        };
        Self {
            lookups: STATUSES.map(|s| counter(names::LOOKUPS, &[(attr::STATUS, s)])),
            lookup_errors: ERROR_TYPES
                .map(|t| counter(names::LOOKUP_ERRORS, &[(attr::ERROR_TYPE, t)])),
            upstream_calls: OUTCOMES
                .map(|o| counter(names::UPSTREAM_CALLS, &[(attr::OUTCOME, o.as_str())])),
            upstream_duration: [
                UpstreamOutcome::Success,
                UpstreamOutcome::Error,
                UpstreamOutcome::Timeout,
            ]
            .map(|o| histogram(names::UPSTREAM_DURATION, &[(attr::OUTCOME, o.as_str())])),
            refresh_skipped: counter(names::REFRESH_SKIPPED, &[]),
            breaker: std::array::from_fn(|i| {
                let (scope, state) = (SCOPES[i / STATES.len()], STATES[i % STATES.len()]);
                counter(
                    names::BREAKER_TRANSITIONS,
                    &[(attr::SCOPE, scope.as_str()), (attr::STATE, state.as_str())],
                )
            }),
            storage_errors: OPERATIONS
                .map(|op| counter(names::STORAGE_ERRORS, &[(attr::OPERATION, op.as_str())])),
            lease_waits: counter(names::LEASE_WAITS, &[]),
        }
    }
}

/// `base` and `attrs` as one label list.
fn with(base: &[Label], attrs: &[(&'static str, &'static str)]) -> Vec<Label> {
    let mut labels = base.to_vec();
    labels.extend(attrs.iter().map(|&(k, v)| Label::new(k, v)));
    labels
}

/// Units and descriptions (an exporter's `# HELP` lines), given to the
/// recorder installed now; describing a metric again is harmless.
fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        names::LOOKUPS,
        Unit::Count,
        "Cache lookups answered with a value, by status"
    );
    describe_counter!(
        names::LOOKUP_ERRORS,
        Unit::Count,
        "Cache lookups that returned an error, by error type"
    );
    describe_counter!(
        names::UPSTREAM_CALLS,
        Unit::Count,
        "Upstream calls ended, by outcome"
    );
    describe_histogram!(
        names::UPSTREAM_DURATION,
        Unit::Seconds,
        "Upstream call duration by the engine's clock, by outcome"
    );
    describe_counter!(
        names::REFRESH_SKIPPED,
        Unit::Count,
        "Background refreshes skipped because max_concurrent_refreshes were running"
    );
    describe_counter!(
        names::BREAKER_TRANSITIONS,
        Unit::Count,
        "Circuit breaker transitions, by scope and the state entered"
    );
    describe_counter!(
        names::STORAGE_ERRORS,
        Unit::Count,
        "Storage operations that failed and were degraded, by operation"
    );
    describe_counter!(
        names::LEASE_WAITS,
        Unit::Count,
        "Upstream calls not made because another process held the refresh lease"
    );
    describe_counter!(
        names::BACKPLANE_GAPS,
        Unit::Count,
        "Backplane gaps (changes other instances published that were missed), by reason"
    );
}

fn status_index(status: Status) -> usize {
    match status {
        Status::Hit => 0,
        Status::Stale => 1,
        Status::Miss => 2,
        Status::Expired => 3,
        Status::Fallback => 4,
        _ => 5,
    }
}

fn error_index(error: &Error) -> usize {
    match error {
        Error::Upstream(_) => 0,
        Error::Timeout { .. } => 1,
        Error::CircuitOpen => 2,
        Error::InvalidKey(_) => 3,
        Error::InvalidTag(_) => 4,
        Error::Storage(_) => 5,
        Error::Codec(_) => 6,
        Error::Shutdown => 7,
        Error::Abandoned => 8,
        Error::ValueTooLarge { .. } => 9,
        Error::Config(_) => 10,
        _ => 11,
    }
}

fn outcome_index(outcome: UpstreamOutcome) -> usize {
    match outcome {
        UpstreamOutcome::Success => 0,
        UpstreamOutcome::Error => 1,
        UpstreamOutcome::Timeout => 2,
        UpstreamOutcome::Abandoned => 3,
    }
}

fn breaker_index(scope: BreakerScope, state: BreakerState) -> usize {
    let scope = match scope {
        BreakerScope::Global => 0,
        BreakerScope::Key => 1,
    };
    let state = match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    };
    scope * STATES.len() + state
}

fn operation_index(op: StorageOp) -> usize {
    match op {
        StorageOp::Get => 0,
        StorageOp::Set => 1,
        StorageOp::Delete => 2,
    }
}

impl Metrics for MetricsFacade {
    #[inline]
    fn lookup(&self, status: Status) {
        self.lookups[status_index(status)].increment(1);
    }

    fn lookup_error(&self, error: &Error) {
        self.lookup_errors[error_index(error)].increment(1);
    }

    fn upstream(&self, outcome: UpstreamOutcome, elapsed: Duration) {
        let i = outcome_index(outcome);
        self.upstream_calls[i].increment(1);
        if let Some(h) = self.upstream_duration.get(i) {
            h.record(elapsed.as_secs_f64());
        }
    }

    fn refresh_skipped(&self) {
        self.refresh_skipped.increment(1);
    }

    fn breaker(&self, scope: BreakerScope, state: BreakerState) {
        self.breaker[breaker_index(scope, state)].increment(1);
    }

    fn storage_error(&self, op: StorageOp) {
        self.storage_errors[operation_index(op)].increment(1);
    }

    fn lease_wait(&self) {
        self.lease_waits.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{backplane_gap, BackplaneGap};
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// Every event method, through a Prometheus recorder of its own (local
    /// to this thread), rendered: each lands on its name and attributes.
    #[test]
    fn each_event_lands_on_its_name_and_attributes() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let m = metrics::with_local_recorder(&recorder, || {
            MetricsFacade::with_labels([("cache", "t")])
        });
        for _ in 0..3 {
            m.lookup(Status::Hit);
        }
        m.lookup(Status::Fallback);
        m.lookup_error(&Error::CircuitOpen);
        m.upstream(UpstreamOutcome::Timeout, Duration::from_millis(1500));
        m.upstream(UpstreamOutcome::Abandoned, Duration::ZERO);
        m.refresh_skipped();
        m.breaker(BreakerScope::Global, BreakerState::HalfOpen);
        m.storage_error(StorageOp::Delete);
        m.lease_wait();
        m.lease_wait();
        metrics::with_local_recorder(&recorder, || {
            backplane_gap(BackplaneGap::Silent);
            backplane_gap(BackplaneGap::Disconnected);
        });
        let text = handle.render();
        for line in [
            r#"swre_cache_lookups{cache="t",status="hit"} 3"#,
            r#"swre_cache_lookups{cache="t",status="fallback"} 1"#,
            r#"swre_cache_lookups{cache="t",status="miss"} 0"#,
            r#"swre_cache_lookup_errors{cache="t",error_type="circuit_open"} 1"#,
            r#"swre_upstream_calls{cache="t",outcome="timeout"} 1"#,
            r#"swre_upstream_calls{cache="t",outcome="abandoned"} 1"#,
            r#"swre_upstream_duration_sum{cache="t",outcome="timeout"} 1.5"#,
            r#"swre_upstream_duration_count{cache="t",outcome="timeout"} 1"#,
            r#"swre_refresh_skipped{cache="t"} 1"#,
            r#"swre_breaker_transitions{cache="t",scope="global",state="half_open"} 1"#,
            r#"swre_breaker_transitions{cache="t",scope="global",state="open"} 0"#,
            r#"swre_storage_errors{cache="t",operation="delete"} 1"#,
            r#"swre_lease_waits{cache="t"} 2"#,
            r#"swre_backplane_gaps{reason="silent"} 1"#,
            r#"swre_backplane_gaps{reason="disconnected"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(
            !text.contains(r#"outcome="abandoned",quantile"#),
            "an abandoned call has no duration:\n{text}"
        );
    }

    #[test]
    fn orders_match_the_labels() {
        for (i, s) in Status::ALL.into_iter().enumerate() {
            assert_eq!((status_index(s), STATUSES[i]), (i, s.as_str()));
        }
        for (i, o) in OUTCOMES.into_iter().enumerate() {
            assert_eq!(outcome_index(o), i);
        }
        for (i, op) in OPERATIONS.into_iter().enumerate() {
            assert_eq!(operation_index(op), i);
        }
        for (i, scope) in SCOPES.into_iter().enumerate() {
            for (j, state) in STATES.into_iter().enumerate() {
                assert_eq!(breaker_index(scope, state), i * STATES.len() + j);
            }
        }
        let errors = [
            (
                Error::Timeout {
                    after: Duration::ZERO,
                },
                "timeout",
            ),
            (Error::CircuitOpen, "circuit_open"),
            (Error::Shutdown, "shutdown"),
            (Error::Abandoned, "abandoned"),
            (Error::ValueTooLarge { len: 2, max: 1 }, "value_too_large"),
        ];
        for (e, name) in errors {
            assert_eq!(ERROR_TYPES[error_index(&e)], name);
        }
    }
}
