//! The engine's metrics in Prometheus text: a `MetricsFacade` feeding the
//! `metrics` crate, rendered by `metrics-exporter-prometheus` (no HTTP
//! listener: a service serves `handle.render()` on its own route). A miss,
//! three hits, a failing upstream that opens a key's circuit breaker, then
//! the text. Memory storage, no Redis, about a tenth of a second.
//!
//! `cargo run -p swre-native --features metrics --example prometheus`
//!
//! To add it to another program, three steps (the recorder first: the
//! facade registers its counters with the recorder installed when it is
//! made):
//!
//! ```ignore
//! let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
//!     .with_recommended_naming(true) // `_total`, `_seconds` suffixes
//!     .install_recorder()?;
//! let engine = Engine::builder(storage, runtime)
//!     .metrics(swre_native::MetricsFacade::with_labels([("instance", "a")]))
//!     .build()?;
//! // … later, on a scrape or at exit:
//! print!("{}", prometheus.render());
//! ```

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use swre_native::{BreakerConfig, Engine, MemoryStorage, MetricsFacade, Status, TokioRuntime};

#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream is down (HTTP 503)")
    }
}

impl std::error::Error for Down {}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new()
        .with_recommended_naming(true)
        // Upstream durations as a histogram with these bounds (seconds),
        // rather than the exporter's default summary.
        .set_buckets_for_metric(
            Matcher::Full("swre.upstream.duration".into()),
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
        )?
        .install_recorder()?;

    let engine = Engine::builder(MemoryStorage::new(), TokioRuntime::new())
        .breaker(BreakerConfig::default().failure_threshold(2))
        .metrics(MetricsFacade::with_labels([("cache", "rates")]))
        .build()?;

    let fetch = || async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, Down>("1.0842")
    };
    assert_eq!(
        engine.get_or_fetch("eur-usd", fetch).await?.status,
        Status::Miss
    );
    for _ in 0..3 {
        assert_eq!(
            engine.get_or_fetch("eur-usd", fetch).await?.status,
            Status::Hit
        );
    }
    // Two failures open the key's breaker; the third call is refused
    // without calling upstream.
    for _ in 0..3 {
        let r = engine
            .get_or_fetch("gbp-usd", || async { Err::<&str, _>(Down) })
            .await;
        assert!(r.is_err());
    }
    engine.shutdown().await;

    let text = prometheus.render();
    print!("{text}");
    // What this example promises, checked (the test command runs it).
    for line in [
        r#"swre_cache_lookups_total{cache="rates",status="miss"} 1"#,
        r#"swre_cache_lookups_total{cache="rates",status="hit"} 3"#,
        r#"swre_cache_lookup_errors_total{cache="rates",error_type="upstream"} 2"#,
        r#"swre_cache_lookup_errors_total{cache="rates",error_type="circuit_open"} 1"#,
        r#"swre_upstream_calls_total{cache="rates",outcome="success"} 1"#,
        r#"swre_upstream_calls_total{cache="rates",outcome="error"} 2"#,
        r#"swre_breaker_transitions_total{cache="rates",scope="key",state="open"} 1"#,
        r#"swre_upstream_duration_seconds_count{cache="rates",outcome="success"} 1"#,
    ] {
        if !text.lines().any(|l| l == line) {
            return Err(format!("missing from the rendered metrics: {line}").into());
        }
    }
    Ok(())
}
