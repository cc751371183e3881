//! Zero-copy decoding: borrowed views of the messages on the hot path.
//!
//! [`decode_frame_view`] checks a frame exactly as [`crate::decode_frame_bytes`] does (the same
//! bounds, counts, UTF-8 and nesting checks, and the same [`DecodeError`] for the same input),
//! but SET, PUBLISH and SNAPSHOT come back as views whose strings, byte values, arrays, maps,
//! samples and params borrow from the frame: decoding them allocates nothing and touches no
//! reference count. Every other message, and every legacy MessagePack payload, comes back owned
//! in [`MessageView::Other`].
//!
//! Arrays, maps, samples and snapshot params are validated when the frame is decoded and read
//! lazily by their iterators, which therefore never fail. `to_*`/`into_message` conversions give
//! the owned [`Message`] types (copying strings, so the result does not keep the frame alive).

use bytes::Bytes;

use super::binary::{Cursor, Result, Scalar, decode_in};
use super::{frame_bounds, is_msgpack, msgpack};
use crate::error::{DecodeError, DecodeErrorKind};
use crate::frame::FrameHeader;
use crate::message::{
    GesturePhase, Message, ParamValue, Publish, PublishPayload, Set, SignalType, Snapshot, code,
};
use crate::value::{Str, Value, tag};

mod parse;

use parse::Valid;
pub use parse::decode_frame_view;

/// A frame decoded by [`decode_frame_view`].
#[derive(Debug, Clone, PartialEq)]
pub struct FrameView<'a> {
    /// The frame header.
    pub header: FrameHeader,
    /// The message in the payload.
    pub message: MessageView<'a>,
    /// Bytes the frame occupied; anything after it in the buffer was not read.
    pub len: usize,
}

/// A decoded message: borrowed for the hot-path types, owned for the rest.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageView<'a> {
    /// A binary SET.
    Set(SetView<'a>),
    /// A binary PUBLISH.
    Publish(PublishView<'a>),
    /// A binary SNAPSHOT.
    Snapshot(SnapshotView<'a>),
    /// Any other message, or any MessagePack payload, decoded to its owned form.
    Other(Box<Message>),
}

impl MessageView<'_> {
    /// The binary message type code.
    pub fn code(&self) -> u8 {
        match self {
            MessageView::Set(_) => code::SET,
            MessageView::Publish(_) => code::PUBLISH,
            MessageView::Snapshot(_) => code::SNAPSHOT,
            MessageView::Other(m) => m.code(),
        }
    }

    /// The message's name, e.g. `"SET"`.
    pub fn name(&self) -> &'static str {
        crate::message::name_of(self.code()).unwrap_or("message")
    }

    /// The owned message.
    pub fn into_message(self) -> Message {
        match self {
            MessageView::Set(s) => Message::Set(s.to_set()),
            MessageView::Publish(p) => Message::Publish(p.to_publish()),
            MessageView::Snapshot(s) => Message::Snapshot(s.to_snapshot()),
            MessageView::Other(m) => *m,
        }
    }
}

/// A borrowed SET (see [`Set`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetView<'a> {
    /// The param's address.
    pub address: &'a str,
    /// The value.
    pub value: ValueRef<'a>,
    /// Expected revision (client to router) or new revision (router to client).
    pub revision: Option<u64>,
    /// Take the lock.
    pub lock: bool,
    /// Release the lock.
    pub unlock: bool,
    /// Time to live in seconds (v4 extension).
    pub ttl: Option<u32>,
}

impl SetView<'_> {
    /// The owned SET.
    pub fn to_set(&self) -> Set {
        Set {
            address: Str::from(self.address),
            value: self.value.to_value(),
            revision: self.revision,
            lock: self.lock,
            unlock: self.unlock,
            ttl: self.ttl,
        }
    }
}

/// A borrowed PUBLISH (see [`Publish`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishView<'a> {
    /// The signal's address.
    pub address: &'a str,
    /// Event, stream, gesture, ...
    pub signal: SignalType,
    /// Gesture phase (meaningful for gestures).
    pub phase: GesturePhase,
    /// The payload.
    pub payload: PayloadRef<'a>,
    /// Timestamp in microseconds.
    pub timestamp: Option<u64>,
    /// Gesture id.
    pub id: Option<u32>,
    /// Stream rate (trailing field).
    pub rate: Option<u32>,
}

impl PublishView<'_> {
    /// The payload's value, if it carries one.
    pub fn value(&self) -> Option<ValueRef<'_>> {
        match self.payload {
            PayloadRef::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The owned PUBLISH.
    pub fn to_publish(&self) -> Publish {
        Publish {
            address: Str::from(self.address),
            signal: self.signal,
            phase: self.phase,
            payload: match self.payload {
                PayloadRef::None => PublishPayload::None,
                PayloadRef::Value(v) => PublishPayload::Value(v.to_value()),
                PayloadRef::Samples(s) => PublishPayload::Samples(s.iter().collect()),
            },
            timestamp: self.timestamp,
            id: self.id,
            rate: self.rate,
        }
    }
}

/// A borrowed PUBLISH payload (see [`PublishPayload`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PayloadRef<'a> {
    /// No payload (value indicator 0).
    None,
    /// One value (indicator 1).
    Value(ValueRef<'a>),
    /// Stream samples (indicator 2).
    Samples(SamplesRef<'a>),
}

/// Borrowed stream samples: big-endian f64s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplesRef<'a> {
    data: &'a [u8],
}

impl<'a> SamplesRef<'a> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.data.len() / 8
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The samples in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = f64> + 'a {
        self.data.chunks_exact(8).map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            f64::from_be_bytes(b)
        })
    }
}

