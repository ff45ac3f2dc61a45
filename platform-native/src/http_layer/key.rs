//! Cache keys: a request's method and target, and the targets a successful
//! unsafe request invalidates (RFC 9111 §4.4).
//!
//! A key is `"{method} {origin}{path?query}"`. The origin is the URI's own
//! (`http://example.com`) when the request carries an absolute URI (a
//! client-side layer), else `//` and the `Host` header (a server-side
//! layer), else nothing; so one layer always spells one resource one way.

use http::header::{CONTENT_LOCATION, HOST, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Uri};

/// Where a request is going: its origin as the key spells it, and the path
/// with its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    origin: String,
    path_and_query: String,
}

impl Target {
    /// The target of a request for `uri` with `headers`.
    pub(crate) fn of(uri: &Uri, headers: &HeaderMap) -> Self {
        let origin = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            (None, Some(authority)) => format!("//{authority}"),
            _ => headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| format!("//{}", h.to_ascii_lowercase()))
                .unwrap_or_default(),
        };
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Self {
            origin,
            path_and_query,
        }
    }

    /// The origin as the key spells it (`https://example.com`, or
    /// `//example.com` from the `Host` header).
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The key of `method` on this target.
    pub(crate) fn key(&self, method: &Method) -> String {
        format!("{method} {}{}", self.origin, self.path_and_query)
    }

    /// The same-origin targets a response's `Location` and
    /// `Content-Location` name (RFC 9111 §4.4): absolute paths, and absolute
    /// URIs whose authority is this target's. Others are ignored.
    pub(crate) fn related(&self, response: &HeaderMap) -> Vec<Target> {
        [LOCATION, CONTENT_LOCATION]
            .iter()
            .filter_map(|h| response.get(h))
            .filter_map(|v| self.resolve(v))
            .filter(|t| t != self)
            .collect()
    }

    fn resolve(&self, v: &HeaderValue) -> Option<Target> {
        let uri: Uri = v.to_str().ok()?.parse().ok()?;
        let path_and_query = uri.path_and_query()?.as_str().to_owned();
        if !path_and_query.starts_with('/') {
            return None; // a relative reference: not resolved here
        }
        if let Some(authority) = uri.authority() {
            let ours = self.origin.rsplit("//").next().unwrap_or_default();
            if !authority.as_str().eq_ignore_ascii_case(ours) {
                return None;
            }
        }
        Some(Target {
            origin: self.origin.clone(),
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str, host: Option<&'static str>) -> Target {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(HOST, HeaderValue::from_static(host));
        }
        Target::of(&uri.parse().unwrap(), &h)
    }

    #[test]
    fn keys_spell_one_resource_one_way() {
        let client = target("http://api.example/users?id=1", None);
        assert_eq!(
            client.key(&Method::GET),
            "GET http://api.example/users?id=1"
        );
        let server = target("/users?id=1", Some("Api.Example"));
        assert_eq!(server.key(&Method::GET), "GET //api.example/users?id=1");
        assert_eq!(target("/x", None).key(&Method::HEAD), "HEAD /x");
    }

    #[test]
    fn only_same_origin_locations_are_related() {
        let t = target("/users", Some("api.example"));
        let mut h = HeaderMap::new();
        h.insert(LOCATION, HeaderValue::from_static("/users/7"));
        h.insert(
            CONTENT_LOCATION,
            HeaderValue::from_static("http://api.example/users/7?full"),
        );
        let keys: Vec<_> = t.related(&h).iter().map(|t| t.key(&Method::GET)).collect();
        assert_eq!(
            keys,
            [
                "GET //api.example/users/7",
                "GET //api.example/users/7?full"
            ]
        );
        h.insert(
            LOCATION,
            HeaderValue::from_static("http://evil.example/users"),
        );
        h.insert(CONTENT_LOCATION, HeaderValue::from_static("relative/path"));
        assert!(t.related(&h).is_empty());
    }
}
