//! The circuit breaker that guards upstream calls: one global state machine and
//! a bounded, least-recently-used set of per-key machines.
//!
//! A fresh hit never consults it; only the start of an upstream call does.

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use spin::Mutex;

mod keys;
use keys::KeyTable;

use crate::time::duration_ms;

/// Circuit-breaker settings (defaults: 5 failures, 2 successes, 30 s open,
/// 3 half-open trials, 10 000 key breakers — the Go library's — and 10
/// failing keys for the global breaker).
///
/// Only errors that count move a breaker: a fetch marks "not found" and the
/// caller's own errors with [`NotCounted`](crate::NotCounted).
///
/// ```
/// use core::time::Duration;
/// use swre_core::BreakerConfig;
///
/// let cfg = BreakerConfig::default().failure_threshold(3).open_for(Duration::from_secs(10));
/// assert_eq!((cfg.failure_threshold, cfg.success_threshold), (3, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures of one key that open its breaker.
    pub failure_threshold: u32,
    /// Distinct keys failing in a row (no success between) that open the
    /// global breaker: failures spread over many keys mean upstream is down,
    /// while a handful of bad keys only open their own breakers.
    pub global_failure_keys: u32,
    /// Successful trial calls that close a half-open breaker.
    pub success_threshold: u32,
    /// The longest an open breaker rejects calls before it lets trials
    /// through: its first opening lasts [`first_open_for`](Self::first_open_for),
    /// and each re-opening after failed trials `first_open_for` longer than
    /// the one before, up to this.
    pub open_for: Duration,
    /// How long a breaker's first opening lasts (after it was closed), so
    /// calls succeed again soon after upstream recovers; each re-opening adds
    /// it once more, up to [`open_for`](Self::open_for). Equal to `open_for`, every
    /// opening lasts `open_for`.
    pub first_open_for: Duration,
    /// Trial calls let through in one half-open period.
    pub max_half_open: u32,
    /// Per-key breakers kept; the least recently used is dropped beyond this.
    pub max_key_breakers: usize,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            global_failure_keys: 10,
            success_threshold: 2,
            open_for: Duration::from_secs(30),
            first_open_for: Duration::from_secs(1),
            max_half_open: 3,
            max_key_breakers: 10_000,
        }
    }
}

impl BreakerConfig {
    /// Sets [`failure_threshold`](Self::failure_threshold).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Sets [`global_failure_keys`](Self::global_failure_keys).
    pub fn global_failure_keys(mut self, n: u32) -> Self {
        self.global_failure_keys = n;
        self
    }

    /// Sets [`success_threshold`](Self::success_threshold).
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }

    /// Sets [`open_for`](Self::open_for); a longer
    /// [`first_open_for`](Self::first_open_for) comes down to it.
    pub fn open_for(mut self, d: Duration) -> Self {
        self.open_for = d;
        self.first_open_for = self.first_open_for.min(d);
        self
    }

    /// Sets [`first_open_for`](Self::first_open_for).
    pub fn first_open_for(mut self, d: Duration) -> Self {
        self.first_open_for = d;
        self
    }

    /// Sets [`max_half_open`](Self::max_half_open).
    pub fn max_half_open(mut self, n: u32) -> Self {
        self.max_half_open = n;
        self
    }

    /// Sets [`max_key_breakers`](Self::max_key_breakers).
    pub fn max_key_breakers(mut self, n: usize) -> Self {
        self.max_key_breakers = n;
        self
    }
}

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass; consecutive failures are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A limited number of trial calls pass.
    HalfOpen,
}

impl BreakerState {
    /// The lower-case name (`"closed"`, `"open"`, `"half_open"`).
    ///
    /// ```
    /// assert_eq!(swre_core::BreakerState::HalfOpen.as_str(), "half_open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Which breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerScope {
    /// The engine-wide breaker.
    Global,
    /// A per-key breaker.
    Key,
}

impl BreakerScope {
    /// The lower-case name (`"global"`, `"key"`).
    ///
    /// ```
    /// assert_eq!(swre_core::BreakerScope::Key.as_str(), "key");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerScope::Global => "global",
            BreakerScope::Key => "key",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Machine {
    Closed {
        failures: u32,
    },
    /// `period` numbers this opening: the half-open period that follows has
    /// the same number, and only trials of that period count in it.
    /// `reopens`: openings since the breaker was last closed, before this one.
    Open {
        until: u64,
        period: u32,
        reopens: u32,
    },
    HalfOpen {
        started: u32,
        successes: u32,
        period: u32,
        reopens: u32,
    },
}

/// A call's standing with one breaker: `Some(period)` when it is a trial of
/// that half-open period, `None` when it was let through a closed breaker.
pub(crate) type Trial = Option<u32>;

impl Machine {
    const CLOSED: Machine = Machine::Closed { failures: 0 };

