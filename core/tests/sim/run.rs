//! One seeded run: random lookups, sets, invalidates, expires, clock moves, task
//! interleavings and a shutdown against a faulty store and upstream, with the
//! invariants checked after every step.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swre_core::tags::record::{Kind, Record, RecordKey};
use swre_core::testing::ManualTimer;
use swre_core::{
    BreakerConfig, BreakerState, CacheTtl, CallOptions, Engine, Error, ExpiredMode, ManualClock,
    Status,
};

use crate::world::{
    decode, fetch, Behaviour, Exec, FaultyStore, Rng, SharedRng, SimRuntime, Transitions, Upstream,
    MAX_STORE_STALL_MS,
};

const START: u64 = 1_700_000_000_000;
const KEYS: [&str; 3] = ["a", "b", "c"];
const TIMEOUT_MS: u64 = 1_500;
const STEPS: usize = 60;

type SimEngine = Engine<FaultyStore, SimRuntime>;

/// What the checker knows of one key.
#[derive(Default)]
struct KeyModel {
    /// Lowest version a lookup that starts now may return: the highest a
    /// completed lookup returned, and the last completed write's.
    floor: u64,
    /// The last completed write: its version (sets and invalidates alike).
    last_write: u64,
    /// Whether the last completed write was an invalidate.
    invalidated: bool,
    /// The last write issued, whether it succeeded or not: it fences every
    /// upstream call of the key whose flight was admitted before it.
    fenced_upto: u64,
    /// When (timer ms) that write was issued.
    fenced_at: Option<u64>,
    /// User writes of the key not yet completed (the simulator issues at most one).
    writing: bool,
    /// Bumped when a write starts and when it ends (odd while one runs): a
    /// lookup that overlapped a write raced it.
    write_epoch: u64,
    /// The highest version handed out by lookups that raced the write now
    /// running: a lookup starting during that write may not return less, but
    /// once the write lands it legitimately replaces them.
    floor_in_write: u64,
    /// The version the last completed `expire` found stored, until a later
    /// write: a lookup that starts after it never serves that version as a
    /// fresh `Hit`.
    expired: Option<u64>,
    /// The version of the last completed `invalidate_tag` of the key's tag
    /// or `clear`: from then on the store never serves an older version,
    /// and no lookup that starts after it returns one, unless it started
    /// while a call admitted before the operation may still be joined (one
    /// deadline): tags are known only once a call returns, so a lookup may
    /// join such a call and get its value, which the call does not store.
    tag_floor: u64,
    /// When (timer ms) that operation completed.
    tag_floor_at: u64,
}

/// The tag lookups and sets of [`TAGGED`] keys give.
const TAG: &str = "g";
/// Keys written and fetched with [`TAG`]; the others untagged.
const TAGGED: [&str; 2] = ["a", "b"];

/// Whether the engine has a call running (of any key).
fn in_flight(engine: &SimEngine) -> bool {
    engine.stats().in_flight > 0
}

/// A batch with a [`TAGGED`] key is written with [`TAG`] (its other keys
/// too: tagging them only makes more operations reach them).
fn batch_options(keys: &[&str]) -> CallOptions {
    match keys.iter().find(|k| TAGGED.contains(k)) {
        Some(k) => options(k),
        None => CallOptions::new(),
    }
}

fn options(key: &str) -> CallOptions {
    if TAGGED.contains(&key) {
        CallOptions::new().tags([TAG])
    } else {
        CallOptions::new()
    }
}

/// What a user write does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum WriteKind {
    Set,
    Invalidate,
    Expire,
    /// `invalidate_tag(TAG)`: every [`TAGGED`] key.
    InvalidateTag,
    /// `expire_tag(TAG)`: every [`TAGGED`] key.
    ExpireTag,
    /// `clear()`: every key.
    Clear,
}

