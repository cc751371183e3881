//! MQTT packets of both versions behind one small model, on top of the rumqttc codecs
//! (`rumqttc::mqttbytes::v4` for 3.1.1 and `rumqttc::v5::mqttbytes::v5` for 5).
//!
//! Framing is done here: a packet is split off the stream only once its fixed header says it is
//! complete and no longer than the limit, and is then decoded on its own, so a malformed
//! packet can never desynchronise the stream; any decode error ends the connection.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self as m4, v4};
use rumqttc::v5::mqttbytes::{self as m5, v5};

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

/// A will message.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) retain: bool,
}

/// A CONNECT, either version.
#[derive(Debug, Clone)]
pub(crate) struct Connect {
    pub(crate) client_id: String,
    pub(crate) keep_alive: u16,
    /// 3.1.1 clean session flag (5: clean start).
    pub(crate) clean: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) will: Option<Will>,
    /// v5: most QoS 1 publishes the client accepts in flight.
    pub(crate) receive_max: Option<u16>,
    /// v5: the largest packet the client accepts.
    pub(crate) max_packet: Option<u32>,
    /// v5: enhanced authentication was requested (not supported).
    pub(crate) auth_method: bool,
    /// v5: seconds the session outlives the connection (absent: 0, ends with it).
    pub(crate) session_expiry: Option<u32>,
}

