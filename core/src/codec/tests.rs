use super::*;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use serde::Deserialize;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Sample {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<i32>,
    map: BTreeMap<String, u8>,
}

fn sample() -> Sample {
    let mut map = BTreeMap::new();
    map.insert(String::from("a"), 1);
    Sample {
        id: 42,
        name: String::from("name with ünïcode"),
        tags: vec![String::from("x"), String::new()],
        score: Some(-7),
        map,
    }
}

fn round_trip<C: Codec>(codec: &C) {
    let v = sample();
    let bytes = codec.encode(&v).unwrap();
    assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), v, "{}", C::NAME);
}

#[test]
fn every_codec_round_trips() {
    round_trip(&Postcard);
    round_trip(&Json);
    round_trip(&Compressed::new(Postcard, 0));
    round_trip(&Compressed::new(Json, 0));
    round_trip(&Compressed::new(Json, 1 << 20));
}

#[test]
fn json_output_is_plain_json() {
    let bytes = Json.encode(&sample()).unwrap();
    let text = core::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with("{\"id\":42,\"name\":"), "{text}");
}

#[test]
fn compressed_honours_the_threshold() {
    let codec = Compressed::new(Json, 100);
    let small = codec.encode(&"tiny").unwrap();
    assert_eq!(small[0], 0, "below the threshold is stored raw");
    assert_eq!(&small[1..], &Json.encode(&"tiny").unwrap()[..]);
    let big_value = "b".repeat(5_000);
    let big = codec.encode(&big_value).unwrap();
    assert_eq!(big[0], 1, "at or above the threshold is deflated");
    assert!(big.len() < 200);
    // The deflated frame is real deflate: miniz_oxide inflates it to the inner encoding.
    let inflated = miniz_oxide::inflate::decompress_to_vec(&big[1..]).unwrap();
    assert_eq!(inflated, Json.encode(&big_value).unwrap());
}

#[test]
fn compressed_refuses_oversized_inflation() {
    let codec = Compressed::new(Postcard, 0).max_decoded(1_000);
    let bytes = Compressed::new(Postcard, 0)
        .encode(&vec![0u8; 100_000])
        .unwrap();
    let err = codec.decode::<Vec<u8>>(&bytes).unwrap_err();
    assert_eq!(err.codec(), "compressed");
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let inputs: [&[u8]; 6] = [
        b"",
        b"\x00",
        b"\x01",
        b"\x02abc",
        b"\x01\xff\xff\xff",
        b"{not json",
    ];
    for input in inputs {
        let _ = Postcard.decode::<Sample>(input).unwrap_err();
        let _ = Json.decode::<Sample>(input).unwrap_err();
        let _ = Compressed::new(Json, 0)
            .decode::<Sample>(input)
            .unwrap_err();
    }
    // Every truncation of a valid encoding fails cleanly.
    let full = Compressed::new(Postcard, 0).encode(&sample()).unwrap();
    for cut in 0..full.len() {
        assert!(Compressed::new(Postcard, 0)
            .decode::<Sample>(&full[..cut])
            .is_err());
    }
}

#[test]
fn decoding_into_the_wrong_type_is_a_codec_error() {
    let bytes = Json.encode(&sample()).unwrap();
    let err = Json.decode::<u64>(&bytes).unwrap_err();
    assert_eq!(err.codec(), "json");
}
