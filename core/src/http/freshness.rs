//! An HTTP response's phases (RFC 9111 §4.2, RFC 5861): how long it is
//! fresh, how long it may be served stale while revalidated
//! (`stale-while-revalidate`), and how long after that it may stand in for
//! an error (`stale-if-error`) — or why it may not be stored at all.

use core::time::Duration;

use super::cache_control::CacheControl;
use super::date::parse_http_date;
use crate::entry::CacheTtl;

/// Whose cache this is (RFC 9111 §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// A cache in front of many users (a Worker, a tower layer, a CDN):
    /// `s-maxage` and `proxy-revalidate` apply, `private` responses are not
    /// stored, nor responses to requests with `Authorization` unless the
    /// response allows it (§3.5), nor responses setting cookies unless
    /// `public`.
    Shared,
    /// One user's cache (a page, a service worker): `s-maxage` and
    /// `proxy-revalidate` are ignored, `private` responses are stored.
    Private,
}

/// What a response says about caching: its status and the header values
/// that matter (each `Cache-Control` field line in order).
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseHeaders<'a> {
    /// The status code.
    pub status: u16,
    /// The `Cache-Control` field lines.
    pub cache_control: &'a [&'a str],
    /// `Expires`.
    pub expires: Option<&'a str>,
    /// `Date`.
    pub date: Option<&'a str>,
    /// `Age`.
    pub age: Option<&'a str>,
    /// Whether it sets a cookie (`Set-Cookie`).
    pub sets_cookie: bool,
    /// Whether the request carried `Authorization`.
    pub request_authorized: bool,
}

/// Why a response is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotStored {
    /// `no-store`.
    NoStore,
    /// `private`, in a shared cache.
    Private,
    /// The request carried `Authorization` and the response did not allow
    /// a shared cache to store it (`public`, `s-maxage`, `must-revalidate`).
    Authorization,
    /// It sets a cookie and is not `public`, in a shared cache.
    SetsCookie,
    /// Its status is not cacheable by default and it gives no explicit
    /// freshness.
    Status,
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1).
const HEURISTIC: [u16; 12] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// How an HTTP cache turns responses into phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpPolicy {
    /// Shared or private.
    pub mode: CacheMode,
    /// The phases of a response that gives no freshness of its own (no
    /// `max-age`, `s-maxage` or `Expires`) but whose status may be cached.
    pub default_ttl: CacheTtl,
    /// The longest an entry lives in all (phases beyond it are cut, last
    /// phase first).
    pub max_total: Duration,
}

impl HttpPolicy {
    /// A policy for `mode` with `default_ttl` and a cap of a year.
    pub fn new(mode: CacheMode, default_ttl: CacheTtl) -> Self {
        Self {
            mode,
            default_ttl,
            max_total: Duration::from_secs(365 * 86_400),
        }
    }

    /// The phases of `response` received at `now_ms` (Unix ms), or why it
    /// may not be stored. Phases may be shorter than the engine's 5 s
    /// minimum (`max-age=1` is fresh for one second).
    ///
    /// ```
    /// use core::time::Duration;
    /// use swre_core::http::{CacheMode, HttpPolicy, ResponseHeaders};
    /// use swre_core::CacheTtl;
    ///
    /// let policy = HttpPolicy::new(CacheMode::Shared, CacheTtl::default());
    /// let r = ResponseHeaders {
    ///     status: 200,
    ///     cache_control: &["max-age=600, stale-while-revalidate=30, stale-if-error=1200"],
    ///     ..Default::default()
    /// };
    /// let ttl = policy.phases(&r, 0).unwrap();
    /// let s = Duration::from_secs;
    /// assert_eq!((ttl.fresh, ttl.stale, ttl.expired), (s(600), s(30), s(1170)));
    /// ```
    pub fn phases(&self, r: &ResponseHeaders<'_>, now_ms: u64) -> Result<CacheTtl, NotStored> {
        let cc = CacheControl::parse(r.cache_control.iter().copied());
        let shared = self.mode == CacheMode::Shared;
        if cc.no_store {
            return Err(NotStored::NoStore);
        }
        if shared && cc.private {
            return Err(NotStored::Private);
        }
        if shared
            && r.request_authorized
            && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
        {
            return Err(NotStored::Authorization);
        }
        if shared && r.sets_cookie && !cc.public {
            return Err(NotStored::SetsCookie);
        }
        let date = r.date.and_then(parse_http_date);
        let explicit = (shared.then_some(cc.s_maxage).flatten())
            .or(cc.max_age)
            .map(|s| u64::from(s) * 1_000)
            .or_else(|| {
                // An invalid Expires means already expired (§5.3).
                let expires = r.expires?;
                let at = parse_http_date(expires).unwrap_or(0);
                Some(at.saturating_sub(date.unwrap_or(now_ms)))
            });
        let lifetime = match explicit {
            Some(ms) => ms,
            None if cc.public || HEURISTIC.contains(&r.status) => {
                return Ok(self.capped(self.default_ttl_for(&cc)));
            }
            None => return Err(NotStored::Status),
        };
        // §4.2.3: the age it had when received.
        let apparent = date.map_or(0, |d| now_ms.saturating_sub(d));
        let age = r
            .age
            .and_then(|a| a.trim().parse::<u64>().ok())
            .map_or(0, |s| s.saturating_mul(1_000));
        let fresh = if cc.no_cache {
            0
        } else {
            lifetime.saturating_sub(apparent.max(age))
        };
        let (stale, expired) = self.stale_phases(&cc);
        Ok(self.capped(CacheTtl::new(Duration::from_millis(fresh), stale, expired)))
    }

