//! The `Cache-Control` header field (RFC 9111 §5.2), parsed without ever
//! panicking, whatever the bytes.

/// A delta-seconds value past 2^31 reads as 2^31 (RFC 9111 §1.2.2).
const MAX_DELTA: u32 = 1 << 31;

/// The response directives swre acts on. Unknown directives are ignored;
/// a directive with a value it cannot read (`max-age=ten`) is ignored too;
/// of a directive given twice, the first counts (RFC 9111 §4.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheControl {
    /// `max-age`, seconds.
    pub max_age: Option<u32>,
    /// `s-maxage`, seconds (shared caches only).
    pub s_maxage: Option<u32>,
    /// `stale-while-revalidate` (RFC 5861), seconds.
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error` (RFC 5861), seconds.
    pub stale_if_error: Option<u32>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names: swre treats both as
    /// "revalidate before every use").
    pub no_cache: bool,
    /// `private` (with or without field names).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate` (shared caches only).
    pub proxy_revalidate: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
}

impl CacheControl {
    /// The directives in one or more `Cache-Control` field values (pass
    /// each field line; they combine as one list, RFC 9110 §5.3).
    ///
    /// ```
    /// use swre_core::http::CacheControl;
    ///
    /// let cc = CacheControl::parse(["max-age=60, stale-while-revalidate=30", "Stale-If-Error=\"600\""]);
    /// assert_eq!((cc.max_age, cc.stale_while_revalidate, cc.stale_if_error), (Some(60), Some(30), Some(600)));
    /// assert_eq!(CacheControl::parse(["max-age=ten, max-age=5, max-age=9"]).max_age, Some(5));
    /// ```
    pub fn parse<'a>(fields: impl IntoIterator<Item = &'a str>) -> Self {
        let mut cc = Self::default();
        for field in fields {
            for (name, value) in Directives::new(field) {
                cc.apply(name, value);
            }
        }
        cc
    }

    fn apply(&mut self, name: &str, value: Option<Value<'_>>) {
        let seconds = |slot: &mut Option<u32>| {
            if slot.is_none() {
                *slot = value.and_then(|v| delta_seconds(v.text()));
            }
        };
        let eq = |d: &str| name.eq_ignore_ascii_case(d);
        if eq("max-age") {
            seconds(&mut self.max_age);
        } else if eq("s-maxage") {
            seconds(&mut self.s_maxage);
        } else if eq("stale-while-revalidate") {
            seconds(&mut self.stale_while_revalidate);
        } else if eq("stale-if-error") {
            seconds(&mut self.stale_if_error);
        } else if eq("no-store") {
            self.no_store = true;
        } else if eq("no-cache") {
            self.no_cache = true;
        } else if eq("private") {
            self.private = true;
        } else if eq("public") {
            self.public = true;
        } else if eq("must-revalidate") {
            self.must_revalidate = true;
        } else if eq("proxy-revalidate") {
            self.proxy_revalidate = true;
        } else if eq("immutable") {
            self.immutable = true;
        }
    }
}

/// `1*DIGIT`, saturating at 2^31; anything else is no value.
fn delta_seconds(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u64 = 0;
    for b in text.bytes() {
        n = (n * 10 + u64::from(b - b'0')).min(u64::from(MAX_DELTA));
    }
    u32::try_from(n).ok()
}

/// A directive's value: a token, or a quoted string (with its escapes).
#[derive(Clone, Copy)]
enum Value<'a> {
    Token(&'a str),
    /// The text between the quotes; `\x` stands for `x`.
    Quoted(&'a str),
}

impl<'a> Value<'a> {
    /// The value's text; a quoted string with escapes reads as no digits
    /// (the only values swre reads are numbers).
    fn text(self) -> &'a str {
        match self {
            Value::Token(t) => t,
            Value::Quoted(q) if !q.contains('\\') => q,
            Value::Quoted(_) => "",
        }
    }
}

/// The `name[=value]` items of one field value, skipping what does not
/// parse up to the next comma.
struct Directives<'a> {
    rest: &'a str,
}

