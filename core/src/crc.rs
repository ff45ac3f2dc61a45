//! CRC-32 (IEEE 802.3, the zlib / PNG checksum) over one 1 KiB table.
//!
//! The persistent envelope's checksum. A byte-at-a-time table is slower than
//! `crc32fast`'s slice-by-16 (whose 16 KiB table was a sixth of the gzipped
//! JS package), and an envelope is checksummed once per store read or write,
//! next to I/O that costs far more.

/// The table for the reflected polynomial `0xEDB88320`, built at compile time.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The CRC-32 of `bytes`.
pub(crate) fn hash(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::hash;

    #[test]
    fn standard_check_values() {
        assert_eq!(hash(b""), 0);
        assert_eq!(hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            hash(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        assert_eq!(hash(&[0u8; 32]), 0x190A_55AD);
    }
}
