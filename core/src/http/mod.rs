//! HTTP caching by the standards: `Cache-Control` (RFC 9111, RFC 5861) and
//! HTTP-dates read into an entry's phases, RFC 9211 `Cache-Status`, and
//! RFC 9875 cache groups.
//! Pure functions over header values, for the JS Response cache, the tower
//! layer and anyone caching HTTP responses with the engine.

mod cache_control;
mod cache_status;
mod date;
mod freshness;
mod groups;

pub use cache_control::CacheControl;
pub use cache_status::{CacheStatus, Forward};
pub use date::parse_http_date;
pub use freshness::{CacheMode, HttpPolicy, NotStored, ResponseHeaders};
pub use groups::{group_tag, string_list};
