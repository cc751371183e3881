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

/// Context of every error this module returns.
const CONTEXT: &str = "MessagePack";

/// The message names the `type` key may hold.
const NAMES: [&str; 17] = [
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

/// The fields of each message type (second pass over its map).
impl<'a> Reader<'a> {
    /// The single required field `key` of a message, read by `read`.
    fn only_field<T>(
        &mut self,
        map: &MapAt,
        key: &'static str,
        mut read: impl FnMut(&mut Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let mut found = None;
        self.entries(map, |r, k| {
            if k != key {
                return Ok(false);
            }
            found = read(r)?;
            Ok(true)
        })?;
        self.required(found, key, map)
    }

    /// A list of feature names.
    fn features(&mut self, field: &'static str) -> Result<Features> {
        let mut bits = 0;
        self.names(field, |n| bits |= Features::from_names([n]).0)?;
        Ok(Features(bits))
    }

    fn hello(&mut self, map: &MapAt) -> Result<Message> {
        let (mut version, mut name, mut features, mut token) = (None, None, Features(0), None);
        self.entries(map, |r, key| {
            match key {
                "version" => version = r.opt_uint("version")?,
                "name" => name = r.opt_string("name")?,
                "features" => features = r.features("features")?,
                "token" => token = r.token("token")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Hello(Hello {
            version: self.required(version, "version", map)?,
            features,
            name: self.required(name, "name", map)?,
            token,
        }))
    }

    fn welcome(&mut self, map: &MapAt) -> Result<Message> {
        let (mut version, mut session, mut name, mut time) = (None, None, None, None);
        let (mut features, mut token) = (Features(0), None);
        self.entries(map, |r, key| {
            match key {
                "version" => version = r.opt_uint("version")?,
                "session" => session = r.opt_string("session")?,
                "name" => name = r.opt_string("name")?,
                "features" => features = r.features("features")?,
                "time" => time = r.opt_uint("time")?,
                "token" => token = r.token("token")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Welcome(Welcome {
            version: self.required(version, "version", map)?,
            features,
            time: self.required(time, "time", map)?,
            session: self.required(session, "session", map)?,
            name: self.required(name, "name", map)?,
            token,
        }))
    }

    /// `range: [min, max]`; nil is `None`.
    fn range(&mut self, field: &'static str) -> Result<Option<(f64, f64)>> {
        match self.head(field)? {
            (_, Head::Nil) => Ok(None),
            (_, Head::Array(2)) => Ok(Some((self.f64(field)?, self.f64(field)?))),
            (at, Head::Array(n)) => Err(self.fail(
                at,
                format!(
                    "field `{field}` of {}: expected an array of 2 numbers, found an array of {n}",
                    self.msg
                ),
            )),
            (at, other) => Err(self.mismatch(at, field, "array of 2 numbers", &other)),
        }
    }

    fn meta(&mut self, depth: usize) -> Result<Option<SignalMeta>> {
        let Some(map) = self.opt_map("signals[].meta")? else {
            return Ok(None);
        };
        let mut meta = SignalMeta::default();
        self.entries(&map, |r, key| {
            match key {
                "unit" => meta.unit = r.opt_string("signals[].meta.unit")?,
                "range" => meta.range = r.range("signals[].meta.range")?,
                "default" => meta.default = r.opt_value("signals[].meta.default", depth)?,
                "description" => meta.description = r.opt_string("signals[].meta.description")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Some(meta))
    }

    /// One entry of ANNOUNCE or RESULT `signals`.
    fn signal_def(&mut self, depth: usize) -> Result<SignalDef> {
        let map = self.map("signals[]")?;
        let mut def = SignalDef::default();
        let mut address = None;
        self.entries(&map, |r, key| {
            match key {
                "address" => address = r.opt_string("signals[].address")?,
                "type" => {
                    def.signal = r
                        .opt_str("signals[].type")?
                        .and_then(SignalType::from_name)
                        .unwrap_or_default();
                }
                "datatype" => def.datatype = r.opt_string("signals[].datatype")?,
                "access" => def.access = r.opt_string("signals[].access")?,
                "meta" => def.meta = r.meta(depth)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        def.address = self.required(address, "signals[].address", &map)?;
        Ok(def)
    }

    fn announce(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let (mut namespace, mut signals) = (None, Vec::new());
        self.entries(map, |r, key| {
            match key {
                "namespace" => namespace = r.opt_string("namespace")?,
                "signals" => signals = r.list("signals", |r| r.signal_def(depth))?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Announce(Announce {
            namespace: self.required(namespace, "namespace", map)?,
            signals,
        }))
    }

    fn result(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let mut signals = Vec::new();
        self.entries(map, |r, key| {
            if key != "signals" {
                return Ok(false);
            }
            signals = r.list("signals", |r| r.signal_def(depth))?;
            Ok(true)
        })?;
        Ok(Message::Result(QueryResult { signals }))
    }

    fn options(&mut self) -> Result<SubscribeOptions> {
        let mut o = SubscribeOptions::default();
        let Some(map) = self.opt_map("options")? else {
            return Ok(o);
        };
        self.entries(&map, |r, key| {
            match key {
                "max_rate" => o.max_rate = r.opt_uint("options.max_rate")?,
                "epsilon" => o.epsilon = r.opt_f64("options.epsilon")?,
                "history" => o.history = r.opt_uint("options.history")?,
                "window" => o.window = r.opt_uint("options.window")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(o)
    }

    fn subscribe(&mut self, map: &MapAt) -> Result<Message> {
        let (mut id, mut pattern) = (None, None);
        let (mut types, mut options) = (SignalTypes::ALL, SubscribeOptions::default());
        self.entries(map, |r, key| {
            match key {
                "id" => id = r.opt_uint("id")?,
                "pattern" => pattern = r.opt_string("pattern")?,
                "types" => {
                    let mut set: Vec<SignalType> = Vec::new();
                    r.names("types", |n| {
                        if let Some(t) = SignalType::from_name(n)
                            && !set.contains(&t)
                        {
                            set.push(t);
                        }
                    })?;
                    types = SignalTypes::of(&set);
                }
                "options" => options = r.options()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Subscribe(Subscribe {
            id: self.required(id, "id", map)?,
            pattern: self.required(pattern, "pattern", map)?,
            types,
            options,
        }))
    }

    fn publish(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let mut address = None;
        let (mut signal, mut phase) = (SignalType::Event, GesturePhase::Start);
        let (mut value, mut payload, mut samples) = (None, None, None);
        let (mut timestamp, mut id, mut rate) = (None, None, None);
        self.entries(map, |r, key| {
            match key {
                "address" => address = r.opt_string("address")?,
                "signal" => {
                    signal = r
                        .opt_str("signal")?
                        .and_then(SignalType::from_name)
                        .unwrap_or_default();
                }
                "phase" => {
                    phase = r
                        .opt_str("phase")?
                        .and_then(GesturePhase::from_name)
                        .unwrap_or_default();
                }
                "value" => value = r.opt_value("value", depth)?,
                "payload" => payload = r.opt_value("payload", depth)?,
                "samples" => {
                    samples = if r.take_nil() {
                        None
                    } else {
                        Some(r.list("samples", |r| r.f64("samples"))?)
                    };
                }
                "timestamp" => timestamp = r.opt_uint("timestamp")?,
                "id" => id = r.opt_uint("id")?,
                "rate" => rate = r.opt_uint("rate")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let payload = match (value.or(payload), samples) {
            (Some(v), _) => PublishPayload::Value(v),
            (None, Some(s)) => PublishPayload::Samples(s),
            (None, None) => PublishPayload::None,
        };
        Ok(Message::Publish(Publish {
            address: self.required(address, "address", map)?,
            signal,
            phase,
            payload,
            timestamp,
            id,
            rate,
        }))
    }

    fn set(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let (mut address, mut value, mut revision, mut ttl) = (None, None, None, None);
        let (mut lock, mut unlock) = (false, false);
        self.entries(map, |r, key| {
            match key {
                "address" => address = r.opt_string("address")?,
                "value" => value = Some(r.value("value", depth)?),
                "revision" => revision = r.opt_uint("revision")?,
                "lock" => lock = r.opt_bool("lock")?.unwrap_or(false),
                "unlock" => unlock = r.opt_bool("unlock")?.unwrap_or(false),
                "ttl" => ttl = r.opt_uint("ttl")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Set(Set {
            address: self.required(address, "address", map)?,
            value: self.required(value, "value", map)?,
            revision,
            lock,
            unlock,
            ttl,
        }))
    }

    /// One entry of SNAPSHOT `params`.
    fn param(&mut self, depth: usize) -> Result<ParamValue> {
        let map = self.map("params[]")?;
        let (mut address, mut value, mut revision) = (None, None, None);
        let (mut writer, mut timestamp) = (None, None);
        self.entries(&map, |r, key| {
            match key {
                "address" => address = r.opt_string("params[].address")?,
                "value" => value = Some(r.value("params[].value", depth)?),
                "revision" => revision = r.opt_uint("params[].revision")?,
                "writer" => writer = r.opt_string("params[].writer")?,
                "timestamp" => timestamp = r.opt_uint("params[].timestamp")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(ParamValue {
            address: self.required(address, "params[].address", &map)?,
            value: self.required(value, "params[].value", &map)?,
            revision: self.required(revision, "params[].revision", &map)?,
            writer,
            timestamp,
        })
    }

    fn snapshot(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let mut params = Vec::new();
        self.entries(map, |r, key| {
            if key != "params" {
                return Ok(false);
            }
            params = r.list("params", |r| r.param(depth))?;
            Ok(true)
        })?;
        Ok(Message::Snapshot(Snapshot { params }))
    }

    fn bundle(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let inner = self.nest(map.at, depth)?;
        let (mut timestamp, mut messages) = (None, Vec::new());
        self.entries(map, |r, key| {
            match key {
                "timestamp" => timestamp = r.opt_uint("timestamp")?,
                "messages" => messages = r.list("messages", |r| r.message(inner))?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Bundle(Bundle {
            timestamp,
            messages,
        }))
    }

    fn sync(&mut self, map: &MapAt) -> Result<Message> {
        let (mut t1, mut t2, mut t3) = (None, None, None);
        self.entries(map, |r, key| {
            match key {
                "t1" => t1 = r.opt_uint("t1")?,
                "t2" => t2 = r.opt_uint("t2")?,
                "t3" => t3 = r.opt_uint("t3")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Sync(ClockSync {
            t1: self.required(t1, "t1", map)?,
            t2,
            t3,
        }))
    }

    fn ack(&mut self, map: &MapAt) -> Result<Message> {
        let mut ack = Ack::default();
        self.entries(map, |r, key| {
            match key {
                "address" => ack.address = r.opt_string("address")?,
                "revision" => ack.revision = r.opt_uint("revision")?,
                "locked" => ack.locked = r.opt_bool("locked")?,
                "holder" => ack.holder = r.opt_string("holder")?,
                "correlation_id" => ack.correlation_id = r.opt_uint("correlation_id")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Ack(ack))
    }

    fn error_msg(&mut self, map: &MapAt) -> Result<Message> {
        let (mut code, mut message) = (None, None);
        let (mut address, mut correlation_id) = (None, None);
        self.entries(map, |r, key| {
            match key {
                "code" => code = r.opt_uint::<u16>("code")?,
                "message" => message = r.opt_string("message")?,
                "address" => address = r.opt_string("address")?,
                "correlation_id" => correlation_id = r.opt_uint("correlation_id")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Error(ErrorMessage {
            code: ErrorCode::from_code(self.required(code, "code", map)?),
            message: self.required(message, "message", map)?,
            address,
            correlation_id,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

type EResult<T = ()> = std::result::Result<T, EncodeError>;

/// Unwraps the result of a write into a [`ByteBuf`], which cannot fail.
fn done<T>(r: std::result::Result<T, ValueWriteError<Infallible>>) -> T {
    match r {
        Ok(v) => v,
        Err(ValueWriteError::InvalidMarkerWrite(e) | ValueWriteError::InvalidDataWrite(e)) => {
            match e {}
        }
    }
}

/// A length as MessagePack's u32 (anything longer could not be framed anyway).
fn len32(len: usize) -> EResult<u32> {
    u32::try_from(len).map_err(|_| EncodeError::PayloadTooLarge(len))
}

fn put_str(out: &mut ByteBuf, s: &str) -> EResult {
    done(rmp::encode::write_str_len(out, len32(s.len())?));
    out.as_mut_vec().extend_from_slice(s.as_bytes());
    Ok(())
}

fn nest(depth: usize) -> EResult<usize> {
    if depth >= MAX_NESTING {
        Err(EncodeError::TooDeep(MAX_NESTING))
    } else {
        Ok(depth + 1)
    }
}

fn put_value(out: &mut ByteBuf, v: &Value, depth: usize) -> EResult {
    match v {
        Value::Null => {
            let Ok(()) = rmp::encode::write_nil(out);
        }
        Value::Bool(b) => {
            let Ok(()) = rmp::encode::write_bool(out, *b);
        }
        Value::Int(i) => {
            done(rmp::encode::write_sint(out, *i));
        }
        Value::Float(f) => done(rmp::encode::write_f64(out, *f)),
        Value::String(s) => put_str(out, s)?,
        Value::Bytes(b) => {
            done(rmp::encode::write_bin_len(out, len32(b.len())?));
            out.as_mut_vec().extend_from_slice(b);
        }
        Value::Array(items) => {
            let depth = nest(depth)?;
            done(rmp::encode::write_array_len(out, len32(items.len())?));
            for item in items {
                put_value(out, item, depth)?;
            }
        }
        Value::Map(entries) => {
            let depth = nest(depth)?;
            done(rmp::encode::write_map_len(out, len32(entries.len())?));
            for (key, item) in entries {
                put_str(out, key)?;
                put_value(out, item, depth)?;
            }
        }
    }
    Ok(())
}

/// The entries of a map being written, counted so the header can be written first.
struct Fields {
    buf: ByteBuf,
    len: u32,
}

impl Fields {
    fn new() -> Self {
        Fields {
            buf: ByteBuf::new(),
            len: 0,
        }
    }

    /// Starts a message map with its `type`.
    fn message(name: &str) -> EResult<Self> {
        let mut f = Fields::new();
        f.str("type", name)?;
        Ok(f)
    }

    /// Writes a key; the caller writes its value into the returned buffer.
    fn key(&mut self, key: &str) -> EResult<&mut ByteBuf> {
        self.len += 1;
        put_str(&mut self.buf, key)?;
        Ok(&mut self.buf)
    }

    fn str(&mut self, key: &str, v: &str) -> EResult {
        put_str(self.key(key)?, v)
    }

    fn opt_str(&mut self, key: &str, v: Option<&str>) -> EResult {
        v.map_or(Ok(()), |v| self.str(key, v))
    }

    fn uint(&mut self, key: &str, v: u64) -> EResult {
        done(rmp::encode::write_uint(self.key(key)?, v));
        Ok(())
    }

    fn opt_uint(&mut self, key: &str, v: Option<impl Into<u64>>) -> EResult {
        v.map_or(Ok(()), |v| self.uint(key, v.into()))
    }

    fn bool(&mut self, key: &str, v: bool) -> EResult {
        let Ok(()) = rmp::encode::write_bool(self.key(key)?, v);
        Ok(())
    }

    fn f64(&mut self, key: &str, v: f64) -> EResult {
        done(rmp::encode::write_f64(self.key(key)?, v));
        Ok(())
    }

    fn value(&mut self, key: &str, v: &Value, depth: usize) -> EResult {
        put_value(self.key(key)?, v, depth)
    }

    fn names(&mut self, key: &str, names: &[&str]) -> EResult {
        let out = self.key(key)?;
        done(rmp::encode::write_array_len(out, len32(names.len())?));
        names.iter().try_for_each(|n| put_str(out, n))
    }

    fn map(&mut self, key: &str, inner: Fields) -> EResult {
        inner.finish(self.key(key)?);
        Ok(())
    }

    /// Writes the map (header and entries) to `out`.
    fn finish(self, out: &mut ByteBuf) {
        done(rmp::encode::write_map_len(out, self.len));
        out.as_mut_vec().extend_from_slice(self.buf.as_slice());
    }
}

/// Encodes the legacy MessagePack payload of `msg` (no frame header).
///
/// For tests and tools only: routers never emit this form. Keys come in the order the Python
/// client writes them (`type` first; BUNDLE: `type, timestamp` (nil when absent), `messages`;
/// SET: `type, address, value`, then `revision`, `lock`, `unlock`, `ttl` only when set), integers
/// take their shortest form, floats are always float64, [`Value::Bytes`] is a bin, and `None`
/// fields are left out. Fails if values or bundles nest deeper than [`MAX_NESTING`] or the
/// payload would exceed the 65,535-byte frame limit.
pub fn encode(msg: &Message) -> std::result::Result<Vec<u8>, EncodeError> {
    let mut out = ByteBuf::new();
    message_fields(msg, 0)?.finish(&mut out);
    let out = out.into_vec();
    if out.len() > MAX_PAYLOAD {
        return Err(EncodeError::PayloadTooLarge(out.len()));
    }
    Ok(out)
}

fn signal_def(def: &SignalDef, depth: usize) -> EResult<Fields> {
    let mut f = Fields::new();
    f.str("address", &def.address)?;
    f.str("type", def.signal.name())?;
    f.opt_str("datatype", def.datatype.as_deref())?;
    f.opt_str("access", def.access.as_deref())?;
    if let Some(meta) = &def.meta {
        let mut m = Fields::new();
        m.opt_str("unit", meta.unit.as_deref())?;
        if let Some((min, max)) = meta.range {
            let out = m.key("range")?;
            done(rmp::encode::write_array_len(out, 2));
            done(rmp::encode::write_f64(out, min));
            done(rmp::encode::write_f64(out, max));
        }
        if let Some(default) = &meta.default {
            m.value("default", default, depth)?;
        }
        m.opt_str("description", meta.description.as_deref())?;
        f.map("meta", m)?;
    }
    Ok(f)
}

fn signal_defs(f: &mut Fields, signals: &[SignalDef], depth: usize) -> EResult {
    let out = f.key("signals")?;
    done(rmp::encode::write_array_len(out, len32(signals.len())?));
    for def in signals {
        signal_def(def, depth)?.finish(out);
    }
    Ok(())
}

fn message_fields(msg: &Message, depth: usize) -> EResult<Fields> {
    let mut f = Fields::message(msg.name())?;
    match msg {
        Message::Hello(m) => {
            f.uint("version", m.version.into())?;
            f.str("name", &m.name)?;
            f.names("features", &m.features.names().collect::<Vec<_>>())?;
            f.opt_str("token", m.token.as_deref())?;
        }
        Message::Welcome(m) => {
            f.uint("version", m.version.into())?;
            f.str("session", &m.session)?;
            f.str("name", &m.name)?;
            f.names("features", &m.features.names().collect::<Vec<_>>())?;
            f.uint("time", m.time)?;
            f.opt_str("token", m.token.as_deref())?;
        }
        Message::Announce(m) => {
            f.str("namespace", &m.namespace)?;
            signal_defs(&mut f, &m.signals, depth)?;
        }
        Message::Subscribe(m) => {
            f.uint("id", m.id.into())?;
            f.str("pattern", &m.pattern)?;
            let types: Vec<_> = m.types.iter().map(SignalType::name).collect();
            f.names("types", &types)?;
            if !m.options.is_empty() {
                let o = &m.options;
                let mut of = Fields::new();
                of.opt_uint("max_rate", o.max_rate)?;
                if let Some(e) = o.epsilon {
                    of.f64("epsilon", e)?;
                }
                of.opt_uint("history", o.history)?;
                of.opt_uint("window", o.window)?;
                f.map("options", of)?;
            }
        }
        Message::Unsubscribe(m) => f.uint("id", m.id.into())?,
        Message::Publish(m) => {
            f.str("address", &m.address)?;
            f.str("signal", m.signal.name())?;
            if m.signal == SignalType::Gesture || m.phase != GesturePhase::Start {
                f.str("phase", m.phase.name())?;
            }
            match &m.payload {
                PublishPayload::None => {}
                PublishPayload::Value(v) => f.value("value", v, depth)?,
                PublishPayload::Samples(samples) => {
                    let out = f.key("samples")?;
                    done(rmp::encode::write_array_len(out, len32(samples.len())?));
                    for s in samples {
                        done(rmp::encode::write_f64(out, *s));
                    }
                }
            }
            f.opt_uint("timestamp", m.timestamp)?;
            f.opt_uint("id", m.id)?;
            f.opt_uint("rate", m.rate)?;
        }
        Message::Set(m) => {
            f.str("address", &m.address)?;
            f.value("value", &m.value, depth)?;
            f.opt_uint("revision", m.revision)?;
            if m.lock {
                f.bool("lock", true)?;
            }
            if m.unlock {
                f.bool("unlock", true)?;
            }
            f.opt_uint("ttl", m.ttl)?;
        }
        Message::Get(m) => f.str("address", &m.address)?,
        Message::Snapshot(m) => {
            let out = f.key("params")?;
            done(rmp::encode::write_array_len(out, len32(m.params.len())?));
            for p in &m.params {
                let mut pf = Fields::new();
                pf.str("address", &p.address)?;
                pf.value("value", &p.value, depth)?;
                pf.uint("revision", p.revision)?;
                pf.opt_str("writer", p.writer.as_deref())?;
                pf.opt_uint("timestamp", p.timestamp)?;
                pf.finish(out);
            }
        }
        Message::Bundle(m) => {
            let inner = nest(depth)?;
            match m.timestamp {
                Some(ts) => f.uint("timestamp", ts)?,
                None => {
                    let Ok(()) = rmp::encode::write_nil(f.key("timestamp")?);
                }
            }
            let out = f.key("messages")?;
            done(rmp::encode::write_array_len(out, len32(m.messages.len())?));
            for inner_msg in &m.messages {
                message_fields(inner_msg, inner)?.finish(out);
            }
        }
        Message::Sync(m) => {
            f.uint("t1", m.t1)?;
            f.opt_uint("t2", m.t2)?;
            f.opt_uint("t3", m.t3)?;
        }
        Message::Ping | Message::Pong => {}
        Message::Ack(m) => {
            f.opt_str("address", m.address.as_deref())?;
            f.opt_uint("revision", m.revision)?;
            if let Some(locked) = m.locked {
                f.bool("locked", locked)?;
            }
            f.opt_str("holder", m.holder.as_deref())?;
            f.opt_uint("correlation_id", m.correlation_id)?;
        }
        Message::Error(m) => {
            f.uint("code", m.code.code().into())?;
            f.str("message", &m.message)?;
            f.opt_str("address", m.address.as_deref())?;
            f.opt_uint("correlation_id", m.correlation_id)?;
        }
        Message::Query(m) => f.str("pattern", &m.pattern)?,
        Message::Result(m) => signal_defs(&mut f, &m.signals, depth)?,
    }
    Ok(f)
}
