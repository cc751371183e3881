//! The compact binary payload encoding (encoding version 1, protocol.md §3).
//!
//! Every read is bounds-checked; every count is checked against the bytes that remain before
//! anything is allocated for it; nesting is limited to [`MAX_NESTING`]. Bytes left over after a
//! message are ignored, as the reference decoders do (v4 senders append fields v3 does not know),
//! except in PUBLISH where four or more trailing bytes are its `rate`.

use bytes::Bytes;

use crate::MAX_NESTING;
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::error_code::ErrorCode;
use crate::message::*;
use crate::value::{Str, Value, tag};

mod encode;
mod lists;

use encode::put_value;
pub(crate) use encode::{
    encode_payload, exact_payload_len, put_set_fields, set_payload_len, size_hint,
};
pub use lists::{ResultWriter, SNAPSHOT_HEADER_LEN, SnapshotWriter, snapshot_entry_len};

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// A bounds-checked cursor over `src[pos..end]`, shared by the owned decoder ([`Reader`]) and
/// the borrowed one ([`crate::codec::view`]). Positions are absolute in `src`; error offsets
/// count from `origin`.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    pub(crate) src: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) end: usize,
    origin: usize,
    /// Name of the message being decoded, for errors.
    pub(crate) context: &'static str,
}

pub(crate) type Result<T> = std::result::Result<T, DecodeError>;

impl<'a> Cursor<'a> {
    #[inline(always)]
    pub(crate) fn new(src: &'a [u8], pos: usize, end: usize, origin: usize) -> Self {
        Cursor {
            src,
            pos,
            end,
            origin,
            context: "payload",
        }
    }

    #[inline(always)]
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn err_at(&self, at: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.context, at - self.origin, kind)
    }

    #[cold]
    #[inline(never)]
    fn truncated(&self, needed: usize, field: &'static str) -> DecodeError {
        self.err(DecodeErrorKind::Truncated {
            field,
            needed,
            remaining: self.remaining(),
        })
    }

    pub(crate) fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        self.err_at(self.pos, kind)
    }

    /// Advances over `n` bytes; returns where they start.
    #[inline(always)]
    pub(crate) fn advance(&mut self, n: usize, field: &'static str) -> Result<usize> {
        if n > self.remaining() {
            return Err(self.truncated(n, field));
        }
        let at = self.pos;
        self.pos += n;
        Ok(at)
    }

    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let at = self.advance(n, field)?;
        let src: &'a [u8] = self.src;
        Ok(&src[at..at + n])
    }

    #[inline(always)]
    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    #[inline(always)]
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    #[inline(always)]
    pub(crate) fn f64(&mut self, field: &'static str) -> Result<f64> {
        Ok(f64::from_be_bytes(self.array(field)?))
    }

    /// A u16-length-prefixed UTF-8 string, borrowed from the input.
    #[inline(always)]
    pub(crate) fn str_ref(&mut self, field: &'static str) -> Result<&'a str> {
        let len = self.u16(field)? as usize;
        let at = self.pos;
        let bytes = self.take(len, field)?;
        crate::utf8::str_from_utf8(bytes)
            .ok_or_else(|| self.err_at(at, DecodeErrorKind::InvalidUtf8(field)))
    }

    /// Reads a u16 count and checks that `count * min_item` bytes remain.
    pub(crate) fn count(&mut self, field: &'static str, min_item: usize) -> Result<usize> {
        let count = self.u16(field)? as usize;
        if count * min_item > self.remaining() {
            return Err(self.err(DecodeErrorKind::CountTooLarge {
                field,
                count,
                remaining: self.remaining(),
            }));
        }
        Ok(count)
    }

    /// The data of a null, boolean or numeric value with tag `t`, the narrow tags widened;
    /// `None` for the other tags (nothing is read then).
    #[inline]
    pub(crate) fn scalar(&mut self, t: u8) -> Result<Option<Scalar>> {
        Ok(Some(match t {
            tag::NULL => Scalar::Null,
            tag::BOOL => Scalar::Bool(self.u8("bool")? != 0),
            tag::I8 => Scalar::Int(i8::from_be_bytes(self.array("i8")?).into()),
            tag::I16 => Scalar::Int(i16::from_be_bytes(self.array("i16")?).into()),
            tag::I32 => Scalar::Int(i32::from_be_bytes(self.array("i32")?).into()),
            tag::I64 => Scalar::Int(i64::from_be_bytes(self.array("i64")?)),
            tag::F32 => Scalar::Float(f32::from_be_bytes(self.array("f32")?).into()),
            tag::F64 => Scalar::Float(self.f64("f64")?),
            _ => return Ok(None),
        }))
    }

    pub(crate) fn nest(&self, depth: usize) -> Result<usize> {
        if depth >= MAX_NESTING {
            Err(self.err(DecodeErrorKind::TooDeep(MAX_NESTING)))
        } else {
            Ok(depth + 1)
        }
    }
}

