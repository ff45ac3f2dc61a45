//! The JS API's memory tier: a [`Storage`] over the package's JS `Table`
//! (`www/package/src/table.js`), which holds each entry once, decoded.
//!
//! A write decodes the value (the one decode an entry gets) and hands the JS
//! value to the table; a read returns the entry's times with a *handle* as
//! its value (a tag byte and the table's id of the entry), which
//! [`JsTable::value`] turns back into the JS value when the answer is
//! built. The engine never looks inside a value it did not fetch, so a
//! handle passes through it like any bytes; persistent stores behind the
//! table (in [`Tiered`](swre_core::Tiered)) still get the encoded bytes. A
//! handle the engine writes back (a "not modified" answer keeps the value it
//! read, with new times) changes the times (and tags) of the entry it names
//! in place.
//!
//! An entry's tags go to the table in their envelope encoding, opaque to
//! JS (the table only notes that the entry is tagged, so that the façade
//! leaves its hits to the engine, which checks the tags' epochs). Tag
//! records (keys under `RESERVED_PREFIX`) are no JS values: the table holds
//! their bytes as a `Uint8Array`, and reads hand those bytes back.

use js_sys::{Function, Uint8Array};
use swre_core::tags::record::RESERVED_PREFIX;
use swre_core::{envelope, Entry, Storage, StorageError, StorageErrorKind};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::value::{self, JsonHost};

impl JsonHost for Table {
    fn stringify(&self, value: &JsValue) -> JsValue {
        self.json_stringify(value)
    }
    fn parse(&self, text: &str) -> JsValue {
        self.json_parse(text)
    }
}

#[wasm_bindgen]
extern "C" {
    /// The package's `Table` class (`www/package/src/table.js`).
    #[derive(Clone)]
    pub type Table;

    #[wasm_bindgen(method)]
    fn read(this: &Table, key: &str, meta: &mut [f64]) -> bool;

    #[wasm_bindgen(method)]
    fn write(
        this: &Table,
        key: &str,
        value: &JsValue,
        size: f64,
        meta: &[f64],
        tags: Option<Uint8Array>,
    ) -> bool;

    #[wasm_bindgen(method)]
    fn tags(this: &Table, key: &str) -> Option<Uint8Array>;

    #[wasm_bindgen(method, js_name = value)]
    fn value_of(this: &Table, key: &str, id: f64) -> JsValue;

    #[wasm_bindgen(method, js_name = stringify)]
    fn json_stringify(this: &Table, value: &JsValue) -> JsValue;

    #[wasm_bindgen(method, js_name = parse)]
    fn json_parse(this: &Table, text: &str) -> JsValue;

    #[wasm_bindgen(method)]
    fn touch(this: &Table, key: &str, id: f64, meta: &[f64], tags: Option<Uint8Array>) -> bool;

    #[wasm_bindgen(method)]
    fn expire(this: &Table, key: &str, now: f64, meta: &mut [f64]) -> bool;

    #[wasm_bindgen(method)]
    fn remove(this: &Table, key: &str);

    #[wasm_bindgen(method)]
    fn clear(this: &Table);
}

/// The first byte of a handle; no encoded value starts with it.
const HANDLE: u8 = b'h';

/// The table's id of the write a handle names; `None` for encoded bytes.
fn handle_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [HANDLE, a, b, c, d] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// For a handle, the value it names (`None` when no longer known); `None`
/// for encoded bytes.
pub(crate) fn handle_value(table: &Table, key: &str, bytes: &[u8]) -> Option<Option<JsValue>> {
    let id = handle_id(bytes)?;
    let v = table.value_of(key, f64::from(id));
    Some((!v.is_undefined()).then_some(v))
}

/// The JS value of a value the engine holds: a handle is looked up in
/// `table`, anything else decoded. `Ok(None)`: the handle's write is no
/// longer known to the table (replaced or evicted long ago).
pub(crate) fn held_value(
    table: &Table,
    key: &str,
    bytes: &[u8],
) -> Result<Option<JsValue>, String> {
    match handle_value(table, key, bytes) {
        Some(held) => Ok(held),
        None => value::decode(bytes, table).map(Some),
    }
}

/// The memory tier over a JS `Table`.
pub(crate) struct JsTable {
    table: Table,
}

impl JsTable {
    /// A table made by the façade's `Table` class for these limits, whose
    /// fresh hits leave to the engine those that may start `early` refreshes.
    pub(crate) fn new(
        class: &Function,
        max_entries: usize,
        max_bytes: usize,
        early: Option<swre_core::EarlyRefresh>,
    ) -> Result<Self, JsValue> {
        let (mode, param) = match early {
            Some(swre_core::EarlyRefresh::XFetch { beta }) => (1.0, beta),
            Some(swre_core::EarlyRefresh::Threshold(f)) => (2.0, f),
            _ => (0.0, 0.0),
        };
        let args = js_sys::Array::of4(
            &(max_entries as f64).into(),
            &(max_bytes as f64).into(),
            &mode.into(),
            &param.into(),
        );
        let table = js_sys::Reflect::construct(class, &args)?;
        Ok(Self {
            table: table.unchecked_into(),
        })
    }

