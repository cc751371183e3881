//! Reassembly of frames from a byte stream (TCP, QUIC streams, serial lines).
//!
//! Frames are self-delimiting (protocol.md §1.3), so a stream carries them back to back. The
//! [`FrameReader`] accepts bytes in chunks of any size, yields each complete frame exactly once,
//! and keeps the stream in sync when the input is bad:
//!
//! * a frame whose payload exceeds the configured limit is reported once
//!   ([`StreamError::Oversize`]) and its bytes are discarded as they arrive, without buffering
//!   them, so the next frame is read normally;
//! * bytes that do not start with the magic `0x53` are reported once ([`StreamError::BadMagic`])
//!   and skipped up to the next `0x53`, which is how serial links resynchronise. On a reliable
//!   stream (TCP, QUIC) bad magic means the peer is broken, and the caller should usually close.
//!
//! ```
//! use clasp_proto::{encode, FrameReader, Message};
//!
//! let ping = encode(&Message::Ping).unwrap();
//! let mut reader = FrameReader::new();
//! reader.push(&ping[..2]);
//! assert!(reader.next_frame().is_none()); // incomplete
//! reader.push(&ping[2..]);
//! let frame = reader.next_frame().unwrap().unwrap();
//! assert_eq!(frame.decode().unwrap(), Message::Ping);
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::frame::{FrameHeader, MAGIC, MAX_PAYLOAD};
use crate::message::Message;

/// A complete frame taken from a stream, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The frame header.
    pub header: FrameHeader,
    /// The payload bytes.
    pub payload: Bytes,
}

impl RawFrame {
    /// Decodes the payload. Error offsets count from the start of the payload.
    pub fn decode(&self) -> Result<Message, DecodeError> {
        if self.header.has_unsupported_flags() {
            return Err(DecodeError::frame(
                1,
                crate::error::DecodeErrorKind::UnsupportedFlags(self.header.flags),
            ));
        }
        Message::decode(&self.payload)
    }

    /// The whole frame as it was on the wire: header, then payload.
    pub fn to_bytes(&self) -> Bytes {
        let h = &self.header;
        let mut out = BytesMut::with_capacity(h.header_len() + self.payload.len());
        out.put_u8(MAGIC);
        out.put_u8(h.flags);
        out.put_u16(h.payload_len);
        if let Some(ts) = h.timestamp {
            out.put_u64(ts);
        }
        out.extend_from_slice(&self.payload);
        out.freeze()
    }
}

/// A problem in the byte stream. The reader has already recovered when it reports one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Bytes that do not begin a frame were skipped.
    #[error(
        "stream out of sync: skipped {skipped} bytes that did not start with magic 0x53 (first was 0x{first:02x})"
    )]
    BadMagic {
        /// Number of bytes skipped so far (more may follow if no 0x53 has arrived yet).
        skipped: usize,
        /// The first skipped byte.
        first: u8,
    },
    /// A frame larger than the limit was discarded.
    #[error(
        "frame with a {payload_len}-byte payload exceeds the limit of {max} bytes and was discarded"
    )]
    Oversize {
        /// The announced payload length.
        payload_len: usize,
        /// The limit in force.
        max: usize,
    },
}

/// Splits a byte stream into frames. Sans-IO: feed it with [`push`](FrameReader::push), drain it
/// with [`next_frame`](FrameReader::next_frame).
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_payload: usize,
    /// Bytes of an oversize frame still to be discarded as they arrive.
    discard: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    /// A reader that accepts payloads up to the protocol limit (65,535 bytes).
    pub fn new() -> Self {
        FrameReader::with_max_payload(MAX_PAYLOAD)
    }

    /// A reader that rejects payloads longer than `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            max_payload: max_payload.min(MAX_PAYLOAD),
            discard: 0,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.discard > 0 {
            let n = self.discard.min(data.len());
            self.discard -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the reader is between frames (nothing buffered, nothing being discarded).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.discard == 0
    }

    /// The next complete frame, `None` if more bytes are needed, or the error the stream just
    /// recovered from. Call it until it returns `None` after each [`push`](FrameReader::push).
    pub fn next_frame(&mut self) -> Option<Result<RawFrame, StreamError>> {
        let first = *self.buf.first()?;
        if first != MAGIC {
            let skipped = self
                .buf
                .iter()
                .position(|&b| b == MAGIC)
                .unwrap_or(self.buf.len());
            self.buf.advance(skipped);
            return Some(Err(StreamError::BadMagic { skipped, first }));
        }
        let header = match FrameHeader::parse(&self.buf) {
            Ok(Some(h)) => h,
            // Incomplete header (bad magic was handled above).
            Ok(None) | Err(_) => return None,
        };
        let payload_len = header.payload_len as usize;
        if payload_len > self.max_payload {
            let total = header.frame_len();
            let here = total.min(self.buf.len());
            self.buf.advance(here);
            self.discard = total - here;
            return Some(Err(StreamError::Oversize {
                payload_len,
                max: self.max_payload,
            }));
        }
        if self.buf.len() < header.frame_len() {
            self.buf.reserve(header.frame_len() - self.buf.len());
            return None;
        }
        self.buf.advance(header.header_len());
        let payload = self.buf.split_to(payload_len).freeze();
        Some(Ok(RawFrame { header, payload }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{FrameOptions, encode_with};
    use proptest::prelude::*;

    proptest! {
        /// A frame read from a stream gives back its exact wire bytes, with or without a
        /// timestamp.
        #[test]
        fn raw_frames_give_back_their_wire_bytes(ts in proptest::option::of(any::<u64>())) {
            let wire = encode_with(
                &Message::Ping,
                FrameOptions { qos: None, timestamp: ts },
            )
            .unwrap();
            let mut reader = FrameReader::new();
            reader.push(&wire);
            let raw = reader.next_frame().unwrap().unwrap();
            prop_assert_eq!(raw.to_bytes(), wire);
        }
    }
}