impl<'a> Directives<'a> {
    fn new(field: &'a str) -> Self {
        Self { rest: field }
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl<'a> Iterator for Directives<'a> {
    type Item = (&'a str, Option<Value<'a>>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = self.rest.trim_start_matches([' ', '\t', ',']);
            if s.is_empty() {
                self.rest = s;
                return None;
            }
            let name_len = s.find(|c: char| !is_tchar(c)).unwrap_or(s.len());
            let (name, after) = s.split_at(name_len);
            let after = after.trim_start_matches([' ', '\t']);
            let (value, after) = match after.strip_prefix('=') {
                Some(v) => {
                    let v = v.trim_start_matches([' ', '\t']);
                    match v.strip_prefix('"') {
                        Some(q) => match closing_quote(q) {
                            Some(end) => (Some(Value::Quoted(&q[..end])), &q[end + 1..]),
                            // Unterminated: the rest of the field is inside it.
                            None => {
                                self.rest = "";
                                return None;
                            }
                        },
                        None => {
                            let len = v.find(|c: char| !is_tchar(c)).unwrap_or(v.len());
                            (Some(Value::Token(&v[..len])), &v[len..])
                        }
                    }
                }
                None => (None, after),
            };
            // Up to the next comma: anything else there makes the item bad.
            let after = after.trim_start_matches([' ', '\t']);
            let clean = after.is_empty() || after.starts_with(',');
            self.rest = match after.find(',') {
                Some(i) => &after[i..],
                None => "",
            };
            if clean && !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

/// The index of the quote that closes a quoted string starting just after
/// its opening quote, skipping `\`-escaped characters.
fn closing_quote(q: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in q.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CacheControl {
        CacheControl::parse([s])
    }

    #[test]
    fn rfc_9111_and_5861_examples() {
        // RFC 5861 §3 and §4.
        let c = cc("max-age=600, stale-while-revalidate=30");
        assert_eq!((c.max_age, c.stale_while_revalidate), (Some(600), Some(30)));
        let c = cc("max-age=600, stale-if-error=1200");
        assert_eq!((c.max_age, c.stale_if_error), (Some(600), Some(1200)));
        // RFC 9111 §5.2.2.1: the quoted form is accepted.
        assert_eq!(cc("max-age=\"5\"").max_age, Some(5));
        // §5.2.2.4, §5.2.2.7: field names after no-cache / private.
        let c = cc("no-cache=\"Set-Cookie, X-Id\", private=\"a\"");
        assert!(c.no_cache && c.private);
    }

    #[test]
    fn names_are_case_insensitive_and_first_occurrence_wins() {
        let c = cc("MAX-AGE=10, Max-Age=20, S-MaxAge=5, No-Store");
        assert_eq!(
            (c.max_age, c.s_maxage, c.no_store),
            (Some(10), Some(5), true)
        );
        assert_eq!(
            cc("max-age=, max-age=7").max_age,
            Some(7),
            "an empty value is none"
        );
    }

    #[test]
    fn big_values_saturate_and_bad_ones_are_ignored() {
        assert_eq!(cc("max-age=99999999999999999999999").max_age, Some(1 << 31));
        for bad in [
            "max-age=-1",
            "max-age=1.5",
            "max-age=0x10",
            "max-age=ten",
            "max-age=\"1\\0\"",
        ] {
            assert_eq!(cc(bad).max_age, None, "{bad}");
        }
        assert_eq!(cc("max-age=0").max_age, Some(0));
    }

    #[test]
    fn junk_between_items_spoils_only_its_item() {
        let c = cc("max-age=5 garbage, public,,, ;;, no-store , private=\"unterminated");
        assert_eq!(c.max_age, None);
        assert!(c.public && c.no_store);
        assert!(!c.private, "an unterminated quoted string ends the field");
        let c = cc("  \t, must-revalidate\t,immutable,proxy-revalidate");
        assert!(c.must_revalidate && c.immutable && c.proxy_revalidate);
    }

    #[test]
    fn fields_combine_as_one_list() {
        let c = CacheControl::parse(["public", "max-age=1", "max-age=2"]);
        assert_eq!((c.public, c.max_age), (true, Some(1)));
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // Every string of up to 4 characters from a small alphabet of the
        // parser's delimiters.
        let alphabet = ['a', '=', '"', '\\', ',', ' ', '1', 'é', ';'];
        let mut buf = alloc::string::String::new();
        fn walk(buf: &mut alloc::string::String, alphabet: &[char], depth: usize) {
            let _ = CacheControl::parse([buf.as_str()]);
            if depth == 0 {
                return;
            }
            for &c in alphabet {
                buf.push(c);
                walk(buf, alphabet, depth - 1);
                buf.pop();
            }
        }
        walk(&mut buf, &alphabet, 4);
    }
}
