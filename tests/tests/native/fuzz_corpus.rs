//! The fuzz corpus (fuzz/corpus, grown by `bash fuzz/run.sh`) replayed as
//! plain regression tests on stable.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).expect("read corpus file");
            (p, data)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "the {target} corpus is missing or tiny");
    inputs
}

fn replay(target: &str, f: fn(&[u8])) {
    for (path, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| f(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} makes the target panic",
            path.display()
        );
    }
}

#[test]
fn envelope_decode_corpus() {
    replay("envelope_decode", swre_tests::fuzzing::envelope_decode);
}

#[test]
fn codec_decode_corpus() {
    replay("codec_decode", swre_tests::fuzzing::codec_decode);
}

#[test]
fn file_storage_read_corpus() {
    replay("file_storage_read", swre_tests::fuzzing::file_storage_read);
}

#[test]
fn a_valid_envelope_seed_really_decodes() {
    let valid = corpus("envelope_decode")
        .into_iter()
        .find(|(p, _)| p.ends_with("seed-valid"))
        .expect("the valid seed");
    let d = swre_native::envelope::decode(&valid.1).expect("the seed is a valid envelope");
    assert_eq!((d.key, &*d.entry.value), ("fuzzed/key", &b"hello"[..]));
}

#[test]
fn a_version_2_seed_decodes_with_its_fetch_time() {
    let v2 = corpus("envelope_decode")
        .into_iter()
        .find(|(p, _)| p.ends_with("seed-valid-v2"))
        .expect("the version-2 seed");
    let d = swre_native::envelope::decode(&v2.1).expect("the seed is a valid envelope");
    assert_eq!(
        (d.key, &*d.entry.value, d.entry.fetch_ms),
        ("fuzzed/key", &b"hello v2"[..], 250)
    );
}

#[test]
fn http_headers_corpus() {
    replay("http_headers", swre_tests::fuzzing::http_headers);
}