impl WriteKind {
    /// The keys it writes, given the key the step picked.
    fn keys(self, key: &'static str) -> Vec<&'static str> {
        match self {
            WriteKind::InvalidateTag | WriteKind::ExpireTag => TAGGED.to_vec(),
            WriteKind::Clear => KEYS.to_vec(),
            _ => vec![key],
        }
    }
}

#[derive(Default)]
struct Model {
    keys: HashMap<&'static str, KeyModel>,
    pending: Vec<Pending>,
    done: Vec<Done>,
    /// Timer time at which shutdown's grace period ends (abort), if called.
    aborted_after: Option<u64>,
    /// Violations found inside a client (reported by the next check).
    violations: Vec<String>,
}

struct Pending {
    id: u64,
    key: &'static str,
    started: u64,
}

/// What a lookup may not return less than, fixed when it starts.
#[derive(Clone, Copy)]
struct Floor {
    /// Handed out (or written) before it started.
    base: u64,
    /// Handed out by lookups that raced the write running when it started:
    /// binding only if that write has still not landed when it returns.
    in_write: u64,
}

struct Done {
    id: u64,
    key: &'static str,
    floor: Floor,
    /// The version an `expire` completed before the lookup started had found.
    expired: Option<u64>,
    /// The tag floor binding it (0 when an upstream call from before the
    /// last tag operation was running when it started).
    tag_floor: u64,
    epoch: u64,
    /// A read of the key failed while the lookup ran: what it returned may
    /// rest on a degraded read ("storage failures degrade"), so it does not
    /// raise the floor.
    degraded: bool,
    result: Result<(u64, Status, u64), Error>,
    now_clock: u64,
}

type SharedModel = Arc<Mutex<Model>>;

pub struct Knobs {
    pub fault_percent: u64,
    pub hold_percent: u64,
    pub mode: ExpiredMode,
    pub negative: bool,
    /// Shutdown's grace period, ms.
    pub grace_ms: u64,
}

impl Knobs {
    fn roll(rng: &mut Rng) -> Self {
        Self {
            fault_percent: [0, 5, 20][rng.below(3) as usize],
            hold_percent: [0, 0, 5][rng.below(3) as usize],
            mode: if rng.chance(50) {
                ExpiredMode::Revalidate
            } else {
                ExpiredMode::ServeStale
            },
            negative: rng.chance(20),
            grace_ms: [0, 200, 1_000][rng.below(3) as usize],
        }
    }
}

fn trace() -> bool {
    std::env::var_os("SWRE_SIM_TRACE").is_some()
}

macro_rules! trace {
    ($($arg:tt)*) => { if trace() { eprintln!($($arg)*); } };
}

/// Runs `seed`; `Err` describes the first violated invariant.
pub fn run(seed: u64) -> Result<(), String> {
    let mut root = Rng::new(seed);
    let knobs = Knobs::roll(&mut root);
    trace!(
        "seed {seed}: faults {}%, held tasks {}%, {:?}, negative caching {}, grace {} ms",
        knobs.fault_percent,
        knobs.hold_percent,
        knobs.mode,
        knobs.negative,
        knobs.grace_ms
    );
    let rng: SharedRng = Arc::new(Mutex::new(root));
    let clock = ManualClock::new(START);
    let timer = ManualTimer::new();
    let exec = Exec::default();
    let rt = SimRuntime {
        clock: clock.clone(),
        timer: timer.clone(),
        exec: exec.clone(),
        rng: rng.clone(),
        hold_percent: knobs.hold_percent,
    };
    let store = FaultyStore::new(timer.clone(), rng.clone(), knobs.fault_percent);
    let transitions = Arc::new(Transitions::default());
    let mut builder = Engine::builder(store, rt)
        .ttl(CacheTtl::new(
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(3),
        ))
        .refresh_timeout(Duration::from_millis(TIMEOUT_MS))
        .shutdown_timeout(Duration::from_millis(knobs.grace_ms))
        .max_concurrent_refreshes(2)
        .expired_mode(knobs.mode)
        .breaker(
            BreakerConfig::default()
                .failure_threshold(3)
                .global_failure_keys(2)
                .open_for(Duration::from_secs(2))
                .max_half_open(2),
        )
        .metrics(transitions.clone());
    if knobs.negative {
        builder = builder.negative_ttl(Duration::from_millis(500));
    }
    let engine: SimEngine = builder.build().map_err(|e| e.to_string())?;
    let up = Arc::new(Upstream::default());
    let model: SharedModel = Arc::default();
    let mut next_id = 0u64;
    let mut shutdown_called = false;

    for step in 0..STEPS {
        let roll = rng.lock().unwrap().below(100);
        let key = KEYS[rng.lock().unwrap().below(3) as usize];
        match roll {
            0..=26 => {
                next_id += 1;
                let b = behaviour(&rng);
                trace!(
                    "[{} ms] step {step}: lookup {next_id} of {key:?}, fetch {b:?}",
                    timer.now_ms()
                );
                lookup(&engine, &exec, &model, &up, &timer, &clock, key, next_id, b);
            }
            27..=34 => {
                let (keys, b, omit) = {
                    let mut r = rng.lock().unwrap();
                    let n = 1 + r.below(4);
                    let keys: Vec<&'static str> = (0..n)
                        .map(|_| {
                            if r.chance(5) {
                                "" // an invalid key: fails alone
                            } else {
                                KEYS[r.below(3) as usize]
                            }
                        })
                        .collect();
                    drop(r);
                    (keys, behaviour(&rng), rng.lock().unwrap().chance(20))
                };
                trace!(
                    "[{} ms] step {step}: batch {} of {keys:?}, fetch {b:?}{}",
                    timer.now_ms(),
                    next_id + 1,
                    if omit { ", last key left out" } else { "" }
                );
                let first = next_id + 1;
                next_id += keys.len() as u64;
                batch(
                    &engine, &exec, &model, &up, &timer, &clock, keys, first, b, omit,
                );
            }
            35..=44 => {
                trace!("[{} ms] step {step}: set {key:?}", timer.now_ms());
                write(&engine, &exec, &model, &up, key, WriteKind::Set, &timer)
            }
            45 => {
                trace!(
                    "[{} ms] step {step}: invalidate_tag {TAG:?}",
                    timer.now_ms()
                );
                let kind = WriteKind::InvalidateTag;
                write(&engine, &exec, &model, &up, key, kind, &timer)
            }
            46 => {
                trace!("[{} ms] step {step}: expire_tag {TAG:?}", timer.now_ms());
                write(
                    &engine,
                    &exec,
                    &model,
                    &up,
                    key,
                    WriteKind::ExpireTag,
                    &timer,
                )
            }
            47 if rng.lock().unwrap().chance(50) => {
                trace!("[{} ms] step {step}: clear", timer.now_ms());
                write(&engine, &exec, &model, &up, key, WriteKind::Clear, &timer)
            }
            47 => {
                trace!("[{} ms] step {step}: invalidate {key:?}", timer.now_ms());
                write(
                    &engine,
                    &exec,
                    &model,
                    &up,
                    key,
                    WriteKind::Invalidate,
                    &timer,
                )
            }
            48..=49 => {
                trace!("[{} ms] step {step}: expire {key:?}", timer.now_ms());
                write(&engine, &exec, &model, &up, key, WriteKind::Expire, &timer)
            }
            50..=74 => {
                let n = 1 + rng.lock().unwrap().below(12);
                trace!("[{} ms] step {step}: run {n} polls", timer.now_ms());
                for _ in 0..n {
                    exec.step(&rng);
                }
            }
            75..=96 => {
                let ms = 1 + rng.lock().unwrap().below(900);
                trace!("[{} ms] step {step}: advance {ms} ms", timer.now_ms());
                advance(&clock, &timer, &exec, &rng, ms)?;
                check_settled(&model, &timer)?;
            }
            _ if !shutdown_called => {
                shutdown_called = true;
                let e = engine.clone();
                let m = model.clone();
                let t = timer.clone();
                let grace = knobs.grace_ms;
                exec.client(async move {
                    // The abort comes one grace period after the first poll.
                    m.lock().unwrap().aborted_after = Some(t.now_ms() + grace);
                    e.shutdown().await;
                });
            }
            _ => {}
        }
        check(&engine, &model, &up, &timer, &transitions)
            .map_err(|e| format!("step {step}: {e}"))?;
    }
    finish(
        &engine,
        &exec,
        &model,
        &up,
        &clock,
        &timer,
        &transitions,
        &rng,
    )
}

/// Moves both clocks `ms` forward in steps of at most [`TICK_MS`], running
/// every woken task after each, as a live executor would.
fn advance(
    clock: &ManualClock,
    timer: &ManualTimer,
    exec: &Exec,
    rng: &SharedRng,
    ms: u64,
) -> Result<(), String> {
    let mut left = ms;
    while left > 0 {
        let step = left.min(TICK_MS);
        clock.advance(Duration::from_millis(step));
        timer.advance(Duration::from_millis(step));
        exec.settle(rng)?;
        left -= step;
    }
    Ok(())
}

/// The longest single move of the clocks.
const TICK_MS: u64 = 100;

fn behaviour(rng: &SharedRng) -> Behaviour {
    let mut r = rng.lock().unwrap();
    match r.below(100) {
        0..=49 => Behaviour::Ok,
        50..=64 => Behaviour::Slow(1 + r.below(2 * TIMEOUT_MS)),
        65..=79 => Behaviour::Fail,
        80..=87 => Behaviour::NotFound,
        88..=95 => Behaviour::Hang,
        _ => Behaviour::Panic,
    }
}

#[allow(clippy::too_many_arguments)]
fn lookup(
    engine: &SimEngine,
    exec: &Exec,
    model: &SharedModel,
    up: &Arc<Upstream>,
    timer: &ManualTimer,
    clock: &ManualClock,
    key: &'static str,
    id: u64,
    b: Behaviour,
) {
    let (floor, epoch, expired, tag_floor) = begin(
        &mut model.lock().unwrap(),
        key,
        id,
        timer.now_ms(),
        in_flight(engine),
    );
    let f = fetch(up, timer, key, b);
    let faults = engine.storage().read_faults(key);
    let e = engine.clone();
    let m = model.clone();
    let clock = clock.clone();
    exec.client(async move {
        // Odd lookups are typed: their values come through the decoded-value
        // tier (postcard reads `[u8; 8]` as the 8 bytes themselves), so the
        // same invariants hold it to every write, refresh and eviction.
        let r = if id % 2 == 1 {
            let typed = move || async move {
                let v = f().await?;
                <[u8; 8]>::try_from(v.as_slice()).map_err(swre_core::BoxError::from)
            };
            e.with(options(key))
                .get_or_fetch_as::<[u8; 8], _, _, _, _>(key, typed)
                .await
                .map(|c| c.map(|v| v.to_vec()))
        } else {
            e.with(options(key))
                .get_or_fetch(key, f)
                .await
                .map(|c| c.map(|v| v.to_vec()))
        };
        let now_clock = swre_core::Clock::now_ms(&clock);
        trace!(
            "  lookup {id} of {key:?} -> {:?}",
            r.as_ref()
                .map(|c| (decode(&c.value), c.status, c.created_at - START))
        );
        let result = r.map(|c| (decode(&c.value).unwrap_or(u64::MAX), c.status, c.expires_at));
        let degraded = e.storage().read_faults(key) != faults;
        let mut m = m.lock().unwrap();
        m.pending.retain(|p| p.id != id);
        m.done.push(Done {
            id,
            key,
            floor,
            expired,
            tag_floor,
            epoch,
            degraded,
            result,
            now_clock,
        });
    });
}

/// Records a lookup of `key` starting now: pending, with the floor it may
/// not go below, the write epoch and the version an expire left stale.
/// And the tag floor binding it (see `KeyModel::tag_floor`): none while a
/// call from before the last tag operation may still be joined.
fn begin(
    m: &mut Model,
    key: &'static str,
    id: u64,
    started: u64,
    in_flight: bool,
) -> (Floor, u64, Option<u64>, u64) {
    m.pending.push(Pending { id, key, started });
    let k = m.keys.entry(key).or_default();
    let floor = Floor {
        base: k.floor,
        in_write: if k.writing { k.floor_in_write } else { 0 },
    };
    let joinable_until = k.tag_floor_at + TIMEOUT_MS + TICK_MS;
    let tag_floor = if k.writing || (in_flight && started <= joinable_until) {
        0
    } else {
        k.tag_floor
    };
    (
        floor,
        k.write_epoch,
        if k.writing { None } else { k.expired },
        tag_floor,
    )
}

/// What a lookup handed out: the value's bytes, status and `expires_at`.
type Served = Result<(Vec<u8>, Status, u64), Error>;

/// A batch lookup of `keys` (duplicates and an invalid key among them):
/// each input key is checked as a lookup of its own, numbered from `first`.
#[allow(clippy::too_many_arguments)]
fn batch(
    engine: &SimEngine,
    exec: &Exec,
    model: &SharedModel,
    up: &Arc<Upstream>,
    timer: &ManualTimer,
    clock: &ManualClock,
    keys: Vec<&'static str>,
    first: u64,
    b: Behaviour,
    omit: bool,
) {
    let starts: Vec<_> = {
        let mut m = model.lock().unwrap();
        keys.iter()
            .enumerate()
            .map(|(i, key)| {
                let faults = engine.storage().read_faults(key);
                (!key.is_empty()).then(|| {
                    let (floor, epoch, expired, tag_floor) = begin(
                        &mut m,
                        key,
                        first + i as u64,
                        timer.now_ms(),
                        in_flight(engine),
                    );
                    (floor, epoch, expired, tag_floor, faults)
                })
            })
            .collect()
    };
    let f = crate::world::batch_fetch(up, timer, b, omit);
    let e = engine.clone();
    let m = model.clone();
    let clock = clock.clone();
    exec.client(async move {
        // Odd batches are typed, as odd lookups are.
        let results: Vec<(&'static str, Served)> = if first % 2 == 1 {
            let typed = move |keys: Vec<String>| async move {
                let answer = f(keys).await?;
                Ok::<_, swre_core::BoxError>(
                    answer
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, <[u8; 8]>::try_from(v.as_slice()).ok()?)))
                        .collect::<Vec<_>>(),
                )
            };
            e.with(batch_options(&keys))
                .get_many_or_fetch_as::<[u8; 8], _, _, _, _, _, _>(keys, typed)
                .await
                .into_iter()
                .map(|(k, r)| (k, r.map(|c| (c.value.to_vec(), c.status, c.expires_at))))
                .collect()
        } else {
            e.with(batch_options(&keys))
                .get_many_or_fetch(keys, f)
                .await
                .into_iter()
                .map(|(k, r)| (k, r.map(|c| (c.value.to_vec(), c.status, c.expires_at))))
                .collect()
        };
        let now_clock = swre_core::Clock::now_ms(&clock);
        let mut m = m.lock().unwrap();
        for (i, ((key, r), start)) in results.into_iter().zip(starts).enumerate() {
            let id = first + i as u64;
            trace!(
                "  batch key {id} {key:?} -> {:?}",
                r.as_ref().map(|(v, status, exp)| (
                    decode(v),
                    *status,
                    exp - START,
                    now_clock - START
                ))
            );
            let Some((floor, epoch, expired, tag_floor, faults)) = start else {
                // The invalid key: its own error, nothing else.
                if !matches!(r, Err(Error::InvalidKey(_))) {
                    m.violations
                        .push(format!("batch key {id} (invalid) got {r:?}"));
                }
                continue;
            };
            let result = r.map(|(v, status, expires_at)| {
                (decode(&v).unwrap_or(u64::MAX), status, expires_at)
            });
            let degraded = e.storage().read_faults(key) != faults;
            m.pending.retain(|p| p.id != id);
            m.done.push(Done {
                id,
                key,
                floor,
                expired,
                tag_floor,
                epoch,
                degraded,
                result,
                now_clock,
            });
        }
    });
}

