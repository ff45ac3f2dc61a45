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

/// HTTP header parsing (`swre_core::http`): any text parses without
/// panicking; the phases of any response stay within the policy's cap; a
/// rendered `Cache-Status` is printable ASCII whatever the cache's name.
/// The input's lines are, in order: `Cache-Control` field lines up to an
/// empty line, then `Expires`, `Date`, `Age`, and the cache's name.
pub fn http_headers(data: &[u8]) {
    use core::time::Duration;
    use swre_core::http::{parse_http_date, CacheMode, CacheStatus, HttpPolicy, ResponseHeaders};
    use swre_core::{CacheTtl, Detail, Status};

    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let cache_control: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
    let (expires, date, age, name) = (lines.next(), lines.next(), lines.next(), lines.next());
    for l in [expires, date, age].into_iter().flatten() {
        let _ = parse_http_date(l);
    }
    // Cache groups (RFC 9875): every line as a List of Strings; what it
    // reads holds only printable ASCII.
    for l in text.split('\n') {
        if let Some(groups) = swre_core::http::string_list(l) {
            assert!(
                groups
                    .iter()
                    .all(|g| g.bytes().all(|c| (0x20..=0x7e).contains(&c))),
                "a group name outside printable ASCII from {l:?}"
            );
        }
    }
    let cap = Duration::from_secs(3_600);
    for mode in [CacheMode::Shared, CacheMode::Private] {
        let policy = HttpPolicy {
            max_total: cap,
            ..HttpPolicy::new(mode, CacheTtl::default())
        };
        let response = ResponseHeaders {
            status: data.first().map_or(200, |&b| 100 + u16::from(b) * 2),
            cache_control: &cache_control,
            expires,
            date,
            age,
            sets_cookie: data.len().is_multiple_of(3),
            request_authorized: data.len().is_multiple_of(5),
        };
        if let Ok(ttl) = policy.phases(&response, 1_700_000_000_000) {
            assert!(ttl.total() <= cap, "phases past the cap: {ttl:?}");
        }
    }
    let status = CacheStatus::of(
        name.unwrap_or("swre"),
        Status::Fallback,
        Detail::UpstreamError,
        u64::from(data.len() as u32),
        u64::MAX,
    );
    let field = status.render();
    assert!(
        field.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "Cache-Status not printable ASCII: {field:?}"
    );
}
