//! The compact binary codec: round trips, robustness against arbitrary input, and clear errors.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use clasp_proto::frame::{MAGIC, MAX_PAYLOAD};
use clasp_proto::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// encode → decode is the identity for every message type, with any frame options.
    #[test]
    fn encode_decode_is_identity(
        msg in common::message(),
        qos in prop_oneof![Just(Qos::Fire), Just(Qos::Confirm), Just(Qos::Commit)],
        ts in proptest::option::of(any::<u64>()),
    ) {
        let opts = FrameOptions { qos: Some(qos), timestamp: ts };
        let bytes = encode_with(&msg, opts).unwrap();
        let frame = decode_frame(&bytes).unwrap();
        prop_assert_eq!(frame.len, bytes.len());
        prop_assert_eq!(frame.header.qos(), qos);
        prop_assert_eq!(frame.header.timestamp, ts);
        prop_assert_eq!(&frame.message, &msg);
        // The payload alone decodes the same, and encode_payload gives the same payload bytes.
        let mut payload = Vec::new();
        msg.encode_payload(&mut payload).unwrap();
        prop_assert_eq!(&payload[..], &bytes[frame.header.header_len()..]);
        prop_assert_eq!(Message::decode(&payload).unwrap(), msg);
    }

    /// Arbitrary bytes never panic, and whatever decodes re-encodes to something that decodes
    /// to the same message.
    #[test]
    fn arbitrary_payloads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(msg) = Message::decode(&data) {
            let again = encode(&msg).unwrap();
            prop_assert_eq!(decode_frame(&again).unwrap().message, msg);
        }
        let _ = decode_frame(&data);
    }

    /// Corrupting a valid frame (flip, truncate, insert) gives a message or an error, never a
    /// panic.
    #[test]
    fn mutated_frames_never_panic(bytes in common::corrupted_frame()) {
        let _ = decode_frame(&bytes);
    }
}

fn err(bytes: &[u8]) -> DecodeError {
    decode_frame(bytes).unwrap_err()
}

#[test]
fn truncated_set_says_which_field_and_where() {
    let full = encode(&Message::Set(Set {
        address: "/a/b".into(),
        value: Value::Float(0.5),
        revision: Some(3),
        ..Default::default()
    }))
    .unwrap();
    // Cut inside the revision: keep the header length honest so the frame is complete.
    let mut cut = full[..full.len() - 3].to_vec();
    let len = (cut.len() - 4) as u16;
    cut[2..4].copy_from_slice(&len.to_be_bytes());
    let e = err(&cut);
    assert_eq!(e.context, "SET");
    assert!(
        matches!(
            e.kind,
            DecodeErrorKind::Truncated {
                field: "revision",
                needed: 8,
                remaining: 5
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.offset, 4 + 1 + 1 + 2 + 4 + 8);
    assert_eq!(
        e.to_string(),
        "cannot decode SET at byte 20: truncated in `revision`: 8 bytes needed, 5 remain"
    );
}

#[test]
fn incomplete_frame_and_bad_magic_are_reported() {
    let ping = encode(&Message::Ping).unwrap();
    let e = err(&ping[..3]);
    assert!(
        matches!(e.kind, DecodeErrorKind::IncompleteFrame { .. }),
        "{e}"
    );
    let e = err(&[0x54, 0x01, 0x00, 0x01, 0x41]);
    assert_eq!(e.kind, DecodeErrorKind::BadMagic(0x54));
    assert_eq!(e.offset, 0);
    let e = err(&[]);
    assert!(matches!(e.kind, DecodeErrorKind::IncompleteFrame { .. }));
}

#[test]
fn trailing_bytes_after_a_frame_are_not_read() {
    let mut bytes = encode(&Message::Ping).unwrap().to_vec();
    let n = bytes.len();
    bytes.extend_from_slice(&[1, 2, 3]);
    let frame = decode_frame(&bytes).unwrap();
    assert_eq!(frame.message, Message::Ping);
    assert_eq!(frame.len, n);
}

#[test]
fn unknown_types_and_tags_are_named() {
    let e = err(&[MAGIC, 1, 0, 1, 0x7f]);
    assert_eq!(e.kind, DecodeErrorKind::UnknownMessageType(0x7f));
    assert_eq!(e.offset, 4);
    // SET with value tag 0x0C (flags low nibble).
    let e = err(&[MAGIC, 1, 0, 5, 0x21, 0x0C, 0, 1, b'/']);
    assert_eq!(e.kind, DecodeErrorKind::UnknownValueTag(0x0C));
    assert_eq!(e.offset, 5, "the tag lives in the SET flags byte");
    // PUBLISH with an array element tagged 0xEE.
    let e = err(&[MAGIC, 1, 0, 10, 0x20, 0x20, 0, 1, b'/', 1, 0x0A, 0, 1, 0xEE]);
    assert_eq!(e.kind, DecodeErrorKind::UnknownValueTag(0xEE));
    assert_eq!(e.offset, 13);
    let e = err(&[MAGIC, 1, 0, 6, 0x20, 0x20, 0, 1, b'/', 7]);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::InvalidField {
            field: "value indicator",
            found: 7
        }
    ));
}