fn write(
    engine: &SimEngine,
    exec: &Exec,
    model: &SharedModel,
    up: &Arc<Upstream>,
    key: &'static str,
    kind: WriteKind,
    timer: &ManualTimer,
) {
    let keys = kind.keys(key);
    let version = {
        let mut m = model.lock().unwrap();
        if keys.iter().any(|k| m.keys.entry(k).or_default().writing) {
            return; // user writes of one key are not concurrent here
        }
        for k in &keys {
            let k = m.keys.entry(k).or_default();
            k.writing = true;
            k.write_epoch += 1;
        }
        up.version()
    };
    let e = engine.clone();
    let m = model.clone();
    let timer = timer.clone();
    exec.client(async move {
        {
            // The write fences running calls on its first poll.
            let mut m = m.lock().unwrap();
            for k in &keys {
                let k = m.keys.entry(k).or_default();
                k.fenced_upto = version;
                k.fenced_at = Some(timer.now_ms());
            }
        }
        let now = || timer.now_ms();
        let before: Vec<_> = keys.iter().map(|k| served(&e, k, now())).collect();
        let r = match kind {
            WriteKind::Set => {
                e.with(options(key))
                    .set(key, crate::world::encode(version))
                    .await
            }
            WriteKind::Invalidate => e.invalidate(key).await,
            WriteKind::Expire => e.expire(key).await,
            WriteKind::InvalidateTag => e.invalidate_tag(TAG).await,
            WriteKind::ExpireTag => e.expire_tag(TAG).await,
            WriteKind::Clear => e.clear().await,
        };
        trace!("  {kind:?} {key:?} (version {version}) -> {r:?}");
        trace!(
            "    store now: {:?}",
            e.storage()
                .peek(key)
                .map(|s| (decode(&s.value), s.fresh_until - START))
        );
        let mut m = m.lock().unwrap();
        if kind == WriteKind::Clear {
            // A clear fences each key's flight as it reaches it (after
            // letting a storing one finish), any time until it completes.
            for k in &keys {
                m.keys.entry(k).or_default().fenced_at = Some(now());
            }
        }
        for (key, before) in keys.iter().zip(before) {
            // What the expiry left stale: the version served before and
            // after it (if another write landed meanwhile, nothing is known).
            let after = served(&e, key, now());
            let stored = after.map(|a| a.0).filter(|_| after == before);
            let k = m.keys.entry(key).or_default();
            k.writing = false;
            k.write_epoch += 1;
            k.floor_in_write = 0;
            match (kind, r.is_ok()) {
                (WriteKind::Expire | WriteKind::ExpireTag, true) => k.expired = stored,
                (WriteKind::Expire | WriteKind::ExpireTag, false) => {}
                (WriteKind::InvalidateTag | WriteKind::Clear, true) => {
                    k.tag_floor = version;
                    k.tag_floor_at = now();
                    k.expired = None;
                }
                (_, true) => {
                    k.last_write = version;
                    k.invalidated = kind == WriteKind::Invalidate;
                    k.floor = k.floor.max(version);
                    k.expired = None;
                }
                (_, false) => k.expired = None,
            }
        }
    });
}