    /// The JS table itself, for the façade's hits and as the JSON host.
    pub(crate) fn js(&self) -> &Table {
        &self.table
    }

    /// The JS value of an answer's value (see [`held_value`]).
    pub(crate) fn value(&self, key: &str, bytes: &[u8]) -> Result<Option<JsValue>, String> {
        held_value(&self.table, key, bytes)
    }

    fn read_entry(&self, key: &str) -> Option<Entry> {
        let mut meta = [0.0f64; META];
        if !self.table.read(key, &mut meta) {
            return None;
        }
        let mut e = self.entry_of(key, &meta)?;
        if key.starts_with(RESERVED_PREFIX) {
            // A tag record: its bytes, not a handle.
            let id = meta[5];
            e.value = Uint8Array::new(&self.table.value_of(key, id))
                .to_vec()
                .into();
        }
        Some(e)
    }

    /// The entry `meta` (as `Table.read` fills it) describes, its value a
    /// handle; `None` if its tags do not decode (never trusted untagged).
    fn entry_of(&self, key: &str, meta: &[f64; META]) -> Option<Entry> {
        let id = (meta[5] as u32).to_le_bytes();
        let mut e = Entry::new(
            [HANDLE, id[0], id[1], id[2], id[3]].as_slice(),
            0,
            Default::default(),
        );
        e.created_at = meta[0] as u64;
        e.fresh_until = meta[1] as u64;
        e.stale_until = meta[2] as u64;
        e.expires_at = meta[3] as u64;
        e.pinned_ttl = meta[4] != 0.0;
        e.fetch_ms = meta[6] as u32;
        if meta[7] != 0.0 {
            let bytes = self.table.tags(key)?.to_vec();
            e.tags = envelope::decode_tags(&bytes)?;
        }
        Some(e)
    }
}

/// Slots of the `meta` array `Table.read` fills.
const META: usize = 8;

impl Storage for JsTable {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self.read_entry(key))
    }

    fn get_ready(&self, key: &str) -> Option<Result<Option<Entry>, StorageError>> {
        Some(Ok(self.read_entry(key)))
    }

    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        let reserved = key.starts_with(RESERVED_PREFIX);
        let tags = match entry.tags.is_empty() {
            true => None,
            false => Some(envelope::encode_tags(&entry.tags).ok_or_else(|| {
                StorageError::new(StorageErrorKind::TooLarge, "a tag name over 64 KiB")
            })?),
        };
        let size = entry.value.len() + tags.as_ref().map_or(0, Vec::len);
        let tags = tags.map(|t| Uint8Array::from(&t[..]));
        let meta = [
            entry.created_at as f64,
            entry.fresh_until as f64,
            entry.stale_until as f64,
            entry.expires_at as f64,
            if entry.pinned_ttl { 1.0 } else { 0.0 },
            js_sys::Date::now(),
            f64::from(entry.fetch_ms),
        ];
        if let Some(id) = handle_id(&entry.value).filter(|_| !reserved) {
            // A value read from this table, written back with new times (a
            // "not modified" answer starts its phases again): the value
            // stays where it is, and so does every handle to it.
            return if self.table.touch(key, f64::from(id), &meta, tags) {
                Ok(())
            } else {
                Err(StorageError::new(
                    StorageErrorKind::Other,
                    "the entry written back is no longer held by the memory tier",
                ))
            };
        }
        let decoded = if reserved {
            Uint8Array::from(&entry.value[..]).into()
        } else {
            value::decode(&entry.value, &self.table)
                .map_err(|m| StorageError::new(StorageErrorKind::Other, m))?
        };
        if self.table.write(key, &decoded, size as f64, &meta, tags) {
            Ok(())
        } else {
            Err(StorageError::new(
                StorageErrorKind::TooLarge,
                "the entry exceeds the memory tier's `maxBytes`",
            ))
        }
    }

    /// In place: a read-back `set` of a handle would not change the times.
    async fn expire(&self, key: &str, now: u64) -> Result<Option<Entry>, StorageError> {
        let mut meta = [0.0f64; META];
        if !self.table.expire(key, now as f64, &mut meta) {
            return Ok(None);
        }
        Ok(self.entry_of(key, &meta))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.table.remove(key);
        Ok(())
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.table.clear();
        Ok(())
    }
}