#[test]
fn invalid_utf8_is_reported() {
    let e = err(&[MAGIC, 1, 0, 5, 0x22, 0, 2, 0xff, 0xfe]);
    assert_eq!(e.kind, DecodeErrorKind::InvalidUtf8("address"));
    assert_eq!(e.offset, 7);
}

#[test]
fn counts_are_bounded_by_the_input() {
    // SNAPSHOT claiming 65535 params in a 3-byte payload: rejected before allocating.
    let e = err(&[MAGIC, 1, 0, 3, 0x23, 0xff, 0xff]);
    assert_eq!(
        e.kind,
        DecodeErrorKind::CountTooLarge {
            field: "params",
            count: 65535,
            remaining: 0
        }
    );
    // An array of 65535 elements in a payload with 2 bytes left.
    let e = err(&[MAGIC, 1, 0, 9, 0x21, 0x0A, 0, 1, b'/', 0xff, 0xff, 0, 0]);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::CountTooLarge { field: "array", .. }
    ));
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    // 30,000 nested one-element arrays inside a SET: far deeper than MAX_NESTING.
    let mut payload = vec![0x21, 0x0A, 0, 1, b'/'];
    for _ in 0..20_000 {
        payload.extend_from_slice(&[0, 1, 0x0A]);
    }
    payload.extend_from_slice(&[0, 0]);
    payload.truncate(MAX_PAYLOAD);
    let e = Message::decode(&payload).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::TooDeep(MAX_NESTING));

    // Nested bundles count too.
    let mut msg = Message::Ping;
    for _ in 0..MAX_NESTING + 1 {
        msg = Message::Bundle(Bundle {
            timestamp: None,
            messages: vec![msg],
        });
    }
    assert_eq!(encode(&msg).unwrap_err(), EncodeError::TooDeep(MAX_NESTING));
}

