//! Every frame in `tests/data/wire-v3.json` (a copy of the spec's `vectors/wire-v3.json`: bytes
//! from the official encoders, crates.io clasp-core 3.3.0, npm @clasp-to/core 3.3.2 and PyPI
//! clasp-to 3.3.0): decoding
//! gives the listed message, and for binary payloads our encoder reproduces the exact bytes with
//! the listed frame flags. The recorded reference-router transcript frames decode as recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use clasp_proto::*;
use serde_json::Value as Json;

fn vectors() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wire-v3.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn s(j: &Json) -> Str {
    j.as_str().expect("string").into()
}

fn opt_s(j: &Json, k: &str) -> Option<Str> {
    j.get(k).filter(|v| !v.is_null()).map(s)
}

fn opt_u64(j: &Json, k: &str) -> Option<u64> {
    j.get(k)
        .filter(|v| !v.is_null())
        .map(|v| v.as_u64().unwrap())
}

fn opt_u32(j: &Json, k: &str) -> Option<u32> {
    opt_u64(j, k).map(|v| u32::try_from(v).unwrap())
}

fn flag(j: &Json, k: &str) -> bool {
    j.get(k).and_then(Json::as_bool).unwrap_or(false)
}

fn value(j: &Json) -> Value {
    let (kind, v) = j.as_object().unwrap().iter().next().unwrap();
    match kind.as_str() {
        "null" => Value::Null,
        "bool" => Value::Bool(v.as_bool().unwrap()),
        "i8" | "i16" | "i32" | "i64" => Value::Int(v.as_i64().unwrap()),
        "f32" | "f64" => Value::Float(v.as_f64().unwrap()),
        "str" => Value::String(s(v)),
        "bytes" => Value::Bytes(hex::decode(v.as_str().unwrap()).unwrap().into()),
        "array" => Value::Array(v.as_array().unwrap().iter().map(value).collect()),
        "map" => Value::Map(
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str().into(), value(v)))
                .collect(),
        ),
        other => panic!("unknown value form {other}"),
    }
}

fn signal(j: &Json) -> SignalType {
    SignalType::from_name(j.as_str().unwrap()).unwrap()
}

fn features(j: &Json) -> Features {
    Features::from_names(j.as_array().unwrap().iter().map(|f| f.as_str().unwrap()))
}

fn signal_def(j: &Json) -> SignalDef {
    SignalDef {
        address: s(&j["address"]),
        signal: signal(&j["type"]),
        datatype: opt_s(j, "datatype"),
        access: opt_s(j, "access"),
        meta: j.get("meta").map(|m| SignalMeta {
            unit: opt_s(m, "unit"),
            range: m.get("range").map(|r| {
                let r = r.as_array().unwrap();
                (r[0].as_f64().unwrap(), r[1].as_f64().unwrap())
            }),
            default: m.get("default").map(value),
            description: opt_s(m, "description"),
        }),
    }
}

fn signal_defs(j: &Json) -> Vec<SignalDef> {
    j.as_array().unwrap().iter().map(signal_def).collect()
}

