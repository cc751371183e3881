//! Encoding and decoding of frames and messages.
//!
//! A payload is either the compact binary encoding ([`binary`], what every v3 client sends) or a
//! legacy MessagePack map ([`msgpack`], what the Python client uses for BUNDLE and QUERY). The
//! format is told from the payload's first byte, never from the frame's version bits
//! (protocol.md §2.1). [`view`] decodes the hot-path messages without copying or allocating.

pub mod binary;
pub mod msgpack;
pub mod view;

use bytes::Bytes;

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::frame::{FrameHeader, FrameOptions, MAGIC, MAX_PAYLOAD};
use crate::message::{Message, SetRef};

/// Whether a payload starting with `first` is a legacy MessagePack map (fixmap, map16, map32).
pub fn is_msgpack(first: u8) -> bool {
    first & 0xF0 == 0x80 || first == 0xDE || first == 0xDF
}

/// A frame decoded from the start of a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFrame {
    /// The frame header.
    pub header: FrameHeader,
    /// The message in the payload.
    pub message: Message,
    /// Bytes the frame occupied; anything after it in the buffer was not read.
    pub len: usize,
}

impl Message {
    /// Decodes a payload (binary or legacy MessagePack), copying it first; see
    /// [`Message::decode_bytes`] for the zero-copy form.
    pub fn decode(payload: &[u8]) -> Result<Message, DecodeError> {
        Message::decode_bytes(&Bytes::copy_from_slice(payload))
    }

    /// Decodes a payload (binary or legacy MessagePack). Strings and byte values of a binary
    /// payload share `payload`'s buffer instead of being copied.
    pub fn decode_bytes(payload: &Bytes) -> Result<Message, DecodeError> {
        match payload.first() {
            None => Err(DecodeError::new(
                "payload",
                0,
                DecodeErrorKind::EmptyPayload,
            )),
            Some(&b) if is_msgpack(b) => msgpack::decode(payload),
            Some(_) => binary::decode(payload),
        }
    }

    /// Appends the compact binary payload of this message (no frame header) to `out`.
    ///
    /// On error `out` is left as it was.
    pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        binary::encode_payload(self, out).inspect_err(|_| out.truncate(start))
    }
}

/// Decodes the frame at the start of `buf` and the message it carries, copying the frame first;
/// see [`decode_frame_bytes`] for the zero-copy form.
pub fn decode_frame(buf: &[u8]) -> Result<DecodedFrame, DecodeError> {
    let end = FrameHeader::parse(buf)
        .ok()
        .flatten()
        .map_or(buf.len(), |h| h.frame_len().min(buf.len()));
    decode_frame_bytes(&Bytes::copy_from_slice(&buf[..end]))
}

/// Decodes the frame at the start of `buf` and the message it carries. Strings and byte values
/// in the message share `buf`'s buffer.
///
/// Bytes after the frame are ignored (WebSocket carries one frame per message); their count is
/// `buf.len() - frame.len`. Error offsets count from the start of the frame.
pub fn decode_frame_bytes(buf: &Bytes) -> Result<DecodedFrame, DecodeError> {
    let (header, start, end) = frame_bounds(buf)?;
    let message = match buf.get(start).filter(|_| start < end) {
        None => return Err(empty_payload(start)),
        Some(&crate::message::code::SET) => {
            return binary::decode_set_in(buf, start, end, 0).map(|set| DecodedFrame {
                header,
                message: Message::Set(set),
                len: end,
            });
        }
        Some(&b) if is_msgpack(b) => {
            msgpack::decode(&buf[start..end]).map_err(|e| e.shifted(start))?
        }
        Some(_) => binary::decode_in(buf, start, end, 0)?,
    };
    Ok(DecodedFrame {
        header,
        message,
        len: end,
    })
}

/// Checks the frame header at the start of `buf` and that the whole frame is there; returns the
/// header and where its payload starts and ends.
#[inline(always)]
pub(crate) fn frame_bounds(buf: &[u8]) -> Result<(FrameHeader, usize, usize), DecodeError> {
    let header = match FrameHeader::parse(buf)? {
        Some(h) => h,
        None => return Err(incomplete_header(buf)),
    };
    if header.has_unsupported_flags() {
        return Err(DecodeError::frame(
            1,
            DecodeErrorKind::UnsupportedFlags(header.flags),
        ));
    }
    let start = header.header_len();
    let end = header.frame_len();
    if buf.len() < end {
        return Err(DecodeError::frame(
            buf.len(),
            DecodeErrorKind::IncompleteFrame {
                needed: end,
                available: buf.len(),
            },
        ));
    }
    Ok((header, start, end))
}

/// The error for a frame whose payload is empty.
#[cold]
pub(crate) fn empty_payload(start: usize) -> DecodeError {
    DecodeError::new("payload", start, DecodeErrorKind::EmptyPayload)
}

