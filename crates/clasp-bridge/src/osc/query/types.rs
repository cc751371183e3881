//! OSCQuery `TYPE` strings and `VALUE` arrays: made from CLASP values for the tree we serve,
//! read back into OSC arguments for a tree we mirror, and used to send a mirrored app the
//! argument types it declared.

use clasp_proto::Value;
use clasp_proto::json::to_json;
use rosc::{OscArray, OscColor, OscType};
use serde_json::Value as Json;

/// Deepest `[ ]` nesting read from a `TYPE` string.
const MAX_DEPTH: usize = 8;
/// Most tags read from one `TYPE` string.
const MAX_TAGS: usize = 1024;

/// The OSC type-tag string of a value (`i`, `h`, `f`, `s`, `T`/`F`, `b`, `N`; arrays in order;
/// maps as their JSON text: `s`).
pub(crate) fn type_tags(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push('N'),
        Value::Bool(true) => out.push('T'),
        Value::Bool(false) => out.push('F'),
        Value::Int(i) if i32::try_from(*i).is_ok() => out.push('i'),
        Value::Int(_) => out.push('h'),
        Value::Float(_) => out.push('f'),
        Value::String(_) | Value::Map(_) => out.push('s'),
        Value::Bytes(_) => out.push('b'),
        Value::Array(items) => items.iter().for_each(|i| type_tags(i, out)),
    }
}

/// The VALUE array: one JSON item per type tag (blobs and nil as null).
pub(crate) fn values(v: &Value, out: &mut Vec<Json>) {
    match v {
        Value::Null | Value::Bytes(_) => out.push(Json::Null),
        Value::Map(_) => out.push(Json::String(to_json(v).to_string())),
        Value::Array(items) => items.iter().for_each(|i| values(i, out)),
        other => out.push(to_json(other)),
    }
}

/// One parsed type tag.
#[derive(Debug, Clone, PartialEq)]
enum Tag {
    One(char),
    Array(Vec<Tag>),
}

/// Parses a `TYPE` string (`"ff"`, `"[ii]s"`); `None` if brackets do not balance or it is
/// too deep or long.
fn parse(types: &str) -> Option<Vec<Tag>> {
    let mut stack: Vec<Vec<Tag>> = vec![Vec::new()];
    let mut count = 0;
    for c in types.chars() {
        count += 1;
        if count > MAX_TAGS {
            return None;
        }
        match c {
            '[' => {
                if stack.len() > MAX_DEPTH {
                    return None;
                }
                stack.push(Vec::new());
            }
            ']' => {
                let inner = stack.pop()?;
                stack.last_mut()?.push(Tag::Array(inner));
            }
            c => stack.last_mut()?.push(Tag::One(c)),
        }
    }
    (stack.len() == 1).then(|| stack.pop()).flatten()
}

/// The OSC arguments a node's `TYPE` and `VALUE` describe, or `None` when the value is
/// absent, does not fit the types, or holds a type with no JSON value (blob, MIDI, unknown
/// tags such as VRChat's `u`).
pub fn args_from_json(types: &str, value: &Json) -> Option<Vec<OscType>> {
    let tags = parse(types)?;
    if tags.is_empty() {
        return Some(Vec::new());
    }
    let items: Vec<&Json> = match value {
        Json::Array(a) => a.iter().collect(),
        // "Per-value arrays can be shortened to a single scalar".
        scalar if tags.len() == 1 => vec![scalar],
        _ => return None,
    };
    if items.len() != tags.len() {
        return None;
    }
    tags.iter().zip(items).map(|(t, v)| arg(t, v)).collect()
}

fn arg(tag: &Tag, v: &Json) -> Option<OscType> {
    Some(match tag {
        Tag::Array(tags) => {
            let items = v.as_array()?;
            if items.len() != tags.len() {
                return None;
            }
            OscType::Array(OscArray {
                content: tags
                    .iter()
                    .zip(items)
                    .map(|(t, v)| arg(t, v))
                    .collect::<Option<_>>()?,
            })
        }
        Tag::One('i') => OscType::Int(i32::try_from(v.as_i64()?).ok()?),
        Tag::One('h') => OscType::Long(v.as_i64()?),
        Tag::One('f') => OscType::Float(v.as_f64()? as f32),
        Tag::One('d') => OscType::Double(v.as_f64()?),
        Tag::One('s' | 'S') => OscType::String(v.as_str()?.to_owned()),
        Tag::One('c') => OscType::Char(v.as_str()?.chars().next()?),
        // T and F are interchangeable: the JSON value says which.
        Tag::One('T' | 'F') => OscType::Bool(v.as_bool()?),
        Tag::One('N') => OscType::Nil,
        Tag::One('I') => OscType::Inf,
        Tag::One('r') => color(v.as_str()?)?,
        _ => return None,
    })
}