/// Decodes a framed CONNECT of `version`.
pub(crate) fn decode_connect(version: Version, packet: BytesMut) -> Result<Connect, String> {
    let mut packet = packet;
    match version {
        Version::V4 => match v4::Packet::read(&mut packet, usize::MAX) {
            Ok(v4::Packet::Connect(c)) => {
                let (username, password) = match c.login {
                    Some(l) => (non_empty(l.username), non_empty(l.password)),
                    None => (None, None),
                };
                Ok(Connect {
                    client_id: c.client_id,
                    keep_alive: c.keep_alive,
                    clean: c.clean_session,
                    username,
                    password,
                    will: c.last_will.map(|w| Will {
                        topic: w.topic,
                        payload: w.message,
                        retain: w.retain,
                    }),
                    receive_max: None,
                    max_packet: None,
                    auth_method: false,
                    session_expiry: None,
                })
            }
            Ok(_) => Err("expected CONNECT".into()),
            Err(e) => Err(e.to_string()),
        },
        Version::V5 => match v5::Packet::read(&mut packet, None) {
            Ok(v5::Packet::Connect(c, will, login)) => {
                let (username, password) = match login {
                    Some(l) => (non_empty(l.username), non_empty(l.password)),
                    None => (None, None),
                };
                let will = match will {
                    Some(w) => Some(Will {
                        topic: String::from_utf8(w.topic.to_vec())
                            .map_err(|_| "will topic is not UTF-8".to_owned())?,
                        payload: w.message,
                        retain: w.retain,
                    }),
                    None => None,
                };
                let props = c.properties.unwrap_or_default();
                Ok(Connect {
                    client_id: c.client_id,
                    keep_alive: c.keep_alive,
                    clean: c.clean_start,
                    username,
                    password,
                    will,
                    receive_max: props.receive_maximum,
                    max_packet: props.max_packet_size,
                    auth_method: props.authentication_method.is_some(),
                    session_expiry: props.session_expiry_interval,
                })
            }
            Ok(_) => Err("expected CONNECT".into()),
            Err(e) => Err(e.to_string()),
        },
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// One filter of a SUBSCRIBE.
#[derive(Debug, Clone)]
pub(crate) struct SubRequest {
    pub(crate) filter: String,
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
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) pkid: u16,
    pub(crate) topic_alias: bool,
}

/// A packet from the client after CONNECT.
#[derive(Debug, Clone)]
pub(crate) enum Inbound {
    Publish(Publish),
    PubAck(u16),
    PubRel(u16),
    /// PUBREC or PUBCOMP: only for server QoS 2 publishes, which are never sent.
    Ignored,
    Subscribe {
        pkid: u16,
        filters: Vec<SubRequest>,
        subscription_id: bool,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// `will`: v5 reason 0x04, publish the will anyway. `session_expiry`: v5, a new session
    /// expiry interval (0: end the session now).
    Disconnect {
        will: bool,
        session_expiry: Option<u32>,
    },
    /// A packet a client must not send here (a second CONNECT, a CONNACK, AUTH...).
    Unexpected(&'static str),
}

/// Decodes a framed packet of `version`.
pub(crate) fn decode(version: Version, packet: BytesMut) -> Result<Inbound, String> {
    let mut packet = packet;
    match version {
        Version::V4 => {
            let p = v4::Packet::read(&mut packet, usize::MAX).map_err(|e| e.to_string())?;
            Ok(match p {
                v4::Packet::Publish(p) => Inbound::Publish(Publish {
                    topic: p.topic,
                    payload: p.payload,
                    qos: p.qos as u8,
                    retain: p.retain,
                    pkid: p.pkid,
                    topic_alias: false,
                }),
                v4::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
                v4::Packet::PubRel(r) => Inbound::PubRel(r.pkid),
                v4::Packet::PubRec(_) | v4::Packet::PubComp(_) => Inbound::Ignored,
                v4::Packet::Subscribe(s) => Inbound::Subscribe {
                    pkid: s.pkid,
                    filters: s
                        .filters
                        .into_iter()
                        .map(|f| SubRequest {
                            filter: f.path,
                            qos: f.qos as u8,
                            rap: false,
                            retain_handling: 0,
                            no_local: false,
                        })
                        .collect(),
                    subscription_id: false,
                },
                v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
                    pkid: u.pkid,
                    filters: u.topics,
                },
                v4::Packet::PingReq => Inbound::PingReq,
                v4::Packet::Disconnect => Inbound::Disconnect {
                    will: false,
                    session_expiry: None,
                },
                v4::Packet::Connect(_) => Inbound::Unexpected("a second CONNECT"),
                _ => Inbound::Unexpected("a server-to-client packet"),
            })
        }
        Version::V5 => {
            let p = v5::Packet::read(&mut packet, None).map_err(|e| e.to_string())?;
            Ok(match p {
                v5::Packet::Publish(p) => Inbound::Publish(Publish {
                    topic: String::from_utf8(p.topic.to_vec())
                        .map_err(|_| "topic is not UTF-8".to_owned())?,
                    payload: p.payload,
                    qos: p.qos as u8,
                    retain: p.retain,
                    pkid: p.pkid,
                    topic_alias: p.properties.is_some_and(|pp| pp.topic_alias.is_some()),
                }),
                v5::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
                v5::Packet::PubRel(r) => Inbound::PubRel(r.pkid),
                v5::Packet::PubRec(_) | v5::Packet::PubComp(_) => Inbound::Ignored,
                v5::Packet::Subscribe(s) => {
                    if s.filters.is_empty() {
                        return Err("SUBSCRIBE without a filter".into());
                    }
                    Inbound::Subscribe {
                        pkid: s.pkid,
                        subscription_id: s.properties.is_some_and(|p| p.id.is_some()),
                        filters: s
                            .filters
                            .into_iter()
                            .map(|f| SubRequest {
                                filter: f.path,
                                qos: f.qos as u8,
                                rap: f.preserve_retain,
                                no_local: f.nolocal,
                                retain_handling: match f.retain_forward_rule {
                                    v5::RetainForwardRule::OnEverySubscribe => 0,
                                    v5::RetainForwardRule::OnNewSubscribe => 1,
                                    v5::RetainForwardRule::Never => 2,
                                },
                            })
                            .collect(),
                    }
                }
                v5::Packet::Unsubscribe(u) => {
                    if u.filters.is_empty() {
                        return Err("UNSUBSCRIBE without a filter".into());
                    }
                    Inbound::Unsubscribe {
                        pkid: u.pkid,
                        filters: u.filters,
                    }
                }
                v5::Packet::PingReq(_) => Inbound::PingReq,
                v5::Packet::Disconnect(d) => Inbound::Disconnect {
                    will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
                    session_expiry: d.properties.and_then(|p| p.session_expiry_interval),
                },
                v5::Packet::Connect(..) => Inbound::Unexpected("a second CONNECT"),
                v5::Packet::Auth(_) => Inbound::Unexpected("AUTH (enhanced authentication)"),
                _ => Inbound::Unexpected("a server-to-client packet"),
            })
        }
    }
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
    /// v5 enhanced authentication (0x8C).
    AuthMethod,
}

/// A packet to the client.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    ConnAck {
        refused: Option<Refuse>,
        assigned_id: Option<String>,
        max_packet: u32,
        /// The client's session was resumed.
        session_present: bool,
        /// v5: the session expiry the server uses, when it is not the one asked for.
        session_expiry: Option<u32>,
    },
    Publish {
        topic: String,
        payload: Bytes,
        qos: u8,
        retain: bool,
        pkid: u16,
        /// A redelivery of a QoS 1 publish sent on an earlier connection.
        dup: bool,
    },
    /// `reason` is an MQTT 5 reason code (dropped for 3.1.1).
    PubAck {
        pkid: u16,
        reason: u8,
    },
    PubRec {
        pkid: u16,
        reason: u8,
    },
    PubComp {
        pkid: u16,
    },
    /// One MQTT 5 reason code per filter: 0 or 1 granted QoS, 0x80 and up refused (3.1.1 keeps
    /// 0x80 for every refusal).
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    UnsubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    PingResp,
    /// MQTT 5 only; nothing is written for 3.1.1.
    Disconnect {
        reason: u8,
    },
}

