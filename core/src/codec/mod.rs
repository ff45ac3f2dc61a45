//! [`Codec`]: how typed values become the bytes a storage holds.

use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::CodecError;
use crate::sync::{MaybeSend, MaybeSync};

mod compressed;
mod json;
mod postcard;

pub use compressed::Compressed;
pub use json::Json;
pub use postcard::Postcard;

/// Turns serde values into bytes and back.
///
/// Contract: `decode(encode(v)) == v` for every value the codec encodes, and
/// `decode` of any byte string returns a value or an error, never a panic.
pub trait Codec: MaybeSend + MaybeSync + 'static {
    /// A short name used in error messages.
    const NAME: &'static str;

    /// The bytes for `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// The value in `bytes`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

#[cfg(test)]
mod tests;
