//! MQTT payload bytes ↔ CLASP values.
//!
//! Inbound (MQTT → CLASP), in this order:
//!
//! 1. not UTF-8 → [`Value::Bytes`];
//! 2. JSON → the JSON value: integers that fit an `i64` → `Int`, other numbers → `Float`,
//!    objects → `Map` (key order kept), arrays → `Array`, `null` → `Null`; JSON nested deeper
//!    than [`clasp_proto::MAX_NESTING`] is not converted and falls through to step 4;
//! 3. other number text (`+5`, `NaN`, `inf`, `1_0` is not one) → `Int` if it parses as `i64`,
//!    else `Float`;
//! 4. anything else → `String`, unchanged.
//!
//! Outbound (CLASP → MQTT): `Null` → `null`, `Bool` → `true`/`false`, `Int` as decimal,
//! `Float` in JSON form (`1.0`, `2.5e-8`; `NaN`, `inf`, `-inf` for non-finite values), `String`
//! raw, `Bytes` raw, arrays and maps as JSON (bytes inside them become arrays of numbers,
//! non-finite floats inside them `null`).
//!
//! The mapping round-trips every value except strings that read as something else (`"42"`
//! comes back as `Int(42)`), UTF-8 bytes (they come back as a string), integral floats held
//! in containers beyond JSON's precision, and bytes or non-finite floats inside containers.

use bytes::Bytes;
use clasp_proto::json::{from_json_within, to_json};
use clasp_proto::{MAX_NESTING, Str, Value};

/// The CLASP value an MQTT payload stands for (see the module docs).
pub fn to_value(payload: &[u8]) -> Value {
    let Ok(text) = std::str::from_utf8(payload) else {
        return Value::Bytes(Bytes::copy_from_slice(payload));
    };
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(v) = from_json_within(&json, MAX_NESTING)
    {
        return v;
    }
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        if let Ok(i) = trimmed.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = trimmed.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::String(Str::from(text))
}

/// The MQTT payload for a CLASP value (see the module docs).
pub fn to_payload(value: &Value) -> Bytes {
    match value {
        Value::Null => Bytes::from_static(b"null"),
        Value::Bool(true) => Bytes::from_static(b"true"),
        Value::Bool(false) => Bytes::from_static(b"false"),
        Value::Int(i) => Bytes::from(i.to_string()),
        Value::Float(f) => Bytes::from(float_text(*f)),
        Value::String(s) => Bytes::copy_from_slice(s.as_bytes()),
        Value::Bytes(b) => b.clone(),
        Value::Array(_) | Value::Map(_) => {
            Bytes::from(serde_json::to_vec(&to_json(value)).unwrap_or_default())
        }
    }
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        // Finite floats are always representable, so this cannot fail.
        serde_json::Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_mapping() {
        assert_eq!(to_value(b"42"), Value::Int(42));
        assert_eq!(to_value(b"3.5"), Value::Float(3.5));
        assert_eq!(to_value(b"true"), Value::Bool(true));
        assert_eq!(to_value(b"null"), Value::Null);
        assert_eq!(to_value(b"+7"), Value::Int(7));
        assert!(matches!(to_value(b"NaN"), Value::Float(f) if f.is_nan()));
        assert_eq!(to_value(b"inf"), Value::Float(f64::INFINITY));
        assert_eq!(to_value(b"hello"), Value::String("hello".into()));
        assert_eq!(to_value(b""), Value::String("".into()));
        assert_eq!(
            to_value(&[0xff, 0x00]),
            Value::Bytes(Bytes::from_static(&[0xff, 0]))
        );
        assert_eq!(
            to_value(br#"{"b":1,"a":[true,2.5]}"#),
            Value::Map(vec![
                ("b".into(), Value::Int(1)),
                (
                    "a".into(),
                    Value::Array(vec![Value::Bool(true), Value::Float(2.5)])
                ),
            ])
        );
        assert_eq!(&to_payload(&Value::Float(1.0))[..], b"1.0");
        assert_eq!(&to_payload(&Value::Int(-3))[..], b"-3");
        assert_eq!(&to_payload(&Value::Null)[..], b"null");
        assert_eq!(&to_payload(&Value::String("x y".into()))[..], b"x y");
    }

    #[test]
    fn json_nested_too_deep_stays_a_string() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            to_value(deep.as_bytes()),
            Value::String(deep.as_str().into())
        );
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            "[a-zA-Z ]{0,12}".prop_map(|s| Value::String(s.as_str().into())),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{1,6}", inner), 0..6).prop_map(|kv| {
                    // JSON objects keep one entry per key.
                    let mut seen = std::collections::HashSet::new();
                    Value::Map(
                        kv.into_iter()
                            .filter(|(k, _)| seen.insert(k.clone()))
                            .map(|(k, v)| (Str::from(k.as_str()), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            (Value::Map(x), Value::Map(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
            }
            _ => a == b,
        }
    }

    proptest! {
        #[test]
        fn json_like_values_round_trip(v in json_value()) {
            // A top-level string is sent raw, so one that reads as a number, bool or null
            // comes back as that (documented).
            if let Value::String(s) = &v {
                prop_assume!(matches!(to_value(s.as_bytes()), Value::String(_)));
            }
            let back = to_value(&to_payload(&v));
            prop_assert!(same(&v, &back), "{v:?} came back as {back:?}");
        }

        #[test]
        fn scalar_floats_round_trip(f in any::<f64>()) {
            let back = to_value(&to_payload(&Value::Float(f)));
            prop_assert!(same(&Value::Float(f), &back), "{f} came back as {back:?}");
        }

        #[test]
        fn non_utf8_bytes_round_trip(b in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assume!(std::str::from_utf8(&b).is_err());
            let v = Value::Bytes(Bytes::from(b));
            prop_assert_eq!(to_value(&to_payload(&v)), v);
        }

        #[test]
        fn any_payload_maps_without_panicking(b in prop::collection::vec(any::<u8>(), 0..256)) {
            let v = to_value(&b);
            let _ = to_payload(&v);
        }
    }
}