#[cold]
fn incomplete_header(buf: &[u8]) -> DecodeError {
    let needed = if buf
        .get(1)
        .is_some_and(|f| f & crate::frame::FLAG_TIMESTAMP != 0)
    {
        crate::frame::HEADER_LEN_WITH_TIMESTAMP
    } else {
        crate::frame::HEADER_LEN
    };
    DecodeError::frame(
        buf.len(),
        DecodeErrorKind::IncompleteFrame {
            needed,
            available: buf.len(),
        },
    )
}

/// The address of a binary SET frame, as a slice of `frame` (no copy): the key a queue
/// coalesces param updates by. `None` for any other frame (or a MessagePack SET).
pub fn set_address(frame: &Bytes) -> Option<Bytes> {
    let header = FrameHeader::parse(frame).ok()??.header_len();
    let payload = frame.get(header..)?;
    if payload.first() != Some(&crate::message::code::SET) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]));
    let start = header + 4;
    (frame.len() >= start + len).then(|| frame.slice(start..start + len))
}

/// Encodes `msg` in a frame with its default QoS and no timestamp.
pub fn encode(msg: &Message) -> Result<Bytes, EncodeError> {
    encode_with(msg, FrameOptions::default())
}

/// Encodes `msg` in a frame with the given options.
///
/// One allocation of exactly the frame's size, and no spare capacity kept alive by the `Bytes`:
/// SET and PUBLISH, whose size is computed first, are encoded straight into it; other messages
/// are built in a reused per-thread buffer and copied.
pub fn encode_with(msg: &Message, opts: FrameOptions) -> Result<Bytes, EncodeError> {
    if let Some(payload) = binary::exact_payload_len(msg) {
        let mut out = Vec::with_capacity(opts.header_len() + payload);
        encode_into(msg, opts, &mut out)?;
        debug_assert_eq!(out.len(), out.capacity(), "exact_payload_len is wrong");
        return Ok(Bytes::from(out));
    }
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    /// Scratch buffers larger than this are released after use.
    const KEEP: usize = 256 * 1024;
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let result = encode_into(msg, opts, &mut buf).map(|()| Bytes::copy_from_slice(&buf));
            if buf.capacity() > KEEP {
                *buf = Vec::new();
            }
            result
        }
        // Only reachable if encoding re-entered itself; fall back to a fresh buffer.
        Err(_) => {
            let mut out = Vec::with_capacity(binary::size_hint(msg));
            encode_into(msg, opts, &mut out)?;
            Ok(Bytes::from(out))
        }
    })
}

/// Encodes a SET given by reference in a frame with the given options: the same bytes as
/// [`encode_with`] of the equivalent [`Message::Set`], in one allocation of the exact size.
pub fn encode_set(set: &SetRef<'_>, opts: FrameOptions) -> Result<Bytes, EncodeError> {
    let payload = binary::set_payload_len(set).ok_or(EncodeError::TooDeep(crate::MAX_NESTING))?;
    if payload > MAX_PAYLOAD {
        return Err(EncodeError::PayloadTooLarge(payload));
    }
    let mut out = Vec::with_capacity(opts.header_len() + payload);
    out.push(MAGIC);
    out.push(opts.flags(crate::frame::Qos::Confirm));
    out.extend_from_slice(&(payload as u16).to_be_bytes());
    if let Some(ts) = opts.timestamp {
        out.extend_from_slice(&ts.to_be_bytes());
    }
    out.push(crate::message::code::SET);
    binary::put_set_fields(&mut out, set, 0)?;
    debug_assert_eq!(out.len(), out.capacity(), "set_payload_len is wrong");
    Ok(Bytes::from(out))
}

/// The length of `msg`'s payload as a binary frame (the frame without its header): computed
/// for SET and PUBLISH, measured by encoding for other messages. For a sender that checks a
/// size limit without building the frame (the router's typed door for adapters).
pub fn payload_len(msg: &Message) -> Result<usize, EncodeError> {
    if let Some(n) = binary::exact_payload_len(msg) {
        return Ok(n);
    }
    let mut out = Vec::new();
    binary::encode_payload(msg, &mut out)?;
    Ok(out.len())
}

/// Appends the framed encoding of `msg` to `out`. On error `out` is left as it was.
pub fn encode_into(
    msg: &Message,
    opts: FrameOptions,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.push(MAGIC);
    out.push(opts.flags(msg.default_qos()));
    out.extend_from_slice(&[0, 0]);
    if let Some(ts) = opts.timestamp {
        out.extend_from_slice(&ts.to_be_bytes());
    }
    let payload_start = out.len();
    if let Err(e) = binary::encode_payload(msg, out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - payload_start;
    if len > MAX_PAYLOAD {
        out.truncate(start);
        return Err(EncodeError::PayloadTooLarge(len));
    }
    out[start + 2..start + 4].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(())
}
