//! Frame + message decoding (binary and legacy MessagePack) on arbitrary bytes.
//! Invariants: no panic; whatever decodes re-encodes (binary) and decodes to the same message;
//! the zero-copy view decoder gives the same message or the same error as the owned decoder.
#![no_main]

use clasp_proto::{Message, decode_frame, decode_frame_bytes, decode_frame_view, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame(data) {
        assert!(frame.len <= data.len());
        roundtrip(&frame.message);
    }
    let buf = bytes::Bytes::copy_from_slice(data);
    match (decode_frame_bytes(&buf), decode_frame_view(&buf)) {
        (Ok(owned), Ok(view)) => {
            assert_eq!(owned.len, view.len);
            let from_view = view.message.into_message();
            if from_view != owned.message {
                // Only NaNs may compare unequal: the encodings must still match.
                assert_eq!(encode(&from_view).ok(), encode(&owned.message).ok());
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("decoders disagree: owned {a:?}, view {b:?}"),
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
