//! The legacy MessagePack codec: Python vectors, round trips, robustness and error messages.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

mod common;

use clasp_proto::codec::msgpack;
use clasp_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wire-v3.json");

/// The payload (frame minus its 4-byte header) of a named vector.
fn vector_payload(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(VECTORS).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let v = json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    assert_eq!(v["frame"]["payload_encoding"], "msgpack");
    let frame = hex::decode(v["hex"].as_str().unwrap()).unwrap();
    assert_eq!(frame[1] & 0x20, 0, "vector {name} has a frame timestamp");
    frame[4..].to_vec()
}

fn set(address: &str, value: f64) -> Message {
    Message::Set(Set {
        address: address.into(),
        value: Value::Float(value),
        ..Set::default()
    })
}

/// Appends a MessagePack string.
fn s(out: &mut Vec<u8>, text: &str) {
    rmp::encode::write_str(out, text).unwrap();
}

/// A map header followed by `"type": name`.
fn start(out: &mut Vec<u8>, entries: u32, name: &str) {
    rmp::encode::write_map_len(out, entries).unwrap();
    s(out, "type");
    s(out, name);
}

fn decode_err(payload: &[u8]) -> DecodeError {
    let err = msgpack::decode(payload).unwrap_err();
    assert_eq!(err.context, "MessagePack");
    err
}

