//! The zero-copy view decoder agrees with the owned decoder: same messages, same errors, on
//! valid, corrupted and arbitrary input.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use bytes::Bytes;
use clasp_proto::codec::view::{MessageView, PayloadRef};
use clasp_proto::*;
use proptest::prelude::*;

/// Decodes `bytes` both ways and checks that they agree.
fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let buf = Bytes::copy_from_slice(bytes);
    let owned = decode_frame_bytes(&buf);
    let view = decode_frame_view(&buf);
    match (owned, view) {
        (Ok(o), Ok(v)) => {
            prop_assert_eq!(o.header, v.header);
            prop_assert_eq!(o.len, v.len);
            let from_view = v.message.into_message();
            // NaN never equals itself: compare encodings when the messages differ.
            if from_view != o.message {
                prop_assert_eq!(
                    encode(&from_view).map_err(|e| e.to_string()),
                    encode(&o.message).map_err(|e| e.to_string())
                );
            }
        }
        (Err(o), Err(v)) => prop_assert_eq!(o, v),
        (o, v) => prop_assert!(
            false,
            "decoders disagree on {:02x?}: owned {:?}, view {:?}",
            bytes,
            o.map(|f| f.message),
            v.map(|f| f.message)
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Every message type, with any frame options, decodes to the same message both ways.
    #[test]
    fn view_of_an_encoded_message_is_the_message(
        msg in common::message(),
        ts in proptest::option::of(any::<u64>()),
    ) {
        let bytes = encode_with(&msg, FrameOptions { qos: None, timestamp: ts }).unwrap();
        let view = decode_frame_view(&bytes).unwrap();
        prop_assert_eq!(view.len, bytes.len());
        prop_assert_eq!(view.message.code(), msg.code());
        prop_assert_eq!(view.message.into_message(), msg);
    }

    /// Corrupted frames give the same message or the same error both ways.
    #[test]
    fn view_and_owned_agree_on_corrupted_frames(bytes in common::corrupted_frame()) {
        agree(&bytes)?;
    }

    /// Arbitrary bytes behind a valid header for each hot-path type agree both ways.
    #[test]
    fn view_and_owned_agree_on_arbitrary_payloads(
        code in prop_oneof![Just(0x20u8), Just(0x21), Just(0x23), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = vec![frame::MAGIC, frame::VERSION_BINARY, 0, 0, code];
        bytes.extend_from_slice(&body);
        let len = (bytes.len() - 4) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        agree(&bytes)?;
        agree(&bytes[..bytes.len() / 2])?;
    }
}

proptest! {
    /// `encode_set` from borrowed parts gives the bytes of encoding the owned SET.
    #[test]
    fn encode_set_matches_the_owned_encoder(
        address in "/[a-z]{1,8}(/[a-z0-9]{1,4}){0,3}",
        value in common::value(),
        revision in proptest::option::of(any::<u64>()),
        lock in any::<bool>(),
        unlock in any::<bool>(),
        ttl in proptest::option::of(any::<u32>()),
        ts in proptest::option::of(any::<u64>()),
    ) {
        let set = Set { address: address.as_str().into(), value, revision, lock, unlock, ttl };
        let opts = FrameOptions { qos: None, timestamp: ts };
        prop_assert_eq!(
            encode_set(&SetRef::from(&set), opts).unwrap(),
            encode_with(&Message::Set(set), opts).unwrap()
        );
    }
}

#[test]
fn shared_strings_point_into_the_frame_or_are_copied() {
    let bytes = encode(&Message::Get(Get {
        address: "/a/b".into(),
    }))
    .unwrap();
    let inside = std::str::from_utf8(&bytes[bytes.len() - 4..]).unwrap();
    let s = codec::view::share(&bytes, inside);
    assert_eq!(&*s, "/a/b");
    assert_eq!(s.as_ptr(), inside.as_ptr());
    let outside = codec::view::share(&bytes, "/elsewhere");
    assert_eq!(&*outside, "/elsewhere");
}

#[test]
fn set_view_borrows_from_the_frame() {
    let msg = Message::Set(Set {
        address: "/mixer/ch/1/name".into(),
        value: Value::String("kick".into()),
        revision: Some(7),
        lock: true,
        ..Default::default()
    });
    let bytes = encode(&msg).unwrap();
    let frame = decode_frame_view(&bytes).unwrap();
    let MessageView::Set(s) = frame.message else {
        panic!("not a SET view: {:?}", frame.message);
    };
    let range = bytes.as_ptr_range();
    assert!(
        range.contains(&s.address.as_ptr()),
        "address is not borrowed"
    );
    assert_eq!(s.address, "/mixer/ch/1/name");
    assert_eq!(s.value, ValueRef::String("kick"));
    assert_eq!(
        (s.revision, s.lock, s.unlock, s.ttl),
        (Some(7), true, false, None)
    );
}

#[test]
fn nested_values_and_snapshots_read_lazily() {
    let value = Value::Map(vec![
        ("a".into(), Value::Array(vec![Value::Int(1), Value::Null])),
        ("b".into(), Value::Bytes(vec![1, 2, 3].into())),
        ("a".into(), Value::Float(2.5)),
    ]);
    let msg = Message::Publish(Publish {
        address: "/cue".into(),
        payload: PublishPayload::Value(value.clone()),
        ..Default::default()
    });
    let bytes = encode(&msg).unwrap();
    let frame = decode_frame_view(&bytes).unwrap();
    let MessageView::Publish(p) = frame.message else {
        panic!("not a PUBLISH view");
    };
    let Some(ValueRef::Map(m)) = p.value() else {
        panic!("not a map");
    };
    assert_eq!(m.len(), 3);
    let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a", "b", "a"]);
    // The last entry of a repeated key wins, as in Value::get.
    assert_eq!(m.get("a"), Some(ValueRef::Float(2.5)));
    let Some((_, ValueRef::Array(a))) = m.iter().next() else {
        panic!("first entry is not an array");
    };
    assert_eq!(
        a.iter().collect::<Vec<_>>(),
        [ValueRef::Int(1), ValueRef::Null]
    );
    assert_eq!(ValueRef::Map(m).to_value(), value);

    let samples = Message::Publish(Publish {
        address: "/s".into(),
        signal: SignalType::Stream,
        payload: PublishPayload::Samples(vec![0.5, -1.0]),
        ..Default::default()
    });
    let bytes = encode(&samples).unwrap();
    let MessageView::Publish(p) = decode_frame_view(&bytes).unwrap().message else {
        panic!("not a PUBLISH view");
    };
    let PayloadRef::Samples(s) = p.payload else {
        panic!("no samples");
    };
    assert_eq!(s.iter().collect::<Vec<_>>(), [0.5, -1.0]);

    let params: Vec<ParamValue> = (0..50)
        .map(|i| ParamValue {
            address: format!("/p/{i}").into(),
            value: Value::Int(i),
            revision: i as u64 + 1,
            writer: (i % 2 == 0).then(|| "w".into()),
            timestamp: (i % 3 == 0).then_some(i as u64),
        })
        .collect();
    let bytes = encode(&Message::Snapshot(Snapshot {
        params: params.clone(),
    }))
    .unwrap();
    let MessageView::Snapshot(s) = decode_frame_view(&bytes).unwrap().message else {
        panic!("not a SNAPSHOT view");
    };
    assert_eq!(s.len(), 50);
    let back: Vec<ParamValue> = s.iter().map(|p| p.to_param()).collect();
    assert_eq!(back, params);
}

#[test]
fn other_messages_and_messagepack_come_back_owned() {
    let bytes = encode(&Message::Ping).unwrap();
    assert_eq!(
        decode_frame_view(&bytes).unwrap().message,
        MessageView::Other(Box::new(Message::Ping))
    );
    let q = Message::Query(Query {
        pattern: "/a/**".into(),
    });
    let mut mp = vec![frame::MAGIC, 0, 0, 0];
    mp.extend_from_slice(&codec::msgpack::encode(&q).unwrap());
    let len = (mp.len() - 4) as u16;
    mp[2..4].copy_from_slice(&len.to_be_bytes());
    let mp = Bytes::from(mp);
    assert_eq!(decode_frame_view(&mp).unwrap().message.into_message(), q);
}
