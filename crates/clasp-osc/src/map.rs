//! Pure mappings between OSC and CLASP: addresses, arguments ↔ values, and a structural
//! pre-check of datagrams that bounds nesting before they reach the OSC decoder.

use clasp_proto::Value;
use rosc::{OscArray, OscType};

use crate::time::ntp_to_unix_micros;

/// How CLASP values are written as OSC arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArgOptions {
    /// Write floats as OSC doubles (`d`) instead of 32-bit floats (`f`).
    pub float64: bool,
}

/// The CLASP value of an OSC message's arguments: none → `Null`, one → that argument's value,
/// several → an `Array` of them.
pub fn args_to_value(args: &[OscType]) -> Value {
    match args {
        [] => Value::Null,
        [one] => arg_to_value(one),
        many => Value::Array(many.iter().map(arg_to_value).collect()),
    }
}

/// The CLASP value of one OSC argument.
///
/// `i`/`h` → Int, `f`/`d` → Float, `s` → String, `b` → Bytes, `c` → a one-character String,
/// `r` → `[r, g, b, a]`, `m` → `[port, status, data1, data2]`, `T`/`F` → Bool, `N` → Null,
/// `I` → +∞, `t` → Int (µs since the Unix epoch; Null for "immediately"), `[...]` → Array.
pub fn arg_to_value(arg: &OscType) -> Value {
    match arg {
        OscType::Int(i) => Value::Int(i64::from(*i)),
        OscType::Long(i) => Value::Int(*i),
        OscType::Float(f) => Value::Float(f64::from(*f)),
        OscType::Double(f) => Value::Float(*f),
        OscType::String(s) => Value::String(s.as_str().into()),
        OscType::Blob(b) => Value::Bytes(bytes::Bytes::copy_from_slice(b)),
        OscType::Char(c) => Value::String(c.to_string().into()),
        OscType::Color(c) => Value::Array(
            [c.red, c.green, c.blue, c.alpha]
                .into_iter()
                .map(|x| Value::Int(i64::from(x)))
                .collect(),
        ),
        OscType::Midi(m) => Value::Array(
            [m.port, m.status, m.data1, m.data2]
                .into_iter()
                .map(|x| Value::Int(i64::from(x)))
                .collect(),
        ),
        OscType::Bool(b) => Value::Bool(*b),
        OscType::Nil => Value::Null,
        OscType::Inf => Value::Float(f64::INFINITY),
        OscType::Time(t) => ntp_to_unix_micros(*t)
            .and_then(|us| i64::try_from(us).ok())
            .map_or(Value::Null, Value::Int),
        OscType::Array(a) => Value::Array(a.content.iter().map(arg_to_value).collect()),
    }
}

/// The OSC arguments of a CLASP value, appended to `out`.
///
/// Int → `i` (`h` when it does not fit 32 bits), Float → `f` (`d` with
/// [`ArgOptions::float64`]), Bool → `T`/`F`, String → `s`, Bytes → `b`, Null → `N`, Array →
/// its elements, flattened, Map → one `s` holding its JSON text.
pub fn value_to_args(value: &Value, opts: ArgOptions, out: &mut Vec<OscType>) {
    match value {
        Value::Null => out.push(OscType::Nil),
        Value::Bool(b) => out.push(OscType::Bool(*b)),
        Value::Int(i) => out.push(i32::try_from(*i).map_or(OscType::Long(*i), OscType::Int)),
        Value::Float(f) if opts.float64 => out.push(OscType::Double(*f)),
        Value::Float(f) => out.push(OscType::Float(*f as f32)),
        Value::String(s) => out.push(OscType::String(s.to_string())),
        Value::Bytes(b) => out.push(OscType::Blob(b.to_vec())),
        Value::Array(items) => {
            for item in items {
                value_to_args(item, opts, out);
            }
        }
        Value::Map(_) => out.push(OscType::String(to_json(value).to_string())),
    }
}

/// [`value_to_args`] into a new vector.
pub fn to_args(value: &Value, opts: ArgOptions) -> Vec<OscType> {
    let mut out = Vec::new();
    value_to_args(value, opts, &mut out);
    out
}

/// The JSON form of a value (maps are sent to OSC peers as JSON text). Bytes become an array of
/// numbers, non-finite floats `null`.
pub use clasp_proto::json::to_json;