#[test]
fn encoder_refuses_what_does_not_fit() {
    let big = "x".repeat(70_000);
    let e = encode(&Message::Get(Get {
        address: big.into(),
    }))
    .unwrap_err();
    assert_eq!(
        e,
        EncodeError::StringTooLong {
            field: "address",
            len: 70_000
        }
    );
    let many = Value::Array(vec![Value::Null; 70_000]);
    let e = encode(&Message::Set(Set {
        address: "/a".into(),
        value: many,
        ..Default::default()
    }))
    .unwrap_err();
    assert_eq!(
        e,
        EncodeError::TooMany {
            field: "array",
            count: 70_000
        }
    );
    // Fits each field limit but not the frame: 40,000 + 40,000 bytes.
    let s = "y".repeat(40_000);
    let e = encode(&Message::Set(Set {
        address: s.clone().into(),
        value: Value::from(s),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(matches!(e, EncodeError::PayloadTooLarge(n) if n > MAX_PAYLOAD));

    // On error nothing is left in the output buffer.
    let mut out = vec![1, 2, 3];
    let bad = Message::Get(Get {
        address: "z".repeat(70_000).into(),
    });
    assert!(encode_into(&bad, FrameOptions::default(), &mut out).is_err());
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn largest_payload_round_trips() {
    // A SET whose payload is exactly 65,535 bytes.
    let overhead = 1 + 1 + 2 + 2 + 2; // type, flags, address len, "/x", string len
    let s = "v".repeat(MAX_PAYLOAD - overhead);
    let msg = Message::Set(Set {
        address: "/x".into(),
        value: Value::from(s),
        ..Default::default()
    });
    let bytes = encode(&msg).unwrap();
    assert_eq!(bytes.len(), 4 + MAX_PAYLOAD);
    assert_eq!(decode_frame(&bytes).unwrap().message, msg);
}

#[test]
fn narrow_tags_widen() {
    // PUBLISH with an array [i8 -1, i16 -2, i32 -3, f32 1.5] as the value.
    let payload = [
        0x20, 0x20, 0, 1, b'/', 1, 0x0A, 0, 4, 0x02, 0xff, 0x03, 0xff, 0xfe, 0x04, 0xff, 0xff,
        0xff, 0xfd, 0x06, 0x3f, 0xc0, 0, 0,
    ];
    let msg = Message::decode(&payload).unwrap();
    let Message::Publish(p) = msg else { panic!() };
    assert_eq!(
        p.payload,
        PublishPayload::Value(Value::Array(vec![
            Value::Int(-1),
            Value::Int(-2),
            Value::Int(-3),
            Value::Float(1.5)
        ]))
    );
}

#[test]
fn v4_set_ttl_and_trailing_bytes_are_tolerated() {
    // A v4 SET with TTL 30 s after the revision.
    let mut payload = vec![0x21, 0x80 | 0x10 | 0x07, 0, 2, b'/', b'a'];
    payload.extend_from_slice(&0.5f64.to_be_bytes());
    payload.extend_from_slice(&7u64.to_be_bytes());
    payload.extend_from_slice(&30u32.to_be_bytes());
    let Message::Set(set) = Message::decode(&payload).unwrap() else {
        panic!()
    };
    assert_eq!((set.revision, set.ttl), (Some(7), Some(30)));
    // Extra bytes after a GET are ignored.
    payload = vec![0x22, 0, 2, b'/', b'a', 9, 9, 9];
    assert_eq!(
        Message::decode(&payload).unwrap(),
        Message::Get(Get {
            address: "/a".into()
        })
    );
}

#[test]
fn publish_rate_is_read_only_from_four_trailing_bytes() {
    let mut payload = vec![0x20, 0x40, 0, 1, b'/', 0];
    let Message::Publish(p) = Message::decode(&payload).unwrap() else {
        panic!()
    };
    assert_eq!(p.rate, None);
    payload.extend_from_slice(&[0, 0, 0]);
    let Message::Publish(p) = Message::decode(&payload).unwrap() else {
        panic!()
    };
    assert_eq!(p.rate, None, "three bytes are not a rate");
    payload.push(60);
    let Message::Publish(p) = Message::decode(&payload).unwrap() else {
        panic!()
    };
    assert_eq!(p.rate, Some(60));
}

#[test]
fn encrypted_or_compressed_frames_are_refused() {
    let mut bytes = encode(&Message::Ping).unwrap().to_vec();
    bytes[1] |= 0x10;
    assert_eq!(
        err(&bytes).kind,
        DecodeErrorKind::UnsupportedFlags(bytes[1])
    );
}

#[test]
fn frame_timestamp_is_skipped_and_reported() {
    let opts = FrameOptions {
        qos: None,
        timestamp: Some(123),
    };
    let bytes = encode_with(&Message::Pong, opts).unwrap();
    assert_eq!(bytes[1], 0x21);
    let f = decode_frame(&bytes).unwrap();
    assert_eq!((f.header.timestamp, f.message), (Some(123), Message::Pong));
}

#[test]
fn maps_keep_their_order() {
    let v = Value::Map(vec![
        ("z".into(), Value::Int(1)),
        ("a".into(), Value::Int(2)),
        ("z".into(), Value::Int(3)),
    ]);
    let msg = Message::Set(Set {
        address: "/m".into(),
        value: v.clone(),
        ..Default::default()
    });
    let back = decode_frame(&encode(&msg).unwrap()).unwrap().message;
    assert_eq!(back, msg);
    assert_eq!(
        v.get("z"),
        Some(&Value::Int(3)),
        "last entry wins on lookup"
    );
}

proptest! {
    /// The standalone value codec round-trips and reports how many bytes it used.
    #[test]
    fn standalone_values_round_trip(v in common::value(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
        let mut buf = Vec::new();
        codec::binary::encode_value(&v, &mut buf).unwrap();
        let used = buf.len();
        buf.extend_from_slice(&tail);
        let (back, n) = codec::binary::decode_value(&buf).unwrap();
        prop_assert_eq!(back, v);
        prop_assert_eq!(n, used);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Snapshot chunks never exceed the limit, every param lands in exactly one chunk, in order.
    #[test]
    fn snapshot_writer_chunks_by_size(
        sizes in proptest::collection::vec(0usize..3000, 0..60),
        limit in 3100usize..20_000,
    ) {
        let params: Vec<ParamValue> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| ParamValue {
                address: format!("/p/{i}").into(),
                value: Value::from("x".repeat(*n)),
                revision: i as u64 + 1,
                writer: Some("550e8400-e29b-41d4-a716-446655440000".into()),
                timestamp: Some(7),
            })
            .collect();
        let mut w = codec::binary::SnapshotWriter::new(limit);
        for p in &params {
            w.push(p).unwrap();
        }
        let frames = w.finish(true);
        prop_assert!(!frames.is_empty());
        let mut all = Vec::new();
        for f in &frames {
            let d = decode_frame(f).unwrap();
            prop_assert_eq!(d.len, f.len());
            prop_assert!(d.header.payload_len as usize <= limit);
            let Message::Snapshot(s) = d.message else { panic!("not a snapshot") };
            prop_assert!(!s.params.is_empty() || params.is_empty());
            all.extend(s.params);
        }
        prop_assert_eq!(all, params);
    }

    /// RESULT chunks never exceed the limit; taking sealed frames early changes nothing; every
    /// signal lands in exactly one chunk, in order, without its meta.
    #[test]
    fn result_writer_chunks_by_size(
        sizes in proptest::collection::vec(0usize..3000, 0..60),
        limit in 3100usize..20_000,
        take_every in 1usize..10,
    ) {
        let signals: Vec<SignalDef> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| SignalDef {
                address: format!("/s/{i}/{}", "x".repeat(*n)).into(),
                signal: SignalType::Param,
                datatype: Some("f64".into()),
                access: (i % 2 == 0).then(|| "rw".into()),
                meta: None,
            })
            .collect();
        let mut w = codec::binary::ResultWriter::new(limit);
        let mut frames = Vec::new();
        for (i, s) in signals.iter().enumerate() {
            w.push(s).unwrap();
            if i % take_every == 0 {
                frames.extend(w.take_sealed());
            }
        }
        frames.extend(w.finish(true));
        prop_assert!(!frames.is_empty());
        let mut all = Vec::new();
        for f in &frames {
            let d = decode_frame(f).unwrap();
            prop_assert!(d.header.payload_len as usize <= limit);
            let Message::Result(r) = d.message else { panic!("not a result") };
            prop_assert!(!r.signals.is_empty() || signals.is_empty());
            all.extend(r.signals);
        }
        prop_assert_eq!(all, signals);
    }
}

#[test]
fn snapshot_entry_len_is_what_the_snapshot_takes() {
    let values = [
        Value::Null,
        Value::Int(7),
        Value::from("hello"),
        Value::Bytes(vec![1u8; 300].into()),
        Value::Array(vec![Value::Float(1.0), Value::from("x")]),
        Value::Map(vec![("k".into(), Value::Bool(true))]),
    ];
    for value in values {
        for (writer, timestamp) in [(None, None), (Some("s-1"), Some(9)), (Some("w"), None)] {
            let p = ParamValue {
                address: "/a/b".into(),
                value: value.clone(),
                revision: 3,
                writer: writer.map(Into::into),
                timestamp,
            };
            let frame = encode(&Message::Snapshot(Snapshot { params: vec![p] })).unwrap();
            let payload = frame.len() - 4;
            let n = codec::binary::snapshot_entry_len("/a/b", &value, writer, timestamp.is_some());
            assert_eq!(
                n.map(|n| n + codec::binary::SNAPSHOT_HEADER_LEN),
                Some(payload)
            );
        }
    }
}

#[test]
fn set_address_is_a_slice_of_a_set_frame_only() {
    let set = encode(&Message::Set(Set {
        address: "/lights/1".into(),
        value: Value::Float(0.5),
        revision: Some(4),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(codec::set_address(&set).as_deref(), Some(&b"/lights/1"[..]));
    let with_ts = encode_with(
        &Message::Set(Set {
            address: "/x".into(),
            value: Value::Int(1),
            ..Default::default()
        }),
        FrameOptions {
            qos: None,
            timestamp: Some(5),
        },
    )
    .unwrap();
    assert_eq!(codec::set_address(&with_ts).as_deref(), Some(&b"/x"[..]));
    let publish = encode(&Message::Publish(Publish {
        address: "/lights/1".into(),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(codec::set_address(&publish), None);
    assert_eq!(codec::set_address(&set.slice(..6)), None);
}

#[test]
fn snapshot_writer_refuses_a_param_that_cannot_fit() {
    let mut w = codec::binary::SnapshotWriter::new(100);
    let p = ParamValue {
        address: "/big".into(),
        value: Value::from("x".repeat(200)),
        revision: 1,
        writer: None,
        timestamp: None,
    };
    assert!(matches!(w.push(&p), Err(EncodeError::PayloadTooLarge(_))));
    assert_eq!(
        w.finish(true),
        vec![encode(&Message::Snapshot(Snapshot { params: vec![] })).unwrap()]
    );
}

#[test]
fn payload_len_is_the_encoded_payload_length() {
    let msgs = [
        Message::Set(Set {
            address: "/a/b".into(),
            value: Value::Float(1.5),
            revision: Some(3),
            ..Default::default()
        }),
        Message::Publish(Publish {
            address: "/e".into(),
            signal: SignalType::Event,
            payload: PublishPayload::Value(Value::from("hello")),
            ..Default::default()
        }),
        Message::Bundle(Bundle {
            timestamp: Some(5),
            messages: vec![Message::Set(Set {
                address: "/x".into(),
                value: Value::Int(1),
                ..Default::default()
            })],
        }),
        Message::Subscribe(Subscribe {
            id: 1,
            pattern: "/a/**".into(),
            ..Default::default()
        }),
    ];
    for m in &msgs {
        let frame = codec::encode(m).unwrap();
        assert_eq!(codec::payload_len(m).unwrap(), frame.len() - 4, "{m:?}");
    }
}

/// REPLAY (v4, 0x24) as the v4 encoder lays it out: flags (0x80 from, 0x40 to, 0x20 limit),
/// the pattern, the present fields in that order, then the type mask.
#[test]
fn replay_layout() {
    let m = Message::Replay(Replay {
        pattern: "/a/**".into(),
        from: Some(1),
        to: None,
        limit: Some(7),
        types: SignalTypes::of(&[SignalType::Param, SignalType::Event]),
    });
    let mut payload = Vec::new();
    m.encode_payload(&mut payload).unwrap();
    let mut want = vec![0x24, 0xA0, 0x00, 0x05];
    want.extend_from_slice(b"/a/**");
    want.extend_from_slice(&1u64.to_be_bytes());
    want.extend_from_slice(&7u32.to_be_bytes());
    want.push(0x03);
    assert_eq!(payload, want);
    assert_eq!(Message::decode(&payload).unwrap(), m);
    // All types and no options: mask 0xFF, flags 0.
    let m = Message::Replay(Replay {
        pattern: "/x".into(),
        ..Default::default()
    });
    payload.clear();
    m.encode_payload(&mut payload).unwrap();
    assert_eq!(payload, [0x24, 0x00, 0x00, 0x02, b'/', b'x', 0xFF]);
}
