//! `MetricsFacade` through a real `metrics` recorder (written here, local to
//! the test's thread): exact counts and durations after a scripted sequence
//! on the deterministic test runtime (manual clock and timer).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use swre_core::testing::{TestExecutor, TestRuntime};
use swre_native::{BreakerConfig, Error, MemoryStorage, MetricsFacade, Status, Timer};

use crate::common::{ttl, Boom, SEC};

/// Counters and histogram samples by `name{label=value,…}` (labels sorted).
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn id(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(counters.entry(id(key)).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(histograms.entry(id(key)).or_default().clone())
    }
}

impl TestRecorder {
    /// Every counter that is not zero.
    fn counts(&self) -> BTreeMap<String, u64> {
        self.counters
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::SeqCst)))
            .filter(|(_, v)| *v > 0)
            .collect()
    }

    /// Every histogram's samples, for those with any.
    fn samples(&self) -> BTreeMap<String, Vec<f64>> {
        self.histograms
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.0.lock().unwrap().clone()))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }
}

fn expected<const N: usize, V>(pairs: [(&str, V); N]) -> BTreeMap<String, V> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[test]
fn a_scripted_sequence_gives_exact_counts_and_durations() {
    let recorder = TestRecorder::default();
    let facade = metrics::with_local_recorder(&recorder, || {
        MetricsFacade::with_labels([("cache", "test")])
    });
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, 1_700_000_000_000);
    let engine = swre_native::Engine::builder(MemoryStorage::new(), rt.clone())
        .ttl(ttl())
        .breaker(BreakerConfig::default().failure_threshold(2))
        .metrics(facade)
        .build()
        .unwrap();
    let slow_ok = |rt: &TestRuntime| {
        let rt = rt.clone();
        move || async move {
            rt.sleep(Duration::from_millis(250)).await;
            Ok::<_, Boom>("v")
        }
    };

    // A miss: one upstream call of 250 ms (by the manual clock).
    let miss = {
        let engine = engine.clone();
        let fetch = slow_ok(&rt);
        exec.spawn(async move { engine.get_or_fetch("a", fetch).await })
    };
    exec.run_until_stalled();
    rt.advance(Duration::from_millis(250));
    exec.run_until_stalled();
    assert_eq!(miss.try_take().unwrap().unwrap().status, Status::Miss);

    // Fresh hits: a counter each, nothing else.
    for _ in 0..5 {
        let hit = exec.block_on(engine.get_or_fetch("a", || async { Ok::<_, Boom>("unused") }));
        assert_eq!(hit.unwrap().status, Status::Hit);
    }

    // Two upstream errors open the key's breaker; the third lookup is
    // refused without an upstream call.
    for _ in 0..2 {
        let r = exec.block_on(engine.get_or_fetch("b", || async { Err::<&str, _>(Boom) }));
        assert!(matches!(r, Err(Error::Upstream(_))), "{r:?}");
    }
    let r = exec.block_on(engine.get_or_fetch("b", || async { Ok::<_, Boom>("unused") }));
    assert!(matches!(r, Err(Error::CircuitOpen)), "{r:?}");

    // A stale hit and its background refresh (another 250 ms call).
    rt.advance(15 * SEC);
    let stale = exec.block_on(engine.get_or_fetch("a", slow_ok(&rt)));
    assert_eq!(stale.unwrap().status, Status::Stale);
    exec.run_until_stalled();
    rt.advance(Duration::from_millis(250));
    exec.run_until_stalled();

    assert_eq!(
        recorder.counts(),
        expected([
            (
                "swre.breaker.transitions{cache=test,scope=key,state=open}",
                1
            ),
            (
                "swre.cache.lookup.errors{cache=test,error.type=circuit_open}",
                1
            ),
            (
                "swre.cache.lookup.errors{cache=test,error.type=upstream}",
                2
            ),
            ("swre.cache.lookups{cache=test,status=hit}", 5),
            ("swre.cache.lookups{cache=test,status=miss}", 1),
            ("swre.cache.lookups{cache=test,status=stale}", 1),
            ("swre.upstream.calls{cache=test,outcome=error}", 2),
            ("swre.upstream.calls{cache=test,outcome=success}", 2),
        ])
    );
    assert_eq!(
        recorder.samples(),
        expected([
            (
                "swre.upstream.duration{cache=test,outcome=error}",
                vec![0.0, 0.0]
            ),
            (
                "swre.upstream.duration{cache=test,outcome=success}",
                vec![0.25, 0.25]
            ),
        ])
    );
    // Every handle was registered when the facade was made, none since.
    let registered = recorder.counters.lock().unwrap().len();
    assert_eq!(registered, 6 + 12 + 4 + 1 + 6 + 3 + 1);
}
