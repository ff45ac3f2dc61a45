//! The `tracing` feature through a real subscriber (a layer written here,
//! collecting spans and events, scoped to the test's thread): one span per
//! upstream call with its outcome and duration, events where an operator
//! needs them, and nothing at all for fresh hits.
//!
//! The subscriber is the process's global one, installed once, routing to
//! the collector of the test running on the current thread: a scoped
//! default per test (`with_default`) raced with the other tests of this
//! binary over `tracing`'s per-callsite interest cache, and a test then
//! saw no span at all (once in a full run).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swre_core::testing::{TestExecutor, TestRuntime};
use swre_native::{
    key_hash, BreakerConfig, Clock, Engine, Entry, Error, MemoryStorage, Status, Storage,
    StorageError, Timer,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::common::{ttl, Boom, SEC};

type Fields = BTreeMap<&'static str, String>;

#[derive(Debug, Clone)]
struct SpanRec {
    name: &'static str,
    fields: Fields,
    closed: bool,
}

#[derive(Debug, Clone)]
struct EventRec {
    name: &'static str,
    fields: Fields,
    /// Index in `spans` of the span it happened in.
    span: Option<usize>,
}

#[derive(Default)]
struct Log {
    spans: Vec<SpanRec>,
    events: Vec<EventRec>,
    /// Open span ids to their index (the registry reuses ids once closed).
    open: HashMap<u64, usize>,
}

/// Collects the spans and events with target `"swre"`.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Log>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().target() != "swre" {
            return;
        }
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        let mut log = self.0.lock().unwrap();
        let index = log.spans.len();
        log.spans.push(SpanRec {
            name: attrs.metadata().name(),
            fields,
            closed: false,
        });
        log.open.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut log = self.0.lock().unwrap();
        if let Some(&i) = log.open.get(&id.into_u64()) {
            values.record(&mut Visitor(&mut log.spans[i].fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "swre" {
            return;
        }
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let mut log = self.0.lock().unwrap();
        let span = ctx
            .event_span(event)
            .and_then(|s| log.open.get(&s.id().into_u64()).copied());
        log.events.push(EventRec {
            name: event.metadata().name(),
            fields,
            span,
        });
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let mut log = self.0.lock().unwrap();
        if let Some(i) = log.open.remove(&id.into_u64()) {
            log.spans[i].closed = true;
        }
    }
}

impl Collect {
    fn spans(&self) -> Vec<SpanRec> {
        self.0.lock().unwrap().spans.clone()
    }
    fn events(&self) -> Vec<EventRec> {
        self.0.lock().unwrap().events.clone()
    }
}

thread_local! {
    /// The collector of the test running on this thread, if any.
    static CURRENT: std::cell::RefCell<Option<Collect>> = const { std::cell::RefCell::new(None) };
}

/// The global layer: hands each callback to this thread's collector.
struct Router;

impl Router {
    fn with(f: impl FnOnce(&Collect)) {
        CURRENT.with(|c| {
            if let Some(collect) = &*c.borrow() {
                f(collect);
            }
        });
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Router {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        Router::with(|c| Layer::<S>::on_new_span(c, attrs, id, ctx));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        Router::with(|c| Layer::<S>::on_record(c, id, values, ctx));
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        Router::with(|c| Layer::<S>::on_event(c, event, ctx));
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        Router::with(|c| Layer::<S>::on_close(c, id, ctx));
    }
}

/// Runs `f` with a collector for this thread's spans and events.
fn traced(f: impl FnOnce(&Collect)) -> Collect {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Router))
            .expect("no other global subscriber in this test binary");
    });
    let collect = Collect::default();
    CURRENT.with(|c| *c.borrow_mut() = Some(collect.clone()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&collect)));
    CURRENT.with(|c| *c.borrow_mut() = None);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    collect
}

fn hash(key: &str) -> String {
    format!("{:016x}", key_hash(key))
}