/// Invariants checked after every step.
fn check(
    engine: &SimEngine,
    model: &SharedModel,
    up: &Arc<Upstream>,
    timer: &ManualTimer,
    transitions: &Transitions,
) -> Result<(), String> {
    let now = timer.now_ms();
    let mut m = model.lock().unwrap();
    if let Some(v) = m.violations.first() {
        return Err(v.clone());
    }
    // Every completed lookup: no value older than one handed out before it
    // started; nothing served past `expires_at`.
    let done: Vec<Done> = std::mem::take(&mut m.done);
    for d in done {
        if let Ok((version, status, expires_at)) = d.result {
            let k = m.keys.entry(d.key).or_default();
            let same_write_running = k.writing && k.write_epoch == d.epoch;
            let floor = if same_write_running {
                d.floor.base.max(d.floor.in_write)
            } else {
                d.floor.base
            };
            if version < floor {
                return Err(format!(
                    "lookup {} of {:?} got version {version} ({status}), older than {floor} handed out before it started",
                    d.id, d.key
                ));
            }
            if version < d.tag_floor {
                return Err(format!(
                    "lookup {} of {:?} got version {version} ({status}), older than the tag invalidation or clear (version {}) completed before it started",
                    d.id, d.key, d.tag_floor
                ));
            }
            if status == Status::Hit && d.expired == Some(version) {
                return Err(format!(
                    "lookup {} of {:?} served version {version} as fresh after an expire of it completed",
                    d.id, d.key
                ));
            }
            if d.now_clock >= expires_at {
                return Err(format!(
                    "lookup {} of {:?} served version {version} ({status}) past its expires_at",
                    d.id, d.key
                ));
            }
            let k = m.keys.entry(d.key).or_default();
            if d.degraded {
                continue;
            }
            if !k.writing && k.write_epoch == d.epoch {
                k.floor = k.floor.max(version);
            } else if k.writing && (d.epoch == k.write_epoch || d.epoch + 1 == k.write_epoch) {
                k.floor_in_write = k.floor_in_write.max(version);
            }
        }
    }
    // An invalidate or set is never undone: what the store holds is the last
    // write or newer (or nothing).
    for key in KEYS {
        let k = m.keys.entry(key).or_default();
        if k.writing {
            continue;
        }
        if let Some((v, _)) = served(engine, key, now) {
            if v < k.last_write || (k.invalidated && v == k.last_write) {
                return Err(format!(
                    "store holds version {v} of {key:?} after a later {} (version {})",
                    if k.invalidated { "invalidate" } else { "set" },
                    k.last_write
                ));
            }
            if v < k.tag_floor {
                return Err(format!(
                    "store serves version {v} of {key:?} after a later tag invalidation or clear (version {})",
                    k.tag_floor
                ));
            }
        }
    }
    // One live upstream call per key: a second call may start only once the
    // first's flight could have passed its deadline (its admission was at
    // most one store stall before its call started).
    for (key, calls) in up.running.lock().unwrap().iter() {
        for (i, a) in calls.iter().enumerate() {
            for b in &calls[i + 1..] {
                let (first, second) = if a.1 <= b.1 { (a, b) } else { (b, a) };
                if second.1 < first.1 + TIMEOUT_MS - MAX_STORE_STALL_MS && !exempt(&m, key, first) {
                    return Err(format!(
                        "two live upstream calls of {key:?}: versions {} (from {} ms) and {} (from {} ms), now {now} ms",
                        first.0, first.1, second.0, second.1
                    ));
                }
            }
        }
    }
    // After shutdown's grace period no upstream call starts.
    if let Some(at) = m.aborted_after {
        if now > at {
            let started_late = up
                .running
                .lock()
                .unwrap()
                .values()
                .flatten()
                .any(|(_, from)| *from > at);
            if started_late {
                return Err("an upstream call started after shutdown's grace period".into());
            }
        }
    }
    // Breaker transitions follow the state machine.
    let seq = transitions.0.lock().unwrap();
    let mut state = BreakerState::Closed;
    for &next in seq.iter() {
        let ok = matches!(
            (state, next),
            (BreakerState::Closed, BreakerState::Open)
                | (BreakerState::Open, BreakerState::HalfOpen)
                | (BreakerState::HalfOpen, BreakerState::Closed)
                | (BreakerState::HalfOpen, BreakerState::Open)
        );
        if !ok {
            return Err(format!("breaker went {state:?} -> {next:?}"));
        }
        state = next;
    }
    Ok(())
}

