//! The JSON shapes a WebSocket peer sends and receives.
//!
//! In: a text frame holding a JSON object with `address` sets that address (under the
//! namespace) to `value`, else `data`, else the whole object; `"kind": "event"` publishes an
//! event instead. Any other text is the String at `{ns}/text`; a binary frame the Bytes at
//! `{ns}/binary`. Out: `{"address": …, "value": …}` (plus `"kind": "event"` for events), the
//! address without the namespace.

use clasp_mapping::WriteKind;
use clasp_proto::Value;
use clasp_proto::json::{from_json_within, to_json};
use serde_json::{Value as Json, json};

/// Deepest JSON nesting accepted from a peer.
pub const MAX_DEPTH: usize = 32;

/// What a peer's frame asks for: (address below the namespace, value, kind).
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The address below the namespace (starts with `/`).
    pub path: String,
    /// The value.
    pub value: Value,
    /// Param or event.
    pub kind: WriteKind,
}

/// Reads a text frame; `None` if it names an address a CLASP address cannot hold.
pub fn text(s: &str) -> Option<Incoming> {
    let Ok(Json::Object(obj)) = serde_json::from_str::<Json>(s) else {
        return Some(Incoming {
            path: "/text".into(),
            value: Value::String(s.into()),
            kind: WriteKind::Set,
        });
    };
    let Some(Json::String(address)) = obj.get("address") else {
        return Some(Incoming {
            path: "/message".into(),
            value: from_json_within(&Json::Object(obj), MAX_DEPTH)?,
            kind: WriteKind::Set,
        });
    };
    let path = if address.starts_with('/') {
        address.clone()
    } else {
        format!("/{address}")
    };
    // A concrete address: well formed, no wildcard, no trailing `/`, bounded.
    if clasp_proto::address::validate_address(&path).is_err()
        || path.contains('*')
        || path.ends_with('/')
        || path.len() > 1024
    {
        return None;
    }
    let kind = match obj.get("kind").and_then(Json::as_str) {
        Some("event") => WriteKind::Event,
        _ => WriteKind::Set,
    };
    let value = match (obj.get("value"), obj.get("data")) {
        (Some(v), _) | (None, Some(v)) => from_json_within(v, MAX_DEPTH)?,
        (None, None) => from_json_within(&Json::Object(obj.clone()), MAX_DEPTH)?,
    };
    Some(Incoming { path, value, kind })
}

/// Reads a binary frame.
pub fn binary(b: &[u8]) -> Incoming {
    Incoming {
        path: "/binary".into(),
        value: Value::Bytes(b.to_vec().into()),
        kind: WriteKind::Set,
    }
}

/// The frame for a change at `path` (below the namespace).
pub fn outgoing(path: &str, value: &Value, event: bool) -> String {
    let mut j = json!({ "address": path, "value": to_json(value) });
    if event {
        j["kind"] = "event".into();
    }
    j.to_string()
}