    /// The stale phases the directives allow: none past `must-revalidate`
    /// (or, shared, `proxy-revalidate`); `no-cache` allows no stale serving
    /// while revalidating, but `stale-if-error` still applies.
    fn stale_phases(&self, cc: &CacheControl) -> (Duration, Duration) {
        let strict = cc.must_revalidate || (self.mode == CacheMode::Shared && cc.proxy_revalidate);
        if strict {
            return (Duration::ZERO, Duration::ZERO);
        }
        let swr = if cc.no_cache {
            0
        } else {
            cc.stale_while_revalidate.unwrap_or(0)
        };
        let sie = cc.stale_if_error.unwrap_or(0);
        // stale-if-error counts from when it became stale, so it covers the
        // stale phase first.
        (
            Duration::from_secs(u64::from(swr)),
            Duration::from_secs(u64::from(sie.saturating_sub(swr))),
        )
    }

    /// The configured phases for a response without explicit freshness,
    /// with the stale phases its directives allow where it gives them.
    fn default_ttl_for(&self, cc: &CacheControl) -> CacheTtl {
        let mut ttl = self.default_ttl;
        if cc.no_cache {
            ttl.fresh = Duration::ZERO;
        }
        if cc.must_revalidate || (self.mode == CacheMode::Shared && cc.proxy_revalidate) {
            ttl.stale = Duration::ZERO;
            ttl.expired = Duration::ZERO;
        } else if cc.stale_while_revalidate.is_some() || cc.stale_if_error.is_some() {
            (ttl.stale, ttl.expired) = self.stale_phases(cc);
        } else if cc.no_cache {
            // Never served without asking the origin: no stale phase; the
            // configured stale window joins the expired one, which keeps it
            // for revalidation (as `stale_phases` keeps `stale-if-error`).
            ttl.expired = ttl.stale.saturating_add(ttl.expired);
            ttl.stale = Duration::ZERO;
        }
        ttl
    }