/// The version the store serves for `key` as the engine reads it (tags
/// resolved against their records: `None` if invalidated), and whether its
/// tags made it stale.
fn served(engine: &SimEngine, key: &str, now: u64) -> Option<(u64, bool)> {
    let e = engine.storage().peek(key)?;
    let v = decode(&e.value).unwrap_or(0);
    let mut expired = false;
    for stamp in e.tags.stamps() {
        let record = |kind| {
            let k = RecordKey::new(kind, &stamp.name)?;
            let r = engine.storage().peek(k.as_str())?;
            (now < r.expires_at).then(|| Record::of(&r)).flatten()
        };
        match record(Kind::Hard) {
            Some(h) if h.epoch == stamp.hard => {}
            _ => return None,
        }
        expired |= record(Kind::Soft).is_none_or(|s| s.epoch != stamp.soft);
    }
    Some((v, expired))
}

/// Calls superseded by a write do not count as live: a write issued after
/// the call started, or one issued after its flight may have been admitted
/// (at most three store stalls — the re-read of the entry, of its tags'
/// records, and of the entry again — and a tick before the call started).
fn exempt(m: &Model, key: &str, (version, started): &(u64, u64)) -> bool {
    m.keys.get(key).is_some_and(|k| {
        k.fenced_upto > *version
            || k.fenced_at
                .is_some_and(|at| at + 3 * MAX_STORE_STALL_MS + TICK_MS >= *started)
    })
}

