//! Parsing the views. Each function reads the same fields in the same order with the same names
//! as the owned decoder in `binary`, so both report the same error for the same input
//! (property-tested).

use super::*;

/// Decodes the frame at the start of `buf`, borrowing SET, PUBLISH and SNAPSHOT from it.
///
/// Accepts and rejects exactly what [`crate::decode_frame_bytes`] does, with the same errors;
/// `into_message()` of the result equals that function's message.
pub fn decode_frame_view(buf: &Bytes) -> std::result::Result<FrameView<'_>, DecodeError> {
    let (header, start, end) = frame_bounds(buf)?;
    let message = match buf.get(start).filter(|_| start < end) {
        None => return Err(crate::codec::empty_payload(start)),
        Some(&code::SET) => {
            let mut c = Cursor::new(buf, start + 1, end, 0);
            c.context = "SET";
            MessageView::Set(set_view(&mut c)?)
        }
        Some(&code::PUBLISH) => {
            let mut c = Cursor::new(buf, start + 1, end, 0);
            c.context = "PUBLISH";
            MessageView::Publish(publish_view(&mut c)?)
        }
        Some(&code::SNAPSHOT) => {
            let mut c = Cursor::new(buf, start + 1, end, 0);
            c.context = "SNAPSHOT";
            MessageView::Snapshot(snapshot_view(&mut c)?)
        }
        Some(&b) if is_msgpack(b) => MessageView::Other(Box::new(
            msgpack::decode(&buf[start..end]).map_err(|e| e.shifted(start))?,
        )),
        Some(_) => MessageView::Other(Box::new(decode_in(buf, start, end, 0)?)),
    };
    Ok(FrameView {
        header,
        message,
        len: end,
    })
}

#[inline(always)]
fn set_view<'a>(c: &mut Cursor<'a>) -> Result<SetView<'a>> {
    let flags_at = c.pos;
    let flags = c.u8("flags")?;
    let address = c.str_ref("address")?;
    let value = value_data_ref(c, flags & 0x0F, flags_at, 0)?;
    let revision = if flags & 0x80 != 0 {
        Some(c.u64("revision")?)
    } else {
        None
    };
    let ttl = if flags & 0x10 != 0 {
        Some(c.u32("ttl")?)
    } else {
        None
    };
    Ok(SetView {
        address,
        value,
        revision,
        lock: flags & 0x40 != 0,
        unlock: flags & 0x20 != 0,
        ttl,
    })
}

fn publish_view<'a>(c: &mut Cursor<'a>) -> Result<PublishView<'a>> {
    let flags = c.u8("flags")?;
    let address = c.str_ref("address")?;
    let payload = match c.u8("value indicator")? {
        0 => PayloadRef::None,
        1 => PayloadRef::Value(value_ref(c, 0)?),
        2 => {
            let n = c.count("samples", 8)?;
            PayloadRef::Samples(SamplesRef {
                data: c.take(n * 8, "sample")?,
            })
        }
        other => {
            c.pos -= 1;
            return Err(c.err(DecodeErrorKind::InvalidField {
                field: "value indicator",
                found: other,
            }));
        }
    };
    let timestamp = if flags & 0x10 != 0 {
        Some(c.u64("timestamp")?)
    } else {
        None
    };
    let id = if flags & 0x08 != 0 {
        Some(c.u32("id")?)
    } else {
        None
    };
    let rate = if c.remaining() >= 4 {
        Some(c.u32("rate")?)
    } else {
        None
    };
    Ok(PublishView {
        address,
        signal: SignalType::from_code(flags >> 5),
        phase: GesturePhase::from_code(flags & 0x07),
        payload,
        timestamp,
        id,
        rate,
    })
}

fn snapshot_view<'a>(c: &mut Cursor<'a>) -> Result<SnapshotView<'a>> {
    let n = c.count("params", 12)?;
    let start = c.pos;
    for _ in 0..n {
        check_param(c)?;
    }
    Ok(SnapshotView {
        data: &c.src[start..c.pos],
        len: n as u16,
    })
}

/// Checks a SNAPSHOT entry (what [`Params`] reads), without building it.
#[inline(always)]
fn check_param(c: &mut Cursor<'_>) -> Result<()> {
    c.str_ref("address")?;
    check_value(c, 0)?;
    c.u64("revision")?;
    let opt = c.u8("param options")?;
    if opt & 0x01 != 0 {
        c.str_ref("writer")?;
    }
    if opt & 0x02 != 0 {
        c.u64("timestamp")?;
    }
    Ok(())
}

/// Checks a tagged value as [`value_ref`] reads it (same reads, same errors), without building
/// it: the validation pass over arrays, maps and snapshot params.
fn check_value(c: &mut Cursor<'_>, depth: usize) -> Result<()> {
    let at = c.pos;
    match c.u8("value tag")? {
        tag::NULL => {}
        tag::BOOL => {
            c.u8("bool")?;
        }
        tag::I64 => {
            c.array::<8>("i64")?;
        }
        tag::F64 => {
            c.f64("f64")?;
        }
        tag::STRING => {
            c.str_ref("string")?;
        }
        t => {
            value_data_rest(c, t, at, depth)?;
        }
    }
    Ok(())
}

#[inline(always)]
fn value_ref<'a>(c: &mut Cursor<'a>, depth: usize) -> Result<ValueRef<'a>> {
    let at = c.pos;
    let t = c.u8("value tag")?;
    value_data_ref(c, t, at, depth)
}

