//! The messages the codec benchmarks measure, built once for our codec and once for the
//! reference codec (crates.io `clasp-core` 3.3.0), so both encode exactly the same content.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use clasp_proto as ours;

/// Address of the SET benchmark (the reference's own benchmark uses the same).
pub const SET_ADDRESS: &str = "/test/benchmark/value";
/// Value of the SET benchmark.
pub const SET_VALUE: f64 = 1.2345;

/// SET f64 to `/test/benchmark/value` with revision 1.
pub fn set_ours() -> ours::Message {
    ours::Message::Set(ours::Set {
        address: SET_ADDRESS.into(),
        value: ours::Value::Float(SET_VALUE),
        revision: Some(1),
        ..Default::default()
    })
}

/// The same SET for the reference codec.
pub fn set_reference() -> reference::Message {
    reference::Message::Set(reference::SetMessage {
        address: SET_ADDRESS.into(),
        value: reference::Value::Float(SET_VALUE),
        revision: Some(1),
        lock: false,
        unlock: false,
    })
}

const EVENT_ADDRESS: &str = "/cue/fire";
const EVENT_TS: u64 = 1_704_067_200_000_000;

/// PUBLISH event with a 3-key map payload and a timestamp.
pub fn event_ours() -> ours::Message {
    ours::Message::Publish(ours::Publish {
        address: EVENT_ADDRESS.into(),
        signal: ours::SignalType::Event,
        payload: ours::PublishPayload::Value(ours::Value::Map(vec![
            ("cue".into(), ours::Value::String("intro".into())),
            ("intensity".into(), ours::Value::Float(0.8)),
            ("fade".into(), ours::Value::Int(250)),
        ])),
        timestamp: Some(EVENT_TS),
        ..Default::default()
    })
}

/// The same PUBLISH for the reference codec.
pub fn event_reference() -> reference::Message {
    let mut map = std::collections::HashMap::new();
    map.insert("cue".to_string(), reference::Value::String("intro".into()));
    map.insert("intensity".to_string(), reference::Value::Float(0.8));
    map.insert("fade".to_string(), reference::Value::Int(250));
    reference::Message::Publish(reference::PublishMessage {
        address: EVENT_ADDRESS.into(),
        signal: Some(reference::SignalType::Event),
        value: None,
        payload: Some(reference::Value::Map(map)),
        samples: None,
        rate: None,
        id: None,
        phase: None,
        timestamp: Some(EVENT_TS),
        timeline: None,
    })
}

/// Number of params in the SNAPSHOT benchmark.
pub const SNAPSHOT_PARAMS: usize = 100;

fn snapshot_entry(i: usize) -> (String, f64, u64, String, u64) {
    (
        format!("/lights/zone{}/fixture{}/brightness", i / 10, i % 10),
        i as f64 / 100.0,
        i as u64 + 1,
        "550e8400-e29b-41d4-a716-446655440000".to_string(),
        EVENT_TS + i as u64,
    )
}

/// SNAPSHOT of 100 f64 params, each with revision, writer and timestamp (as a router sends).
pub fn snapshot_ours() -> ours::Message {
    ours::Message::Snapshot(ours::Snapshot {
        params: (0..SNAPSHOT_PARAMS)
            .map(|i| {
                let (address, v, revision, writer, ts) = snapshot_entry(i);
                ours::ParamValue {
                    address: address.into(),
                    value: ours::Value::Float(v),
                    revision,
                    writer: Some(writer.into()),
                    timestamp: Some(ts),
                }
            })
            .collect(),
    })
}

/// The same SNAPSHOT for the reference codec.
pub fn snapshot_reference() -> reference::Message {
    reference::Message::Snapshot(reference::SnapshotMessage {
        params: (0..SNAPSHOT_PARAMS)
            .map(|i| {
                let (address, v, revision, writer, ts) = snapshot_entry(i);
                reference::ParamValue {
                    address,
                    value: reference::Value::Float(v),
                    revision,
                    writer: Some(writer),
                    timestamp: Some(ts),
                }
            })
            .collect(),
    })
}

/// Reads every field of a decoded view (strings, numbers, and every item of arrays, maps,
/// samples and snapshot params), so a benchmark of the lazy view pays for all of it. Returns a
/// checksum so nothing can be optimised away.
pub fn visit_view(m: &ours::MessageView<'_>) -> u64 {
    use ours::codec::view::PayloadRef;
    match m {
        ours::MessageView::Set(s) => {
            s.address.len() as u64 + visit_value(&s.value) + s.revision.unwrap_or(0)
        }
        ours::MessageView::Publish(p) => {
            p.address.len() as u64
                + p.timestamp.unwrap_or(0)
                + match p.payload {
                    PayloadRef::None => 0,
                    PayloadRef::Value(v) => visit_value(&v),
                    PayloadRef::Samples(s) => s.iter().map(f64::to_bits).fold(0, u64::wrapping_add),
                }
        }
        ours::MessageView::Snapshot(s) => s
            .iter()
            .map(|p| {
                p.address.len() as u64
                    + visit_value(&p.value)
                    + p.revision
                    + p.writer.map_or(0, |w| w.len() as u64)
                    + p.timestamp.unwrap_or(0)
            })
            .fold(0, u64::wrapping_add),
        ours::MessageView::Other(_) => 0,
    }
}

fn visit_value(v: &ours::ValueRef<'_>) -> u64 {
    use ours::ValueRef as V;
    match v {
        V::Null => 0,
        V::Bool(b) => u64::from(*b),
        V::Int(i) => *i as u64,
        V::Float(f) => f.to_bits(),
        V::String(s) => s.len() as u64,
        V::Bytes(b) => b.len() as u64,
        V::Array(a) => a.iter().map(|x| visit_value(&x)).fold(1, u64::wrapping_add),
        V::Map(m) => m
            .iter()
            .map(|(k, x)| k.len() as u64 + visit_value(&x))
            .fold(1, u64::wrapping_add),
    }
}
