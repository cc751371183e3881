//! The streaming frame reader: split reads, many frames per read, oversize and bad-magic input.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use clasp_proto::stream::StreamError;
use clasp_proto::*;
use proptest::prelude::*;

fn frames(msgs: &[Message]) -> Vec<u8> {
    msgs.iter()
        .flat_map(|m| encode(m).unwrap().to_vec())
        .collect()
}

fn drain(r: &mut FrameReader) -> Vec<Result<Message, StreamError>> {
    let mut out = Vec::new();
    while let Some(item) = r.next_frame() {
        out.push(item.map(|f| f.decode().unwrap()));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Any split of a stream of frames into chunks yields exactly the frames, in order.
    #[test]
    fn any_chunking_yields_every_frame(
        msgs in proptest::collection::vec(common::message(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let bytes = frames(&msgs);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let mut r = FrameReader::new();
        let mut got = Vec::new();
        for w in points.windows(2) {
            r.push(&bytes[w[0]..w[1]]);
            got.extend(drain(&mut r));
        }
        let got: Vec<Message> = got.into_iter().map(Result::unwrap).collect();
        prop_assert_eq!(got, msgs);
        prop_assert!(r.is_idle());
    }

    /// Garbage between frames is reported and skipped; the frames after it still arrive, so
    /// the reader never loses sync for good. Garbage bytes avoid the magic so that the
    /// resynchronisation point is unambiguous.
    #[test]
    fn garbage_is_skipped(
        garbage in proptest::collection::vec(any::<u8>().prop_filter("no magic", |b| *b != 0x53), 1..40),
        msg in common::flat_message(),
    ) {
        let mut bytes = frames(&[Message::Ping]);
        bytes.extend_from_slice(&garbage);
        bytes.extend(frames(std::slice::from_ref(&msg)));
        let mut r = FrameReader::new();
        r.push(&bytes);
        let got = drain(&mut r);
        prop_assert_eq!(got.len(), 3);
        prop_assert_eq!(&got[0], &Ok(Message::Ping));
        let bad_magic = matches!(&got[1], Err(StreamError::BadMagic { skipped, .. }) if *skipped == garbage.len());
        prop_assert!(bad_magic);
        prop_assert_eq!(&got[2], &Ok(msg));
    }
}

#[test]
fn oversize_frames_are_discarded_and_the_stream_stays_in_sync() {
    let big = Message::Set(Set {
        address: "/big".into(),
        value: Value::from("x".repeat(5000)),
        ..Default::default()
    });
    let bytes = frames(&[Message::Ping, big, Message::Pong]);
    // Feed it in 7-byte pieces so the oversize frame is discarded across many pushes.
    let mut r = FrameReader::with_max_payload(1024);
    let mut got = Vec::new();
    for chunk in bytes.chunks(7) {
        r.push(chunk);
        got.extend(drain(&mut r));
        assert!(
            r.buffered() <= 1024 + 12 + 7,
            "an oversize frame is never buffered"
        );
    }
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], Ok(Message::Ping));
    assert!(matches!(
        got[1],
        Err(StreamError::Oversize {
            payload_len,
            max: 1024
        }) if payload_len > 5000
    ));
    assert_eq!(got[2], Ok(Message::Pong));
    assert!(r.is_idle());
    assert_eq!(
        got[1].as_ref().unwrap_err().to_string(),
        "frame with a 5010-byte payload exceeds the limit of 1024 bytes and was discarded"
    );
}

#[test]
fn many_frames_in_one_read() {
    let msgs: Vec<Message> = (0..1000)
        .map(|i| {
            Message::Set(Set {
                address: format!("/n/{i}").into(),
                value: Value::Int(i),
                ..Default::default()
            })
        })
        .collect();
    let mut r = FrameReader::new();
    r.push(&frames(&msgs));
    let got: Vec<Message> = drain(&mut r).into_iter().map(Result::unwrap).collect();
    assert_eq!(got, msgs);
}

#[test]
fn byte_at_a_time_with_timestamps() {
    let opts = FrameOptions {
        qos: Some(Qos::Commit),
        timestamp: Some(42),
    };
    let mut bytes = encode_with(&Message::Ping, opts).unwrap().to_vec();
    bytes.extend(encode_with(&Message::Pong, opts).unwrap());
    let mut r = FrameReader::new();
    let mut got = Vec::new();
    for b in &bytes {
        r.push(std::slice::from_ref(b));
        while let Some(f) = r.next_frame() {
            got.push(f.unwrap());
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header.timestamp, Some(42));
    assert_eq!(got[0].header.qos(), Qos::Commit);
    assert_eq!(got[1].decode().unwrap(), Message::Pong);
}

#[test]
fn leading_garbage_with_no_magic_yet_is_dropped() {
    let mut r = FrameReader::new();
    r.push(&[1, 2, 3]);
    assert!(matches!(
        r.next_frame(),
        Some(Err(StreamError::BadMagic {
            skipped: 3,
            first: 1
        }))
    ));
    assert!(r.next_frame().is_none());
    r.push(&encode(&Message::Ping).unwrap());
    assert_eq!(
        r.next_frame().unwrap().unwrap().decode().unwrap(),
        Message::Ping
    );
}