    /// `ttl` with its total cut to `max_total`, the last phases first.
    fn capped(&self, mut ttl: CacheTtl) -> CacheTtl {
        let mut left = self.max_total;
        for phase in [&mut ttl.fresh, &mut ttl.stale, &mut ttl.expired] {
            *phase = (*phase).min(left);
            left = left.saturating_sub(*phase);
        }
        ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const NOW: u64 = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT

    fn shared() -> HttpPolicy {
        HttpPolicy::new(CacheMode::Shared, CacheTtl::new(S(60), S(600), S(0)))
    }

    fn r<'a>(cc: &'a [&'a str]) -> ResponseHeaders<'a> {
        ResponseHeaders {
            status: 200,
            cache_control: cc,
            ..Default::default()
        }
    }

    fn phases(p: &HttpPolicy, r: &ResponseHeaders<'_>) -> Result<(u64, u64, u64), NotStored> {
        p.phases(r, NOW).map(|t| {
            (
                t.fresh.as_millis() as u64,
                t.stale.as_millis() as u64,
                t.expired.as_millis() as u64,
            )
        })
    }

    #[test]
    fn s_maxage_in_shared_caches_only_then_max_age_then_expires() {
        let private = HttpPolicy::new(CacheMode::Private, shared().default_ttl);
        let both = r(&["max-age=10, s-maxage=100"]);
        assert_eq!(phases(&shared(), &both), Ok((100_000, 0, 0)));
        assert_eq!(phases(&private, &both), Ok((10_000, 0, 0)));
        let expires = ResponseHeaders {
            expires: Some("Sun, 06 Nov 1994 08:50:37 GMT"),
            date: Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            ..r(&[])
        };
        assert_eq!(phases(&shared(), &expires), Ok((60_000, 0, 0)));
        // An invalid Expires is in the past (RFC 9111 §5.3).
        let bad = ResponseHeaders {
            expires: Some("0"),
            ..r(&[])
        };
        assert_eq!(phases(&shared(), &bad), Ok((0, 0, 0)));
        // max-age wins over Expires (§5.3).
        let mixed = ResponseHeaders {
            expires: Some("0"),
            ..r(&["max-age=5"])
        };
        assert_eq!(phases(&shared(), &mixed), Ok((5_000, 0, 0)));
    }

    #[test]
    fn age_and_date_shorten_the_fresh_phase() {
        let aged = ResponseHeaders {
            age: Some("30"),
            ..r(&["max-age=100"])
        };
        assert_eq!(phases(&shared(), &aged), Ok((70_000, 0, 0)));
        let late = ResponseHeaders {
            date: Some("Sun, 06 Nov 1994 08:48:37 GMT"),
            ..r(&["max-age=100"])
        };
        assert_eq!(phases(&shared(), &late), Ok((40_000, 0, 0)));
        let older = ResponseHeaders {
            age: Some("1000"),
            ..r(&["max-age=100"])
        };
        assert_eq!(phases(&shared(), &older), Ok((0, 0, 0)));
    }

    #[test]
    fn rfc_5861_phases_and_what_forbids_them() {
        let p = shared();
        assert_eq!(
            phases(&p, &r(&["max-age=600, stale-while-revalidate=30"])),
            Ok((600_000, 30_000, 0))
        );
        assert_eq!(
            phases(&p, &r(&["max-age=600, stale-if-error=1200"])),
            Ok((600_000, 0, 1_200_000))
        );
        for strict in ["must-revalidate", "proxy-revalidate"] {
            let cc =
                alloc::format!("max-age=1, stale-while-revalidate=30, stale-if-error=60, {strict}");
            assert_eq!(phases(&p, &r(&[&cc])), Ok((1_000, 0, 0)), "{strict}");
        }
        let private = HttpPolicy::new(CacheMode::Private, p.default_ttl);
        let cc = r(&["max-age=1, stale-while-revalidate=30, proxy-revalidate"]);
        assert_eq!(phases(&private, &cc), Ok((1_000, 30_000, 0)));
        // no-cache: stored, never fresh, no stale serving; stale-if-error stays.
        assert_eq!(
            phases(
                &p,
                &r(&["no-cache, max-age=60, stale-while-revalidate=5, stale-if-error=10"])
            ),
            Ok((0, 0, 10_000))
        );
        // Without freshness of its own: the configured phases but the stale
        // one, so a stored no-cache response is always revalidated first.
        assert_eq!(phases(&p, &r(&["no-cache"])), Ok((0, 0, 600_000)));
    }

    #[test]
    fn what_is_not_stored() {
        let p = shared();
        let private = HttpPolicy::new(CacheMode::Private, p.default_ttl);
        assert_eq!(
            phases(&p, &r(&["no-store, max-age=60"])),
            Err(NotStored::NoStore)
        );
        assert_eq!(phases(&private, &r(&["no-store"])), Err(NotStored::NoStore));
        assert_eq!(
            phases(&p, &r(&["private, max-age=60"])),
            Err(NotStored::Private)
        );
        assert_eq!(
            phases(&private, &r(&["private, max-age=60"])),
            Ok((60_000, 0, 0))
        );
        let auth = ResponseHeaders {
            request_authorized: true,
            ..r(&["max-age=60"])
        };
        assert_eq!(phases(&p, &auth), Err(NotStored::Authorization));
        assert_eq!(phases(&private, &auth), Ok((60_000, 0, 0)));
        for allow in [
            "public, max-age=60",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            let cc = [allow];
            let auth = ResponseHeaders {
                request_authorized: true,
                ..r(&cc)
            };
            assert!(phases(&p, &auth).is_ok(), "{allow}");
        }
        let cookie = ResponseHeaders {
            sets_cookie: true,
            ..r(&["max-age=60"])
        };
        assert_eq!(phases(&p, &cookie), Err(NotStored::SetsCookie));
        let public = ResponseHeaders {
            sets_cookie: true,
            ..r(&["public, max-age=60"])
        };
        assert!(phases(&p, &public).is_ok());
        let created = ResponseHeaders {
            status: 201,
            ..r(&[])
        };
        assert_eq!(phases(&p, &created), Err(NotStored::Status));
        let explicit = ResponseHeaders {
            status: 201,
            ..r(&["max-age=5"])
        };
        assert_eq!(phases(&p, &explicit), Ok((5_000, 0, 0)));
    }

    #[test]
    fn without_freshness_the_default_applies_and_everything_is_capped() {
        let p = shared();
        assert_eq!(phases(&p, &r(&[])), Ok((60_000, 600_000, 0)));
        assert_eq!(
            phases(&p, &r(&["stale-while-revalidate=5"])),
            Ok((60_000, 5_000, 0))
        );
        let capped = HttpPolicy {
            max_total: S(90),
            ..p
        };
        assert_eq!(
            phases(
                &capped,
                &r(&["max-age=60, stale-while-revalidate=60, stale-if-error=600"])
            ),
            Ok((60_000, 30_000, 0))
        );
        assert_eq!(
            phases(&capped, &r(&["max-age=2147483648"])),
            Ok((90_000, 0, 0))
        );
    }
}
