#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swre_tests::fuzzing::http_headers(data);
});
