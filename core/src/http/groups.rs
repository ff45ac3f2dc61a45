//! Cache groups (RFC 9875): a response's `Cache-Groups` names the groups it
//! belongs to, and `Cache-Group-Invalidation` on the response to an unsafe
//! request names groups to invalidate. Both are Structured Field Lists of
//! Strings (RFC 8941 §3.1, §3.3.3); groups are scoped to the response's
//! origin, so the engine's tag for one is [`group_tag`] of both.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The Strings of a Structured Field List (`"a", "b";p=1`), or `None` when
/// the field is not a List of Strings — then, as RFC 8941 §4.2 says, the
/// whole field is ignored. Parameters are read past and dropped. Never
/// panics, whatever the input.
///
/// ```
/// use swre_core::http::string_list;
///
/// assert_eq!(string_list(r#""scripts", "all";v=1"#), Some(vec!["scripts".into(), "all".into()]));
/// assert_eq!(string_list(r#""a", b"#), None);
/// assert_eq!(string_list(""), Some(vec![]));
/// ```
pub fn string_list(field: &str) -> Option<Vec<String>> {
    let b = field.as_bytes();
    let mut at = skip_sp(b, 0);
    let mut out = Vec::new();
    if at == b.len() {
        return Some(out);
    }
    loop {
        let (s, next) = sf_string(b, at)?;
        out.push(s);
        at = parameters(b, next)?;
        at = skip_ows(b, at);
        if at == b.len() {
            return Some(out);
        }
        if b[at] != b',' {
            return None;
        }
        at = skip_ows(b, at + 1);
        if at == b.len() {
            return None; // a trailing comma
        }
    }
}

/// The engine tag of cache group `group` of `origin` (`https://example.com`).
pub fn group_tag(origin: &str, group: &str) -> String {
    format!("http-group:{origin} {group}")
}

fn skip_sp(b: &[u8], mut at: usize) -> usize {
    while at < b.len() && b[at] == b' ' {
        at += 1;
    }
    at
}

fn skip_ows(b: &[u8], mut at: usize) -> usize {
    while at < b.len() && (b[at] == b' ' || b[at] == b'\t') {
        at += 1;
    }
    at
}

/// An sf-string starting at `at`: its value and where it ends.
fn sf_string(b: &[u8], mut at: usize) -> Option<(String, usize)> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    at += 1;
    let mut s = String::new();
    loop {
        let c = *b.get(at)?;
        at += 1;
        match c {
            b'"' => return Some((s, at)),
            b'\\' => {
                let e = *b.get(at)?;
                if e != b'"' && e != b'\\' {
                    return None;
                }
                s.push(char::from(e));
                at += 1;
            }
            0x20..=0x7e => s.push(char::from(c)),
            _ => return None,
        }
    }
}

/// Parameters (`;key` or `;key=value`) from `at`: where they end.
fn parameters(b: &[u8], mut at: usize) -> Option<usize> {
    while b.get(at) == Some(&b';') {
        at = skip_sp(b, at + 1);
        let key_start = at;
        while at < b.len()
            && (b[at].is_ascii_lowercase()
                || b[at].is_ascii_digit()
                || matches!(b[at], b'_' | b'-' | b'.' | b'*'))
        {
            at += 1;
        }
        let first = *b.get(key_start)?;
        if at == key_start || !(first.is_ascii_lowercase() || first == b'*') {
            return None;
        }
        if b.get(at) == Some(&b'=') {
            at += 1;
            at = if b.get(at) == Some(&b'"') {
                sf_string(b, at)?.1
            } else {
                // A token, number, boolean or byte sequence: up to the next
                // delimiter.
                let start = at;
                while at < b.len() && !matches!(b[at], b',' | b';' | b' ' | b'\t') {
                    at += 1;
                }
                if at == start {
                    return None;
                }
                at
            };
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn list(f: &str) -> Option<Vec<String>> {
        string_list(f)
    }

    #[test]
    fn rfc_9875_examples() {
        // RFC 9875 §2: `Cache-Groups: "scripts"`, and §3's invalidation.
        assert_eq!(list(r#""scripts""#), Some(vec!["scripts".into()]));
        assert_eq!(
            list(r#""eurovision-results", "kylie-minogue""#),
            Some(vec!["eurovision-results".into(), "kylie-minogue".into()])
        );
    }

    #[test]
    fn lists_of_strings_with_parameters_and_escapes() {
        assert_eq!(
            list(r#"  "a" ,"b \"q\" \\";x;y=1;z="s, t" ,	"c""#),
            Some(vec!["a".into(), r#"b "q" \"#.into(), "c".into()])
        );
        assert_eq!(list(""), Some(vec![]));
        assert_eq!(list("   "), Some(vec![]));
    }

    #[test]
    fn anything_else_makes_the_whole_field_ignored() {
        for bad in [
            "a",
            r#""a", b"#,
            r#""a","#,
            r#""a" "b""#,
            r#""unterminated"#,
            r#""bad \n escape""#,
            "\"ctl \u{1} char\"",
            "\"non-ascii é\"",
            r#""a";"#,
            r#""a";K=1"#,
            r#""a";k="#,
            r#",""#,
        ] {
            assert_eq!(list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tags_are_scoped_to_the_origin() {
        assert_eq!(
            group_tag("https://example.com", "scripts"),
            "http-group:https://example.com scripts"
        );
        assert_ne!(
            group_tag("https://a.example", "g"),
            group_tag("https://b.example", "g")
        );
    }
}
