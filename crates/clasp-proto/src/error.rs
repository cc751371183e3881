//! Codec errors.

/// Why a frame or payload could not be decoded, and where.
///
/// `offset` counts bytes from the start of the frame when the error comes from
/// [`crate::decode_frame`], and from the start of the payload when it comes from
/// [`crate::Message::decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {context} at byte {offset}: {kind}")]
pub struct DecodeError {
    /// What was being decoded: `"frame"`, a message name such as `"SET"`, or `"MessagePack"`.
    pub context: &'static str,
    /// Byte offset of the problem.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) fn new(context: &'static str, offset: usize, kind: DecodeErrorKind) -> Self {
        DecodeError {
            context,
            offset,
            kind,
        }
    }

    pub(crate) fn frame(offset: usize, kind: DecodeErrorKind) -> Self {
        DecodeError::new("frame", offset, kind)
    }

    /// Shifts the offset, e.g. from payload-relative to frame-relative.
    pub(crate) fn shifted(mut self, by: usize) -> Self {
        self.offset += by;
        self
    }
}

/// The kinds of decode failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The first byte of a frame is not 0x53.
    #[error("bad magic byte 0x{0:02x} (expected 0x53)")]
    BadMagic(u8),
    /// The input ends before the frame does.
    #[error("incomplete frame: {needed} bytes needed, {available} available")]
    IncompleteFrame {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The frame asks for encryption or compression, which v3 defines but nobody implements.
    #[error("flags 0x{0:02x} request encryption or compression, which is not supported")]
    UnsupportedFlags(u8),
    /// The payload is longer than the configured limit.
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Announced payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The payload is empty (no message type byte).
    #[error("empty payload")]
    EmptyPayload,
    /// The message type code is not one of the 17 v3 codes.
    #[error("unknown message type 0x{0:02x}")]
    UnknownMessageType(u8),
    /// The payload ends inside a field.
    #[error("truncated in `{field}`: {needed} bytes needed, {remaining} remain")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the payload.
        remaining: usize,
    },
    /// A count announces more items than the remaining bytes could hold.
    #[error("`{field}` count {count} cannot fit in the {remaining} remaining bytes")]
    CountTooLarge {
        /// The counted field.
        field: &'static str,
        /// The announced count.
        count: usize,
        /// Bytes left in the payload.
        remaining: usize,
    },
    /// A field holds a value outside its defined range.
    #[error("invalid `{field}`: {found}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// The value found.
        found: u8,
    },
    /// A value carries a tag outside 0x00-0x0B.
    #[error("unknown value type tag 0x{0:02x}")]
    UnknownValueTag(u8),
    /// A string field is not valid UTF-8.
    #[error("`{0}` is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// Arrays, maps or bundles are nested deeper than [`crate::MAX_NESTING`].
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
    /// A legacy MessagePack payload is malformed or does not describe a CLASP message.
    #[error("{0}")]
    MsgPack(String),
}

/// Why a message could not be encoded. Nothing is written to the output on error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded payload would exceed 65,535 bytes.
    #[error("payload of {0} bytes exceeds the frame limit of 65535 bytes")]
    PayloadTooLarge(usize),
    /// A string is longer than its u16 length prefix allows.
    #[error("`{field}` is {len} bytes long; the limit is 65535")]
    StringTooLong {
        /// The string field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A list has more entries than its u16 count allows.
    #[error("`{field}` has {count} entries; the limit is 65535")]
    TooMany {
        /// The list field.
        field: &'static str,
        /// Its number of entries.
        count: usize,
    },
    /// Values or bundles nest deeper than [`crate::MAX_NESTING`].
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
}