/// `"#RRGGBBAA"`.
fn color(s: &str) -> Option<OscType> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 8 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some(OscType::Color(OscColor {
        red: byte(0)?,
        green: byte(2)?,
        blue: byte(4)?,
        alpha: byte(6)?,
    }))
}

/// `args` converted to the scalar types a mirrored app declared in `types` (`"f"` gets a float
/// even when the router holds the integer 1), when there is one argument per plain tag;
/// otherwise unchanged.
pub fn coerce(args: Vec<OscType>, types: &str) -> Vec<OscType> {
    let Some(tags) = parse(types) else {
        return args;
    };
    if tags.len() != args.len() {
        return args;
    }
    args.into_iter()
        .zip(&tags)
        .map(|(a, t)| match t {
            Tag::One(c) => coerce_one(a, *c),
            Tag::Array(_) => a,
        })
        .collect()
}

fn coerce_one(a: OscType, tag: char) -> OscType {
    let num = match &a {
        OscType::Int(i) => f64::from(*i),
        OscType::Long(l) => *l as f64,
        OscType::Float(f) => f64::from(*f),
        OscType::Double(d) => *d,
        OscType::Bool(b) => f64::from(u8::from(*b)),
        _ => return a,
    };
    match tag {
        'f' => OscType::Float(num as f32),
        'd' => OscType::Double(num),
        // `as` saturates: out-of-range values clamp instead of wrapping.
        'i' => OscType::Int(num.round() as i32),
        'h' => OscType::Long(num.round() as i64),
        'T' | 'F' => OscType::Bool(num != 0.0),
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_values_of_every_json_type() {
        assert_eq!(
            args_from_json("fis", &json!([0.5, 3, "x"])),
            Some(vec![
                OscType::Float(0.5),
                OscType::Int(3),
                OscType::String("x".into())
            ])
        );
        assert_eq!(
            args_from_json("f", &json!(0.25)),
            Some(vec![OscType::Float(0.25)])
        );
        assert_eq!(
            args_from_json("[ii]T", &json!([[1, 2], false])),
            Some(vec![
                OscType::Array(OscArray {
                    content: vec![OscType::Int(1), OscType::Int(2)]
                }),
                OscType::Bool(false)
            ])
        );
        assert_eq!(
            args_from_json("r", &json!(["#ff000080"])),
            Some(vec![OscType::Color(OscColor {
                red: 255,
                green: 0,
                blue: 0,
                alpha: 128
            })])
        );
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for (types, value) in [
            ("f", json!([])),
            ("f", json!(["x"])),
            ("ff", json!(1.0)),
            ("u", json!([1])),
            ("b", json!([null])),
            ("[f", json!([[1.0]])),
            ("f]", json!([1.0])),
            ("i", json!([5_000_000_000_i64])),
            ("f", Json::Null),
        ] {
            assert_eq!(args_from_json(types, &value), None, "{types} {value}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(args_from_json(&deep, &json!([])), None);
    }

    #[test]
    fn coerces_to_the_declared_types() {
        assert_eq!(
            coerce(vec![OscType::Int(1)], "f"),
            vec![OscType::Float(1.0)]
        );
        assert_eq!(
            coerce(vec![OscType::Float(2.6), OscType::Int(0)], "iT"),
            vec![OscType::Int(3), OscType::Bool(false)]
        );
        // A count that does not match, or a string, is left alone.
        assert_eq!(coerce(vec![OscType::Int(1)], "ff"), vec![OscType::Int(1)]);
        assert_eq!(
            coerce(vec![OscType::String("a".into())], "f"),
            vec![OscType::String("a".into())]
        );
    }
}
