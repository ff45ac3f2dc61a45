//! [`Config`]: the settled options of an engine, their defaults, and the
//! rules that reject a bad one ("bad input changes nothing").

use super::decoded::DecodedLimits;
use core::time::Duration;

use crate::breaker::BreakerConfig;
use crate::early::EarlyRefresh;
use crate::entry::CacheTtl;
use crate::error::{ConfigError, Error};
use crate::policy::ExpiredMode;
use crate::throttle::FailSafeThrottle;

/// The refresh timeout an engine gets unless its builder sets one.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest value an engine stores unless its builder sets another.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 << 20;

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
    pub(crate) decoded: DecodedLimits,
    pub(crate) fail_safe_throttle: Option<FailSafeThrottle>,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) early_refresh: Option<EarlyRefresh>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl: CacheTtl::default(),
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            max_concurrent_refreshes: 1000,
            expired_mode: ExpiredMode::Revalidate,
            breaker: BreakerConfig::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_key_bytes: 8192,
            negative_ttl: None,
            shutdown_timeout: Duration::from_secs(30),
            decoded: DecodedLimits {
                max_entries: 10_000,
                max_bytes: 32 << 20,
            },
            fail_safe_throttle: Some(FailSafeThrottle::default()),
            soft_timeout: None,
            early_refresh: None,
        }
    }
}

fn reject(option: &'static str, reason: &'static str) -> Error {
    Error::Config(ConfigError { option, reason })
}

impl Config {
    /// The builder's rules: durations and counts that would make the engine
    /// useless or unsafe are rejected rather than silently fixed.
    pub(crate) fn validate(&self) -> Result<(), Error> {
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
        if b.global_failure_keys == 0 {
            return Err(reject("breaker.global_failure_keys", "must be at least 1"));
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
        if b.first_open_for.is_zero() {
            return Err(reject(
                "breaker.first_open_for",
                "must be greater than zero",
            ));
        }
        if b.first_open_for > b.open_for {
            return Err(reject(
                "breaker.first_open_for",
                "must be at most breaker.open_for",
            ));
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
        if self.early_refresh.is_some_and(|e| !e.is_valid()) {
            return Err(reject(
                "early_refresh",
                "XFetch's beta must be a positive number and a threshold strictly between 0 and 1",
            ));
        }
        if let Some(soft) = self.soft_timeout {
            if soft.is_zero() {
                return Err(reject("soft_timeout", "must be greater than zero"));
            }
            if soft >= self.refresh_timeout {
                return Err(reject(
                    "soft_timeout",
                    "must be shorter than the refresh timeout (the hard deadline), or it never fires",
                ));
            }
        }
        if let Some(t) = self.fail_safe_throttle {
            if t.base.is_zero() {
                return Err(reject(
                    "fail_safe_throttle.base",
                    "must be greater than zero (pass None to turn the throttle off)",
                ));
            }
            if t.max < t.base {
                return Err(reject(
                    "fail_safe_throttle.max",
                    "must be at least fail_safe_throttle.base",
                ));
            }
        }
        Ok(())
    }
}

/// A per-call TTL, checked by the builder's rule: `None` passes.
#[inline]
pub(crate) fn checked_ttl(ttl: Option<CacheTtl>) -> Result<(), Error> {
    match ttl {
        Some(t) if !t.is_valid() => Err(reject(
            "ttl",
            "must total at least 5 s (fresh + stale + expired)",
        )),
        _ => Ok(()),
    }
}
