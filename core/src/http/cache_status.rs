//! The `Cache-Status` response header field (RFC 9211): what this cache did
//! with a request, in the field's own syntax (a Structured Fields list
//! member: the cache's name and parameters).

use alloc::string::String;
use core::fmt::Write;

use crate::detail::Detail;
use crate::phase::Status;

/// Why a request went to the origin (RFC 9211 §2.2), when it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forward {
    /// Nothing usable was stored.
    Miss,
    /// A stored response was stale and had to be revalidated first.
    Stale,
    /// The request asked to bypass the cache (`no-cache`, a reload).
    Request,
    /// The response varies on request headers that differed (`vary-miss`).
    Vary,
    /// The request's method is not cacheable (a `POST`, say).
    Method,
    /// The cache was told not to use its store for this request.
    Bypass,
}

impl Forward {
    fn as_str(self) -> &'static str {
        match self {
            Forward::Miss => "miss",
            Forward::Stale => "stale",
            Forward::Request => "request",
            Forward::Vary => "vary-miss",
            Forward::Method => "method",
            Forward::Bypass => "bypass",
        }
    }
}

/// One cache's `Cache-Status` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStatus<'a> {
    /// The cache's name (a token such as `swre`, or any text, sent as a
    /// string when it is no token).
    pub cache: &'a str,
    /// Served from the cache without going to the origin.
    pub hit: bool,
    /// Went to the origin, and why.
    pub fwd: Option<Forward>,
    /// The origin's status code, when it went there.
    pub fwd_status: Option<u16>,
    /// Seconds left of the response's freshness; negative once stale.
    pub ttl: Option<i64>,
    /// The response was stored.
    pub stored: bool,
    /// The request was collapsed into another's (it waited for a call
    /// another request made).
    pub collapsed: bool,
    /// Why it was served as it was (swre's `Detail`: `soft-timeout`,
    /// `throttled`, `breaker-open`, `upstream-error`, …).
    pub detail: Option<&'a str>,
}

impl<'a> CacheStatus<'a> {
    /// The entry for a lookup that answered with `status` and `detail`, for
    /// a value fresh until `fresh_until` (Unix ms) at `now`: a stale or
    /// fallback answer is a hit with a negative `ttl`; a `Miss` went to the
    /// origin (`stored` and `collapsed` as the caller knows them).
    ///
    /// ```
    /// use swre_core::http::CacheStatus;
    /// use swre_core::{Detail, Status};
    ///
    /// let hit = CacheStatus::of("swre", Status::Hit, Detail::None, 31_000, 1_000);
    /// assert_eq!(hit.render(), "swre; hit; ttl=30");
    /// let fallback = CacheStatus::of("swre", Status::Fallback, Detail::UpstreamError, 1_000, 6_500);
    /// assert_eq!(fallback.render(), "swre; hit; ttl=-6; detail=upstream-error");
    /// ```
    pub fn of(cache: &'a str, status: Status, detail: Detail, fresh_until: u64, now: u64) -> Self {
        let ms = i128::from(fresh_until) - i128::from(now);
        // Whole seconds, rounded towards negative infinity once stale.
        let ttl = i64::try_from(ms.div_euclid(1_000)).unwrap_or(i64::MAX);
        let miss = status == Status::Miss;
        Self {
            cache,
            hit: !miss,
            fwd: miss.then_some(Forward::Miss),
            fwd_status: None,
            ttl: Some(ttl),
            stored: false,
            collapsed: false,
            detail: (detail != Detail::None).then(|| detail.as_str()),
        }
    }

    /// The field member, e.g. `swre; hit; ttl=30` or
    /// `swre; fwd=miss; fwd-status=200; stored; collapsed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        write_name(&mut out, self.cache);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            let _ = write!(out, "; fwd={}", f.as_str());
        }
        if let Some(s) = self.fwd_status {
            let _ = write!(out, "; fwd-status={s}");
        }
        if let Some(t) = self.ttl {
            let _ = write!(out, "; ttl={t}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(d) = self.detail {
            out.push_str("; detail=");
            write_name(&mut out, d);
        }
        out
    }
}

/// A Structured Fields token if `s` is one, else an sf-string (RFC 8941
/// §3.3.4, §3.3.3): printable ASCII, `"` and `\` escaped; other characters
/// become `?`.
fn write_name(out: &mut String, s: &str) {
    let mut chars = s.chars();
    let token = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '*')
        && chars.all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c));
    if token {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_9211_examples() {
        // §2 examples, built field by field.
        let mut c = CacheStatus::of("ExampleCache", Status::Hit, Detail::None, 376_000, 0);
        assert_eq!(c.render(), "ExampleCache; hit; ttl=376");
        c = CacheStatus::of("ExampleCache", Status::Miss, Detail::None, 0, 0);
        c.fwd = Some(Forward::Stale);
        c.fwd_status = Some(304);
        c.ttl = None;
        c.stored = true;
        assert_eq!(
            c.render(),
            "ExampleCache; fwd=stale; fwd-status=304; stored"
        );
        c = CacheStatus::of("ExampleCache", Status::Miss, Detail::None, 0, 0);
        c.ttl = None;
        c.collapsed = true;
        assert_eq!(c.render(), "ExampleCache; fwd=miss; collapsed");
    }

    #[test]
    fn swre_statuses() {
        let r = |s, d, fresh_until, now| CacheStatus::of("swre", s, d, fresh_until, now).render();
        assert_eq!(
            r(Status::Stale, Detail::None, 10_000, 12_000),
            "swre; hit; ttl=-2"
        );
        assert_eq!(
            r(Status::Stale, Detail::Throttled, 10_000, 10_001),
            "swre; hit; ttl=-1; detail=throttled"
        );
        assert_eq!(
            r(Status::Expired, Detail::None, 0, 999),
            "swre; hit; ttl=-1"
        );
        assert_eq!(
            r(Status::Miss, Detail::None, 5_000, 0),
            "swre; fwd=miss; ttl=5"
        );
        assert_eq!(
            r(Status::Fallback, Detail::SoftTimeout, 0, 1_000),
            "swre; hit; ttl=-1; detail=soft-timeout"
        );
        assert_eq!(
            r(Status::Hit, Detail::EarlyRefresh, 1_999, 0),
            "swre; hit; ttl=1; detail=early-refresh"
        );
    }

    #[test]
    fn names_that_are_no_token_are_strings() {
        let mut c = CacheStatus::of("my cache \"1\"", Status::Hit, Detail::None, 0, 0);
        assert_eq!(c.render(), "\"my cache \\\"1\\\"\"; hit; ttl=0");
        c.cache = "ünï";
        assert_eq!(c.render(), "\"?n?\"; hit; ttl=0");
        c.cache = "";
        assert!(c.render().starts_with("\"\"; hit"));
    }
}
