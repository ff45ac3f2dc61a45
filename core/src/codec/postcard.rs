use alloc::string::ToString;
use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Codec;
use crate::error::CodecError;

/// Compact binary encoding with `postcard` (the default codec).
///
/// ```
/// use swre_core::{Codec, Postcard};
///
/// let bytes = Postcard.encode(&(1u8, "two")).unwrap();
/// assert_eq!(Postcard.decode::<(u8, String)>(&bytes).unwrap(), (1, "two".to_string()));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Postcard;

impl Codec for Postcard {
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        postcard::to_allocvec(value).map_err(|e| CodecError::new(Self::NAME, e.to_string()))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        postcard::from_bytes(bytes).map_err(|e| CodecError::new(Self::NAME, e.to_string()))
    }
}
