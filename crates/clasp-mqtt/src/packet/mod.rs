//! MQTT packets of both versions behind one small model.
//!
//! Framing is done here: a packet is split off the stream only once its fixed header says it is
//! complete and no longer than the limit (`rumqttc::mqttbytes::check`), and is then decoded on
//! its own, so a malformed packet can never desynchronise the stream.
//!
//! * [`decode`]: packets from the client after CONNECT, decoded and checked here (strictly,
//!   as MQTT and Mosquitto 2.0 require: see [`PacketError`] for what ends the connection and
//!   with which reason). CONNECT itself is read by `rumqttc::mqttbytes` ([`decode_connect`]).
//! * [`encode`]: packets to the client, written here.
//! * [`reason`]: the reason codes, as enums.

mod connect;
mod decode;
mod encode;
#[cfg(test)]
mod proptests;
pub(crate) mod reason;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes as m4;
use thiserror::Error;

pub(crate) use connect::decode_connect;
pub(crate) use decode::decode;
pub(crate) use decode::decode_with;
pub(crate) use encode::encode;
pub(crate) use reason::{
    ConnectReason, DisconnectReason, PubAckReason, PubCompReason, SubAckReason, UnsubAckReason,
};

/// The MQTT protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// Why no packet could be taken from the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The packet announces more than the limit.
    TooLarge(usize),
    /// The fixed header is malformed.
    Malformed(String),
}

/// Splits one whole packet off `buf`, if there is one.
pub(crate) fn frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, FrameError> {
    match m4::check(buf.iter(), max) {
        Ok(h) => Ok(Some(buf.split_to(h.frame_length()))),
        Err(m4::Error::InsufficientBytes(_)) => Ok(None),
        Err(m4::Error::PayloadSizeLimitExceeded(n)) => Err(FrameError::TooLarge(n)),
        Err(e) => Err(FrameError::Malformed(e.to_string())),
    }
}

/// The protocol level of a framed CONNECT packet, `None` if it is not one.
pub(crate) fn connect_level(packet: &[u8]) -> Option<u8> {
    if packet.first()? >> 4 != 1 {
        return None;
    }
    let mut i = 1;
    while packet.get(i)? & 0x80 != 0 {
        i += 1;
    }
    let name_len = usize::from(u16::from_be_bytes([
        *packet.get(i + 1)?,
        *packet.get(i + 2)?,
    ]));
    packet.get(i + 3 + name_len).copied()
}

/// Why a packet from the client could not be decoded: the connection must end (MQTT 5:
/// DISCONNECT with [`PacketError::reason`] first; 3.1.1: just closed).
///
/// Which violations count as malformed and which as protocol errors follows Mosquitto 2.0
/// where it differs from the letter of MQTT 5 (e.g. a SUBSCRIBE or UNSUBSCRIBE without a
/// filter, or a QoS 0 PUBLISH with DUP set, are malformed there, 0x81).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum PacketError {
    /// A malformed packet (MQTT 5: DISCONNECT 0x81).
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A protocol error (MQTT 5: DISCONNECT 0x82).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A PUBLISH with topic alias 0 or above the maximum the server announced (MQTT 5:
    /// DISCONNECT 0x94).
    #[error("topic alias {0} invalid")]
    TopicAlias(u16),
}

impl PacketError {
    /// The MQTT 5 DISCONNECT reason to close with.
    pub(crate) fn reason(&self) -> DisconnectReason {
        match self {
            PacketError::Malformed(_) => DisconnectReason::MalformedPacket,
            PacketError::Protocol(_) => DisconnectReason::ProtocolError,
            PacketError::TopicAlias(_) => DisconnectReason::TopicAliasInvalid,
        }
    }
}

/// What [`decode_with`] needs to know about the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The topic alias maximum announced in CONNACK (0: none allowed).
    pub(crate) topic_alias_max: u16,
}

/// MQTT 5 PUBLISH properties (§3.3.2.3), apart from the topic alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PublishProps {
    /// Payload format indicator: 0 unspecified bytes, 1 UTF-8.
    pub(crate) payload_format: Option<u8>,
    /// Message expiry interval, seconds.
    pub(crate) message_expiry: Option<u32>,
    /// Content type.
    pub(crate) content_type: Option<String>,
    /// Response topic.
    pub(crate) response_topic: Option<String>,
    /// Correlation data.
    pub(crate) correlation_data: Option<Bytes>,
    /// User properties, in order (a name may repeat).
    pub(crate) user: Vec<(String, String)>,
    /// Subscription identifiers of the matching subscriptions (server to client only; a
    /// client's are ignored, as Mosquitto does), each 1..=268,435,455.
    pub(crate) subscription_ids: Vec<u32>,
}

