//! The fuzz targets' bodies, shared by `fuzz/` (cargo fuzz, nightly) and the
//! corpus regression test that runs on stable in the test command.
//!
//! Each function takes arbitrary bytes and panics only if an invariant breaks:
//! decoding never panics, and whatever decodes re-encodes to the same thing.

use swre_native::{envelope, Codec, Compressed, Json, Postcard, Storage};

/// Envelope decoding: any bytes yield the written entry or nothing; an
/// envelope of the current version re-encodes to exactly the same bytes, and
/// one of an earlier version to the current version of the same entry.
pub fn envelope_decode(data: &[u8]) {
    if let Some(d) = envelope::decode(data) {
        let again = envelope::encode(d.key, &d.entry).expect("a decoded entry re-encodes");
        if data.get(4) == Some(&envelope::VERSION) {
            assert_eq!(
                again, data,
                "decode/encode is not the identity on a valid envelope"
            );
        } else {
            let upgraded = envelope::decode(&again).expect("the re-encoding decodes");
            assert_eq!(
                (upgraded.key, &upgraded.entry),
                (d.key, &d.entry),
                "an upgrade changed the entry"
            );
        }
        assert!(d.entry.times_are_ordered());
        assert_eq!(envelope::decode_for(d.key, data), Some(d.entry));
    }
}

/// A serde value shape with strings, numbers, options and nesting.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// A number.
    pub id: u64,
    /// A string.
    pub name: String,
    /// A list.
    pub tags: Vec<String>,
    /// An option.
    pub score: Option<i32>,
}

/// Every codec's decode: errors are fine, panics are not; what decodes
/// survives a round trip.
pub fn codec_decode(data: &[u8]) {
    fn check<C: Codec>(codec: &C, data: &[u8]) {
        if let Ok(v) = codec.decode::<Shape>(data) {
            let bytes = codec.encode(&v).expect("a decoded value re-encodes");
            assert_eq!(codec.decode::<Shape>(&bytes).expect("round trip"), v);
        }
        let _ = codec.decode::<Vec<u8>>(data);
        let _ = codec.decode::<String>(data);
    }
    check(&Postcard, data);
    check(&Json, data);
    check(&Compressed::new(Postcard, 0).max_decoded(1 << 20), data);
    check(&Compressed::new(Json, 64).max_decoded(1 << 20), data);
}

/// FileStorage reading an arbitrary file where an entry should be: a miss or
/// exactly the entry the bytes encode for that key, never a panic; and the
/// next write replaces it.
pub fn file_storage_read(data: &[u8]) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "swre-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    futures::executor::block_on(async {
        let storage = swre_native::FileStorage::open(&dir).await.expect("open");
        let key = "fuzzed/key";
        std::fs::write(storage.path_for(key), data).expect("write the fuzzed file");
        let got = storage
            .get(key)
            .await
            .expect("reading a bad file is a miss, not an error");
        assert_eq!(got, envelope::decode_for(key, data));
        // Opening again (which cleans corrupt files) must not fail either.
        let reopened = swre_native::FileStorage::open(&dir).await.expect("reopen");
        let entry =
            swre_native::Entry::new("fresh", 4_000_000_000_000, swre_native::CacheTtl::default());
        reopened.set(key, entry.clone()).await.expect("overwrite");
        assert_eq!(reopened.get(key).await.expect("read back"), Some(entry));
    });
    let _ = std::fs::remove_dir_all(&dir);
}
