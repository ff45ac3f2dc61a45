use alloc::string::ToString;
use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Codec;
use crate::error::CodecError;

/// Readable JSON with `serde_json`; the format JavaScript callers see.
///
/// ```
/// use swre_core::{Codec, Json};
///
/// let bytes = Json.encode(&vec![1, 2]).unwrap();
/// assert_eq!(bytes, b"[1,2]");
/// assert_eq!(Json.decode::<Vec<u8>>(&bytes).unwrap(), vec![1, 2]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::new(Self::NAME, e.to_string()))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::new(Self::NAME, e.to_string()))
    }
}