fn fields<const N: usize>(pairs: [(&'static str, &str); N]) -> Fields {
    pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect()
}

fn setup() -> (TestExecutor, TestRuntime) {
    let exec = TestExecutor::new();
    let rt = TestRuntime::new(&exec, 1_700_000_000_000);
    (exec, rt)
}

#[test]
fn one_span_per_upstream_call_and_nothing_for_fresh_hits() {
    let key = "user:secret-42";
    traced(|log| {
        let (exec, rt) = setup();
        let engine = Engine::builder(MemoryStorage::new(), rt.clone())
            .ttl(ttl())
            .breaker(BreakerConfig::default().failure_threshold(2))
            .build()
            .unwrap();

        // A miss: one span, 250 ms by the manual clock.
        let miss = {
            let (engine, rt) = (engine.clone(), rt.clone());
            exec.spawn(async move {
                let fetch = || async move {
                    rt.sleep(Duration::from_millis(250)).await;
                    Ok::<_, Boom>("v")
                };
                engine.get_or_fetch(key, fetch).await
            })
        };
        exec.run_until_stalled();
        rt.advance(Duration::from_millis(250));
        exec.run_until_stalled();
        assert_eq!(miss.try_take().unwrap().unwrap().status, Status::Miss);
        let spans = log.spans();
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!(spans[0].name, "swre.upstream");
        assert_eq!(
            spans[0].fields,
            fields([
                ("key_hash", &hash(key)),
                ("background", "false"),
                ("outcome", "success"),
                ("duration_ms", "250"),
            ])
        );
        assert!(spans[0].closed);
        assert_eq!(log.events().len(), 0, "{:?}", log.events());

        // A thousand fresh hits: no span, no event.
        for _ in 0..1_000 {
            let r = exec.block_on(engine.get_or_fetch(key, || async { Ok::<_, Boom>("unused") }));
            assert_eq!(r.unwrap().status, Status::Hit);
        }
        exec.run_until_stalled();
        assert_eq!(log.spans().len(), 1);
        assert_eq!(log.events().len(), 0);

        // A stale hit whose background refresh fails: a background span,
        // and the failure told inside it.
        rt.advance(15 * SEC);
        let r = exec.block_on(engine.get_or_fetch(key, || async { Err::<&str, _>(Boom) }));
        assert_eq!(r.unwrap().status, Status::Stale);
        exec.run_until_stalled();
        let spans = log.spans();
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(
            spans[1].fields,
            fields([
                ("key_hash", &hash(key)),
                ("background", "true"),
                ("outcome", "error"),
                ("duration_ms", "0"),
            ])
        );
        let events = log.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].span, Some(1));
        assert_eq!(
            events[0].fields["message"],
            "background refresh failed: upstream fetch failed: upstream failed"
        );

        // Two failures open the key's breaker: the transition is told in
        // the second call's span; the refused third call makes no span.
        for _ in 0..2 {
            let r = exec.block_on(engine.get_or_fetch("b", || async { Err::<&str, _>(Boom) }));
            assert!(r.is_err());
        }
        let r = exec.block_on(engine.get_or_fetch("b", || async { Ok::<_, Boom>("unused") }));
        assert!(matches!(r, Err(Error::CircuitOpen)), "{r:?}");
        let spans = log.spans();
        assert_eq!(spans.len(), 4, "{spans:?}");
        for s in &spans[2..] {
            assert_eq!(
                (
                    s.fields["outcome"].as_str(),
                    s.fields["background"].as_str()
                ),
                ("error", "false")
            );
        }
        let events = log.events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[1].name, "swre.breaker.transition");
        assert_eq!(events[1].span, Some(3));
        assert_eq!(
            (
                events[1].fields["scope"].as_str(),
                events[1].fields["state"].as_str(),
                events[1].fields["key_hash"].as_str()
            ),
            ("key", "open", hash("b").as_str())
        );

        // Keys may carry user data: none is ever written.
        let values = spans
            .iter()
            .flat_map(|s| s.fields.values())
            .chain(events.iter().flat_map(|e| e.fields.values()));
        for value in values {
            assert!(!value.contains("secret"), "{value}");
        }
    });
}

/// A store whose lease another process holds: its value is polled for.
struct LeaseHeldElsewhere(MemoryStorage);

impl Storage for LeaseHeldElsewhere {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.0.get(key).await
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.0.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.delete(key).await
    }
    async fn try_lease(
        &self,
        _: &str,
        _: Duration,
    ) -> Result<Option<swre_native::LeaseToken>, StorageError> {
        Ok(None)
    }
}

#[test]
fn a_lease_wait_is_an_event_in_the_span_of_a_call_shared_from_the_store() {
    traced(|log| {
        let (exec, rt) = setup();
        let engine = Engine::builder(LeaseHeldElsewhere(MemoryStorage::new()), rt.clone())
            .ttl(ttl())
            .refresh_timeout(10 * SEC)
            .build()
            .unwrap();
        let waiter = {
            let engine = engine.clone();
            exec.spawn(async move {
                engine
                    .get_or_fetch("k", || async { Ok::<_, Boom>("mine") })
                    .await
            })
        };
        exec.run_until_stalled();
        rt.advance(Duration::from_millis(100));
        exec.run_until_stalled();
        // The other process stores its value.
        let theirs = Entry::new("theirs", rt.clock.now_ms(), ttl());
        exec.block_on(engine.storage().0.set("k", theirs)).unwrap();
        rt.advance(SEC);
        exec.run_until_stalled();
        let r = waiter.try_take().expect("answered").unwrap();
        assert_eq!(r.status, Status::Hit);

        let spans = log.spans();
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!(spans[0].fields["outcome"], "shared_from_store");
        let events = log.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].name, events[0].span),
            ("swre.lease.wait", Some(0))
        );
    });
}
