//! Values in a recording, exactly.
//!
//! The workspace's JSON mapping ([`crate::json`]) is readable but loses some values: bytes
//! become an array of numbers, non-finite floats `null`, and a map's repeated keys collapse.
//! A recording keeps the readable form (field `value`) whenever it reads back as the very same
//! value, and otherwise writes the *typed* form (field `typed`), which is exact for every value:
//!
//! | value | typed form |
//! |---|---|
//! | null, bool, string | the JSON literal |
//! | integer (i64) | a JSON number without fraction or exponent |
//! | float | a JSON number that reads back as a float with the same bits (`1.0`, `2.5e-7`), or `{"f": "NaN"}`, `{"f": "inf"}`, `{"f": "-inf"}`, `{"f": "<decimal>"}`, `{"f": "bits:<16 hex digits>"}` |
//! | bytes | `{"b": "<base64, standard alphabet, padded>"}` |
//! | array | a JSON array of typed forms |
//! | map | `{"m": [["key", <typed form>], ...]}` (order and repeated keys kept) |
//!
//! In the typed form every JSON object is one of the three wrappers above, so nothing is
//! ambiguous.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clasp_proto::Value;
use clasp_proto::json::{from_json, to_json};
use serde_json::{Number, Value as Json};

/// How a value is written: the readable JSON form, or the typed form.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoded {
    /// The workspace's JSON mapping, which reads back as the same value.
    Plain(Json),
    /// The typed form (see the module documentation).
    Typed(Json),
}

/// The form in which `v` is written: plain JSON when that reads back as exactly `v`, else the
/// typed form.
pub fn encode(v: &Value) -> Encoded {
    let plain = to_json(v);
    if identical(&from_json(&plain), v) {
        Encoded::Plain(plain)
    } else {
        Encoded::Typed(typed(v))
    }
}

/// The readable form back into a value.
pub fn decode_plain(j: &Json) -> Value {
    from_json(j)
}

/// Whether two values are the same, floats compared by their bits (so NaN equals itself and
/// `-0.0` differs from `0.0`).
pub fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| identical(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && identical(va, vb))
        }
        _ => a == b,
    }
}

/// The typed form of a value.
pub fn typed(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        Value::Float(f) => typed_float(*f),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => wrap("b", Json::String(B64.encode(b))),
        Value::Array(items) => Json::Array(items.iter().map(typed).collect()),
        Value::Map(entries) => wrap(
            "m",
            Json::Array(
                entries
                    .iter()
                    .map(|(k, v)| Json::Array(vec![Json::String(k.to_string()), typed(v)]))
                    .collect(),
            ),
        ),
    }
}

fn wrap(tag: &str, inner: Json) -> Json {
    let mut m = serde_json::Map::new();
    m.insert(tag.into(), inner);
    Json::Object(m)
}

fn typed_float(f: f64) -> Json {
    if let Some(n) = Number::from_f64(f) {
        let j = Json::Number(n);
        // What the reader will parse: the same bits, and a float (not an integer).
        if let Ok(back) = serde_json::from_str::<Json>(&j.to_string())
            && back.as_i64().is_none()
            && back.as_f64().map(f64::to_bits) == Some(f.to_bits())
        {
            return j;
        }
    }
    let text = if f.is_nan() && f.to_bits() != f64::NAN.to_bits() {
        format!("bits:{:016x}", f.to_bits())
    } else {
        // Debug prints the shortest decimal that parses back to the same float, and `NaN`,
        // `inf` and `-inf`, all of which `f64::from_str` reads.
        format!("{f:?}")
    };
    wrap("f", Json::String(text))
}

/// The typed form back into a value, or what is wrong with it.
pub fn decode_typed(j: &Json) -> Result<Value, String> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(
                n.as_f64()
                    .ok_or_else(|| format!("number {n} is neither an i64 nor an f64"))?,
            ),
        },
        Json::String(s) => Value::String(s.as_str().into()),
        Json::Array(items) => Value::Array(
            items
                .iter()
                .map(decode_typed)
                .collect::<Result<_, String>>()?,
        ),
        Json::Object(m) => {
            let mut fields = m.iter();
            let (Some((tag, inner)), None) = (fields.next(), fields.next()) else {
                return Err("a typed value's object must have exactly one key (b, f or m)".into());
            };
            match (tag.as_str(), inner) {
                ("b", Json::String(s)) => Value::Bytes(
                    B64.decode(s)
                        .map_err(|e| format!("bytes are not valid base64: {e}"))?
                        .into(),
                ),
                ("f", Json::String(s)) => Value::Float(parse_float(s)?),
                ("m", Json::Array(pairs)) => Value::Map(
                    pairs
                        .iter()
                        .map(|p| match p.as_array().map(Vec::as_slice) {
                            Some([Json::String(k), v]) => Ok((k.as_str().into(), decode_typed(v)?)),
                            _ => Err("a typed map entry must be [\"key\", value]".to_string()),
                        })
                        .collect::<Result<_, String>>()?,
                ),
                (tag, _) => {
                    return Err(format!(
                        "unknown typed value `{tag}` (expected {{\"b\": base64}}, \
                         {{\"f\": text}} or {{\"m\": [[key, value], ...]}})"
                    ));
                }
            }
        }
    })
}

fn parse_float(s: &str) -> Result<f64, String> {
    if let Some(hex) = s.strip_prefix("bits:") {
        return u64::from_str_radix(hex, 16)
            .map(f64::from_bits)
            .map_err(|_| format!("`{s}` is not bits:<16 hex digits>"));
    }
    s.parse::<f64>()
        .map_err(|_| format!("`{s}` is not a float (a decimal, NaN, inf or -inf)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn back(v: &Value) -> Value {
        match encode(v) {
            Encoded::Plain(j) => decode_plain(&serde_json::from_str(&j.to_string()).unwrap()),
            Encoded::Typed(j) => {
                decode_typed(&serde_json::from_str(&j.to_string()).unwrap()).unwrap()
            }
        }
    }

    #[test]
    fn readable_when_exact_typed_otherwise() {
        assert!(matches!(encode(&Value::Float(1.0)), Encoded::Plain(_)));
        assert!(matches!(encode(&Value::Int(1)), Encoded::Plain(_)));
        let bytes = Value::Bytes(bytes::Bytes::from_static(&[0, 1, 255]));
        assert_eq!(
            encode(&bytes),
            Encoded::Typed(serde_json::json!({"b": "AAH/"}))
        );
        let dup = Value::Map(vec![
            ("a".into(), Value::Int(1)),
            ("a".into(), Value::Int(2)),
        ]);
        assert!(matches!(encode(&dup), Encoded::Typed(_)));
        for v in [
            bytes,
            dup,
            Value::Float(f64::NAN),
            Value::Float(f64::from_bits(0x7ff8_0000_0000_0001)),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(-0.0),
            Value::Array(vec![Value::Float(f64::INFINITY), Value::Int(-3)]),
        ] {
            assert!(identical(&back(&v), &v), "{v:?}");
        }
    }

    #[test]
    fn bad_typed_values_say_why() {
        for (text, want) in [
            (r#"{"x": 1}"#, "unknown typed value `x`"),
            (r#"{"b": "!!"}"#, "not valid base64"),
            (r#"{"f": "one"}"#, "is not a float"),
            (r#"{"m": [[1, 2]]}"#, "typed map entry"),
            (r#"{"b": "", "f": "1"}"#, "exactly one key"),
        ] {
            let err = decode_typed(&serde_json::from_str(text).unwrap()).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
