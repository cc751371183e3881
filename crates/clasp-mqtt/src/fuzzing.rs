//! Entry points for the fuzz target in `crates/clasp-mqtt/fuzz`, wrapping the listener's private
//! packet framing and decoding unchanged. Exists for the fuzzer only: not a supported API.

use bytes::{Bytes, BytesMut};

use crate::packet::{self, FrameError, Inbound, Version};

/// Why no packet could be split off the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameFailure {
    /// The fixed header announces this many bytes, more than the limit.
    TooLarge(usize),
    /// The fixed header is malformed.
    Malformed,
}

/// The parts of a decoded packet the listener maps further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A PUBLISH: topic name and payload.
    Publish {
        /// The topic name.
        topic: String,
        /// The payload.
        payload: Bytes,
    },
    /// A SUBSCRIBE: its filters.
    Subscribe(Vec<String>),
    /// An UNSUBSCRIBE: its filters.
    Unsubscribe(Vec<String>),
    /// Any other packet.
    Other,
}

/// Splits one whole packet (at most `max` bytes of remaining length) off `buf`, as the
/// listener does; `Ok(None)` if more bytes are needed.
pub fn frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, FrameFailure> {
    packet::frame(buf, max).map_err(|e| match e {
        FrameError::TooLarge(n) => FrameFailure::TooLarge(n),
        FrameError::Malformed(_) => FrameFailure::Malformed,
    })
}

/// The protocol level of a framed CONNECT, `None` if it is not one.
pub fn connect_level(packet: &[u8]) -> Option<u8> {
    packet::connect_level(packet)
}

fn version(v5: bool) -> Version {
    if v5 { Version::V5 } else { Version::V4 }
}

/// Decodes a framed CONNECT (`v5`: MQTT 5, else 3.1.1); its will topic and payload, if any.
pub fn decode_connect(v5: bool, packet: BytesMut) -> Result<Option<(String, Bytes)>, String> {
    packet::decode_connect(version(v5), packet)
        .map(|c| c.will.map(|w| (w.topic, w.payload)))
        .map_err(|e| e.to_string())
}

/// Decodes a framed packet sent after CONNECT (`v5`: MQTT 5, else 3.1.1).
pub fn decode(v5: bool, packet: BytesMut) -> Result<Decoded, String> {
    let decoded = packet::decode(version(v5), packet).map_err(|e| e.to_string())?;
    Ok(match decoded {
        Inbound::Publish(p) => Decoded::Publish {
            topic: p.topic,
            payload: p.payload,
        },
        Inbound::Subscribe { filters, .. } => {
            Decoded::Subscribe(filters.into_iter().map(|f| f.filter).collect())
        }
        Inbound::Unsubscribe { filters, .. } => Decoded::Unsubscribe(filters),
        _ => Decoded::Other,
    })
}