/// A decoded null, boolean or number, before it becomes a [`Value`] or a view's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl From<Scalar> for Value {
    fn from(s: Scalar) -> Value {
        match s {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(i) => Value::Int(i),
            Scalar::Float(f) => Value::Float(f),
        }
    }
}

/// The owned decoder's cursor: strings and byte values are zero-copy slices of `bytes`, the
/// buffer the cursor reads.
struct Reader<'a> {
    c: Cursor<'a>,
    bytes: &'a Bytes,
}

impl<'a> std::ops::Deref for Reader<'a> {
    type Target = Cursor<'a>;
    #[inline(always)]
    fn deref(&self) -> &Cursor<'a> {
        &self.c
    }
}

impl<'a> std::ops::DerefMut for Reader<'a> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Cursor<'a> {
        &mut self.c
    }
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn new(src: &'a Bytes, pos: usize, end: usize, origin: usize) -> Self {
        Reader {
            c: Cursor::new(src, pos, end, origin),
            bytes: src,
        }
    }

    /// Takes `n` bytes as a shared slice of the payload.
    #[inline(always)]
    fn slice(&mut self, n: usize, field: &'static str) -> Result<Bytes> {
        let at = self.c.advance(n, field)?;
        Ok(self.bytes.slice(at..at + n))
    }

    #[inline(always)]
    fn str(&mut self, field: &'static str) -> Result<Str> {
        let len = self.c.u16(field)? as usize;
        let at = self.c.advance(len, field)?;
        crate::utf8::str_from_bytes(self.bytes.slice(at..at + len))
            .ok_or_else(|| self.c.err_at(at, DecodeErrorKind::InvalidUtf8(field)))
    }

    /// A string field where empty means absent (HELLO/WELCOME token).
    fn opt_str(&mut self, field: &'static str) -> Result<Option<Str>> {
        let s = self.str(field)?;
        Ok(if s.is_empty() { None } else { Some(s) })
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        let at = self.pos;
        let t = self.u8("value tag")?;
        self.value_data(t, at, depth)
    }

    /// Reads the data of a value whose tag `t` was read at `tag_at`.
    ///
    /// Scalars are read inline, so the value is built where the caller wants it; bytes, arrays
    /// and maps go through [`Reader::value_data_rest`].
    #[inline(always)]
    fn value_data(&mut self, t: u8, tag_at: usize, depth: usize) -> Result<Value> {
        Ok(match t {
            tag::NULL => Value::Null,
            tag::BOOL => Value::Bool(self.u8("bool")? != 0),
            tag::I64 => Value::Int(i64::from_be_bytes(self.array("i64")?)),
            tag::F64 => Value::Float(self.f64("f64")?),
            tag::STRING => Value::String(self.str("string")?),
            _ => return self.value_data_rest(t, tag_at, depth),
        })
    }

    /// [`Reader::value_data`] for the tags it does not read inline.
    #[inline(never)]
    fn value_data_rest(&mut self, t: u8, tag_at: usize, depth: usize) -> Result<Value> {
        if let Some(s) = self.c.scalar(t)? {
            return Ok(s.into());
        }
        Ok(match t {
            tag::STRING => Value::String(self.str("string")?),
            tag::BYTES => {
                let len = self.u16("bytes")? as usize;
                Value::Bytes(self.slice(len, "bytes")?)
            }
            tag::ARRAY => {
                let depth = self.nest(depth)?;
                let n = self.count("array", 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth)?);
                }
                Value::Array(items)
            }
            tag::MAP => {
                let depth = self.nest(depth)?;
                let n = self.count("map", 3)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let key = self.str("map key")?;
                    entries.push((key, self.value(depth)?));
                }
                Value::Map(entries)
            }
            other => {
                return Err(self.err_at(tag_at, DecodeErrorKind::UnknownValueTag(other)));
            }
        })
    }
}