/// With every woken task run: no lookup waits past the longest it may (one
/// store stall before its call is admitted, then the call's one deadline).
fn check_settled(model: &SharedModel, timer: &ManualTimer) -> Result<(), String> {
    let now = timer.now_ms();
    let m = model.lock().unwrap();
    for p in &m.pending {
        // Its read may stall (and is seen to end on the next tick), and the
        // read of a tagged entry's records (together) and of the entry again
        // too, then the call it waits for has one deadline (seen on the next
        // tick).
        // (A batch with a tagged key tags its other keys too; a tagged
        // entry is read again after its records, to see it stayed.)
        let reads = 3;
        if now > p.started + reads * (MAX_STORE_STALL_MS + TICK_MS) + TIMEOUT_MS + TICK_MS {
            return Err(format!(
                "lookup {} of {:?} started at {} ms is still waiting at {now} ms",
                p.id, p.key, p.started
            ));
        }
    }
    Ok(())
}

/// Ends the run: time passes until every deadline is over, the engine shuts
/// down, and everything it took must be back.
#[allow(clippy::too_many_arguments)]
fn finish(
    engine: &SimEngine,
    exec: &Exec,
    model: &SharedModel,
    up: &Arc<Upstream>,
    clock: &ManualClock,
    timer: &ManualTimer,
    transitions: &Transitions,
    rng: &SharedRng,
) -> Result<(), String> {
    for _ in 0..10 {
        advance(clock, timer, exec, rng, 500)?;
        check_settled(model, timer)?;
        check(engine, model, up, timer, transitions)?;
    }
    let e = engine.clone();
    exec.client(async move { e.shutdown().await });
    advance(clock, timer, exec, rng, 5_000)?;
    check(engine, model, up, timer, transitions)?;
    if !model.lock().unwrap().pending.is_empty() {
        return Err("a lookup never settled".into());
    }
    let s = engine.stats();
    if (s.in_flight, s.refreshes_running, s.tasks_running) != (0, 0, 0) {
        return Err(format!(
            "tickets not returned: in_flight {}, refreshes_running {}, tasks_running {}",
            s.in_flight, s.refreshes_running, s.tasks_running
        ));
    }
    if exec.live_engine_tasks() != 0 {
        return Err(format!(
            "{} engine tasks still running after shutdown",
            exec.live_engine_tasks()
        ));
    }
    let _ = up.started.load(Ordering::SeqCst);
    Ok(())
}