fn msgpack_text(err: &DecodeError) -> &str {
    match &err.kind {
        DecodeErrorKind::MsgPack(text) => text,
        other => panic!("expected a MsgPack error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Python vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn python_bundle_decodes_and_reencodes_exactly() {
    let payload = vector_payload("bundle_py");
    let expected = Message::Bundle(Bundle {
        timestamp: Some(1_000_000),
        messages: vec![set("/light/1", 1.0), set("/light/2", 0.0)],
    });
    assert_eq!(msgpack::decode(&payload).unwrap(), expected);
    assert_eq!(Message::decode(&payload).unwrap(), expected);
    assert_eq!(msgpack::encode(&expected).unwrap(), payload);
}

#[test]
fn python_bundle_without_timestamp_decodes_and_reencodes_exactly() {
    let payload = vector_payload("bundle_nots_py");
    let expected = Message::Bundle(Bundle {
        timestamp: None,
        messages: vec![set("/a", 1.0)],
    });
    assert_eq!(msgpack::decode(&payload).unwrap(), expected);
    assert_eq!(msgpack::encode(&expected).unwrap(), payload);
}

#[test]
fn python_query_decodes_and_reencodes_exactly() {
    let payload = vector_payload("query_py");
    let expected = Message::Query(Query {
        pattern: "/app/**".into(),
    });
    assert_eq!(msgpack::decode(&payload).unwrap(), expected);
    assert_eq!(msgpack::encode(&expected).unwrap(), payload);
}

#[test]
fn python_emit_in_bundle_is_an_event_with_its_payload() {
    let mut p = Vec::new();
    start(&mut p, 3, "BUNDLE");
    s(&mut p, "timestamp");
    rmp::encode::write_nil(&mut p).unwrap();
    s(&mut p, "messages");
    rmp::encode::write_array_len(&mut p, 1).unwrap();
    start(&mut p, 4, "PUBLISH");
    s(&mut p, "address");
    s(&mut p, "/cue/go");
    s(&mut p, "signal");
    s(&mut p, "event");
    s(&mut p, "payload");
    rmp::encode::write_map_len(&mut p, 2).unwrap();
    s(&mut p, "scene");
    rmp::encode::write_uint(&mut p, 3).unwrap();
    s(&mut p, "fade");
    rmp::encode::write_f64(&mut p, 0.5).unwrap();

    let Message::Bundle(bundle) = msgpack::decode(&p).unwrap() else {
        panic!("not a bundle");
    };
    assert_eq!(bundle.timestamp, None);
    assert_eq!(
        bundle.messages,
        vec![Message::Publish(Publish {
            address: "/cue/go".into(),
            signal: SignalType::Event,
            phase: GesturePhase::Start,
            payload: PublishPayload::Value(Value::Map(vec![
                ("scene".into(), Value::Int(3)),
                ("fade".into(), Value::Float(0.5)),
            ])),
            ..Publish::default()
        })]
    );
}

#[test]
fn publish_fields_follow_the_documented_rules() {
    // Keys in any order, `value` beats `payload`, unknown signal → event, timeline dropped,
    // last duplicate wins, unknown keys ignored.
    let mut p = Vec::new();
    start(&mut p, 8, "PUBLISH");
    s(&mut p, "payload");
    s(&mut p, "ignored");
    s(&mut p, "signal");
    s(&mut p, "sparkle");
    s(&mut p, "timeline");
    rmp::encode::write_map_len(&mut p, 1).unwrap();
    s(&mut p, "keyframes");
    rmp::encode::write_array_len(&mut p, 0).unwrap();
    s(&mut p, "value");
    rmp::encode::write_sint(&mut p, -7).unwrap();
    s(&mut p, "address");
    s(&mut p, "/old");
    s(&mut p, "address");
    s(&mut p, "/new");
    s(&mut p, "extra");
    rmp::encode::write_bin(&mut p, &[1, 2, 3]).unwrap();
    assert_eq!(
        msgpack::decode(&p).unwrap(),
        Message::Publish(Publish {
            address: "/new".into(),
            payload: PublishPayload::Value(Value::Int(-7)),
            ..Publish::default()
        })
    );
}

#[test]
fn all_seventeen_types_decode_from_minimal_maps() {
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("HELLO", vec![("name", "x")]),
        ("WELCOME", vec![("session", "s"), ("name", "r")]),
        ("ANNOUNCE", vec![("namespace", "/n")]),
        ("SUBSCRIBE", vec![("pattern", "/p/**")]),
        ("UNSUBSCRIBE", vec![]),
        ("PUBLISH", vec![("address", "/a")]),
        ("SET", vec![("address", "/a")]),
        ("GET", vec![("address", "/a")]),
        ("SNAPSHOT", vec![]),
        ("BUNDLE", vec![]),
        ("SYNC", vec![]),
        ("PING", vec![]),
        ("PONG", vec![]),
        ("ACK", vec![]),
        ("ERROR", vec![("message", "m")]),
        ("QUERY", vec![("pattern", "/q")]),
        ("RESULT", vec![]),
    ];
    for (name, strings) in cases {
        // Integer fields some types require.
        let ints: &[&str] = match name {
            "HELLO" => &["version"],
            "WELCOME" => &["version", "time"],
            "SUBSCRIBE" | "UNSUBSCRIBE" => &["id"],
            "SYNC" => &["t1"],
            "ERROR" => &["code"],
            _ => &[],
        };
        let value = usize::from(name == "SET");
        let mut p = Vec::new();
        start(
            &mut p,
            (1 + strings.len() + ints.len() + value) as u32,
            name,
        );
        for (k, v) in &strings {
            s(&mut p, k);
            s(&mut p, v);
        }
        for k in ints {
            s(&mut p, k);
            rmp::encode::write_uint(&mut p, 1).unwrap();
        }
        if value == 1 {
            s(&mut p, "value");
            rmp::encode::write_nil(&mut p).unwrap();
        }
        let msg = msgpack::decode(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(msg.name(), name);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

/// The form of `m` the MessagePack encoding can carry: it cannot tell an explicit null publish
/// payload or meta default from an absent one.
fn msgpack_form(m: Message) -> Message {
    match m {
        Message::Publish(mut p) => {
            if p.payload == PublishPayload::Value(Value::Null) {
                p.payload = PublishPayload::None;
            }
            Message::Publish(p)
        }
        Message::Announce(mut a) => {
            for s in &mut a.signals {
                if let Some(meta) = &mut s.meta
                    && meta.default == Some(Value::Null)
                {
                    meta.default = None;
                }
            }
            Message::Announce(a)
        }
        Message::Bundle(mut b) => {
            b.messages = b.messages.into_iter().map(msgpack_form).collect();
            Message::Bundle(b)
        }
        other => other,
    }
}

fn message() -> impl Strategy<Value = Message> {
    common::message().prop_map(msgpack_form)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// decode(encode(m)) == m for every message type.
    #[test]
    fn encode_decode_is_identity(msg in message()) {
        let bytes = msgpack::encode(&msg).unwrap();
        prop_assert!(clasp_proto::codec::is_msgpack(bytes[0]));
        prop_assert_eq!(msgpack::decode(&bytes).unwrap(), msg.clone());
        prop_assert_eq!(Message::decode(&bytes).unwrap(), msg);
    }

    /// Arbitrary bytes never panic; anything that decodes re-encodes to a stable form.
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..300)) {
        if let Ok(msg) = msgpack::decode(&data) {
            check_stable(&msg);
        }
    }

    /// Arbitrary bytes behind a map header and a valid `type` reach the field decoders.
    #[test]
    fn arbitrary_fields_never_panic(
        ty in proptest::sample::select(vec![
            "HELLO", "WELCOME", "ANNOUNCE", "SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "SET", "GET",
            "SNAPSHOT", "BUNDLE", "SYNC", "PING", "PONG", "ACK", "ERROR", "QUERY", "RESULT",
        ]),
        entries in 1u8..6,
        data in vec(any::<u8>(), 0..200),
    ) {
        let mut p = Vec::new();
        start(&mut p, u32::from(entries), ty);
        p.extend_from_slice(&data);
        if let Ok(msg) = msgpack::decode(&p) {
            check_stable(&msg);
        }
    }

    /// Valid encodings with bytes flipped, inserted or deleted never panic.
    #[test]
    fn mutated_encodings_never_panic(
        msg in message(),
        edits in vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = msgpack::encode(&msg).unwrap();
        for (op, at, byte) in edits {
            match op {
                0 if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] ^= byte | 1;
                }
                1 => {
                    let i = at.index(bytes.len() + 1);
                    bytes.insert(i, byte);
                }
                _ if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes.remove(i);
                }
                _ => {}
            }
        }
        if let Ok(msg) = msgpack::decode(&bytes) {
            check_stable(&msg);
        }
    }
}

