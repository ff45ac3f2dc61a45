//! [`EngineBuilder`]: every engine option, its default, and the rules that
//! reject a bad one.

use alloc::sync::Arc;
use core::time::Duration;

use crate::breaker::BreakerConfig;
use crate::codec::{Codec, Postcard};
use crate::engine::Engine;
use crate::entry::CacheTtl;
use crate::error::{ConfigError, Error};
use crate::metrics::Metrics;
use crate::policy::{ExpiredMode, TtlPolicy};
use crate::runtime::Runtime;
use crate::storage::Storage;

/// The settled options of an engine.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) ttl: CacheTtl,
    pub(crate) refresh_timeout: Duration,
    pub(crate) max_concurrent_refreshes: usize,
    pub(crate) expired_mode: ExpiredMode,
    pub(crate) breaker: BreakerConfig,
    pub(crate) max_value_bytes: usize,
    pub(crate) max_key_bytes: usize,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl: CacheTtl::default(),
            refresh_timeout: Duration::from_secs(30),
            max_concurrent_refreshes: 1000,
            expired_mode: ExpiredMode::Revalidate,
            breaker: BreakerConfig::default(),
            max_value_bytes: 16 << 20,
            max_key_bytes: 8192,
            negative_ttl: None,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

fn reject(option: &'static str, reason: &'static str) -> Error {
    Error::Config(ConfigError { option, reason })
}

impl Config {
    /// The builder's rules: durations and counts that would make the engine
    /// useless or unsafe are rejected rather than silently fixed.
    fn validate(&self) -> Result<(), Error> {
        if !self.ttl.is_valid() {
            return Err(reject(
                "ttl",
                "must total at least 5 s (fresh + stale + expired)",
            ));
        }
        if self.refresh_timeout.is_zero() {
            return Err(reject("refresh_timeout", "must be greater than zero"));
        }
        let b = &self.breaker;
        if b.failure_threshold == 0 {
            return Err(reject("breaker.failure_threshold", "must be at least 1"));
        }
        if b.success_threshold == 0 {
            return Err(reject("breaker.success_threshold", "must be at least 1"));
        }
        if b.max_half_open < b.success_threshold {
            return Err(reject(
                "breaker.max_half_open",
                "must be at least breaker.success_threshold, or a half-open breaker could never close",
            ));
        }
        if b.open_for.is_zero() {
            return Err(reject("breaker.open_for", "must be greater than zero"));
        }
        if b.max_key_breakers == 0 {
            return Err(reject("breaker.max_key_breakers", "must be at least 1"));
        }
        if self.max_value_bytes == 0 {
            return Err(reject("max_value_bytes", "must be at least 1"));
        }
        if self.max_key_bytes == 0 {
            return Err(reject("max_key_bytes", "must be at least 1"));
        }
        if self.negative_ttl.is_some_and(|d| d.is_zero()) {
            return Err(reject(
                "negative_ttl",
                "must be greater than zero (leave it unset to disable)",
            ));
        }
        Ok(())
    }
}

/// Builds an [`Engine`]; start with [`Engine::builder`].
///
/// Defaults (the Go library's): TTL fresh 5 s / stale 1 h / expired 3.5 days,
/// `refresh_timeout` 30 s, `max_concurrent_refreshes` 1000,
/// [`ExpiredMode::Revalidate`], breaker 5 failures / 2 successes / 30 s open /
/// 3 half-open trials / 10 000 keys, `max_value_bytes` 16 MiB, `max_key_bytes`
/// 8192, negative caching off, `shutdown_timeout` 30 s, codec [`Postcard`].
///
/// [`build`](EngineBuilder::build) rejects, with [`Error::Config`] naming the
/// option: a TTL totalling under 5 s, a zero `refresh_timeout`, zero breaker
/// thresholds, `open_for` or `max_key_breakers`, `max_half_open` below
/// `success_threshold`, a zero `max_value_bytes` or `max_key_bytes`, and a zero
/// `negative_ttl`. `max_concurrent_refreshes(0)` is accepted and turns
/// background refresh off (stale values are still served; skips are counted).
/// A zero `shutdown_timeout` makes shutdown abandon running calls at once.
pub struct EngineBuilder<S, R, C = Postcard> {
    storage: S,
    runtime: R,
    codec: C,
    cfg: Config,
    metrics: Option<Arc<dyn Metrics>>,
    ttl_policy: Option<Arc<dyn TtlPolicy>>,
}

impl<S: Storage, R: Runtime> EngineBuilder<S, R, Postcard> {
    pub(crate) fn new(storage: S, runtime: R) -> Self {
        Self {
            storage,
            runtime,
            codec: Postcard,
            cfg: Config::default(),
            metrics: None,
            ttl_policy: None,
        }
    }
}

impl<S: Storage, R: Runtime, C: Codec + Clone> EngineBuilder<S, R, C> {
    /// The default TTL of fetched values.
    pub fn ttl(mut self, ttl: CacheTtl) -> Self {
        self.cfg.ttl = ttl;
        self
    }

    /// How long one upstream call (and the storage write after it) may take.
    pub fn refresh_timeout(mut self, d: Duration) -> Self {
        self.cfg.refresh_timeout = d;
        self
    }

    /// How many background refreshes may run at once (0 turns them off).
    pub fn max_concurrent_refreshes(mut self, n: usize) -> Self {
        self.cfg.max_concurrent_refreshes = n;
        self
    }

    /// What to do with expired entries.
    pub fn expired_mode(mut self, mode: ExpiredMode) -> Self {
        self.cfg.expired_mode = mode;
        self
    }

    /// Circuit-breaker settings.
    pub fn breaker(mut self, cfg: BreakerConfig) -> Self {
        self.cfg.breaker = cfg;
        self
    }

    /// The codec for [`Engine::get`] and [`Engine::set_typed`].
    pub fn codec<C2: Codec + Clone>(self, codec: C2) -> EngineBuilder<S, R, C2> {
        EngineBuilder {
            storage: self.storage,
            runtime: self.runtime,
            codec,
            cfg: self.cfg,
            metrics: self.metrics,
            ttl_policy: self.ttl_policy,
        }
    }

    /// Values larger than this are returned to callers but not stored.
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.cfg.max_value_bytes = n;
        self
    }

    /// Keys longer than this are rejected with [`Error::InvalidKey`].
    pub fn max_key_bytes(mut self, n: usize) -> Self {
        self.cfg.max_key_bytes = n;
        self
    }

    /// Remember upstream errors for keys with no usable value for `d`
    /// (negative caching; off by default).
    pub fn negative_ttl(mut self, d: Duration) -> Self {
        self.cfg.negative_ttl = Some(d);
        self
    }

    /// How long [`Engine::shutdown`] waits for running calls before dropping them.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.cfg.shutdown_timeout = d;
        self
    }

    /// Receives engine events.
    pub fn metrics(mut self, metrics: impl Metrics) -> Self {
        self.metrics = Some(Arc::new(metrics));
        self
    }

    /// Chooses TTLs from key and value.
    pub fn ttl_policy(mut self, policy: impl TtlPolicy) -> Self {
        self.ttl_policy = Some(Arc::new(policy));
        self
    }

    /// The engine, or [`Error::Config`] naming the first rejected option.
    pub fn build(self) -> Result<Engine<S, R, C>, Error> {
        self.cfg.validate()?;
        Ok(Engine::from_parts(
            self.storage,
            self.runtime,
            self.codec,
            self.cfg,
            self.metrics,
            self.ttl_policy,
        ))
    }
}
