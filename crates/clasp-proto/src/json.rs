//! Conversions between [`Value`] and JSON (`serde_json`), shared by the client tools and the
//! OSC and MQTT bridges. Enabled by the `json` feature.
//!
//! JSON → CLASP: integers that fit an `i64` become [`Value::Int`], other numbers
//! [`Value::Float`], objects [`Value::Map`] (key order kept when `serde_json` preserves it),
//! arrays [`Value::Array`]. CLASP → JSON: bytes become an array of numbers, non-finite floats
//! `null`.

use serde_json::{Map, Number, Value as Json};

use crate::Value;

/// The CLASP value for a JSON value, however deeply it nests.
pub fn from_json(j: &Json) -> Value {
    // Without a depth bound only a number `serde_json` cannot give as `f64` (impossible unless
    // its `arbitrary_precision` feature is on) fails; it becomes NaN.
    from_json_within(j, usize::MAX).unwrap_or(Value::Float(f64::NAN))
}

/// The CLASP value for a JSON value, or `None` if arrays and objects nest more than
/// `max_depth` levels deep (a scalar is depth 0, `[1]` depth 1).
pub fn from_json_within(j: &Json, max_depth: usize) -> Option<Value> {
    Some(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::String(s.as_str().into()),
        Json::Array(items) => {
            let inner = max_depth.checked_sub(1)?;
            Value::Array(
                items
                    .iter()
                    .map(|v| from_json_within(v, inner))
                    .collect::<Option<_>>()?,
            )
        }
        Json::Object(map) => {
            let inner = max_depth.checked_sub(1)?;
            Value::Map(
                map.iter()
                    .map(|(k, v)| Some((k.as_str().into(), from_json_within(v, inner)?)))
                    .collect::<Option<_>>()?,
            )
        }
    })
}

/// The JSON form of a CLASP value. Bytes become an array of numbers; non-finite floats `null`.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        Value::Float(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::Array(b.iter().map(|x| Json::Number((*x).into())).collect()),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn maps_numbers_bytes_and_non_finite_floats() {
        let j: Json = serde_json::from_str(r#"{"b":[1,2.5,"x",null,true],"a":{"c":-3}}"#).unwrap();
        let v = from_json(&j);
        assert_eq!(
            v,
            Value::Map(vec![
                (
                    "b".into(),
                    Value::Array(vec![
                        Value::Int(1),
                        Value::Float(2.5),
                        Value::String("x".into()),
                        Value::Null,
                        Value::Bool(true),
                    ])
                ),
                ("a".into(), Value::Map(vec![("c".into(), Value::Int(-3))])),
            ])
        );
        assert_eq!(to_json(&v), j);
        assert_eq!(
            to_json(&Value::Bytes(bytes::Bytes::from_static(&[1, 255]))),
            serde_json::json!([1, 255])
        );
        assert_eq!(to_json(&Value::Float(f64::NAN)), Json::Null);
        assert_eq!(to_json(&Value::Float(f64::NEG_INFINITY)), Json::Null);
        let big: Json = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(from_json(&big), Value::Float(18_446_744_073_709_551_615.0));
    }

    #[test]
    fn depth_bound_counts_container_levels() {
        let j: Json = serde_json::from_str("[[{\"a\":[]}]]").unwrap();
        assert!(from_json_within(&j, 4).is_some());
        assert_eq!(from_json_within(&j, 3), None);
        assert_eq!(from_json_within(&Json::Null, 0), Some(Value::Null));
        assert_eq!(from_json_within(&serde_json::json!([]), 0), None);
    }

    fn json_like() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            "[a-z]{0,8}".prop_map(|s| Value::String(s.as_str().into())),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..6).prop_map(|m| {
                    Value::Map(m.into_iter().map(|(k, v)| (k.as_str().into(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_like_values_round_trip(v in json_like()) {
            prop_assert_eq!(from_json(&to_json(&v)), v);
        }
    }
}