    fn state(&self) -> BreakerState {
        match self {
            Machine::Closed { .. } => BreakerState::Closed,
            Machine::Open { .. } => BreakerState::Open,
            Machine::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// `Some(trial)` if a call may start.
    fn try_acquire(&mut self, cfg: &BreakerConfig, now: u64) -> Option<Trial> {
        match *self {
            Machine::Closed { .. } => Some(None),
            Machine::Open {
                until,
                period,
                reopens,
            } if now >= until => {
                *self = Machine::HalfOpen {
                    started: 1,
                    successes: 0,
                    period,
                    reopens,
                };
                Some(Some(period))
            }
            Machine::Open { .. } => None,
            Machine::HalfOpen {
                started,
                successes,
                period,
                reopens,
            } if started < cfg.max_half_open => {
                *self = Machine::HalfOpen {
                    started: started + 1,
                    successes,
                    period,
                    reopens,
                };
                Some(Some(period))
            }
            Machine::HalfOpen { .. } => None,
        }
    }

    /// A call succeeded. In a half-open period only that period's trials
    /// count: a call let through before the breaker opened is no evidence
    /// that upstream recovered.
    fn on_success(&mut self, cfg: &BreakerConfig, trial: Trial) {
        match *self {
            Machine::Closed { .. } => *self = Machine::CLOSED,
            Machine::HalfOpen {
                started,
                successes,
                period,
                reopens,
            } if trial == Some(period) => {
                let successes = successes + 1;
                *self = if successes >= cfg.success_threshold {
                    Machine::CLOSED
                } else {
                    Machine::HalfOpen {
                        started,
                        successes,
                        period,
                        reopens,
                    }
                };
            }
            Machine::HalfOpen { .. } | Machine::Open { .. } => {}
        }
    }

    /// A call failed; `threshold` failures in a row open a closed breaker,
    /// and `period` numbers the opening this failure may cause.
    fn on_failure(
        &mut self,
        cfg: &BreakerConfig,
        threshold: u32,
        now: u64,
        trial: Trial,
        period: u32,
    ) {
        // The first opening lasts `first_open_for`; each re-opening after
        // failed trials that much longer, up to `open_for`.
        let open = |reopens: u32| Machine::Open {
            until: now.saturating_add(open_window(cfg, reopens)),
            period,
            reopens,
        };
        match *self {
            Machine::Closed { failures } => {
                let failures = failures + 1;
                *self = if failures >= threshold {
                    open(0)
                } else {
                    Machine::Closed { failures }
                };
            }
            Machine::HalfOpen {
                period: p, reopens, ..
            } if trial == Some(p) => *self = open(reopens.saturating_add(1)),
            Machine::HalfOpen { .. } | Machine::Open { .. } => {}
        }
    }

    /// Gives back a trial that ended without a result (shutdown, dropped task).
    fn release(&mut self, trial: Trial) {
        if let Machine::HalfOpen {
            started,
            successes,
            period,
            reopens,
        } = *self
        {
            if trial == Some(period) {
                *self = Machine::HalfOpen {
                    started: started.saturating_sub(1),
                    successes,
                    period,
                    reopens,
                };
            }
        }
    }

    fn is_pristine(&self) -> bool {
        *self == Machine::CLOSED
    }
}

/// How long an opening lasts after `reopens` openings without a close:
/// `first_open_for` once more for each, at most `open_for` (ms). Linear, not
/// doubling: a trial is at most `max_half_open` calls per opening, so probing
/// often costs a down origin little, and a recovered one is noticed at the
/// end of the opening then running (after `n` failed trials, `n + 1` times
/// `first_open_for` at most, instead of 2ⁿ).
fn open_window(cfg: &BreakerConfig, reopens: u32) -> u64 {
    duration_ms(cfg.first_open_for)
        .saturating_mul(u64::from(reopens) + 1)
        .min(duration_ms(cfg.open_for))
}

/// A started call's claim on the breakers; report its outcome or drop it.
#[derive(Debug)]
pub(crate) struct Permit {
    key_trial: Trial,
    global_trial: Trial,
}

/// A state change worth reporting.
pub(crate) type Transition = (BreakerScope, BreakerState);

/// The changes one event made: the key's breaker's, then the global one's.
pub(crate) type Transitions = [Option<Transition>; 2];

/// The global breaker and the per-key breakers.
pub(crate) struct Breaker {
    cfg: BreakerConfig,
    global: Mutex<Machine>,
    keys: Mutex<KeyTable>,
    /// Numbers each opening of any breaker.
    periods: AtomicU32,
}

impl Breaker {
    pub(crate) fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            global: Mutex::new(Machine::CLOSED),
            keys: Mutex::new(KeyTable::new()),
            periods: AtomicU32::new(1),
        }
    }