/// Decodes one tagged value from the start of `buf`; returns it and the bytes it used.
///
/// This is the value encoding of protocol.md §2.3 on its own, for storing values outside frames.
/// The value's strings are copied out of `buf` (one allocation for the whole value).
pub fn decode_value(buf: &[u8]) -> Result<(Value, usize)> {
    let src = Bytes::copy_from_slice(buf);
    let mut r = Reader::new(&src, 0, src.len(), 0);
    r.context = "value";
    let v = r.value(0)?;
    Ok((v, r.pos))
}

/// Appends one tagged value to `out` (the inverse of [`decode_value`]). On error `out` is left
/// as it was.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) -> std::result::Result<(), EncodeError> {
    let start = out.len();
    put_value(out, value, 0).inspect_err(|_| out.truncate(start))
}

/// Decodes a binary payload. Strings and byte values in the result share `payload`'s buffer.
pub fn decode(payload: &Bytes) -> Result<Message> {
    decode_at(payload, 0, payload.len(), 0, 0)
}

/// Decodes the binary payload at `src[start..end]`; error offsets count from `origin`.
pub(crate) fn decode_in(src: &Bytes, start: usize, end: usize, origin: usize) -> Result<Message> {
    decode_at(src, start, end, origin, 0)
}

/// Decodes the SET whose type code is at `src[start]`, inline in the caller so the message is
/// built where the caller wants it (SET is the most frequent message).
#[inline(always)]
pub(crate) fn decode_set_in(src: &Bytes, start: usize, end: usize, origin: usize) -> Result<Set> {
    let mut r = Reader::new(src, start + 1, end, origin);
    r.context = "SET";
    decode_set(&mut r, 0)
}

/// The fields of a SET after its type code.
#[inline(always)]
fn decode_set(r: &mut Reader<'_>, depth: usize) -> Result<Set> {
    let flags_at = r.pos;
    let flags = r.u8("flags")?;
    let address = r.str("address")?;
    let value = r.value_data(flags & 0x0F, flags_at, depth)?;
    let revision = opt_if(flags & 0x80 != 0, || r.u64("revision"))?;
    let ttl = opt_if(flags & 0x10 != 0, || r.u32("ttl"))?;
    Ok(Set {
        address,
        value,
        revision,
        lock: flags & 0x40 != 0,
        unlock: flags & 0x20 != 0,
        ttl,
    })
}