/// A borrowed SNAPSHOT: its params, validated, read lazily.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotView<'a> {
    data: &'a [u8],
    len: u16,
}

impl<'a> SnapshotView<'a> {
    /// Number of params.
    pub fn len(&self) -> usize {
        self.len.into()
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The params in wire order.
    pub fn iter(&self) -> Params<'a> {
        Params {
            r: Valid { rest: self.data },
            left: self.len,
        }
    }

    /// The owned SNAPSHOT.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            params: self.iter().map(|p| p.to_param()).collect(),
        }
    }
}

impl PartialEq for SnapshotView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

/// A borrowed SNAPSHOT entry (see [`ParamValue`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamRef<'a> {
    /// The param's address.
    pub address: &'a str,
    /// Its value.
    pub value: ValueRef<'a>,
    /// Its revision.
    pub revision: u64,
    /// The session that wrote it last.
    pub writer: Option<&'a str>,
    /// When it was written (microseconds).
    pub timestamp: Option<u64>,
}

impl ParamRef<'_> {
    /// The owned param.
    pub fn to_param(&self) -> ParamValue {
        ParamValue {
            address: Str::from(self.address),
            value: self.value.to_value(),
            revision: self.revision,
            writer: self.writer.map(Str::from),
            timestamp: self.timestamp,
        }
    }
}

/// Iterator over the params of a [`SnapshotView`].
#[derive(Debug)]
pub struct Params<'a> {
    r: Valid<'a>,
    left: u16,
}

impl<'a> Iterator for Params<'a> {
    type Item = ParamRef<'a>;

    fn next(&mut self) -> Option<ParamRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = &mut self.r;
        let address = r.str();
        let value = r.value();
        let revision = u64::from_be_bytes(r.array());
        let opt = r.u8();
        let writer = (opt & 0x01 != 0).then(|| r.str());
        let timestamp = (opt & 0x02 != 0).then(|| u64::from_be_bytes(r.array()));
        Some(ParamRef {
            address,
            value,
            revision,
            writer,
            timestamp,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left.into(), Some(self.left.into()))
    }
}

/// A borrowed value (see [`Value`]). Narrow wire types are widened as in [`Value`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// Null.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// UTF-8 string.
    String(&'a str),
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// Array, read lazily.
    Array(ArrayRef<'a>),
    /// Map, read lazily, in wire order.
    Map(MapRef<'a>),
}

impl From<Scalar> for ValueRef<'_> {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Null => ValueRef::Null,
            Scalar::Bool(b) => ValueRef::Bool(b),
            Scalar::Int(i) => ValueRef::Int(i),
            Scalar::Float(f) => ValueRef::Float(f),
        }
    }
}

impl ValueRef<'_> {
    /// The value as f64 if it is numeric (as [`Value::as_f64`]).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ValueRef::Int(i) => Some(*i as f64),
            ValueRef::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The owned value; strings and bytes are copied.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Float(f) => Value::Float(f),
            ValueRef::String(s) => Value::String(Str::from(s)),
            ValueRef::Bytes(b) => Value::Bytes(Bytes::copy_from_slice(b)),
            ValueRef::Array(a) => Value::Array(a.iter().map(|v| v.to_value()).collect()),
            ValueRef::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, v)| (Str::from(k), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// A borrowed array: its items, validated, read lazily.
#[derive(Debug, Clone, Copy)]
pub struct ArrayRef<'a> {
    data: &'a [u8],
    len: u16,
}

impl<'a> ArrayRef<'a> {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.len.into()
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items in order.
    pub fn iter(&self) -> Items<'a> {
        Items {
            r: Valid { rest: self.data },
            left: self.len,
        }
    }
}

impl PartialEq for ArrayRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

/// Iterator over the items of an [`ArrayRef`].
#[derive(Debug)]
pub struct Items<'a> {
    r: Valid<'a>,
    left: u16,
}

impl<'a> Iterator for Items<'a> {
    type Item = ValueRef<'a>;

    fn next(&mut self) -> Option<ValueRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.r.value())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left.into(), Some(self.left.into()))
    }
}

/// A borrowed map: its entries, validated, read lazily in wire order.
#[derive(Debug, Clone, Copy)]
pub struct MapRef<'a> {
    data: &'a [u8],
    len: u16,
}

impl<'a> MapRef<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len.into()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries in wire order.
    pub fn iter(&self) -> Entries<'a> {
        Entries {
            r: Valid { rest: self.data },
            left: self.len,
        }
    }

    /// The value of the last entry named `key` (as [`Value::get`]).
    pub fn get(&self, key: &str) -> Option<ValueRef<'a>> {
        self.iter()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }
}

impl PartialEq for MapRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

/// Iterator over the entries of a [`MapRef`].
#[derive(Debug)]
pub struct Entries<'a> {
    r: Valid<'a>,
    left: u16,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, ValueRef<'a>);

    fn next(&mut self) -> Option<(&'a str, ValueRef<'a>)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.r.str();
        Some((key, self.r.value()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left.into(), Some(self.left.into()))
    }
}

/// `s` as a [`Str`] sharing `frame`'s buffer when `s` lies inside it (as the strings of a view
/// of `frame` do), otherwise a copy of `s`.
pub fn share(frame: &Bytes, s: &str) -> Str {
    let start = (s.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    if start <= frame.len()
        && s.len() <= frame.len() - start
        && let Some(shared) = crate::utf8::str_from_bytes(frame.slice(start..start + s.len()))
    {
        return shared;
    }
    Str::from(s)
}