/// The data of a value whose tag `t` was read at `tag_at`; the common scalars inline.
#[inline(always)]
fn value_data_ref<'a>(
    c: &mut Cursor<'a>,
    t: u8,
    tag_at: usize,
    depth: usize,
) -> Result<ValueRef<'a>> {
    Ok(match t {
        tag::NULL => ValueRef::Null,
        tag::BOOL => ValueRef::Bool(c.u8("bool")? != 0),
        tag::I64 => ValueRef::Int(i64::from_be_bytes(c.array("i64")?)),
        tag::F64 => ValueRef::Float(c.f64("f64")?),
        tag::STRING => ValueRef::String(c.str_ref("string")?),
        _ => return value_data_rest(c, t, tag_at, depth),
    })
}

#[inline(never)]
fn value_data_rest<'a>(
    c: &mut Cursor<'a>,
    t: u8,
    tag_at: usize,
    depth: usize,
) -> Result<ValueRef<'a>> {
    if let Some(s) = c.scalar(t)? {
        return Ok(s.into());
    }
    Ok(match t {
        tag::STRING => ValueRef::String(c.str_ref("string")?),
        tag::BYTES => {
            let len = c.u16("bytes")? as usize;
            ValueRef::Bytes(c.take(len, "bytes")?)
        }
        tag::ARRAY => {
            let depth = c.nest(depth)?;
            let n = c.count("array", 1)?;
            let start = c.pos;
            for _ in 0..n {
                check_value(c, depth)?;
            }
            ValueRef::Array(ArrayRef {
                data: &c.src[start..c.pos],
                len: n as u16,
            })
        }
        tag::MAP => {
            let depth = c.nest(depth)?;
            let n = c.count("map", 3)?;
            let start = c.pos;
            for _ in 0..n {
                c.str_ref("map key")?;
                check_value(c, depth)?;
            }
            ValueRef::Map(MapRef {
                data: &c.src[start..c.pos],
                len: n as u16,
            })
        }
        other => return Err(c.err_at(tag_at, DecodeErrorKind::UnknownValueTag(other))),
    })
}

/// A reader over data that was validated when its frame was decoded, for the lazy iterators.
///
/// Every read is still bounds-checked and never panics: on data that had not been validated a
/// read past the end gives zeros and an invalid string gives `""`, which cannot happen for the
/// slices the views hand out. It builds values without the error paths of [`Cursor`].
#[derive(Debug, Clone)]
pub(super) struct Valid<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Valid<'a> {
    #[inline(always)]
    pub(super) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    #[inline(always)]
    pub(super) fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some((head, tail)) = self.rest.split_first_chunk::<N>() {
            out = *head;
            self.rest = tail;
        } else {
            self.rest = &[];
        }
        out
    }

    #[inline(always)]
    pub(super) fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    #[inline(always)]
    pub(super) fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    #[inline(always)]
    pub(super) fn str(&mut self) -> &'a str {
        let n = self.u16().into();
        crate::utf8::str_from_utf8(self.bytes(n)).unwrap_or_default()
    }

    #[inline(always)]
    pub(super) fn value(&mut self) -> ValueRef<'a> {
        match self.u8() {
            tag::NULL => ValueRef::Null,
            tag::BOOL => ValueRef::Bool(self.u8() != 0),
            tag::I64 => ValueRef::Int(i64::from_be_bytes(self.array())),
            tag::F64 => ValueRef::Float(f64::from_be_bytes(self.array())),
            tag::STRING => ValueRef::String(self.str()),
            t => self.value_rest(t),
        }
    }

    #[inline(never)]
    pub(super) fn value_rest(&mut self, t: u8) -> ValueRef<'a> {
        match t {
            tag::I8 => ValueRef::Int(i8::from_be_bytes(self.array()).into()),
            tag::I16 => ValueRef::Int(i16::from_be_bytes(self.array()).into()),
            tag::I32 => ValueRef::Int(i32::from_be_bytes(self.array()).into()),
            tag::F32 => ValueRef::Float(f32::from_be_bytes(self.array()).into()),
            tag::BYTES => {
                let n = self.u16().into();
                ValueRef::Bytes(self.bytes(n))
            }
            tag::ARRAY | tag::MAP => {
                let len = self.u16();
                let start = self.rest;
                for _ in 0..len {
                    if t == tag::MAP {
                        self.skip_str();
                    }
                    self.skip_value();
                }
                let data = &start[..start.len() - self.rest.len()];
                if t == tag::ARRAY {
                    ValueRef::Array(ArrayRef { data, len })
                } else {
                    ValueRef::Map(MapRef { data, len })
                }
            }
            _ => ValueRef::Null,
        }
    }

    pub(super) fn skip(&mut self, n: usize) {
        self.rest = self.rest.get(n..).unwrap_or_default();
    }

    pub(super) fn skip_str(&mut self) {
        let n = self.u16().into();
        self.skip(n);
    }

    /// Steps over a value without reading it (its strings need no check: they were checked).
    pub(super) fn skip_value(&mut self) {
        match self.u8() {
            tag::BOOL | tag::I8 => self.skip(1),
            tag::I16 => self.skip(2),
            tag::I32 | tag::F32 => self.skip(4),
            tag::I64 | tag::F64 => self.skip(8),
            tag::STRING | tag::BYTES => self.skip_str(),
            t @ (tag::ARRAY | tag::MAP) => {
                for _ in 0..self.u16() {
                    if t == tag::MAP {
                        self.skip_str();
                    }
                    self.skip_value();
                }
            }
            _ => {}
        }
    }
}
