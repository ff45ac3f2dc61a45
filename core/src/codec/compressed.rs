use alloc::format;
use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Codec;
use crate::error::CodecError;

const RAW: u8 = 0;
const DEFLATE: u8 = 1;

/// Deflate (miniz_oxide) over another codec's output, for outputs of at least
/// `threshold` bytes; smaller ones are stored raw. One leading byte says which.
///
/// Decoding refuses to inflate past `max_decoded` bytes, so a hostile stored
/// value cannot exhaust memory.
///
/// ```
/// use swre_core::{Codec, Compressed, Json};
///
/// let codec = Compressed::new(Json, 64);
/// let text = "a".repeat(10_000);
/// let bytes = codec.encode(&text).unwrap();
/// assert!(bytes.len() < 200);
/// assert_eq!(codec.decode::<String>(&bytes).unwrap(), text);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compressed<C> {
    inner: C,
    threshold: usize,
    level: u8,
    max_decoded: usize,
}

impl<C: Default> Default for Compressed<C> {
    /// The inner codec's default, compressing outputs of 1 KiB or more.
    fn default() -> Self {
        Self::new(C::default(), 1024)
    }
}

impl<C> Compressed<C> {
    /// Compresses `inner`'s outputs of at least `threshold` bytes, at level 6,
    /// inflating at most 64 MiB.
    pub fn new(inner: C, threshold: usize) -> Self {
        Self {
            inner,
            threshold,
            level: 6,
            max_decoded: 64 << 20,
        }
    }

    /// The deflate level, 0 (store) to 10 (best); higher values are clamped.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(10);
        self
    }

    /// The largest inflated size accepted when decoding.
    pub fn max_decoded(mut self, bytes: usize) -> Self {
        self.max_decoded = bytes;
        self
    }

    /// The size threshold in bytes.
    pub fn threshold(&self) -> usize {
        self.threshold
    }
}

impl<C: Codec> Codec for Compressed<C> {
    const NAME: &'static str = "compressed";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let plain = self.inner.encode(value)?;
        if plain.len() < self.threshold {
            let mut out = Vec::with_capacity(plain.len() + 1);
            out.push(RAW);
            out.extend_from_slice(&plain);
            return Ok(out);
        }
        let packed = miniz_oxide::deflate::compress_to_vec(&plain, self.level);
        let mut out = Vec::with_capacity(packed.len() + 1);
        out.push(DEFLATE);
        out.extend_from_slice(&packed);
        Ok(out)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        match bytes.split_first() {
            Some((&RAW, rest)) => self.inner.decode(rest),
            Some((&DEFLATE, rest)) => {
                let plain =
                    miniz_oxide::inflate::decompress_to_vec_with_limit(rest, self.max_decoded)
                        .map_err(|e| {
                            CodecError::new(Self::NAME, format!("cannot inflate: {:?}", e.status))
                        })?;
                self.inner.decode(&plain)
            }
            Some((tag, _)) => Err(CodecError::new(
                Self::NAME,
                format!("unknown frame tag {tag} (expected 0 raw or 1 deflate)"),
            )),
            None => Err(CodecError::new(Self::NAME, "empty input")),
        }
    }
}
