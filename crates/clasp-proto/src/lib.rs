//! Sans-IO implementation of the CLASP v3 wire protocol.
//!
//! This crate has no I/O, no async runtime and no clock. It provides:
//!
//! * [`frame`]: the frame header (magic `0x53`, flags, length, optional timestamp);
//! * [`Value`]: the twelve value tags and the decode widening rules;
//! * [`Message`] and its payload types: all 17 message types;
//! * [`codec`]: the compact binary encoding (v3) and the legacy MessagePack form, decoded to
//!   owned messages ([`decode_frame_bytes`]) or, for SET, PUBLISH and SNAPSHOT, to zero-copy
//!   views of the frame ([`decode_frame_view`]);
//! * [`address`] and [`pattern`]: address validation and the router-side pattern matcher;
//! * [`ErrorCode`]: the error-code catalogue carried by ERROR messages;
//! * [`FrameReader`]: reassembly of frames from byte streams (TCP, QUIC, serial);
//! * `json` (feature `json`): [`Value`] ↔ `serde_json` conversions for tools and bridges.
//!
//! Decoding never panics, never allocates more than the input can justify, and reports what was
//! wrong and at which byte ([`DecodeError`]).
//!
//! # What our encoder emits where the official encoders differ
//!
//! * **Integers**: [`Value::Int`] is written as tag 0x05 (i64), as the Rust and Python clients do;
//!   [`Value::Float`] as tag 0x07 (f64). The JS client writes every number as f64; that form
//!   decodes to [`Value::Float`], so a JS integer stays a float, exactly as in the reference.
//!   The narrow tags (i8, i16, i32, f32) are accepted and widened, never emitted.
//! * **Null payloads**: [`PublishPayload::None`] is written as value indicator 0 (Python's form
//!   for `None`) and [`PublishPayload::Value`]`(`[`Value::Null`]`)` as indicator 1 + tag 0 (the
//!   Rust and JS form). Both decode back to what was sent, so a router forwards each client's
//!   form unchanged.
//! * **Frame flags**: version bits 1 and the message type's default QoS (protocol.md §5.4) unless
//!   [`FrameOptions`] says otherwise; no frame timestamp unless asked.
//! * **Maps** keep their entry order, so a forwarded map is byte-identical to the one received.
//! * **MessagePack** is decoded (the Python client sends BUNDLE and QUERY that way) but only
//!   emitted by [`codec::msgpack::encode`], which exists for tests.
// `unsafe` is denied everywhere but in `utf8`, two audited lines (see that module).
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

pub mod address;
pub mod codec;
pub mod error;
pub mod error_code;
pub mod frame;
#[cfg(feature = "json")]
pub mod json;
pub mod message;
pub mod pattern;
pub mod rate;
pub mod stream;
mod utf8;
pub mod value;

pub use codec::view::{FrameView, MessageView, ValueRef, decode_frame_view};
pub use codec::{
    DecodedFrame, decode_frame, decode_frame_bytes, encode, encode_into, encode_set, encode_with,
};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use error_code::ErrorCode;
pub use frame::{FrameHeader, FrameOptions, Qos};
pub use message::*;
pub use stream::{FrameReader, RawFrame};
pub use value::{Str, Value};

/// Deepest nesting of arrays, maps and bundles the codecs accept (and produce).
pub const MAX_NESTING: usize = 32;

/// ALPN names of CLASP over QUIC, preferred first: `clasp`, then `clasp/2` (what the reference
/// implementation sends).
pub const QUIC_ALPN: [&[u8]; 2] = [b"clasp", b"clasp/2"];