impl PublishProps {
    /// Whether no property is set.
    pub(crate) fn is_empty(&self) -> bool {
        *self == PublishProps::default()
    }
}

/// A will message.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    /// The topic name.
    pub(crate) topic: String,
    /// The payload.
    pub(crate) payload: Bytes,
    /// The QoS asked for.
    pub(crate) qos: u8,
    /// The retain flag.
    pub(crate) retain: bool,
    /// v5 will delay interval, seconds.
    pub(crate) delay: Option<u32>,
    /// v5 will properties other than the delay (those of the PUBLISH to make).
    pub(crate) props: Option<Box<PublishProps>>,
}

/// A CONNECT, either version.
#[derive(Debug, Clone)]
pub(crate) struct Connect {
    /// The client identifier (may be empty).
    pub(crate) client_id: String,
    /// Keep alive, seconds (0: none).
    pub(crate) keep_alive: u16,
    /// 3.1.1 clean session flag (5: clean start).
    pub(crate) clean: bool,
    /// The user name, if not empty.
    pub(crate) username: Option<String>,
    /// The password, if not empty.
    pub(crate) password: Option<String>,
    /// The will message.
    pub(crate) will: Option<Will>,
    /// v5: most QoS 1 publishes the client accepts in flight.
    pub(crate) receive_max: Option<u16>,
    /// v5: the largest packet the client accepts.
    pub(crate) max_packet: Option<u32>,
    /// v5: the most topic aliases the client accepts from the server.
    #[allow(dead_code, reason = "for the session to use")]
    pub(crate) topic_alias_max: Option<u16>,
    /// v5: enhanced authentication was requested (not supported).
    pub(crate) auth_method: bool,
    /// v5: seconds the session outlives the connection (absent: 0, ends with it).
    pub(crate) session_expiry: Option<u32>,
}

/// One filter of a SUBSCRIBE.
#[derive(Debug, Clone)]
pub(crate) struct SubRequest {
    /// The topic filter (not empty).
    pub(crate) filter: String,
    /// The maximum QoS asked for, 0..=2.
    pub(crate) qos: u8,
    /// v5 retain-as-published.
    pub(crate) rap: bool,
    /// v5 retain handling: 0 send retained, 1 only for a new subscription, 2 never.
    pub(crate) retain_handling: u8,
    /// v5 no-local: the client's own publishes are not sent back to it.
    pub(crate) no_local: bool,
}

/// A PUBLISH from the client.
#[derive(Debug, Clone)]
pub(crate) struct Publish {
    /// The topic name; empty (v5) when the topic alias stands for it.
    pub(crate) topic: String,
    /// The payload.
    pub(crate) payload: Bytes,
    /// 0..=2.
    pub(crate) qos: u8,
    /// The retain flag.
    pub(crate) retain: bool,
    /// A QoS 1 or 2 resend.
    #[allow(dead_code, reason = "for the session to use")]
    pub(crate) dup: bool,
    /// The packet id (0 for QoS 0, never 0 otherwise).
    pub(crate) pkid: u16,
    /// v5 topic alias, 1..=the announced maximum.
    pub(crate) topic_alias: Option<u16>,
    /// v5 properties; `None` when there are none.
    pub(crate) props: Option<Box<PublishProps>>,
}

