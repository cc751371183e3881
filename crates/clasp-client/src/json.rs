//! Conversions between CLASP values and JSON (for tools and scripts).

use clasp_proto::Value;
pub use clasp_proto::json::{from_json, to_json};
use serde_json::Value as Json;

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
