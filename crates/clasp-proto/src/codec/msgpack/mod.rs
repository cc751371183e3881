//! The legacy MessagePack payload form ("v2", protocol.md §4).
//!
//! A legacy payload is one MessagePack map: key `"type"` holds the upper-case message name
//! (`"SET"`, `"BUNDLE"`, ...) and the other keys are the message's fields in snake_case
//! (`address`, `value`, `revision`, `correlation_id`, ...). Values use the native MessagePack
//! types. The Python client 3.3.0 sends BUNDLE (of SET/PUBLISH maps) and QUERY this way, so a
//! router must decode this form; nobody emits it towards clients, and [`encode`] exists only for
//! tests and tools.
//!
//! # Decoding rules
//!
//! * Key order does not matter; a repeated key takes its last value; unknown keys (and keys that
//!   are not strings) are ignored; bytes after the top-level map are ignored.
//! * Optional fields may be missing or `nil`. `lock`, `unlock`, `features`, `types`, `signals`,
//!   `params` and `messages` default to false or empty. Other fields are required (`nil` is
//!   accepted for the required `value` of SET and of SNAPSHOT params, and means [`Value::Null`]).
//! * Values: nil, bool, int, float 32/64, str, bin, array and map (with string keys, order kept)
//!   become the matching [`Value`]. An unsigned integer above `i64::MAX` is an error (it cannot be
//!   a [`Value::Int`], and turning it into a float would silently lose precision). Extension types
//!   are rejected everywhere.
//! * Integer fields are range-checked (a `u32` field holding 2³² is an error, never truncated);
//!   float fields (`epsilon`, `range`, `samples`) also accept integers.
//! * PUBLISH: `value` and `payload` both become [`PublishPayload::Value`] (`value` wins when both
//!   are non-nil; then `samples`); nil or missing is [`PublishPayload::None`]. Unknown `signal` and
//!   `phase` names decode as event and start. **`timeline` (keyframes, loop) is dropped**, as the
//!   binary encoding cannot carry it either. `capabilities` of HELLO is dropped.
//! * Empty or nil tokens are `None`; unknown feature and signal-type names are dropped.
//! * Limits: arrays and maps (in values) and BUNDLEs count towards [`MAX_NESTING`], exactly as in
//!   the binary codec; every length is checked against the bytes that remain before anything is
//!   allocated; ignored values are skipped without recursion.
//!
//! Errors carry context `"MessagePack"` and the byte offset of the offending item.
//!
//! # What cannot round-trip
//!
//! `decode(encode(m)) == m` for every message except where the MessagePack form itself cannot
//! tell two messages apart: [`PublishPayload::Value`]`(`[`Value::Null`]`)` and a `meta.default` of
//! [`Value::Null`] decode as absent, an empty token as `None`, and feature bits without a name are
//! dropped.

use std::convert::Infallible;

use bytes::Bytes;
use rmp::Marker;
use rmp::encode::{ByteBuf, ValueWriteError};

use crate::MAX_NESTING;
use crate::address::bounded;
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::error_code::ErrorCode;
use crate::frame::MAX_PAYLOAD;
use crate::message::*;
use crate::value::{Str, Value};

mod encode;
mod fields;

pub use encode::encode;

/// Context of every error this module returns.
const CONTEXT: &str = "MessagePack";

/// The message names the `type` key may hold.
const NAMES: [&str; 18] = [
    "HELLO",
    "WELCOME",
    "ANNOUNCE",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "PUBLISH",
    "SET",
    "GET",
    "SNAPSHOT",
    "BUNDLE",
    "SYNC",
    "PING",
    "PONG",
    "ACK",
    "ERROR",
    "QUERY",
    "REPLAY",
    "RESULT",
];

type Result<T> = std::result::Result<T, DecodeError>;

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes a legacy MessagePack payload (a map with a `"type"` key) into a message.
///
/// Never panics; see the module documentation for the rules and limits.
pub fn decode(payload: &[u8]) -> Result<Message> {
    Reader {
        buf: payload,
        pos: 0,
        msg: "message",
    }
    .message(0)
}

/// One MessagePack item header: scalars with their data, containers with their element count.
#[derive(Debug, Clone, Copy)]
enum Head<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    BigUint(u64),
    Float(f64),
    /// String bytes, not yet checked for UTF-8.
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(usize),
    Map(usize),
}