fn decode_at(
    src: &Bytes,
    start: usize,
    end: usize,
    origin: usize,
    depth: usize,
) -> Result<Message> {
    let mut r = Reader::new(src, start, end, origin);
    let code = r.u8("message type")?;
    let name = name_of(code).unwrap_or("payload");
    r.context = name;
    Ok(match code {
        code::HELLO => Message::Hello(Hello {
            version: r.u8("version")?,
            features: Features(r.u8("features")?),
            name: r.str("name")?,
            token: r.opt_str("token")?,
        }),
        code::WELCOME => Message::Welcome(Welcome {
            version: r.u8("version")?,
            features: Features(r.u8("features")?),
            time: r.u64("time")?,
            session: r.str("session")?,
            name: r.str("name")?,
            token: r.opt_str("token")?,
        }),
        code::ANNOUNCE => {
            let namespace = r.str("namespace")?;
            let n = r.count("signals", 4)?;
            let mut signals = Vec::with_capacity(n);
            for _ in 0..n {
                signals.push(signal_def(&mut r, true)?);
            }
            Message::Announce(Announce { namespace, signals })
        }
        code::SUBSCRIBE => {
            let id = r.u32("id")?;
            let pattern = r.str("pattern")?;
            let types = SignalTypes::from_mask(r.u8("type mask")?);
            let opt = r.u8("options")?;
            let options = SubscribeOptions {
                max_rate: opt_if(opt & 0x01 != 0, || r.u32("max_rate"))?,
                epsilon: opt_if(opt & 0x02 != 0, || r.f64("epsilon"))?,
                history: opt_if(opt & 0x04 != 0, || r.u32("history"))?,
                window: opt_if(opt & 0x08 != 0, || r.u32("window"))?,
            };
            Message::Subscribe(Subscribe {
                id,
                pattern,
                types,
                options,
            })
        }
        code::UNSUBSCRIBE => Message::Unsubscribe(Unsubscribe { id: r.u32("id")? }),
        code::PUBLISH => {
            let flags = r.u8("flags")?;
            let address = r.str("address")?;
            let payload = match r.u8("value indicator")? {
                0 => PublishPayload::None,
                1 => PublishPayload::Value(r.value(depth)?),
                2 => {
                    let n = r.count("samples", 8)?;
                    let mut samples = Vec::with_capacity(n);
                    for _ in 0..n {
                        samples.push(r.f64("sample")?);
                    }
                    PublishPayload::Samples(samples)
                }
                other => {
                    r.pos -= 1;
                    return Err(r.err(DecodeErrorKind::InvalidField {
                        field: "value indicator",
                        found: other,
                    }));
                }
            };
            let timestamp = opt_if(flags & 0x10 != 0, || r.u64("timestamp"))?;
            let id = opt_if(flags & 0x08 != 0, || r.u32("id"))?;
            let rate = opt_if(r.remaining() >= 4, || r.u32("rate"))?;
            Message::Publish(Publish {
                address,
                signal: SignalType::from_code(flags >> 5),
                phase: GesturePhase::from_code(flags & 0x07),
                payload,
                timestamp,
                id,
                rate,
            })
        }
        code::SET => Message::Set(decode_set(&mut r, depth)?),
        code::GET => Message::Get(Get {
            address: r.str("address")?,
        }),
        code::SNAPSHOT => {
            let n = r.count("params", 12)?;
            let mut params = Vec::with_capacity(n);
            for _ in 0..n {
                let address = r.str("address")?;
                let value = r.value(depth)?;
                let revision = r.u64("revision")?;
                let opt = r.u8("param options")?;
                params.push(ParamValue {
                    address,
                    value,
                    revision,
                    writer: opt_if(opt & 0x01 != 0, || r.str("writer"))?,
                    timestamp: opt_if(opt & 0x02 != 0, || r.u64("timestamp"))?,
                });
            }
            Message::Snapshot(Snapshot { params })
        }
        code::REPLAY => {
            let flags = r.u8("flags")?;
            let pattern = r.str("pattern")?;
            let from = opt_if(flags & 0x80 != 0, || r.u64("from"))?;
            let to = opt_if(flags & 0x40 != 0, || r.u64("to"))?;
            let limit = opt_if(flags & 0x20 != 0, || r.u32("limit"))?;
            let types = SignalTypes::from_mask(r.u8("type mask")?);
            Message::Replay(Replay {
                pattern,
                from,
                to,
                limit,
                types,
            })
        }
        code::BUNDLE => {
            let depth = r.nest(depth)?;
            let flags = r.u8("flags")?;
            let n = r.count("messages", 3)?;
            let timestamp = opt_if(flags & 0x80 != 0, || r.u64("timestamp"))?;
            let mut messages = Vec::with_capacity(n);
            for _ in 0..n {
                let len = r.u16("message length")? as usize;
                let at = r.advance(len, "message")?;
                match src.get(at) {
                    _ if len == 0 => {
                        return Err(r.err_at(at, DecodeErrorKind::EmptyPayload));
                    }
                    Some(&b) if crate::codec::is_msgpack(b) => {
                        return Err(r.err_at(at, DecodeErrorKind::UnknownMessageType(b)));
                    }
                    _ => {}
                }
                messages.push(decode_at(src, at, at + len, origin, depth)?);
            }
            Message::Bundle(Bundle {
                timestamp,
                messages,
            })
        }
        code::SYNC => {
            let flags = r.u8("flags")?;
            Message::Sync(ClockSync {
                t1: r.u64("t1")?,
                t2: opt_if(flags & 0x01 != 0, || r.u64("t2"))?,
                t3: opt_if(flags & 0x02 != 0, || r.u64("t3"))?,
            })
        }
        code::PING => Message::Ping,
        code::PONG => Message::Pong,
        code::ACK => {
            let flags = r.u8("flags")?;
            Message::Ack(Ack {
                address: opt_if(flags & 0x01 != 0, || r.str("address"))?,
                revision: opt_if(flags & 0x02 != 0, || r.u64("revision"))?,
                locked: opt_if(flags & 0x04 != 0, || Ok(r.u8("locked")? != 0))?,
                holder: opt_if(flags & 0x08 != 0, || r.str("holder"))?,
                correlation_id: opt_if(flags & 0x10 != 0, || r.u32("correlation_id"))?,
            })
        }
        code::ERROR => {
            let code = ErrorCode::from_code(r.u16("code")?);
            let message = r.str("message")?;
            let flags = r.u8("flags")?;
            Message::Error(ErrorMessage {
                code,
                message,
                address: opt_if(flags & 0x01 != 0, || r.str("address"))?,
                correlation_id: opt_if(flags & 0x02 != 0, || r.u32("correlation_id"))?,
            })
        }
        code::QUERY => Message::Query(Query {
            pattern: r.str("pattern")?,
        }),
        code::RESULT => {
            let n = r.count("signals", 4)?;
            let mut signals = Vec::with_capacity(n);
            for _ in 0..n {
                signals.push(signal_def(&mut r, false)?);
            }
            Message::Result(QueryResult { signals })
        }
        other => {
            return Err(DecodeError::new(
                name,
                start - origin,
                DecodeErrorKind::UnknownMessageType(other),
            ));
        }
    })
}

#[inline]
fn opt_if<T>(present: bool, read: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    if present { read().map(Some) } else { Ok(None) }
}

fn signal_def(r: &mut Reader<'_>, with_meta: bool) -> Result<SignalDef> {
    let address = r.str("signal address")?;
    let signal = SignalType::from_code(r.u8("signal type")?);
    let opt = r.u8("signal options")?;
    let datatype = opt_if(opt & 0x01 != 0, || r.str("datatype"))?;
    let access = opt_if(opt & 0x02 != 0, || r.str("access"))?;
    let meta = if with_meta && opt & 0x04 != 0 {
        let m = r.u8("meta flags")?;
        Some(SignalMeta {
            unit: opt_if(m & 0x01 != 0, || r.str("unit"))?,
            range: opt_if(m & 0x02 != 0, || {
                Ok((r.f64("range min")?, r.f64("range max")?))
            })?,
            default: opt_if(m & 0x04 != 0, || r.value(0))?,
            description: opt_if(m & 0x08 != 0, || r.str("description"))?,
        })
    } else {
        None
    };
    Ok(SignalDef {
        address,
        signal,
        datatype,
        access,
        meta,
    })
}