/// The message a vector's JSON describes.
fn message(j: &Json) -> Message {
    match j["type"].as_str().unwrap() {
        "HELLO" => Message::Hello(Hello {
            version: j["version"].as_u64().unwrap() as u8,
            features: features(&j["features"]),
            name: s(&j["name"]),
            token: opt_s(j, "token"),
        }),
        "WELCOME" => Message::Welcome(Welcome {
            version: j["version"].as_u64().unwrap() as u8,
            features: features(&j["features"]),
            time: j["time"].as_u64().unwrap(),
            session: s(&j["session"]),
            name: s(&j["name"]),
            token: opt_s(j, "token"),
        }),
        "ANNOUNCE" => Message::Announce(Announce {
            namespace: s(&j["namespace"]),
            signals: signal_defs(&j["signals"]),
        }),
        "SUBSCRIBE" => {
            let o = &j["options"];
            let types = SignalTypes::of(
                &j["types"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(signal)
                    .collect::<Vec<_>>(),
            );
            if let Some(mask) = j.get("type_mask") {
                assert_eq!(types.mask() as u64, mask.as_u64().unwrap());
            }
            Message::Subscribe(Subscribe {
                id: j["id"].as_u64().unwrap() as u32,
                pattern: s(&j["pattern"]),
                types,
                options: SubscribeOptions {
                    max_rate: opt_u32(o, "max_rate"),
                    epsilon: o.get("epsilon").map(|v| v.as_f64().unwrap()),
                    history: opt_u32(o, "history"),
                    window: opt_u32(o, "window"),
                },
            })
        }
        "UNSUBSCRIBE" => Message::Unsubscribe(Unsubscribe {
            id: j["id"].as_u64().unwrap() as u32,
        }),
        "PUBLISH" => Message::Publish(Publish {
            address: s(&j["address"]),
            signal: signal(&j["signal"]),
            phase: GesturePhase::from_name(j["phase"].as_str().unwrap()).unwrap(),
            payload: match j["value_indicator"].as_u64().unwrap() {
                0 => PublishPayload::None,
                1 => PublishPayload::Value(value(&j["value"])),
                2 => PublishPayload::Samples(
                    j["samples"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect(),
                ),
                other => panic!("indicator {other}"),
            },
            timestamp: opt_u64(j, "timestamp"),
            id: opt_u32(j, "id"),
            rate: opt_u32(j, "rate"),
        }),
        "SET" => Message::Set(Set {
            address: s(&j["address"]),
            value: value(&j["value"]),
            revision: opt_u64(j, "revision"),
            lock: flag(j, "lock"),
            unlock: flag(j, "unlock"),
            ttl: None,
        }),
        "GET" => Message::Get(Get {
            address: s(&j["address"]),
        }),
        "SNAPSHOT" => Message::Snapshot(Snapshot {
            params: j["params"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| ParamValue {
                    address: s(&p["address"]),
                    value: value(&p["value"]),
                    revision: p["revision"].as_u64().unwrap(),
                    writer: opt_s(p, "writer"),
                    timestamp: opt_u64(p, "timestamp"),
                })
                .collect(),
        }),
        "BUNDLE" => Message::Bundle(Bundle {
            timestamp: opt_u64(j, "timestamp"),
            messages: j["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(message)
                .collect(),
        }),
        "SYNC" => Message::Sync(ClockSync {
            t1: j["t1"].as_u64().unwrap(),
            t2: opt_u64(j, "t2"),
            t3: opt_u64(j, "t3"),
        }),
        "PING" => Message::Ping,
        "PONG" => Message::Pong,
        "ACK" => Message::Ack(Ack {
            address: opt_s(j, "address"),
            revision: opt_u64(j, "revision"),
            locked: j.get("locked").map(|v| v.as_bool().unwrap()),
            holder: opt_s(j, "holder"),
            correlation_id: opt_u32(j, "correlation_id"),
        }),
        "ERROR" => Message::Error(ErrorMessage {
            code: ErrorCode::from_code(j["code"].as_u64().unwrap() as u16),
            message: s(&j["message"]),
            address: opt_s(j, "address"),
            correlation_id: opt_u32(j, "correlation_id"),
        }),
        "QUERY" => Message::Query(Query {
            pattern: s(&j["pattern"]),
        }),
        "RESULT" => Message::Result(QueryResult {
            signals: signal_defs(&j["signals"]),
        }),
        other => panic!("unknown message type {other}"),
    }
}

fn flags_of(v: &Json) -> u8 {
    u8::from_str_radix(
        v["frame"]["flags"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap()
}

#[test]
fn every_vector_decodes_to_its_message() {
    let doc = vectors();
    let list = doc["vectors"].as_array().unwrap();
    assert_eq!(list.len(), 63, "the vector file should hold 63 frames");
    for v in list {
        let name = v["name"].as_str().unwrap();
        let bytes = hex::decode(v["hex"].as_str().unwrap()).unwrap();
        let frame = decode_frame(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(frame.len, bytes.len(), "{name}: frame length");
        assert_eq!(frame.header.flags, flags_of(v), "{name}: flags");
        assert_eq!(
            frame.header.payload_len as u64,
            v["frame"]["payload_len"].as_u64().unwrap(),
            "{name}: payload length"
        );
        assert_eq!(frame.message, message(&v["message"]), "{name}: message");
    }
}

#[test]
fn every_binary_vector_reencodes_byte_exactly() {
    let doc = vectors();
    let mut checked = 0;
    for v in doc["vectors"].as_array().unwrap() {
        if v["frame"]["payload_encoding"] != "binary" {
            continue;
        }
        let name = v["name"].as_str().unwrap();
        let flags = flags_of(v);
        let opts = FrameOptions::with_qos(Qos::from_flags(flags));
        let encoded = encode_with(&message(&v["message"]), opts).unwrap();
        assert_eq!(
            hex::encode(&encoded),
            v["hex"].as_str().unwrap(),
            "{name}: our encoding differs"
        );
        checked += 1;
    }
    assert_eq!(checked, 60, "60 binary vectors, 3 MessagePack ones");
}

#[test]
fn rust_and_js_vectors_use_the_default_qos() {
    // Vectors produced by the Rust encoder carry the message type's default QoS; ours matches.
    let doc = vectors();
    for v in doc["vectors"].as_array().unwrap() {
        let producers = v["producers"].as_array().unwrap();
        if !producers.iter().any(|p| p == "rust") || v["frame"]["payload_encoding"] != "binary" {
            continue;
        }
        let name = v["name"].as_str().unwrap();
        let encoded = encode(&message(&v["message"])).unwrap();
        assert_eq!(hex::encode(&encoded), v["hex"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn transcript_frames_decode_as_recorded() {
    let doc = vectors();
    let mut checked = 0;
    for t in doc["transcripts"].as_array().unwrap() {
        for step in t["steps"].as_array().unwrap() {
            let (Some(hex), Some(msg)) = (step.get("hex"), step.get("message")) else {
                continue;
            };
            let bytes = hex::decode(hex.as_str().unwrap()).unwrap();
            let frame = decode_frame(&bytes).unwrap();
            assert_eq!(frame.message, message(msg), "{}", step["summary"]);
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} transcript frames checked");
}
