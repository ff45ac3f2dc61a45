//! Model-based property test: random sequences of clock advances, lookups
//! whose fetch succeeds, fails, panics or hangs, invalidations and
//! breaker-tripping bursts, run against the engine and against a small
//! reference model of the design's phase table and rules. Statuses and values
//! must agree at every step, and nothing may be left running at the end.

use std::collections::HashMap;
use std::sync::Once;
use std::time::Duration;

use proptest::prelude::*;
use swre_core::testing::{TestExecutor, TestRuntime};
use swre_native::{BreakerConfig, CacheTtl, Engine, Error, ExpiredMode, MemoryStorage, Status};

use crate::common::Boom;

const KEYS: [&str; 3] = ["alpha", "beta", "gamma"];
const FRESH: u64 = 10_000;
const STALE: u64 = 20_000;
const EXPIRED: u64 = 30_000;
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);
const FAILURES: u32 = 3;
const SUCCESSES: u32 = 2;
const OPEN_FOR: u64 = 15_000;
const HALF_OPEN: u32 = 3;
const PANIC_MARK: &str = "swre-model-panic";

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok,
    Fail,
    Panic,
    Hang,
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Lookup(usize, Outcome),
    Invalidate(usize),
    Burst(usize, u8),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![5 => Just(Outcome::Ok), 2 => Just(Outcome::Fail), 1 => Just(Outcome::Panic), 1 => Just(Outcome::Hang)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..25_000).prop_map(Op::Advance),
        6 => (0usize..KEYS.len(), outcome()).prop_map(|(k, o)| Op::Lookup(k, o)),
        1 => (0usize..KEYS.len()).prop_map(Op::Invalidate),
        1 => (0usize..KEYS.len(), 3u8..6).prop_map(|(k, n)| Op::Burst(k, n)),
    ]
}

// ---- the reference model -------------------------------------------------

#[derive(Clone, Debug)]
struct ModelEntry {
    value: String,
    fresh_until: u64,
    stale_until: u64,
    expires_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Machine {
    Closed(u32),
    Open(u64),
    HalfOpen { started: u32, successes: u32 },
}

impl Machine {
    fn acquire(&mut self, now: u64) -> Option<bool> {
        match *self {
            Machine::Closed(_) => Some(false),
            Machine::Open(until) if now >= until => {
                *self = Machine::HalfOpen {
                    started: 1,
                    successes: 0,
                };
                Some(true)
            }
            Machine::Open(_) => None,
            Machine::HalfOpen { started, successes } if started < HALF_OPEN => {
                *self = Machine::HalfOpen {
                    started: started + 1,
                    successes,
                };
                Some(true)
            }
            Machine::HalfOpen { .. } => None,
        }
    }

    fn success(&mut self) {
        match *self {
            Machine::Closed(_) => *self = Machine::Closed(0),
            Machine::HalfOpen { started, successes } => {
                *self = if successes + 1 >= SUCCESSES {
                    Machine::Closed(0)
                } else {
                    Machine::HalfOpen {
                        started,
                        successes: successes + 1,
                    }
                }
            }
            Machine::Open(_) => {}
        }
    }

    fn failure(&mut self, now: u64) {
        match *self {
            Machine::Closed(n) if n + 1 >= FAILURES => *self = Machine::Open(now + OPEN_FOR),
            Machine::Closed(n) => *self = Machine::Closed(n + 1),
            Machine::HalfOpen { .. } => *self = Machine::Open(now + OPEN_FOR),
            Machine::Open(_) => {}
        }
    }

