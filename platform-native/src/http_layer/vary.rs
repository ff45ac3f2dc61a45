//! `Vary` (RFC 9111 §4.1): the request header values a stored response was
//! selected by, kept inside the stored response; a request whose values
//! differ does not match it.

use http::header::VARY;
use http::{HeaderMap, HeaderName};

/// The request header values a stored response was selected by: each header
/// it varies on, with the request's value (`None` if absent).
pub(crate) type Selected = Vec<(HeaderName, Option<Vec<u8>>)>;

/// What a response's `Vary` asks of later requests.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Varies {
    /// The named request headers (none: every request matches).
    On(Vec<HeaderName>),
    /// `Vary: *` or an unreadable field: no later request matches, so the
    /// response is not stored.
    Anything,
}

/// The headers `response` varies on, lower-cased, each once.
pub(crate) fn varies(response: &HeaderMap) -> Varies {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in response.get_all(VARY) {
        let Ok(line) = line.to_str() else {
            return Varies::Anything;
        };
        for item in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                return Varies::Anything;
            }
            let Ok(name) = HeaderName::from_bytes(item.as_bytes()) else {
                return Varies::Anything;
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Varies::On(names)
}

/// The request's value for `name`: its field lines joined with `, `, or
/// `None` when it has none.
pub(crate) fn value_of(request: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut lines = request.get_all(name).iter();
    let mut out = lines.next()?.as_bytes().to_vec();
    for line in lines {
        out.extend_from_slice(b", ");
        out.extend_from_slice(line.as_bytes());
    }
    Some(out)
}

/// The request's values for `names`, to store beside the response.
pub(crate) fn capture(request: &HeaderMap, names: Vec<HeaderName>) -> Selected {
    names
        .into_iter()
        .map(|n| {
            let v = value_of(request, &n);
            (n, v)
        })
        .collect()
}

/// Whether `request` carries the values a stored response was selected by.
pub(crate) fn matches(stored: &[(HeaderName, Option<Vec<u8>>)], request: &HeaderMap) -> bool {
    stored
        .iter()
        .all(|(name, value)| value_of(request, name).as_deref() == value.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{ACCEPT_ENCODING, ACCEPT_LANGUAGE};
    use http::HeaderValue;

    fn headers(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn vary_lists_and_star() {
        let r = headers(&[
            (VARY, "Accept-Language, accept-encoding"),
            (VARY, "ACCEPT-LANGUAGE"),
        ]);
        assert_eq!(
            varies(&r),
            Varies::On(vec![ACCEPT_LANGUAGE, ACCEPT_ENCODING])
        );
        assert_eq!(varies(&headers(&[(VARY, "Accept, *")])), Varies::Anything);
        assert_eq!(varies(&HeaderMap::new()), Varies::On(vec![]));
        assert_eq!(varies(&headers(&[(VARY, "bad name")])), Varies::Anything);
    }

    #[test]
    fn values_must_match_exactly_and_absence_counts() {
        let fr = headers(&[(ACCEPT_LANGUAGE, "fr"), (ACCEPT_LANGUAGE, "en")]);
        let stored = capture(&fr, vec![ACCEPT_LANGUAGE, ACCEPT_ENCODING]);
        assert_eq!(
            stored,
            [
                (ACCEPT_LANGUAGE, Some(b"fr, en".to_vec())),
                (ACCEPT_ENCODING, None)
            ]
        );
        assert!(matches(&stored, &headers(&[(ACCEPT_LANGUAGE, "fr, en")])));
        assert!(!matches(&stored, &headers(&[(ACCEPT_LANGUAGE, "fr")])));
        assert!(!matches(
            &stored,
            &headers(&[(ACCEPT_LANGUAGE, "fr, en"), (ACCEPT_ENCODING, "gzip")])
        ));
        assert!(matches(&[], &HeaderMap::new()));
    }
}