/// Appends `p` to `buf`; `false` if it exceeds `max` (the client's limit) and was not written.
pub(crate) fn encode(version: Version, p: Outbound, buf: &mut BytesMut, max: usize) -> bool {
    match version {
        Version::V4 => {
            let packet = match p {
                Outbound::ConnAck {
                    refused,
                    session_present,
                    ..
                } => v4::Packet::ConnAck(v4::ConnAck::new(
                    match refused {
                        None => v4::ConnectReturnCode::Success,
                        Some(Refuse::BadCredentials) => v4::ConnectReturnCode::BadUserNamePassword,
                        Some(Refuse::NotAuthorized) => v4::ConnectReturnCode::NotAuthorized,
                        Some(Refuse::ClientId) => v4::ConnectReturnCode::BadClientId,
                        Some(Refuse::Busy | Refuse::Quota | Refuse::Unavailable) => {
                            v4::ConnectReturnCode::ServiceUnavailable
                        }
                        Some(Refuse::AuthMethod) => v4::ConnectReturnCode::NotAuthorized,
                    },
                    session_present && refused.is_none(),
                )),
                Outbound::Publish {
                    topic,
                    payload,
                    qos,
                    retain,
                    pkid,
                    dup,
                } => {
                    let mut p = v4::Publish::from_bytes(topic, qos4(qos), payload);
                    p.retain = retain;
                    p.pkid = pkid;
                    p.dup = dup;
                    v4::Packet::Publish(p)
                }
                Outbound::PubAck { pkid, .. } => v4::Packet::PubAck(v4::PubAck::new(pkid)),
                Outbound::PubRec { pkid, .. } => v4::Packet::PubRec(v4::PubRec::new(pkid)),
                Outbound::PubComp { pkid } => v4::Packet::PubComp(v4::PubComp::new(pkid)),
                Outbound::SubAck { pkid, codes } => v4::Packet::SubAck(v4::SubAck::new(
                    pkid,
                    codes
                        .into_iter()
                        .map(|c| match c {
                            0..=2 => v4::SubscribeReasonCode::Success(qos4(c)),
                            _ => v4::SubscribeReasonCode::Failure,
                        })
                        .collect(),
                )),
                Outbound::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
                Outbound::PingResp => v4::Packet::PingResp,
                Outbound::Disconnect { .. } => return true,
            };
            packet.write(buf, max).is_ok()
        }
        Version::V5 => {
            let packet = match p {
                Outbound::ConnAck {
                    refused,
                    assigned_id,
                    max_packet,
                    session_present,
                    session_expiry,
                } => {
                    use v5::ConnectReturnCode as C;
                    let code = match refused {
                        None => C::Success,
                        Some(Refuse::BadCredentials) => C::BadUserNamePassword,
                        Some(Refuse::NotAuthorized) => C::NotAuthorized,
                        Some(Refuse::Busy) => C::ServerBusy,
                        Some(Refuse::Quota) => C::QuotaExceeded,
                        Some(Refuse::Unavailable) => C::ServerUnavailable,
                        Some(Refuse::ClientId) => C::ClientIdentifierNotValid,
                        Some(Refuse::AuthMethod) => C::BadAuthenticationMethod,
                    };
                    let properties = refused.is_none().then(|| v5::ConnAckProperties {
                        session_expiry_interval: session_expiry,
                        receive_max: None,
                        max_qos: None,
                        retain_available: Some(1),
                        max_packet_size: Some(max_packet),
                        assigned_client_identifier: assigned_id,
                        topic_alias_max: None,
                        reason_string: None,
                        user_properties: Vec::new(),
                        wildcard_subscription_available: Some(1),
                        subscription_identifiers_available: Some(0),
                        shared_subscription_available: Some(0),
                        server_keep_alive: None,
                        response_information: None,
                        server_reference: None,
                        authentication_method: None,
                        authentication_data: None,
                    });
                    v5::Packet::ConnAck(v5::ConnAck {
                        session_present: session_present && refused.is_none(),
                        code,
                        properties,
                    })
                }
                Outbound::Publish {
                    topic,
                    payload,
                    qos,
                    retain,
                    pkid,
                    dup,
                } => {
                    let mut p = v5::Publish::new(topic, qos5(qos), payload, None);
                    p.retain = retain;
                    p.pkid = pkid;
                    p.dup = dup;
                    v5::Packet::Publish(p)
                }
                Outbound::PubAck { pkid, reason } => v5::Packet::PubAck(v5::PubAck {
                    pkid,
                    reason: puback_reason(reason),
                    properties: None,
                }),
                Outbound::PubRec { pkid, reason } => v5::Packet::PubRec(v5::PubRec {
                    pkid,
                    reason: pubrec_reason(reason),
                    properties: None,
                }),
                Outbound::PubComp { pkid } => v5::Packet::PubComp(v5::PubComp::new(pkid, None)),
                Outbound::SubAck { pkid, codes } => {
                    use v5::SubscribeReasonCode as S;
                    v5::Packet::SubAck(v5::SubAck {
                        pkid,
                        return_codes: codes
                            .into_iter()
                            .map(|c| match c {
                                0..=2 => S::Success(qos5(c)),
                                0x87 => S::NotAuthorized,
                                0x8F => S::TopicFilterInvalid,
                                0x97 => S::QuotaExceeded,
                                0x9E => S::SharedSubscriptionsNotSupported,
                                0xA1 => S::SubscriptionIdNotSupported,
                                0x83 => S::ImplementationSpecific,
                                _ => S::Unspecified,
                            })
                            .collect(),
                        properties: None,
                    })
                }
                Outbound::UnsubAck { pkid, codes } => {
                    use v5::UnsubAckReason as U;
                    v5::Packet::UnsubAck(v5::UnsubAck {
                        pkid,
                        reasons: codes
                            .into_iter()
                            .map(|c| match c {
                                0 => U::Success,
                                0x11 => U::NoSubscriptionExisted,
                                0x8F => U::TopicFilterInvalid,
                                _ => U::UnspecifiedError,
                            })
                            .collect(),
                        properties: None,
                    })
                }
                Outbound::PingResp => v5::Packet::PingResp(v5::PingResp),
                Outbound::Disconnect { reason } => {
                    // Written here: rumqttc 0.25's `Disconnect::write` announces one byte but
                    // writes two (reason + empty properties), which desynchronises the peer.
                    // With a remaining length of 1 the property length may be left out.
                    let code = disconnect_reason(reason) as u8;
                    buf.extend_from_slice(&[0xE0, 0x01, code]);
                    return true;
                }
            };
            packet
                .write(buf, Some(u32::try_from(max).unwrap_or(u32::MAX)))
                .is_ok()
        }
    }
}