/// An OSC array argument holding `items` (for building nested arguments).
pub fn osc_array(items: Vec<OscType>) -> OscType {
    OscType::Array(OscArray { content: items })
}

/// Normalises a namespace: empty or `/` → empty, otherwise a leading `/` and no trailing `/`.
/// `None` if it contains characters a CLASP address cannot hold (`*`, NUL, whitespace).
pub fn normalize_namespace(ns: &str) -> Option<String> {
    let trimmed = ns.trim_end_matches('/');
    if trimmed.is_empty() {
        return Some(String::new());
    }
    if trimmed.contains(['*', '\0', ' ', '\t', '\n', '\r']) {
        return None;
    }
    Some(if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    })
}

/// The CLASP address (or pattern) for an OSC address: the namespace followed by it.
pub fn osc_to_clasp(namespace: &str, osc: &str) -> String {
    let mut s = String::with_capacity(namespace.len() + osc.len());
    s.push_str(namespace);
    s.push_str(osc);
    s
}

/// The OSC address for a CLASP address, or `None` if it is outside the namespace.
pub fn clasp_to_osc<'a>(namespace: &str, address: &'a str) -> Option<&'a str> {
    if namespace.is_empty() {
        return address.starts_with('/').then_some(address);
    }
    let rest = address.strip_prefix(namespace)?;
    if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// Why a datagram failed the structural pre-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Bundles nest deeper than allowed.
    #[error("bundles nested deeper than {0} levels")]
    BundleDepth(usize),
    /// Array arguments nest deeper than allowed.
    #[error("array arguments nested deeper than {0} levels")]
    ArrayDepth(usize),
    /// A `[` without its `]` (the decoder would silently drop arguments).
    #[error("unbalanced array brackets in a type tag string")]
    Unbalanced,
    /// A bundle element's size runs past the end of the datagram.
    #[error("bundle element longer than the datagram")]
    Truncated,
}

/// Checks a datagram's structure before decoding: bundle and array nesting are bounded (the
/// decoder recurses per bundle level and dropping a deeply nested array recurses too) and
/// array brackets balance. Everything else is left to the decoder.
pub fn check_shape(
    buf: &[u8],
    max_bundle_depth: usize,
    max_array_depth: usize,
) -> Result<(), ShapeError> {
    check_at(buf, 0, max_bundle_depth, max_array_depth)
}

