//! Frame + message decoding (binary and legacy MessagePack) on arbitrary bytes.
//! Invariants: no panic; whatever decodes re-encodes (binary) and decodes to the same message.
#![no_main]

use clasp_proto::{Message, decode_frame, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame(data) {
        assert!(frame.len <= data.len());
        roundtrip(&frame.message);
    }
    // The same bytes as a bare payload.
    if let Ok(msg) = Message::decode(data) {
        roundtrip(&msg);
    }
});

fn roundtrip(msg: &Message) {
    // Decoded input is never larger than a frame, but widening (i8 → i64, f32 → f64) can grow
    // it past the frame limit; that is the only acceptable encode failure.
    match encode(msg) {
        Ok(bytes) => {
            let again = decode_frame(&bytes).expect("our own encoding must decode");
            // NaN payloads compare unequal; compare the re-encodings instead.
            let bytes2 = encode(&again.message).expect("re-encode");
            assert_eq!(bytes, bytes2, "encode(decode(encode(m))) differs");
        }
        Err(clasp_proto::EncodeError::PayloadTooLarge(_)) => {}
        Err(e) => panic!("decoded message fails to encode: {e}"),
    }
}
