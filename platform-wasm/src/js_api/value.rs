//! How JS values become cached bytes and back: strings and `Uint8Array`s pass
//! through untouched, everything else goes through `JSON.stringify`.
//! A string that is not well-formed UTF-16 (a lone surrogate) is stored as
//! its UTF-16 code units, so it too comes back as it was.

use js_sys::{JsString, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

const TEXT: u8 = b's';
const BYTES: u8 = b'b';
const JSON_VALUE: u8 = b'j';
/// A string with lone surrogates, as little-endian UTF-16 code units.
const TEXT_UTF16: u8 = b'u';

/// `JSON.stringify` and `JSON.parse` as the package's table offers them:
/// never throwing (see `table.js`).
pub(crate) trait JsonHost {
    /// The text, `undefined` for what JSON cannot hold, or an `Error`.
    fn stringify(&self, value: &JsValue) -> JsValue;
    /// The value, or an `Error`.
    fn parse(&self, text: &str) -> JsValue;
}

/// The bytes stored for `value`, or why it cannot be cached.
pub(crate) fn encode(value: &JsValue, json: &impl JsonHost) -> Result<Vec<u8>, String> {
    if let Some(js) = value.dyn_ref::<JsString>() {
        if !js.is_valid_utf16() {
            let units: Vec<u8> = js.iter().flat_map(u16::to_le_bytes).collect();
            return Ok(tagged(TEXT_UTF16, &units));
        }
    }
    if let Some(s) = value.as_string() {
        return Ok(tagged(TEXT, s.as_bytes()));
    }
    if let Some(a) = value.dyn_ref::<Uint8Array>() {
        return Ok(tagged(BYTES, &a.to_vec()));
    }
    if value.is_instance_of::<js_sys::ArrayBuffer>() {
        return Ok(tagged(BYTES, &Uint8Array::new(value).to_vec()));
    }
    let text = json.stringify(value);
    if let Some(text) = text.as_string() {
        return Ok(tagged(JSON_VALUE, text.as_bytes()));
    }
    if text.is_undefined() {
        return Err(format!(
            "the value ({}) is not JSON-serialisable; use a string, a Uint8Array or a JSON value",
            value.js_typeof().as_string().unwrap_or_default()
        ));
    }
    Err(format!(
        "the value is not JSON-serialisable: {}",
        crate::js::describe(&text)
    ))
}

/// The JS value for stored bytes, or why they cannot be read.
pub(crate) fn decode(bytes: &[u8], json: &impl JsonHost) -> Result<JsValue, String> {
    match bytes.split_first() {
        Some((&TEXT, rest)) => std::str::from_utf8(rest)
            .map(JsValue::from_str)
            .map_err(|_| "a cached string is not valid UTF-8".to_owned()),
        Some((&TEXT_UTF16, rest)) if rest.len() % 2 == 0 => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            Ok(JsString::from_char_code(&units).into())
        }
        Some((&BYTES, rest)) => Ok(Uint8Array::from(rest).into()),
        Some((&JSON_VALUE, rest)) => {
            let text = std::str::from_utf8(rest)
                .map_err(|_| "cached JSON is not valid UTF-8".to_owned())?;
            let v = json.parse(text);
            if v.is_instance_of::<js_sys::Error>() {
                return Err(format!(
                    "cached JSON does not parse: {}",
                    crate::js::describe(&v)
                ));
            }
            Ok(v)
        }
        _ => Err("the cached value was not written by SwrCache".to_owned()),
    }
}

fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(tag);
    v.extend_from_slice(body);
    v
}