/// A decoded message re-encodes, and the re-encoding decodes to the same bytes again
/// (compared as bytes, so NaN floats from random input do not matter).
fn check_stable(msg: &Message) {
    let once = msgpack::encode(msg).unwrap();
    let again = msgpack::encode(&msgpack::decode(&once).unwrap()).unwrap();
    assert_eq!(once, again);
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// A SET whose value is `levels` nested one-element arrays around a nil.
fn nested_set(levels: usize) -> Vec<u8> {
    let mut p = Vec::new();
    start(&mut p, 3, "SET");
    s(&mut p, "address");
    s(&mut p, "/a");
    s(&mut p, "value");
    p.extend(std::iter::repeat_n(0x91, levels));
    p.push(0xc0);
    p
}

#[test]
fn deep_value_nesting_is_too_deep_not_a_stack_overflow() {
    let err = decode_err(&nested_set(10_000));
    assert_eq!(err.kind, DecodeErrorKind::TooDeep(MAX_NESTING));
    // The array that goes one level too deep.
    assert_eq!(err.offset, nested_set(0).len() - 1 + MAX_NESTING);
    // Bare nested arrays are not a message at all.
    let err = decode_err(&[0x91; 10_000]);
    assert_eq!(err.offset, 0);
    assert!(msgpack_text(&err).contains("map"));
}

#[test]
fn nesting_limit_matches_the_binary_codec() {
    let ok = msgpack::decode(&nested_set(MAX_NESTING)).unwrap();
    assert!(matches!(
        decode_err(&nested_set(MAX_NESTING + 1)).kind,
        DecodeErrorKind::TooDeep(_)
    ));
    // What decodes re-encodes in both codecs; one level more fails in both.
    msgpack::encode(&ok).unwrap();
    encode(&ok).unwrap();
    let Message::Set(mut deeper) = ok else {
        panic!("not a set")
    };
    deeper.value = Value::Array(vec![deeper.value]);
    let deeper = Message::Set(deeper);
    assert_eq!(
        msgpack::encode(&deeper).unwrap_err(),
        EncodeError::TooDeep(MAX_NESTING)
    );
    assert!(encode(&deeper).is_err());
}

#[test]
fn deep_value_under_an_unknown_key_is_skipped_without_recursion() {
    let mut p = Vec::new();
    start(&mut p, 3, "QUERY");
    s(&mut p, "junk");
    p.extend(std::iter::repeat_n(0x91, 100_000));
    p.push(0xc0);
    s(&mut p, "pattern");
    s(&mut p, "/x");
    assert_eq!(
        msgpack::decode(&p).unwrap(),
        Message::Query(Query {
            pattern: "/x".into()
        })
    );
}

#[test]
fn nested_bundles_count_towards_the_limit() {
    fn bundles(levels: usize) -> Vec<u8> {
        let mut p = Vec::new();
        for _ in 0..levels {
            start(&mut p, 2, "BUNDLE");
            s(&mut p, "messages");
            p.push(0x91);
        }
        start(&mut p, 1, "PING");
        p
    }
    let mut msg = msgpack::decode(&bundles(MAX_NESTING)).unwrap();
    for _ in 0..MAX_NESTING {
        let Message::Bundle(b) = msg else {
            panic!("not a bundle")
        };
        msg = b.messages.into_iter().next().unwrap();
    }
    assert_eq!(msg, Message::Ping);
    let err = decode_err(&bundles(MAX_NESTING + 1));
    assert_eq!(err.kind, DecodeErrorKind::TooDeep(MAX_NESTING));
    let err = decode_err(&bundles(5_000));
    assert_eq!(err.kind, DecodeErrorKind::TooDeep(MAX_NESTING));
}

#[test]
fn huge_counts_fail_fast_without_allocating() {
    let t = Instant::now();
    // A map32 claiming 4 billion entries in 10 bytes.
    let err = decode_err(&[0xdf, 0xff, 0xff, 0xff, 0xf0, 0xa4, b't', b'y', b'p', b'e']);
    assert!(matches!(
        err.kind,
        DecodeErrorKind::CountTooLarge {
            count: 0xffff_fff0,
            ..
        }
    ));
    assert_eq!(err.offset, 0);
    // Huge lengths inside a valid message: counts are refused at their marker, strings and
    // binaries where their data should start.
    let marker = nested_set(0).len() - 1;
    for (tail, offset) in [
        (&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0][..], marker),
        (&[0xdf, 0x7f, 0xff, 0xff, 0xff, 0xc0, 0xc0][..], marker),
        (&[0xdb, 0xff, 0xff, 0xff, 0xff, b'x'][..], marker + 5),
        (&[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00][..], marker + 5),
    ] {
        let mut p = nested_set(0);
        p.pop();
        p.extend_from_slice(tail);
        let err = decode_err(&p);
        assert!(
            matches!(
                err.kind,
                DecodeErrorKind::CountTooLarge { .. } | DecodeErrorKind::Truncated { .. }
            ),
            "{err}"
        );
        assert_eq!(err.offset, offset, "{err}");
    }
    assert!(t.elapsed() < Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn set_without_address_names_the_field_and_the_type() {
    let mut p = Vec::new();
    start(&mut p, 2, "SET");
    s(&mut p, "value");
    rmp::encode::write_f64(&mut p, 1.0).unwrap();
    let err = decode_err(&p);
    let text = msgpack_text(&err);
    assert!(text.contains("SET") && text.contains("`address`"), "{text}");
    assert_eq!(err.offset, 0);
}

#[test]
fn wrong_field_type_is_described() {
    let mut p = Vec::new();
    start(&mut p, 3, "SET");
    s(&mut p, "value");
    rmp::encode::write_nil(&mut p).unwrap();
    let at = p.len() + "address".len() + 1;
    s(&mut p, "address");
    rmp::encode::write_uint(&mut p, 5).unwrap();
    let err = decode_err(&p);
    assert_eq!(
        msgpack_text(&err),
        "field `address` of SET: expected string, found integer"
    );
    assert_eq!(err.offset, at);
}

#[test]
fn unknown_type_is_named() {
    let mut p = Vec::new();
    start(&mut p, 1, "FROBNICATE");
    let err = decode_err(&p);
    let text = msgpack_text(&err);
    assert!(
        text.contains("unknown message type") && text.contains("FROBNICATE"),
        "{text}"
    );
    assert_eq!(err.offset, 6);

    let mut p = Vec::new();
    rmp::encode::write_map_len(&mut p, 1).unwrap();
    s(&mut p, "address");
    s(&mut p, "/a");
    assert!(msgpack_text(&decode_err(&p)).contains("`type`"));
}

#[test]
fn non_map_payload_is_rejected() {
    for payload in [
        &[0x92, 0x01, 0x02][..],
        &[0xa3, b'S', b'E', b'T'],
        &[0x05],
        &[0xc0],
    ] {
        let err = decode_err(payload);
        assert_eq!(err.offset, 0);
        assert!(
            msgpack_text(&err).contains("expected a MessagePack map"),
            "{err}"
        );
    }
    assert!(matches!(
        decode_err(&[]).kind,
        DecodeErrorKind::Truncated { .. }
    ));
}

#[test]
fn integers_are_range_checked() {
    let mut p = Vec::new();
    start(&mut p, 2, "UNSUBSCRIBE");
    s(&mut p, "id");
    rmp::encode::write_uint(&mut p, 1 << 32).unwrap();
    let text = msgpack_text(&decode_err(&p)).to_owned();
    assert!(
        text.contains("4294967296") && text.contains("u32"),
        "{text}"
    );

    let mut p = Vec::new();
    start(&mut p, 2, "UNSUBSCRIBE");
    s(&mut p, "id");
    rmp::encode::write_sint(&mut p, -1).unwrap();
    assert!(msgpack_text(&decode_err(&p)).contains("out of range"));

    let mut p = Vec::new();
    start(&mut p, 4, "HELLO");
    s(&mut p, "name");
    s(&mut p, "n");
    s(&mut p, "version");
    rmp::encode::write_uint(&mut p, 256).unwrap();
    s(&mut p, "features");
    rmp::encode::write_array_len(&mut p, 0).unwrap();
    assert!(msgpack_text(&decode_err(&p)).contains("u8"));

    // An unsigned 64-bit value above i64::MAX is not a Value::Int.
    let mut p = nested_set(0);
    p.pop();
    rmp::encode::write_u64(&mut p, u64::MAX).unwrap();
    assert!(msgpack_text(&decode_err(&p)).contains("18446744073709551615"));
}

#[test]
fn ext_types_and_bad_utf8_are_rejected() {
    let mut p = nested_set(0);
    p.pop();
    p.extend_from_slice(&[0xd4, 0x01, 0x00]);
    let err = decode_err(&p);
    assert!(msgpack_text(&err).contains("extension"), "{err}");
    assert_eq!(err.offset, nested_set(0).len() - 1);

    let mut p = Vec::new();
    start(&mut p, 2, "GET");
    s(&mut p, "address");
    p.extend_from_slice(&[0xa2, 0xff, 0xfe]);
    assert!(matches!(
        decode_err(&p).kind,
        DecodeErrorKind::InvalidUtf8(_)
    ));
}

#[test]
fn truncated_payload_reports_where() {
    let payload = vector_payload("bundle_py");
    for cut in 1..payload.len() {
        let err = decode_err(&payload[..cut]);
        assert!(err.offset <= cut, "cut {cut}: {err}");
    }
}