    /// Claims passage for one upstream call of `key`, or `None` while open.
    pub(crate) fn try_acquire(&self, key: &str, now: u64) -> Option<(Permit, Transitions)> {
        let mut transition = [None, None];
        let key_trial = {
            let mut keys = self.keys.lock();
            match keys.use_existing(key) {
                None => None,
                Some(k) => {
                    let before = k.state();
                    let trial = k.try_acquire(&self.cfg, now)?;
                    if before != k.state() {
                        transition[0] = Some((BreakerScope::Key, k.state()));
                    }
                    trial
                }
            }
        };
        let global_trial = {
            let mut g = self.global.lock();
            let before = g.state();
            match g.try_acquire(&self.cfg, now) {
                Some(trial) => {
                    if before != g.state() {
                        transition[1] = Some((BreakerScope::Global, g.state()));
                    }
                    trial
                }
                None => {
                    drop(g);
                    if let Some(k) = self.keys.lock().get_mut(key) {
                        k.release(key_trial);
                    }
                    return None;
                }
            }
        };
        Some((
            Permit {
                key_trial,
                global_trial,
            },
            transition,
        ))
    }

    /// Records a successful call.
    pub(crate) fn success(&self, key: &str, permit: Permit) -> Transitions {
        let mut transition = [None, None];
        {
            let mut g = self.global.lock();
            let before = g.state();
            g.on_success(&self.cfg, permit.global_trial);
            if before != g.state() {
                transition[1] = Some((BreakerScope::Global, g.state()));
            }
        }
        let mut keys = self.keys.lock();
        if let Some(k) = keys.get_mut(key) {
            let before = k.state();
            k.on_success(&self.cfg, permit.key_trial);
            if before != k.state() {
                transition[0] = Some((BreakerScope::Key, k.state()));
            }
            if k.is_pristine() {
                keys.remove(key);
            }
        }
        transition
    }

    /// Records a failed call.
    ///
    /// The key's breaker counts every failure of the key. The global breaker
    /// counts a failure only when it is the key's first in a row (or a trial),
    /// and opens after `global_failure_keys` of them: one persistently
    /// failing key, or a handful of bad ones, open their own breakers without
    /// taking every other key down; a dead upstream, failing for many keys,
    /// opens the global one.
    pub(crate) fn failure(&self, key: &str, permit: Permit, now: u64) -> Transitions {
        self.record_failure(key, permit, now, true)
    }

    /// [`failure`](Self::failure) told to the key's breaker only (the global
    /// one's trial, if any, given back): a batch call that failed as a whole
    /// is one failure to the global breaker, however many keys it carried,
    /// and each key's own breaker counts it.
    pub(crate) fn key_failure(&self, key: &str, permit: Permit, now: u64) -> Transitions {
        self.record_failure(key, permit, now, false)
    }

    fn record_failure(&self, key: &str, permit: Permit, now: u64, global: bool) -> Transitions {
        let mut transition = [None, None];
        let first_failure_of_key = {
            let mut keys = self.keys.lock();
            let k = keys.use_or_insert(key, self.cfg.max_key_breakers);
            let first = k.is_pristine();
            let before = k.state();
            k.on_failure(
                &self.cfg,
                self.cfg.failure_threshold,
                now,
                permit.key_trial,
                self.next_period(),
            );
            if before != k.state() {
                transition[0] = Some((BreakerScope::Key, k.state()));
            }
            first
        };
        let mut g = self.global.lock();
        if !global {
            g.release(permit.global_trial);
        } else if first_failure_of_key || permit.global_trial.is_some() {
            let before = g.state();
            g.on_failure(
                &self.cfg,
                self.cfg.global_failure_keys,
                now,
                permit.global_trial,
                self.next_period(),
            );
            if before != g.state() {
                transition[1] = Some((BreakerScope::Global, g.state()));
            }
        }
        transition
    }

    fn next_period(&self) -> u32 {
        self.periods.fetch_add(1, Ordering::Relaxed)
    }

    /// Gives back a permit whose call ended without a result.
    pub(crate) fn abandon(&self, key: &str, permit: Permit) {
        self.global.lock().release(permit.global_trial);
        if let Some(k) = self.keys.lock().get_mut(key) {
            k.release(permit.key_trial);
        }
    }

    /// Closes every breaker and forgets every key.
    pub(crate) fn reset(&self) {
        *self.global.lock() = Machine::CLOSED;
        self.keys.lock().clear();
    }

    /// The global breaker's state (an open breaker whose period ended reads `HalfOpen`).
    pub(crate) fn global_state(&self, now: u64) -> BreakerState {
        match *self.global.lock() {
            Machine::Open { until, .. } if now >= until => BreakerState::HalfOpen,
            m => m.state(),
        }
    }

    /// `key`'s breaker state (`Closed` if none is kept).
    pub(crate) fn key_state(&self, key: &str, now: u64) -> BreakerState {
        match self.keys.lock().get(key).copied() {
            Some(Machine::Open { until, .. }) if now >= until => BreakerState::HalfOpen,
            Some(m) => m.state(),
            None => BreakerState::Closed,
        }
    }

    /// The number of per-key breakers kept.
    pub(crate) fn key_count(&self) -> usize {
        self.keys.lock().len()
    }
}

#[cfg(test)]
mod tests;