/// A packet from the client after CONNECT.
#[derive(Debug, Clone)]
pub(crate) enum Inbound {
    /// A PUBLISH.
    Publish(Publish),
    /// PUBACK for a server QoS 1 publish: its packet id.
    PubAck(u16),
    /// PUBREC for a server QoS 2 publish (a reason of 0x80 or above ends the flow).
    PubRec { pkid: u16, reason: PubAckReason },
    /// PUBREL for a client QoS 2 publish: its packet id.
    PubRel(u16),
    /// PUBCOMP for a server QoS 2 publish: its packet id.
    PubComp(u16),
    /// A SUBSCRIBE, with at least one filter.
    Subscribe {
        pkid: u16,
        filters: Vec<SubRequest>,
        /// v5 subscription identifier, 1..=268,435,455.
        subscription_id: Option<u32>,
    },
    /// An UNSUBSCRIBE, with at least one filter.
    Unsubscribe { pkid: u16, filters: Vec<String> },
    /// PINGREQ.
    PingReq,
    /// `will`: v5 reason 0x04, publish the will anyway. `session_expiry`: v5, a new session
    /// expiry interval (0: end the session now).
    Disconnect {
        will: bool,
        session_expiry: Option<u32>,
    },
    /// A second CONNECT (a protocol error; Mosquitto closes without a DISCONNECT).
    SecondConnect,
    /// Another packet a client must not send here (a CONNACK, AUTH...).
    Unexpected(&'static str),
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refuse {
    /// Bad token (3.1.1: 4, 5: 0x86).
    BadCredentials,
    /// Token valid but not allowed, e.g. expired (3.1.1: 5, 5: 0x87).
    NotAuthorized,
    /// The router is full (3.1.1: 3, 5: 0x89 server busy).
    Busy,
    /// `max_clients` reached (3.1.1: 3, 5: 0x97 quota exceeded).
    Quota,
    /// Anything else the router refused (3.1.1: 3, 5: 0x88).
    Unavailable,
    /// An empty client id without clean session (3.1.1: 2, 5: 0x85).
    ClientId,
    /// v5 enhanced authentication (3.1.1: 5, 5: 0x8C).
    AuthMethod,
}

impl Refuse {
    /// The CONNACK reason.
    pub(crate) fn reason(self) -> ConnectReason {
        match self {
            Refuse::BadCredentials => ConnectReason::BadUserNameOrPassword,
            Refuse::NotAuthorized => ConnectReason::NotAuthorized,
            Refuse::Busy => ConnectReason::ServerBusy,
            Refuse::Quota => ConnectReason::QuotaExceeded,
            Refuse::Unavailable => ConnectReason::ServerUnavailable,
            Refuse::ClientId => ConnectReason::ClientIdentifierNotValid,
            Refuse::AuthMethod => ConnectReason::BadAuthenticationMethod,
        }
    }
}

/// What an MQTT 5 CONNACK announces on success; `None` leaves the property out, so the MQTT
/// default applies (no maximum, retain/wildcards/subscription ids/shared subscriptions
/// available, no topic aliases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ServerCaps {
    /// Maximum packet size.
    pub(crate) max_packet: Option<u32>,
    /// Receive maximum: QoS 1 and 2 publishes the server takes in flight.
    pub(crate) receive_max: Option<u16>,
    /// Topic alias maximum (0: none).
    pub(crate) topic_alias_max: Option<u16>,
    /// Maximum QoS (0 or 1; absent: 2).
    pub(crate) max_qos: Option<u8>,
    /// Retain available.
    pub(crate) retain: Option<bool>,
    /// Wildcard subscriptions available.
    pub(crate) wildcards: Option<bool>,
    /// Subscription identifiers available.
    pub(crate) subscription_ids: Option<bool>,
    /// Shared subscriptions available.
    pub(crate) shared: Option<bool>,
    /// Server keep alive, replacing the client's.
    pub(crate) keep_alive: Option<u16>,
}

impl ServerCaps {
    /// What the listener announces: the maximum packet size, and retain, wildcards,
    /// subscription identifiers and shared subscriptions available.
    pub(crate) fn current(max_packet: u32) -> ServerCaps {
        ServerCaps {
            max_packet: Some(max_packet),
            retain: Some(true),
            wildcards: Some(true),
            subscription_ids: Some(true),
            shared: Some(true),
            ..ServerCaps::default()
        }
    }
}

/// A packet to the client.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// CONNACK.
    ConnAck {
        refused: Option<Refuse>,
        assigned_id: Option<String>,
        /// The client's session was resumed.
        session_present: bool,
        /// v5: the session expiry the server uses, when it is not the one asked for.
        session_expiry: Option<u32>,
        /// v5: what the server announces (on success only).
        caps: ServerCaps,
    },
    /// PUBLISH.
    Publish {
        topic: String,
        payload: Bytes,
        /// 0, 1 or 2.
        qos: u8,
        retain: bool,
        /// Not 0 for QoS 1 and 2.
        pkid: u16,
        /// A redelivery of a publish sent before.
        dup: bool,
        /// v5 properties (dropped for 3.1.1).
        props: Option<Box<PublishProps>>,
    },
    /// PUBACK; `reason` is dropped for 3.1.1 (as for PUBREC, PUBREL, PUBCOMP).
    PubAck { pkid: u16, reason: PubAckReason },
    /// PUBREC.
    PubRec { pkid: u16, reason: PubAckReason },
    /// PUBREL, for a server QoS 2 publish.
    PubRel { pkid: u16, reason: PubCompReason },
    /// PUBCOMP.
    PubComp { pkid: u16, reason: PubCompReason },
    /// SUBACK: one reason per filter (3.1.1 writes 0x80 for every refusal).
    SubAck { pkid: u16, codes: Vec<SubAckReason> },
    /// UNSUBACK: one reason per filter (3.1.1 has none).
    UnsubAck {
        pkid: u16,
        codes: Vec<UnsubAckReason>,
    },
    /// PINGRESP.
    PingResp,
    /// DISCONNECT: MQTT 5 only; nothing is written for 3.1.1.
    Disconnect { reason: DisconnectReason },
}
