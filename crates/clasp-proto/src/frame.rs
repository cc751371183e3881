//! Frame header (protocol.md §1).
//!
//! ```text
//! 0x53 | flags | u16 payload_len | [u64 timestamp µs if flags & 0x20] | payload
//! ```
//!
//! Flags: bits 7..6 QoS, bit 5 timestamp present, bit 4 encrypted, bit 3 compressed, bits 2..0
//! encoding version. No receiver relies on the version bits: the payload format is told from the
//! payload's first byte (see [`crate::codec`]).

use crate::error::{DecodeError, DecodeErrorKind};

/// The magic byte that starts every frame (`'S'`).
pub const MAGIC: u8 = 0x53;
/// Largest payload a frame can carry (the length field is a u16).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// Header length without a timestamp.
pub const HEADER_LEN: usize = 4;
/// Header length with a timestamp.
pub const HEADER_LEN_WITH_TIMESTAMP: usize = 12;
/// Largest possible frame: header with timestamp plus the largest payload.
pub const MAX_FRAME: usize = HEADER_LEN_WITH_TIMESTAMP + MAX_PAYLOAD;

/// Flag bit: a u64 timestamp follows the length.
pub const FLAG_TIMESTAMP: u8 = 0x20;
/// Flag bit: "encrypted" (defined by v3, used by nobody, unsupported here).
pub const FLAG_ENCRYPTED: u8 = 0x10;
/// Flag bit: "compressed" (defined by v3, used by nobody, unsupported here).
pub const FLAG_COMPRESSED: u8 = 0x08;
/// Mask of the encoding version bits.
pub const VERSION_MASK: u8 = 0x07;
/// The encoding version every v3 encoder writes (compact binary).
pub const VERSION_BINARY: u8 = 1;

/// Quality of service requested by a frame (flags bits 7..6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Qos {
    /// Best effort (0). Also what the reserved value 3 decodes to.
    #[default]
    Fire,
    /// The sender wants an acknowledgement (1).
    Confirm,
    /// The sender wants an acknowledged, ordered commit (2).
    Commit,
}

impl Qos {
    /// The two QoS bits, unshifted.
    pub fn bits(self) -> u8 {
        match self {
            Qos::Fire => 0,
            Qos::Confirm => 1,
            Qos::Commit => 2,
        }
    }

    /// QoS from a flags byte; the reserved value 3 reads as [`Qos::Fire`].
    pub fn from_flags(flags: u8) -> Qos {
        match flags >> 6 {
            1 => Qos::Confirm,
            2 => Qos::Commit,
            _ => Qos::Fire,
        }
    }

    /// Whether the sender asked for an acknowledgement (Confirm or Commit).
    pub fn wants_ack(self) -> bool {
        !matches!(self, Qos::Fire)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The raw flags byte.
    pub flags: u8,
    /// Length of the payload in bytes.
    pub payload_len: u16,
    /// The optional frame timestamp (µs), present when flags bit 5 is set.
    pub timestamp: Option<u64>,
}

impl FrameHeader {
    /// QoS requested by the frame.
    pub fn qos(&self) -> Qos {
        Qos::from_flags(self.flags)
    }

    /// The encoding version bits (informational: the payload format is detected from its bytes).
    pub fn version(&self) -> u8 {
        self.flags & VERSION_MASK
    }

    /// Whether the unsupported "encrypted" or "compressed" bits are set.
    pub fn has_unsupported_flags(&self) -> bool {
        self.flags & (FLAG_ENCRYPTED | FLAG_COMPRESSED) != 0
    }

    /// Length of this header on the wire (4 or 12).
    pub fn header_len(&self) -> usize {
        if self.timestamp.is_some() {
            HEADER_LEN_WITH_TIMESTAMP
        } else {
            HEADER_LEN
        }
    }

    /// Length of the whole frame (header plus payload).
    pub fn frame_len(&self) -> usize {
        self.header_len() + self.payload_len as usize
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` is too short to hold the whole header, and an error if the
    /// first byte is not [`MAGIC`]. The payload itself need not be present.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
        let Some(&magic) = buf.first() else {
            return Ok(None);
        };
        if magic != MAGIC {
            return Err(DecodeError::frame(0, DecodeErrorKind::BadMagic(magic)));
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let flags = buf[1];
        let payload_len = u16::from_be_bytes([buf[2], buf[3]]);
        let timestamp = if flags & FLAG_TIMESTAMP != 0 {
            match buf.get(4..12) {
                Some(ts) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(ts);
                    Some(u64::from_be_bytes(b))
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(FrameHeader {
            flags,
            payload_len,
            timestamp,
        }))
    }
}

/// Options for the frame an encoder writes around a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameOptions {
    /// QoS bits to write; `None` uses the message type's default ([`crate::Message::default_qos`]).
    pub qos: Option<Qos>,
    /// Frame timestamp (µs) to write; `None` omits it (no official client sets it).
    pub timestamp: Option<u64>,
}

impl FrameOptions {
    /// Options with an explicit QoS.
    pub fn with_qos(qos: Qos) -> Self {
        FrameOptions {
            qos: Some(qos),
            timestamp: None,
        }
    }

    /// The length of the frame header these options produce.
    pub(crate) fn header_len(&self) -> usize {
        if self.timestamp.is_some() {
            HEADER_LEN_WITH_TIMESTAMP
        } else {
            HEADER_LEN
        }
    }

    /// The flags byte for a message whose default QoS is `default_qos`.
    pub(crate) fn flags(&self, default_qos: Qos) -> u8 {
        let qos = self.qos.unwrap_or(default_qos);
        let mut flags = (qos.bits() << 6) | VERSION_BINARY;
        if self.timestamp.is_some() {
            flags |= FLAG_TIMESTAMP;
        }
        flags
    }
}