impl Head<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Bool(_) => "boolean",
            Head::Int(_) | Head::BigUint(_) => "integer",
            Head::Float(_) => "float",
            Head::Str(_) => "string",
            Head::Bin(_) => "binary",
            Head::Array(_) => "array",
            Head::Map(_) => "map",
        }
    }
}

/// A map whose header has been read.
#[derive(Debug, Clone, Copy)]
struct MapAt {
    /// Offset of the map's marker.
    at: usize,
    /// Offset of its first key.
    start: usize,
    /// Number of entries.
    len: usize,
}

/// A bounds-checked cursor over the payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Name of the message being decoded, for errors.
    msg: &'static str,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn error(&self, at: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(CONTEXT, at, kind)
    }

    fn fail(&self, at: usize, text: String) -> DecodeError {
        self.error(at, DecodeErrorKind::MsgPack(text))
    }

    /// "field `f` of SET: expected string, found integer".
    fn mismatch(&self, at: usize, field: &str, expected: &str, found: &Head<'_>) -> DecodeError {
        self.fail(
            at,
            format!(
                "field `{field}` of {}: expected {expected}, found {}",
                self.msg,
                found.describe()
            ),
        )
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
        {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.error(
                self.pos,
                DecodeErrorKind::Truncated {
                    field,
                    needed: n,
                    remaining: self.remaining(),
                },
            )),
        }
    }

    fn bytes<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// Reads a big-endian length of `N` bytes (1, 2 or 4).
    fn len<const N: usize>(&mut self, field: &'static str) -> Result<usize> {
        let b = self.bytes::<N>(field)?;
        Ok(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }

    /// Checks that `count` items of at least `min` bytes each fit in what remains.
    fn check_count(
        &self,
        at: usize,
        count: usize,
        min: usize,
        field: &'static str,
    ) -> Result<usize> {
        if count.saturating_mul(min) > self.remaining() {
            Err(self.error(
                at,
                DecodeErrorKind::CountTooLarge {
                    field,
                    count,
                    remaining: self.remaining(),
                },
            ))
        } else {
            Ok(count)
        }
    }

    /// Reads the header of the next item (and the data of a scalar). Returns its offset.
    fn head(&mut self, field: &'static str) -> Result<(usize, Head<'a>)> {
        let at = self.pos;
        let [byte] = self.bytes::<1>(field)?;
        let head = match Marker::from_u8(byte) {
            Marker::Null => Head::Nil,
            Marker::True => Head::Bool(true),
            Marker::False => Head::Bool(false),
            Marker::FixPos(n) => Head::Int(n.into()),
            Marker::FixNeg(n) => Head::Int(n.into()),
            Marker::U8 => Head::Int(u8::from_be_bytes(self.bytes(field)?).into()),
            Marker::U16 => Head::Int(u16::from_be_bytes(self.bytes(field)?).into()),
            Marker::U32 => Head::Int(u32::from_be_bytes(self.bytes(field)?).into()),
            Marker::U64 => {
                let u = u64::from_be_bytes(self.bytes(field)?);
                i64::try_from(u).map_or(Head::BigUint(u), Head::Int)
            }
            Marker::I8 => Head::Int(i8::from_be_bytes(self.bytes(field)?).into()),
            Marker::I16 => Head::Int(i16::from_be_bytes(self.bytes(field)?).into()),
            Marker::I32 => Head::Int(i32::from_be_bytes(self.bytes(field)?).into()),
            Marker::I64 => Head::Int(i64::from_be_bytes(self.bytes(field)?)),
            Marker::F32 => Head::Float(f32::from_be_bytes(self.bytes(field)?).into()),
            Marker::F64 => Head::Float(f64::from_be_bytes(self.bytes(field)?)),
            Marker::FixStr(n) => Head::Str(self.take(n.into(), field)?),
            Marker::Str8 => {
                let n = self.len::<1>(field)?;
                Head::Str(self.take(n, field)?)
            }
            Marker::Str16 => {
                let n = self.len::<2>(field)?;
                Head::Str(self.take(n, field)?)
            }
            Marker::Str32 => {
                let n = self.len::<4>(field)?;
                Head::Str(self.take(n, field)?)
            }
            Marker::Bin8 => {
                let n = self.len::<1>(field)?;
                Head::Bin(self.take(n, field)?)
            }
            Marker::Bin16 => {
                let n = self.len::<2>(field)?;
                Head::Bin(self.take(n, field)?)
            }
            Marker::Bin32 => {
                let n = self.len::<4>(field)?;
                Head::Bin(self.take(n, field)?)
            }
            Marker::FixArray(n) => Head::Array(self.check_count(at, n.into(), 1, field)?),
            Marker::Array16 => {
                let n = self.len::<2>(field)?;
                Head::Array(self.check_count(at, n, 1, field)?)
            }
            Marker::Array32 => {
                let n = self.len::<4>(field)?;
                Head::Array(self.check_count(at, n, 1, field)?)
            }
            Marker::FixMap(n) => Head::Map(self.check_count(at, n.into(), 2, field)?),
            Marker::Map16 => {
                let n = self.len::<2>(field)?;
                Head::Map(self.check_count(at, n, 2, field)?)
            }
            Marker::Map32 => {
                let n = self.len::<4>(field)?;
                Head::Map(self.check_count(at, n, 2, field)?)
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                return Err(self.fail(
                    at,
                    format!(
                        "field `{field}` of {}: MessagePack extension type 0x{byte:02x} is not supported",
                        self.msg
                    ),
                ));
            }
            Marker::Reserved => {
                return Err(self.fail(
                    at,
                    format!(
                        "field `{field}` of {}: invalid MessagePack marker 0x{byte:02x}",
                        self.msg
                    ),
                ));
            }
        };
        Ok((at, head))
    }

    /// Skips one item, however deeply nested, without recursion or allocation.
    fn skip(&mut self, field: &'static str) -> Result<()> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let (at, head) = self.head(field)?;
            let more = match head {
                Head::Array(n) => n,
                Head::Map(n) => 2 * n,
                _ => continue,
            };
            pending += more;
            // Every pending item needs at least one byte.
            if pending > self.remaining() {
                return Err(self.error(
                    at,
                    DecodeErrorKind::CountTooLarge {
                        field,
                        count: more,
                        remaining: self.remaining(),
                    },
                ));
            }
        }
        Ok(())
    }

    fn nest(&self, at: usize, depth: usize) -> Result<usize> {
        if depth >= MAX_NESTING {
            Err(self.error(at, DecodeErrorKind::TooDeep(MAX_NESTING)))
        } else {
            Ok(depth + 1)
        }
    }

    fn utf8(&self, at: usize, bytes: &'a [u8], field: &'static str) -> Result<&'a str> {
        crate::utf8::str_from_utf8(bytes)
            .ok_or_else(|| self.error(at, DecodeErrorKind::InvalidUtf8(field)))
    }

    /// Reads a value (any MessagePack item but ext) at nesting `depth`.
    fn value(&mut self, field: &'static str, depth: usize) -> Result<Value> {
        let (at, head) = self.head(field)?;
        self.value_from(at, head, field, depth)
    }

    fn value_from(
        &mut self,
        at: usize,
        head: Head<'a>,
        field: &'static str,
        depth: usize,
    ) -> Result<Value> {
        Ok(match head {
            Head::Nil => Value::Null,
            Head::Bool(b) => Value::Bool(b),
            Head::Int(i) => Value::Int(i),
            Head::BigUint(u) => {
                return Err(self.fail(
                    at,
                    format!(
                        "field `{field}` of {}: integer {u} does not fit in a signed 64-bit value",
                        self.msg
                    ),
                ));
            }
            Head::Float(f) => Value::Float(f),
            Head::Str(b) => Value::String(Str::from(self.utf8(at, b, field)?)),
            Head::Bin(b) => Value::Bytes(Bytes::copy_from_slice(b)),
            Head::Array(n) => {
                let depth = self.nest(at, depth)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(field, depth)?);
                }
                Value::Array(items)
            }
            Head::Map(n) => {
                let depth = self.nest(at, depth)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let (key_at, key) = self.head(field)?;
                    let Head::Str(key) = key else {
                        return Err(self.fail(
                            key_at,
                            format!(
                                "field `{field}` of {}: map keys must be strings, found {}",
                                self.msg,
                                key.describe()
                            ),
                        ));
                    };
                    let key = Str::from(self.utf8(key_at, key, field)?);
                    entries.push((key, self.value(field, depth)?));
                }
                Value::Map(entries)
            }
        })
    }

    /// A value where nil means "absent".
    fn opt_value(&mut self, field: &'static str, depth: usize) -> Result<Option<Value>> {
        match self.head(field)? {
            (_, Head::Nil) => Ok(None),
            (at, head) => self.value_from(at, head, field, depth).map(Some),
        }
    }

    fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>> {
        match self.head(field)? {
            (_, Head::Nil) => Ok(None),
            (at, Head::Str(b)) => self.utf8(at, b, field).map(Some),
            (at, other) => Err(self.mismatch(at, field, "string", &other)),
        }
    }

    fn opt_string(&mut self, field: &'static str) -> Result<Option<Str>> {
        Ok(self.opt_str(field)?.map(Str::from))
    }

    /// A token: nil and the empty string are `None`.
    fn token(&mut self, field: &'static str) -> Result<Option<Str>> {
        Ok(self
            .opt_str(field)?
            .filter(|s| !s.is_empty())
            .map(Str::from))
    }

    /// An unsigned integer field, range-checked for `T`; nil is `None`.
    fn opt_uint<T: TryFrom<u64>>(&mut self, field: &'static str) -> Result<Option<T>> {
        let (at, head) = self.head(field)?;
        let n = match head {
            Head::Nil => return Ok(None),
            Head::Int(i) => u64::try_from(i).ok(),
            Head::BigUint(u) => Some(u),
            other => {
                let expected = format!("unsigned integer ({})", std::any::type_name::<T>());
                return Err(self.mismatch(at, field, &expected, &other));
            }
        };
        match n.and_then(|n| T::try_from(n).ok()) {
            Some(v) => Ok(Some(v)),
            None => {
                let shown = match head {
                    Head::Int(i) => i.to_string(),
                    Head::BigUint(u) => u.to_string(),
                    _ => String::new(),
                };
                Err(self.fail(
                    at,
                    format!(
                        "field `{field}` of {}: {shown} is out of range for {}",
                        self.msg,
                        std::any::type_name::<T>()
                    ),
                ))
            }
        }
    }

    /// A number (float or integer) as f64; nil is `None`.
    fn opt_f64(&mut self, field: &'static str) -> Result<Option<f64>> {
        match self.head(field)? {
            (_, Head::Nil) => Ok(None),
            (_, Head::Float(f)) => Ok(Some(f)),
            (_, Head::Int(i)) => Ok(Some(i as f64)),
            (_, Head::BigUint(u)) => Ok(Some(u as f64)),
            (at, other) => Err(self.mismatch(at, field, "number", &other)),
        }
    }

    fn f64(&mut self, field: &'static str) -> Result<f64> {
        let at = self.pos;
        self.opt_f64(field)?
            .ok_or_else(|| self.mismatch(at, field, "number", &Head::Nil))
    }

    fn opt_bool(&mut self, field: &'static str) -> Result<Option<bool>> {
        match self.head(field)? {
            (_, Head::Nil) => Ok(None),
            (_, Head::Bool(b)) => Ok(Some(b)),
            (at, other) => Err(self.mismatch(at, field, "boolean", &other)),
        }
    }

    /// An array whose elements are read by `item`; nil is an empty array.
    fn list<T>(
        &mut self,
        field: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = match self.head(field)? {
            (_, Head::Nil) => 0,
            (_, Head::Array(n)) => n,
            (at, other) => return Err(self.mismatch(at, field, "array", &other)),
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// An array of strings, each passed to `f`; nil is an empty array.
    fn names(&mut self, field: &'static str, mut f: impl FnMut(&str)) -> Result<()> {
        let n = match self.head(field)? {
            (_, Head::Nil) => 0,
            (_, Head::Array(n)) => n,
            (at, other) => return Err(self.mismatch(at, field, "array of strings", &other)),
        };
        for _ in 0..n {
            match self.head(field)? {
                (at, Head::Str(b)) => f(self.utf8(at, b, field)?),
                (at, other) => return Err(self.mismatch(at, field, "string", &other)),
            }
        }
        Ok(())
    }

    /// Consumes a nil if one comes next.
    fn take_nil(&mut self) -> bool {
        let nil = self.buf.get(self.pos) == Some(&0xc0);
        if nil {
            self.pos += 1;
        }
        nil
    }

    /// Reads a map header; nil is `None`.
    fn opt_map(&mut self, field: &'static str) -> Result<Option<MapAt>> {
        match self.head(field)? {
            (_, Head::Nil) => Ok(None),
            (at, Head::Map(len)) => Ok(Some(MapAt {
                at,
                start: self.pos,
                len,
            })),
            (at, other) => Err(self.mismatch(at, field, "map", &other)),
        }
    }

    fn map(&mut self, field: &'static str) -> Result<MapAt> {
        let at = self.pos;
        self.opt_map(field)?
            .ok_or_else(|| self.mismatch(at, field, "map", &Head::Nil))
    }

    /// Walks the entries of `map` from its start. `field` is called with the reader positioned
    /// at the value of each string key; it returns `false` (without reading) to skip the value.
    /// Leaves the reader after the map.
    fn entries(
        &mut self,
        map: &MapAt,
        mut field: impl FnMut(&mut Self, &'a str) -> Result<bool>,
    ) -> Result<()> {
        self.pos = map.start;
        for _ in 0..map.len {
            let key = match self.head("map key")? {
                (at, Head::Str(b)) => Some(self.utf8(at, b, "map key")?),
                (at, Head::Array(_) | Head::Map(_)) => {
                    self.pos = at;
                    self.skip("map key")?;
                    None
                }
                _ => None,
            };
            let consumed = match key {
                Some(key) => field(self, key)?,
                None => false,
            };
            if !consumed {
                self.skip("map value")?;
            }
        }
        Ok(())
    }

    /// The value of a required field, or an error naming it.
    fn required<T>(&self, value: Option<T>, field: &str, map: &MapAt) -> Result<T> {
        value.ok_or_else(|| {
            self.fail(
                map.at,
                format!(
                    "field `{field}` of {}: required but missing or nil",
                    self.msg
                ),
            )
        })
    }

    /// Decodes one message map at nesting `depth` (bundles add one level).
    fn message(&mut self, depth: usize) -> Result<Message> {
        let outer = self.msg;
        self.msg = "message";
        let map = match self.head("message")? {
            (at, Head::Map(len)) => MapAt {
                at,
                start: self.pos,
                len,
            },
            (at, other) => {
                return Err(self.fail(
                    at,
                    format!(
                        "expected a MessagePack map with a `type` key, found {}",
                        other.describe()
                    ),
                ));
            }
        };
        // First pass: find the (last) `type`, checking the map's structure on the way.
        let mut ty: Option<(usize, &'a str)> = None;
        self.entries(&map, |r, key| {
            if key != "type" {
                return Ok(false);
            }
            match r.head("type")? {
                (at, Head::Str(b)) => ty = Some((at, r.utf8(at, b, "type")?)),
                (at, other) => return Err(r.mismatch(at, "type", "string", &other)),
            }
            Ok(true)
        })?;
        let end = self.pos;
        let Some((ty_at, ty)) = ty else {
            return Err(self.fail(map.at, "message map has no `type` key".to_owned()));
        };
        let Some(name) = NAMES.iter().copied().find(|n| *n == ty) else {
            return Err(self.fail(ty_at, format!("unknown message type \"{}\"", bounded(ty))));
        };
        self.msg = name;
        // Second pass: the fields.
        let msg = match name {
            "HELLO" => self.hello(&map)?,
            "WELCOME" => self.welcome(&map)?,
            "ANNOUNCE" => self.announce(&map, depth)?,
            "SUBSCRIBE" => self.subscribe(&map)?,
            "UNSUBSCRIBE" => Message::Unsubscribe(Unsubscribe {
                id: self.only_field(&map, "id", |r| r.opt_uint("id"))?,
            }),
            "PUBLISH" => self.publish(&map, depth)?,
            "SET" => self.set(&map, depth)?,
            "GET" => Message::Get(Get {
                address: self.only_field(&map, "address", |r| r.opt_string("address"))?,
            }),
            "QUERY" => Message::Query(Query {
                pattern: self.only_field(&map, "pattern", |r| r.opt_string("pattern"))?,
            }),
            "SNAPSHOT" => self.snapshot(&map, depth)?,
            "REPLAY" => self.replay(&map)?,
            "BUNDLE" => self.bundle(&map, depth)?,
            "SYNC" => self.sync(&map)?,
            "PING" => {
                self.pos = end;
                Message::Ping
            }
            "PONG" => {
                self.pos = end;
                Message::Pong
            }
            "ACK" => self.ack(&map)?,
            "ERROR" => self.error_msg(&map)?,
            // "RESULT", the last name.
            _ => self.result(&map, depth)?,
        };
        debug_assert_eq!(self.pos, end);
        self.msg = outer;
        Ok(msg)
    }
}
