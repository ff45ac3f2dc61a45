//! [`EngineBuilder`]: every engine option, its default, and the rules that
//! reject a bad one.

use alloc::sync::Arc;
use core::time::Duration;

use super::config::Config;
use super::shared::Shared;
use super::Engine;
use crate::breaker::BreakerConfig;
use crate::codec::{Codec, Postcard};
use crate::entry::CacheTtl;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::policy::{ExpiredMode, TtlPolicy};
use crate::runtime::Runtime;
use crate::storage::Storage;

impl<S: Storage, R: Runtime> Engine<S, R, Postcard> {
    /// A builder over `storage` and `runtime`, with every option at its default.
    pub fn builder(storage: S, runtime: R) -> EngineBuilder<S, R, Postcard> {
        EngineBuilder {
            storage,
            runtime,
            codec: Postcard,
            cfg: Config::default(),
            metrics: None,
            ttl_policy: None,
        }
    }
}

/// Builds an [`Engine`]; start with [`Engine::builder`].
///
/// Defaults (the Go library's): TTL fresh 5 s / stale 1 h / expired 3.5 days,
/// `refresh_timeout` 30 s, `max_concurrent_refreshes` 1000,
/// [`ExpiredMode::Revalidate`], breaker 5 failures / 2 successes / 30 s open /
/// 3 half-open trials / 10 000 keys, `max_value_bytes` 16 MiB, `max_key_bytes`
/// 8192, negative caching off, `shutdown_timeout` 30 s, codec [`Postcard`],
/// decoded values 10,000 / 32 MiB, fail-safe throttle 5 s doubling to 1 min.
///
/// [`build`](EngineBuilder::build) rejects, with [`Error::Config`] naming the
/// option: a TTL totalling under 5 s, a zero `refresh_timeout`, zero breaker
/// thresholds, `open_for` or `max_key_breakers`, `max_half_open` below
/// `success_threshold`, a zero `max_value_bytes` or `max_key_bytes`, and a zero
/// `negative_ttl`, an early refresh with a `beta` that is not positive or a
/// threshold outside (0, 1), a zero `soft_timeout` or one not shorter than
/// `refresh_timeout`, and a fail-safe throttle with a zero `base` or a `max`
/// below it. `max_concurrent_refreshes(0)` is accepted and turns
/// background refresh off (stale values are still served; skips are counted).
/// A zero `shutdown_timeout` makes shutdown abandon running calls at once.
#[must_use = "a builder does nothing until `build` is called"]
pub struct EngineBuilder<S, R, C = Postcard> {
    storage: S,
    runtime: R,
    codec: C,
    cfg: Config,
    metrics: Option<Arc<dyn Metrics>>,
    ttl_policy: Option<Arc<dyn TtlPolicy>>,
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

    /// The codec for the typed calls ([`Engine::get_or_fetch_as`], [`Engine::set_as`], [`Engine::peek_as`]).
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

    /// Bounds the decoded-value tier, which keeps each typed value
    /// (`get_or_fetch_as`, `peek_as`) decoded once per stored version so a
    /// typed hit is a reference-count bump, not a decode: at most
    /// `max_entries` values and `max_bytes` (each charged its type's size,
    /// its encoded length and 96 bytes: an estimate, as the heap a decoded
    /// value holds is not known; with [`Compressed`](crate::Compressed) a
    /// value can hold far more than its encoded length). Default 10,000
    /// values and 32 MiB; `max_entries` 0 turns the tier off (every typed
    /// hit decodes). Values from stores that hand out a new copy per read
    /// (files, Redis) are not kept: no later lookup could find them.
    pub fn decoded_values(mut self, max_entries: usize, max_bytes: usize) -> Self {
        self.cfg.decoded = super::decoded::DecodedLimits {
            max_entries,
            max_bytes,
        };
        self
    }

    /// Early refresh: a fresh hit starts a background refresh before the
    /// entry goes stale, so a popular key is refreshed ahead of expiry
    /// (FusionCache's eager refresh): [`EarlyRefresh::XFetch`](crate::EarlyRefresh::XFetch)
    /// with a chance rising as expiry nears, scaled by how long the key's
    /// fetch takes, or from a fixed fraction of the fresh phase
    /// ([`EarlyRefresh::Threshold`](crate::EarlyRefresh::Threshold)). The hit
    /// answers at once with [`Detail::EarlyRefresh`](crate::Detail::EarlyRefresh)
    /// when it started one; the refresh re-reads the store first, so in a
    /// fleet it takes a value another instance already fetched. Off by
    /// default (then a fresh hit pays one branch for it).
    pub fn early_refresh(mut self, early: crate::EarlyRefresh) -> Self {
        self.cfg.early_refresh = Some(early);
        self
    }

    /// The soft timeout (FusionCache's `FactorySoftTimeout`, BentoCache's
    /// soft `timeout`): a caller waiting on the refresh of an expired entry
    /// (in [`ExpiredMode::Revalidate`]) gets the old value once `d` has
    /// passed, as a [`Status::Fallback`](crate::Status::Fallback) with
    /// [`Detail::SoftTimeout`](crate::Detail::SoftTimeout), while the call
    /// runs on to `refresh_timeout` (the hard deadline) and stores its value
    /// if it succeeds. A caller with nothing to fall back on waits for the
    /// hard deadline only. Off by default; must be shorter than
    /// `refresh_timeout`.
    pub fn soft_timeout(mut self, d: Duration) -> Self {
        self.cfg.soft_timeout = Some(d);
        self
    }

    /// The fail-safe throttle (FusionCache's `FailSafeThrottleDuration`,
    /// BentoCache's `graceBackoff`): after a refresh of a key that has an
    /// old value fails, that value is served for a window without calling
    /// upstream again — stale hits start no refresh, and an expired entry is
    /// served as a [`Status::Fallback`](crate::Status::Fallback) at once —
    /// with [`Detail::Throttled`](crate::Detail::Throttled). The window is
    /// `base` after one failure and doubles with each consecutive one up to
    /// `max`; a successful call, a `set`, `invalidate` or `expire` ends it.
    /// Default 5 s doubling to 1 min; `None` turns it off (then each lookup
    /// of a failing key may start a new call, one at a time per key).
    pub fn fail_safe_throttle(mut self, throttle: Option<crate::FailSafeThrottle>) -> Self {
        self.cfg.fail_safe_throttle = throttle;
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
        Ok(Engine::from_shared(Shared::new(
            self.storage,
            self.runtime,
            self.codec,
            self.cfg,
            self.metrics,
            self.ttl_policy,
        )))
    }
}