    fn release(&mut self, trial: bool) {
        if let (true, Machine::HalfOpen { started, successes }) = (trial, *self) {
            *self = Machine::HalfOpen {
                started: started.saturating_sub(1),
                successes,
            };
        }
    }
}

enum Call {
    Fetched(String),
    Failed,
    TimedOut,
    Panicked,
    Rejected,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Value(Status, String),
    Upstream,
    Timeout,
    Panicked,
    CircuitOpen,
}

struct Model {
    now: u64,
    mode: ExpiredMode,
    entries: Vec<Option<ModelEntry>>,
    global: Machine,
    keys: HashMap<usize, Machine>,
}

impl Model {
    /// One upstream call for `key` as the design's breaker rules allow it.
    fn call(&mut self, key: usize, outcome: Outcome, value: &str) -> Call {
        let key_trial = match self.keys.get_mut(&key) {
            None => false,
            Some(m) => match m.acquire(self.now) {
                Some(t) => t,
                None => return Call::Rejected,
            },
        };
        let Some(global_trial) = self.global.acquire(self.now) else {
            if let Some(m) = self.keys.get_mut(&key) {
                m.release(key_trial);
            }
            return Call::Rejected;
        };
        match outcome {
            Outcome::Ok => {
                self.global.success();
                if let Some(m) = self.keys.get_mut(&key) {
                    m.success();
                    if *m == Machine::Closed(0) {
                        self.keys.remove(&key);
                    }
                }
                self.entries[key] = Some(ModelEntry {
                    value: value.to_owned(),
                    fresh_until: self.now + FRESH,
                    stale_until: self.now + FRESH + STALE,
                    expires_at: self.now + FRESH + STALE + EXPIRED,
                });
                Call::Fetched(value.to_owned())
            }
            Outcome::Fail | Outcome::Hang => {
                let m = self.keys.entry(key).or_insert(Machine::Closed(0));
                let first = *m == Machine::Closed(0);
                m.failure(self.now);
                if first || global_trial || !matches!(self.global, Machine::Closed(_)) {
                    self.global.failure(self.now);
                }
                if matches!(outcome, Outcome::Fail) {
                    Call::Failed
                } else {
                    Call::TimedOut
                }
            }
            Outcome::Panic => {
                self.global.release(global_trial);
                if let Some(m) = self.keys.get_mut(&key) {
                    m.release(key_trial);
                }
                Call::Panicked
            }
        }
    }

    fn lookup(&mut self, key: usize, outcome: Outcome, value: &str) -> Expect {
        let now = self.now;
        let entry = self.entries[key].clone().filter(|e| now < e.expires_at);
        match entry {
            Some(e) if now < e.fresh_until => Expect::Value(Status::Hit, e.value),
            Some(e) if now < e.stale_until => {
                self.call(key, outcome, value);
                Expect::Value(Status::Stale, e.value)
            }
            Some(e) if self.mode == ExpiredMode::ServeStale => {
                self.call(key, outcome, value);
                Expect::Value(Status::Expired, e.value)
            }
            Some(e) => match self.call(key, outcome, value) {
                Call::Fetched(v) => Expect::Value(Status::Miss, v),
                _ => Expect::Value(Status::Fallback, e.value),
            },
            None => match self.call(key, outcome, value) {
                Call::Fetched(v) => Expect::Value(Status::Miss, v),
                Call::Failed => Expect::Upstream,
                Call::TimedOut => Expect::Timeout,
                Call::Panicked => Expect::Panicked,
                Call::Rejected => Expect::CircuitOpen,
            },
        }
    }
}

// ---- the engine under test -------------------------------------------------

struct Real {
    exec: TestExecutor,
    rt: TestRuntime,
    engine: Engine<MemoryStorage, TestRuntime>,
}

impl Real {
    fn new(mode: ExpiredMode, start: u64) -> Self {
        let exec = TestExecutor::new();
        let rt = TestRuntime::new(&exec, start);
        let engine = Engine::builder(MemoryStorage::new(), rt.clone())
            .ttl(CacheTtl::new(
                Duration::from_millis(FRESH),
                Duration::from_millis(STALE),
                Duration::from_millis(EXPIRED),
            ))
            .refresh_timeout(REFRESH_TIMEOUT)
            // The model has no fail-safe throttle (its own manual-clock
            // tests are in core/tests/engine/throttle.rs).
            .fail_safe_throttle(None)
            .expired_mode(mode)
            .breaker(
                BreakerConfig::default()
                    .failure_threshold(FAILURES)
                    .global_failure_keys(FAILURES)
                    .success_threshold(SUCCESSES)
                    .open_for(Duration::from_millis(OPEN_FOR))
                    .first_open_for(Duration::from_millis(OPEN_FOR))
                    .max_half_open(HALF_OPEN)
                    .max_key_breakers(100),
            )
            .build()
            .expect("valid configuration");
        Self { exec, rt, engine }
    }

