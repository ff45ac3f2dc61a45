//! The fetch context ([`Engine::get_or_fetch_with`](super::Engine::get_or_fetch_with)):
//! what a fetch is told ([`FetchContext`]) and what it may answer
//! ([`Fetched`]) beyond a value — the entry's TTL, "do not store", and "not
//! modified" (a conditional refresh that keeps the old value).

use crate::bytes::Bytes;
use crate::entry::{CacheTtl, Entry};
use crate::tags::TagNames;

/// What a fetch given to `get_or_fetch_with` receives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchContext {
    /// The value the cache holds for the key (stale, expired, or fresh when
    /// an early refresh runs), if any: the body to revalidate, or to compare.
    pub stale: Option<Bytes>,
    /// When that value was fetched (Unix ms): for `If-Modified-Since`.
    pub stale_created_at: Option<u64>,
}

impl FetchContext {
    /// The context of a call made when the store held `seen`.
    pub(crate) fn of(seen: Option<&Entry>) -> Self {
        Self {
            stale: seen.map(|e| e.value.clone()),
            stale_created_at: seen.map(|e| e.created_at),
        }
    }
}

/// What a fetch given to `get_or_fetch_with` answers: a value, or "not
/// modified", with an optional TTL and tags for this entry and whether to
/// store it.
///
/// ```
/// use core::time::Duration;
/// use swre_core::{CacheTtl, Fetched};
///
/// let day = CacheTtl::new(Duration::from_secs(86_400), Duration::from_secs(60), Duration::ZERO);
/// let _ = Fetched::value("v").ttl(day);
/// let _ = Fetched::<&str>::not_modified();
/// let _ = Fetched::value("secret").do_not_store();
/// let _ = Fetched::value("profile").tags(["user:42", "profiles"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a Fetched does nothing until the fetch returns it"]
pub struct Fetched<T> {
    pub(crate) value: Option<T>,
    pub(crate) ttl: Option<CacheTtl>,
    pub(crate) tags: Option<TagNames>,
    pub(crate) store: bool,
}

impl<T> Fetched<T> {
    /// A new value, stored with the TTL it would have had.
    pub fn value(value: T) -> Self {
        Self {
            value: Some(value),
            ttl: None,
            tags: None,
            store: true,
        }
    }

    /// "Not modified" (an HTTP 304 to a conditional request): the value the
    /// cache holds stays, with its phases starting again now (its TTL kept,
    /// or this one's). With nothing held the call fails.
    pub fn not_modified() -> Self {
        Self {
            value: None,
            ttl: None,
            tags: None,
            store: true,
        }
    }

    /// This entry's TTL, instead of the caller's, the policy's or the
    /// engine's (for this write only: a later refresh chooses again). Any
    /// length: unlike a configured TTL (5 s at least), phases a fetch read
    /// from its answer may be short — an HTTP `max-age=1` is fresh for 1 s
    /// ([`HttpPolicy::phases`](crate::http::HttpPolicy::phases)). A TTL
    /// totalling under 1 ms is returned to the callers and not stored, as
    /// with [`do_not_store`](Self::do_not_store).
    pub fn ttl(mut self, ttl: CacheTtl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// This entry's tags ([`Engine::invalidate_tag`](super::Engine::invalidate_tag)),
    /// instead of the caller's ([`CallOptions::tags`](super::CallOptions::tags))
    /// or those of the entry it replaces; an empty list stores it untagged.
    /// More than [`MAX_TAGS`](crate::tags::MAX_TAGS) tags, or an empty or
    /// over-long name, fails the call with `Error::InvalidTag`.
    pub fn tags<I, N>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.tags = Some(TagNames::new(tags));
        self
    }

    /// Returned to the callers but not stored; what the store held for the
    /// key is removed, so no later lookup is handed an older value.
    pub fn do_not_store(mut self) -> Self {
        self.store = false;
        self
    }
}