fn check_at(buf: &[u8], depth: usize, max_b: usize, max_a: usize) -> Result<(), ShapeError> {
    if buf.starts_with(b"#bundle\0") {
        if depth >= max_b {
            return Err(ShapeError::BundleDepth(max_b));
        }
        let mut rest = buf.get(16..).ok_or(ShapeError::Truncated)?;
        while let Some((size, tail)) = rest.split_first_chunk::<4>() {
            let size = u32::from_be_bytes(*size) as usize;
            let elem = tail.get(..size).ok_or(ShapeError::Truncated)?;
            check_at(elem, depth + 1, max_b, max_a)?;
            rest = &tail[size..];
        }
        return Ok(());
    }
    // A message: the address string (NUL-terminated, padded to 4), then the type tags.
    let Some(nul) = buf.iter().position(|&b| b == 0) else {
        return Ok(());
    };
    let tags = buf.get((nul + 4) & !3..).unwrap_or_default();
    let end = tags.iter().position(|&b| b == 0).unwrap_or(tags.len());
    let mut level = 0usize;
    for &c in &tags[..end] {
        match c {
            b'[' => {
                level += 1;
                if level > max_a {
                    return Err(ShapeError::ArrayDepth(max_a));
                }
            }
            b']' => level = level.saturating_sub(1),
            _ => {}
        }
    }
    if level != 0 {
        return Err(ShapeError::Unbalanced);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use rosc::{OscBundle, OscMessage, OscPacket, OscTime};

    #[test]
    fn addresses_map_both_ways() {
        assert_eq!(osc_to_clasp("", "/synth/volume"), "/synth/volume");
        assert_eq!(osc_to_clasp("/osc", "/synth/volume"), "/osc/synth/volume");
        assert_eq!(clasp_to_osc("", "/a/b"), Some("/a/b"));
        assert_eq!(clasp_to_osc("/osc", "/osc/a/b"), Some("/a/b"));
        assert_eq!(clasp_to_osc("/osc", "/oscillator/a"), None);
        assert_eq!(clasp_to_osc("/osc", "/osc"), None);
        assert_eq!(normalize_namespace("/").as_deref(), Some(""));
        assert_eq!(normalize_namespace("osc/").as_deref(), Some("/osc"));
        assert_eq!(normalize_namespace("/o*"), None);
    }

    #[test]
    fn ints_widen_only_when_needed_and_maps_are_json() {
        let o = ArgOptions::default();
        assert_eq!(to_args(&Value::Int(5), o), vec![OscType::Int(5)]);
        assert_eq!(
            to_args(&Value::Int(1 << 40), o),
            vec![OscType::Long(1 << 40)]
        );
        assert_eq!(to_args(&Value::Float(0.5), o), vec![OscType::Float(0.5)]);
        let d = ArgOptions { float64: true };
        assert_eq!(to_args(&Value::Float(0.1), d), vec![OscType::Double(0.1)]);
        let m = Value::Map(vec![("a".into(), Value::Int(1))]);
        assert_eq!(
            to_args(&m, o),
            vec![OscType::String("{\"a\":1}".to_owned())]
        );
        let nested = Value::Array(vec![
            Value::Int(1),
            Value::Array(vec![Value::Bool(true), Value::Null]),
        ]);
        assert_eq!(
            to_args(&nested, o),
            vec![OscType::Int(1), OscType::Bool(true), OscType::Nil]
        );
    }

    #[test]
    fn shape_check_bounds_nesting_and_balances_brackets() {
        let mut packet = OscPacket::Message(OscMessage {
            addr: "/a".into(),
            args: vec![],
        });
        for _ in 0..10 {
            packet = OscPacket::Bundle(OscBundle {
                timetag: OscTime::from((0, 1)),
                content: vec![packet],
            });
        }
        let bytes = rosc::encoder::encode(&packet).unwrap();
        assert_eq!(check_shape(&bytes, 10, 8), Ok(()));
        assert_eq!(check_shape(&bytes, 9, 8), Err(ShapeError::BundleDepth(9)));
        let deep = b"/a\0\0,[[[[\0\0\0\0".to_vec();
        assert_eq!(check_shape(&deep, 8, 3), Err(ShapeError::ArrayDepth(3)));
        assert_eq!(check_shape(&deep, 8, 8), Err(ShapeError::Unbalanced));
        assert_eq!(check_shape(b"/a\0\0,[i]\0\0\0\0\0\0\0\x01", 8, 8), Ok(()));
    }

    /// Values an OSC round trip gives back unchanged (f32 floats, ≥ 2 non-array elements in
    /// arrays; a one-element array becomes its element and an empty one Null).
    fn representable(float64: bool) -> impl Strategy<Value = Value> {
        let float = if float64 {
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .boxed()
        } else {
            any::<f32>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(f64::from)
                .boxed()
        };
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            float.prop_map(Value::Float),
            "[^\0]{0,16}".prop_map(|s| Value::String(s.into())),
            proptest::collection::vec(any::<u8>(), 0..16)
                .prop_map(|b| Value::Bytes(bytes::Bytes::from(b))),
        ];
        prop_oneof![
            scalar.clone(),
            proptest::collection::vec(scalar, 2..6).prop_map(Value::Array),
        ]
    }

    proptest! {
        #[test]
        fn values_round_trip_through_args(v in representable(false)) {
            let args = to_args(&v, ArgOptions::default());
            prop_assert_eq!(args_to_value(&args), v);
        }

        #[test]
        fn values_round_trip_through_args_f64(v in representable(true)) {
            let args = to_args(&v, ArgOptions { float64: true });
            prop_assert_eq!(args_to_value(&args), v);
        }

        #[test]
        fn values_round_trip_through_encoded_osc(v in representable(false)) {
            let msg = OscPacket::Message(OscMessage { addr: "/x".into(), args: to_args(&v, ArgOptions::default()) });
            let bytes = rosc::encoder::encode(&msg).unwrap();
            let (rest, back) = rosc::decoder::decode_udp(&bytes).unwrap();
            prop_assert!(rest.is_empty());
            let OscPacket::Message(m) = back else { panic!("not a message") };
            prop_assert_eq!(args_to_value(&m.args), v);
        }

        #[test]
        fn shape_check_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = check_shape(&buf, 4, 4);
            let mut b = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
            b.extend_from_slice(&buf);
            let _ = check_shape(&b, 4, 4);
        }
    }
}
