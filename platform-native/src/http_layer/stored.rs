//! A stored response's bytes: the value the layer keeps in the engine.
//!
//! A small versioned binary format, every length checked on the way in:
//!
//! ```text
//! 0xC5 0x01                      magic, version 1
//! u16 status                     (big-endian, like every integer here)
//! u16 n, n × header              u16 name length, name, u32 value length, value
//! u16 m, m × vary                u16 name length, name, u8 present (0|1),
//!                                [u32 value length, value] if present
//! body                           the rest
//! ```
//!
//! Anything else — another version, a short buffer, an invalid name, value
//! or status, a present byte other than 0 or 1 — is [`Garbage`], never a
//! panic; the layer then treats the entry as a miss.

use std::fmt;
use std::ops::Range;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::vary::Selected;

const MAGIC: u8 = 0xC5;
const VERSION: u8 = 1;

/// A response as stored: status, end-to-end headers, the request header
/// values its `Vary` names, and where the body starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// Each header the response varies on, with the request's value for it
    /// (all its field lines joined with `, `), or `None` if absent.
    pub(crate) vary: Selected,
    /// The body's place in the buffer it was decoded from.
    pub(crate) body: Range<usize>,
}

/// Bytes that are not a stored response of this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Garbage;

impl fmt::Display for Garbage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a stored HTTP response (wrong version or corrupt)")
    }
}

impl std::error::Error for Garbage {}

/// Encodes a response. Fails only for what the format cannot hold (more than
/// 65,535 headers, a name over 65,535 bytes, a value over 4 GiB), which the
/// layer then passes through uncached.
pub(crate) fn encode(
    status: StatusCode,
    headers: &HeaderMap,
    vary: &[(HeaderName, Option<Vec<u8>>)],
    body: &[u8],
) -> Result<Vec<u8>, Garbage> {
    let mut out = Vec::with_capacity(64 + body.len() + headers.len() * 32);
    out.extend_from_slice(&[MAGIC, VERSION]);
    out.extend_from_slice(&status.as_u16().to_be_bytes());
    put_u16(&mut out, headers.len())?;
    for (name, value) in headers {
        put_name(&mut out, name)?;
        put_value(&mut out, value.as_bytes())?;
    }
    put_u16(&mut out, vary.len())?;
    for (name, value) in vary {
        put_name(&mut out, name)?;
        match value {
            Some(v) => {
                out.push(1);
                put_value(&mut out, v)?;
            }
            None => out.push(0),
        }
    }
    out.extend_from_slice(body);
    Ok(out)
}

fn put_u16(out: &mut Vec<u8>, n: usize) -> Result<(), Garbage> {
    let n = u16::try_from(n).map_err(|_| Garbage)?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_name(out: &mut Vec<u8>, name: &HeaderName) -> Result<(), Garbage> {
    put_u16(out, name.as_str().len())?;
    out.extend_from_slice(name.as_str().as_bytes());
    Ok(())
}

fn put_value(out: &mut Vec<u8>, v: &[u8]) -> Result<(), Garbage> {
    let n = u32::try_from(v.len()).map_err(|_| Garbage)?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(v);
    Ok(())
}

/// Decodes `buf`, or says it is [`Garbage`].
pub(crate) fn decode(buf: &[u8]) -> Result<StoredResponse, Garbage> {
    let mut r = Reader { buf, at: 0 };
    if r.take(2)? != [MAGIC, VERSION] {
        return Err(Garbage);
    }
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| Garbage)?;
    let n = r.u16()?;
    let mut headers = HeaderMap::with_capacity(usize::from(n).min(64));
    for _ in 0..n {
        let name = r.name()?;
        let len = r.u32()?;
        let value = HeaderValue::from_bytes(r.take(len)?).map_err(|_| Garbage)?;
        headers.append(name, value);
    }
    let m = r.u16()?;
    let mut vary = Vec::with_capacity(usize::from(m).min(16));
    for _ in 0..m {
        let name = r.name()?;
        let value = match r.take(1)? {
            [0] => None,
            [1] => {
                let len = r.u32()?;
                Some(r.take(len)?.to_vec())
            }
            _ => return Err(Garbage),
        };
        vary.push((name, value));
    }
    Ok(StoredResponse {
        status,
        headers,
        vary,
        body: r.at..buf.len(),
    })
}

/// A cursor whose every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Garbage> {
        let end = self.at.checked_add(n).ok_or(Garbage)?;
        let s = self.buf.get(self.at..end).ok_or(Garbage)?;
        self.at = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, Garbage> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<usize, Garbage> {
        let b = self.take(4)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).map_err(|_| Garbage)
    }

    fn name(&mut self) -> Result<HeaderName, Garbage> {
        let len = usize::from(self.u16()?);
        HeaderName::from_bytes(self.take(len)?).map_err(|_| Garbage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{ACCEPT_LANGUAGE, CACHE_CONTROL, ETAG, SET_COOKIE};

    fn sample() -> (HeaderMap, Selected) {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        h.insert(ETAG, HeaderValue::from_static("\"v1\""));
        h.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        let vary = vec![
            (ACCEPT_LANGUAGE, Some(b"fr, en;q=0.5".to_vec())),
            (HeaderName::from_static("x-tenant"), None),
        ];
        (h, vary)
    }

    #[test]
    fn round_trips() {
        let (h, vary) = sample();
        let buf = encode(StatusCode::NOT_FOUND, &h, &vary, b"hello").unwrap();
        let r = decode(&buf).unwrap();
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.headers, h);
        assert_eq!(r.vary, vary);
        assert_eq!(&buf[r.body], b"hello");
        let empty = encode(StatusCode::OK, &HeaderMap::new(), &[], b"").unwrap();
        assert_eq!(empty, [MAGIC, VERSION, 0, 200, 0, 0, 0, 0]);
        assert_eq!(decode(&empty).unwrap().body, 8..8);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_garbage_or_a_response() {
        let (h, vary) = sample();
        let buf = encode(StatusCode::OK, &h, &vary, b"").unwrap();
        // Without a body, every shorter prefix is cut inside a field.
        for n in 0..buf.len() {
            assert_eq!(decode(&buf[..n]), Err(Garbage), "prefix {n}");
        }
        for i in 0..buf.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut bad = buf.clone();
                bad[i] = b;
                let _ = decode(&bad); // never panics
            }
        }
        assert_eq!(decode(&[MAGIC, 2, 0, 200, 0, 0, 0, 0]), Err(Garbage));
        assert_eq!(decode(b"garbage that is not a response"), Err(Garbage));
        assert_eq!(decode(&[MAGIC, VERSION, 0, 42, 0, 0, 0, 0]), Err(Garbage));
        // A present byte other than 0 or 1.
        let mut v = vec![MAGIC, VERSION, 0, 200, 0, 0, 0, 1, 0, 1, b'a', 2];
        assert_eq!(decode(&v), Err(Garbage));
        v[11] = 0;
        assert!(decode(&v).is_ok());
    }

    #[test]
    fn pseudo_random_garbage_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..2_000usize {
            let mut buf = Vec::with_capacity(len % 97);
            for _ in 0..len % 97 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            if len % 3 == 0 && buf.len() >= 2 {
                buf[0] = MAGIC;
                buf[1] = VERSION;
            }
            let _ = decode(&buf);
        }
    }
}
