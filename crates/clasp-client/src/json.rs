//! Conversions between CLASP values and JSON (for tools and scripts).

use clasp_proto::Value;
use serde_json::{Map, Number, Value as Json};

/// The CLASP value for a JSON value. Integers become [`Value::Int`], other numbers
/// [`Value::Float`]; objects keep their key order.
pub fn from_json(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.as_str().into()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        Json::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), from_json(v)))
                .collect(),
        ),
    }
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

/// Parses command-line text as a value: JSON when it parses (`1`, `true`, `"x"`, `[1,2]`,
/// `{"a":1}`), otherwise the text itself as a string.
pub fn parse_lenient(text: &str) -> Value {
    serde_json::from_str::<Json>(text)
        .map_or_else(|_| Value::String(text.into()), |j| from_json(&j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_lenient_parsing() {
        let j: Json = serde_json::from_str(r#"{"b":[1,2.5,"x",null,true],"a":{"c":-3}}"#).unwrap();
        assert_eq!(to_json(&from_json(&j)), j);
        assert_eq!(parse_lenient("0.5"), Value::Float(0.5));
        assert_eq!(parse_lenient("7"), Value::Int(7));
        assert_eq!(
            parse_lenient("hello world"),
            Value::String("hello world".into())
        );
        assert_eq!(parse_lenient("\"7\""), Value::String("7".into()));
    }
}