fn qos4(q: u8) -> m4::QoS {
    match q {
        0 => m4::QoS::AtMostOnce,
        1 => m4::QoS::AtLeastOnce,
        _ => m4::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> m5::QoS {
    match q {
        0 => m5::QoS::AtMostOnce,
        1 => m5::QoS::AtLeastOnce,
        _ => m5::QoS::ExactlyOnce,
    }
}

/// The v5 PUBACK or PUBREC reason (`$ty`, both enums have the same variants) for code `$r`.
macro_rules! ack_reason {
    ($ty:path, $r:expr) => {{
        use $ty as P;
        match $r {
            0 => P::Success,
            0x10 => P::NoMatchingSubscribers,
            0x83 => P::ImplementationSpecificError,
            0x87 => P::NotAuthorized,
            0x90 => P::TopicNameInvalid,
            0x91 => P::PacketIdentifierInUse,
            0x97 => P::QuotaExceeded,
            0x99 => P::PayloadFormatInvalid,
            _ => P::UnspecifiedError,
        }
    }};
}

fn puback_reason(r: u8) -> v5::PubAckReason {
    ack_reason!(v5::PubAckReason, r)
}

fn pubrec_reason(r: u8) -> v5::PubRecReason {
    ack_reason!(v5::PubRecReason, r)
}

fn disconnect_reason(r: u8) -> v5::DisconnectReasonCode {
    use v5::DisconnectReasonCode as D;
    match r {
        0x00 => D::NormalDisconnection,
        0x81 => D::MalformedPacket,
        0x82 => D::ProtocolError,
        0x87 => D::NotAuthorized,
        0x89 => D::ServerBusy,
        0x8B => D::ServerShuttingDown,
        0x8D => D::KeepAliveTimeout,
        0x8E => D::SessionTakenOver,
        0x90 => D::TopicNameInvalid,
        0x93 => D::ReceiveMaximumExceeded,
        0x94 => D::TopicAliasInvalid,
        0x95 => D::PacketTooLarge,
        0x97 => D::QuotaExceeded,
        0xA1 => D::SubscriptionIdentifiersNotSupported,
        _ => D::UnspecifiedError,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn connect_bytes(version: Version) -> BytesMut {
        let mut b = BytesMut::new();
        match version {
            Version::V4 => {
                let mut c = v4::Connect::new("dev1");
                c.set_login("u", "tok");
                v4::Packet::Connect(c).write(&mut b, 1 << 20).unwrap();
            }
            Version::V5 => {
                let c = v5::Connect {
                    keep_alive: 30,
                    client_id: "dev1".into(),
                    clean_start: true,
                    properties: None,
                };
                v5::Packet::Connect(c, None, Some(v5::Login::new("u", "tok")))
                    .write(&mut b, None)
                    .unwrap();
            }
        }
        b
    }

    #[test]
    fn frames_and_decodes_connect_of_both_versions() {
        for (v, level) in [(Version::V4, 4), (Version::V5, 5)] {
            let mut buf = connect_bytes(v);
            buf.extend_from_slice(&[0xC0, 0x00]); // PINGREQ behind it
            let f = frame(&mut buf, 1024).unwrap().unwrap();
            assert_eq!(connect_level(&f), Some(level));
            let c = decode_connect(v, f).unwrap();
            assert_eq!(c.client_id, "dev1");
            assert_eq!(c.password.as_deref(), Some("tok"));
            let ping = frame(&mut buf, 1024).unwrap().unwrap();
            assert!(matches!(decode(v, ping).unwrap(), Inbound::PingReq));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn oversized_and_bad_lengths_are_errors() {
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x7F][..]);
        assert_eq!(frame(&mut buf, 1024), Err(FrameError::TooLarge(2_097_151)));
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..]);
        assert!(matches!(
            frame(&mut buf, 1024),
            Err(FrameError::Malformed(_))
        ));
        let mut buf = BytesMut::from(&[0x30][..]);
        assert_eq!(frame(&mut buf, 1024), Ok(None));
    }

    proptest! {
        /// Any bytes either frame into packets that decode or fail cleanly: no panic, and the
        /// buffer only ever shrinks by whole packets.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            v5 in any::<bool>(),
        ) {
            let version = if v5 { Version::V5 } else { Version::V4 };
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(f)) = frame(&mut buf, 256) {
                prop_assert!(f.len() <= 256 + 5);
                let _ = connect_level(&f);
                let _ = decode_connect(version, f.clone());
                let _ = decode(version, f);
            }
        }

        /// Valid packets with a corrupted byte decode or fail cleanly.
        #[test]
        fn corrupted_connects_never_panic(i in 0usize..64, b in any::<u8>(), v5 in any::<bool>()) {
            let version = if v5 { Version::V5 } else { Version::V4 };
            let mut bytes = connect_bytes(version).to_vec();
            let n = bytes.len();
            bytes[i % n] = b;
            let mut buf = BytesMut::from(&bytes[..]);
            if let Ok(Some(f)) = frame(&mut buf, 1024) {
                let _ = decode_connect(version, f);
            }
        }
    }
}
