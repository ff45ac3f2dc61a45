//! Cache groups (RFC 9875) as engine tags: a stored response's
//! `Cache-Groups`, and the `Cache-Group-Invalidation` of an unsafe
//! request's answer, read by `swre_core::http::string_list` and scoped to
//! the request's origin (`swre_core::http::group_tag`).

use http::HeaderMap;
use swre_core::http::{group_tag, string_list};
use swre_core::tags::{MAX_TAGS, MAX_TAG_BYTES};

use super::key::Target;

/// `Cache-Groups`.
pub(crate) const CACHE_GROUPS: &str = "cache-groups";
/// `Cache-Group-Invalidation`.
pub(crate) const CACHE_GROUP_INVALIDATION: &str = "cache-group-invalidation";

/// The tags of the groups header `name` lists, for `target`'s origin: none
/// when the field is absent or not a List of Strings (RFC 8941 §4.2: then
/// it is ignored), or names no group.
pub(crate) fn tags(headers: &HeaderMap, name: &str, target: &Target) -> Vec<String> {
    // Field lines combine with commas (RFC 9110 §5.3); a line that is not
    // text makes the field unreadable.
    let mut lines = Vec::new();
    for v in headers.get_all(name) {
        match v.to_str() {
            Ok(s) => lines.push(s),
            Err(_) => return Vec::new(),
        }
    }
    if lines.is_empty() {
        return Vec::new();
    }
    string_list(&lines.join(", "))
        .unwrap_or_default()
        .into_iter()
        .map(|g| group_tag(target.origin(), &g))
        .collect()
}

/// Whether an entry can carry `tags` (the engine's limits: at most
/// [`MAX_TAGS`] names of at most [`MAX_TAG_BYTES`] bytes each).
pub(crate) fn storable(tags: &[String]) -> bool {
    tags.len() <= MAX_TAGS && tags.iter().all(|t| t.len() <= MAX_TAG_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Uri};

    fn target() -> Target {
        Target::of(
            &Uri::from_static("https://example.com/a"),
            &HeaderMap::new(),
        )
    }

    #[test]
    fn groups_are_tags_of_the_origin() {
        let mut h = HeaderMap::new();
        h.append(CACHE_GROUPS, HeaderValue::from_static(r#""scripts""#));
        h.append(CACHE_GROUPS, HeaderValue::from_static(r#""all";v=1"#));
        assert_eq!(
            tags(&h, CACHE_GROUPS, &target()),
            [
                "http-group:https://example.com scripts",
                "http-group:https://example.com all"
            ]
        );
        assert!(tags(&h, CACHE_GROUP_INVALIDATION, &target()).is_empty());
    }

    #[test]
    fn more_groups_than_an_entry_holds_are_not_storable() {
        let names: Vec<String> = (0..MAX_TAGS).map(|i| format!("g{i}")).collect();
        assert!(storable(&names));
        let mut more = names.clone();
        more.push("one more".into());
        assert!(!storable(&more));
        assert!(!storable(&["x".repeat(MAX_TAG_BYTES + 1)]));
    }

    #[test]
    fn a_field_that_is_not_a_list_of_strings_is_ignored() {
        let mut h = HeaderMap::new();
        h.append(CACHE_GROUPS, HeaderValue::from_static(r#""a", b"#));
        assert!(tags(&h, CACHE_GROUPS, &target()).is_empty());
    }
}