    /// Runs every task; hung fetches are timed out on the timer (the clock
    /// does not move), so nothing outlives the operation.
    fn settle(&self) {
        self.exec.run_until_stalled();
        for _ in 0..10 {
            if self.exec.live_tasks() == 0 {
                return;
            }
            self.rt.timer.advance(REFRESH_TIMEOUT);
            self.exec.run_until_stalled();
        }
    }

    fn lookup(
        &self,
        key: &'static str,
        outcome: Outcome,
        value: String,
    ) -> Result<(Status, String), Error> {
        let engine = self.engine.clone();
        let task = self.exec.spawn(async move {
            let fetch = move || async move {
                match outcome {
                    Outcome::Ok => Ok(value),
                    Outcome::Fail => Err(Boom),
                    Outcome::Panic => panic!("{PANIC_MARK}"),
                    Outcome::Hang => std::future::pending().await,
                }
            };
            engine
                .get_or_fetch(key, fetch)
                .await
                .map(|c| (c.status, String::from_utf8_lossy(&c.value).into_owned()))
        });
        self.settle();
        task.try_take()
            .expect("every lookup completes once hung fetches time out")
    }
}

fn quiet_expected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.contains(PANIC_MARK));
            if !expected {
                default(info);
            }
        }));
    });
}

fn agree(expect: &Expect, got: &Result<(Status, String), Error>) -> bool {
    match (expect, got) {
        (Expect::Value(s, v), Ok((gs, gv))) => s == gs && v == gv,
        (Expect::Upstream, Err(Error::Upstream(_))) => true,
        (Expect::Timeout, Err(Error::Timeout { .. })) => true,
        (Expect::Panicked, Err(Error::Abandoned)) => true,
        (Expect::CircuitOpen, Err(Error::CircuitOpen)) => true,
        _ => false,
    }
}

fn run(mode: ExpiredMode, ops: &[Op]) -> Result<(), TestCaseError> {
    quiet_expected_panics();
    let start = 1_700_000_000_000;
    let real = Real::new(mode, start);
    let mut model = Model {
        now: start,
        mode,
        entries: vec![None; KEYS.len()],
        global: Machine::Closed(0),
        keys: HashMap::new(),
    };
    let mut n = 0u32;
    let mut step = |key: usize, outcome: Outcome, model: &mut Model| -> Result<(), TestCaseError> {
        n += 1;
        let value = format!("v{n}");
        let expect = model.lookup(key, outcome, &value);
        let got = real.lookup(KEYS[key], outcome, value);
        prop_assert!(
            agree(&expect, &got),
            "lookup #{} of {} with {:?}: model {:?}, engine {:?}",
            n,
            KEYS[key],
            outcome,
            expect,
            got
        );
        Ok(())
    };
    for op in ops {
        match *op {
            Op::Advance(ms) => {
                model.now += ms;
                real.rt.advance(Duration::from_millis(ms));
                real.settle();
            }
            Op::Lookup(k, o) => step(k, o, &mut model)?,
            Op::Invalidate(k) => {
                model.entries[k] = None;
                real.exec
                    .block_on(real.engine.invalidate(KEYS[k]))
                    .expect("invalidate");
            }
            Op::Burst(k, times) => {
                for _ in 0..times {
                    step(k, Outcome::Fail, &mut model)?;
                }
            }
        }
    }
    let s = real.engine.stats();
    prop_assert_eq!(
        (s.in_flight, s.tasks_running, s.refreshes_running),
        (0, 0, 0)
    );
    prop_assert_eq!(real.exec.live_tasks(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_model_in_revalidate_mode(ops in proptest::collection::vec(op(), 1..60)) {
        run(ExpiredMode::Revalidate, &ops)?;
    }

    #[test]
    fn engine_agrees_with_the_model_in_serve_stale_mode(ops in proptest::collection::vec(op(), 1..60)) {
        run(ExpiredMode::ServeStale, &ops)?;
    }
}
