//! CLASP values (protocol.md §2.3).
//!
//! On the wire a value is a one-byte type tag followed by its data. Decoders accept all twelve
//! tags; the narrow integer and float tags (`i8`, `i16`, `i32`, `f32`) are widened to
//! [`Value::Int`] and [`Value::Float`], so every value this crate produces re-encodes as one of the
//! eight tags the official encoders emit.

use bytes::Bytes;

/// An immutable UTF-8 string that shares the buffer it was decoded from (no copy on decode).
///
/// Decoded strings are slices of the received frame, so a long-lived small string keeps its
/// whole frame alive; call [`compact`] on values you keep for a long time if that matters.
pub type Str = bytestring::ByteString;

/// A copy of `s` that owns just its own bytes.
pub fn compact(s: &Str) -> Str {
    Str::from(&**s)
}

/// Wire tags of the value encoding.
pub mod tag {
    /// `null`: no data.
    pub const NULL: u8 = 0x00;
    /// `bool`: one byte, non-zero is true.
    pub const BOOL: u8 = 0x01;
    /// `i8`: decode only, widened to i64.
    pub const I8: u8 = 0x02;
    /// `i16`: decode only, widened to i64.
    pub const I16: u8 = 0x03;
    /// `i32`: decode only, widened to i64.
    pub const I32: u8 = 0x04;
    /// `i64`: eight bytes, two's complement.
    pub const I64: u8 = 0x05;
    /// `f32`: decode only, widened to f64.
    pub const F32: u8 = 0x06;
    /// `f64`: eight bytes, IEEE-754 binary64.
    pub const F64: u8 = 0x07;
    /// UTF-8 string with a u16 length.
    pub const STRING: u8 = 0x08;
    /// Raw bytes with a u16 length.
    pub const BYTES: u8 = 0x09;
    /// Array: u16 count of tagged values.
    pub const ARRAY: u8 = 0x0A;
    /// Map: u16 count of (string key, tagged value) pairs.
    pub const MAP: u8 = 0x0B;
}

/// A CLASP value.
///
/// Maps keep the order of their entries as received (the JS and Python clients preserve insertion
/// order; the Rust reference does not), so a forwarded map is byte-identical to the one sent.
/// Lookups with [`Value::get`] take the last entry for a repeated key.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Null (tag 0x00).
    #[default]
    Null,
    /// Boolean (tag 0x01).
    Bool(bool),
    /// Integer (tag 0x05; tags 0x02-0x04 widen to this).
    Int(i64),
    /// Float (tag 0x07; tag 0x06 widens to this).
    Float(f64),
    /// UTF-8 string (tag 0x08).
    String(Str),
    /// Raw bytes (tag 0x09).
    Bytes(Bytes),
    /// Array of values (tag 0x0A).
    Array(Vec<Value>),
    /// Map of string keys to values, in wire order (tag 0x0B).
    Map(Vec<(Str, Value)>),
}

impl Value {
    /// The wire tag this value encodes with.
    pub fn tag(&self) -> u8 {
        match self {
            Value::Null => tag::NULL,
            Value::Bool(_) => tag::BOOL,
            Value::Int(_) => tag::I64,
            Value::Float(_) => tag::F64,
            Value::String(_) => tag::STRING,
            Value::Bytes(_) => tag::BYTES,
            Value::Array(_) => tag::ARRAY,
            Value::Map(_) => tag::MAP,
        }
    }

    /// A short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as f64 if it is numeric (ints are converted).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as i64 if it is an integer, or a float with an exact integer value.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.2e18 => {
                Some(*f as i64)
            }
            _ => None,
        }
    }

    /// The value as a bool if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as a string slice if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// For a map, the value of the last entry named `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| &**k == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.into())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v.into())
    }
}

impl From<Str> for Value {
    fn from(v: Str) -> Self {
        Value::String(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v.into())
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}
