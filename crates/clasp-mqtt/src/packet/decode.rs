//! Decoding the packets a client sends after CONNECT, strictly:
//! reserved flags, packet id 0, QoS 3, missing filters, property lengths that
//! overrun, unknown, misplaced or repeated properties and invalid property values are errors
//! (see [`PacketError`]). Nothing is allocated from a length in the packet beyond what the
//! packet holds.

use bytes::{Buf, Bytes, BytesMut};

use super::{
    Inbound, Limits, PacketError, PubAckReason, Publish, PublishProps, SubRequest, Version,
};

/// Decodes a framed packet of `version` with the default [`Limits`] (no topic aliases).
pub(crate) fn decode(version: Version, packet: BytesMut) -> Result<Inbound, PacketError> {
    decode_with(version, packet, Limits::default())
}

/// Decodes a framed packet of `version` sent after CONNECT.
pub(crate) fn decode_with(
    version: Version,
    packet: BytesMut,
    limits: Limits,
) -> Result<Inbound, PacketError> {
    let mut bytes = packet.freeze();
    let Some(&first) = bytes.first() else {
        return Err(malformed("empty packet"));
    };
    // The remaining length was checked by the framing; skip the fixed header.
    let mut header = 1;
    while bytes.get(header).is_some_and(|b| b & 0x80 != 0) {
        header += 1;
    }
    if header + 1 > bytes.len() {
        return Err(malformed("truncated fixed header"));
    }
    bytes.advance(header + 1);
    let r = &mut Reader(bytes);
    let (kind, flags) = (first >> 4, first & 0x0F);
    let v5 = version == Version::V5;
    let p = match kind {
        3 => Inbound::Publish(publish(r, flags, v5, limits)?),
        4..=7 => {
            let wanted = if kind == 6 { 0b0010 } else { 0 };
            if flags != wanted {
                return Err(malformed("reserved flags set"));
            }
            ack(r, kind, v5)?
        }
        8 => subscribe(r, flags, v5)?,
        10 => unsubscribe(r, flags, v5)?,
        12 => {
            if flags != 0 || !r.0.is_empty() {
                return Err(malformed("PINGREQ with flags or a body"));
            }
            Inbound::PingReq
        }
        14 => disconnect(r, flags, v5)?,
        1 => Inbound::SecondConnect,
        15 if v5 => Inbound::Unexpected("AUTH (enhanced authentication)"),
        2 | 9 | 11 | 13 => Inbound::Unexpected("a server-to-client packet"),
        _ => return Err(malformed("reserved packet type")),
    };
    Ok(p)
}

fn malformed(what: &str) -> PacketError {
    PacketError::Malformed(what.to_owned())
}

fn protocol(what: &str) -> PacketError {
    PacketError::Protocol(what.to_owned())
}

fn publish(r: &mut Reader, flags: u8, v5: bool, limits: Limits) -> Result<Publish, PacketError> {
    let (dup, qos, retain) = (flags & 0b1000 != 0, (flags >> 1) & 0b11, flags & 1 != 0);
    if qos == 3 {
        return Err(malformed("PUBLISH with QoS 3"));
    }
    // DUP on QoS 0 is a protocol error for MQTT 5 (§3.3.1.1), but Mosquitto 2.0 accepts and
    // delivers such a publish on both versions (the conformance test checks it), and so do we.
    let topic = r.string()?;
    if topic.contains(['+', '#']) {
        // A protocol error as Mosquitto 2.0 answers it (0x82; MQTT 5 also allows 0x90).
        return Err(protocol("wildcard in a topic name"));
    }
    let pkid = if qos > 0 { r.u16()? } else { 0 };
    if qos > 0 && pkid == 0 {
        return Err(protocol("PUBLISH with packet id 0"));
    }
    let mut topic_alias = None;
    let mut props = None;
    if v5 {
        let p = Props::read(r, PUBLISH_PROPS)?;
        if let Some(a) = p.topic_alias {
            if a == 0 || a > limits.topic_alias_max {
                return Err(PacketError::TopicAlias(a));
            }
            topic_alias = Some(a);
        }
        let pp = PublishProps {
            payload_format: p.payload_format,
            message_expiry: p.message_expiry,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user: p.user,
            subscription_ids: Vec::new(),
        };
        props = (!pp.is_empty()).then(|| Box::new(pp));
    }
    if topic.is_empty() && topic_alias.is_none() {
        // MQTT 5 calls this a protocol error; Mosquitto 2.0 answers 0x81.
        return Err(malformed("PUBLISH without a topic"));
    }
    Ok(Publish {
        topic,
        payload: r.rest(),
        qos,
        retain,
        dup,
        pkid,
        topic_alias,
        props,
    })
}

/// PUBACK (4), PUBREC (5), PUBREL (6) or PUBCOMP (7).
fn ack(r: &mut Reader, kind: u8, v5: bool) -> Result<Inbound, PacketError> {
    let pkid = r.u16()?;
    if pkid == 0 {
        return Err(protocol("packet id 0"));
    }
    let mut code = 0;
    if v5 && !r.0.is_empty() {
        code = r.u8()?;
        if !r.0.is_empty() {
            Props::read(r, ACK_PROPS)?;
        }
    }
    if !r.0.is_empty() {
        return Err(malformed("bytes after the packet"));
    }
    let publish_reason =
        || PubAckReason::from_code(code).ok_or_else(|| protocol("invalid PUBACK/PUBREC reason"));
    if matches!(kind, 6 | 7) && code != 0 && code != 0x92 {
        return Err(protocol("invalid PUBREL/PUBCOMP reason"));
    }
    Ok(match kind {
        4 => {
            publish_reason()?;
            Inbound::PubAck(pkid)
        }
        5 => Inbound::PubRec {
            pkid,
            reason: publish_reason()?,
        },
        6 => Inbound::PubRel(pkid),
        _ => Inbound::PubComp(pkid),
    })
}

fn subscribe(r: &mut Reader, flags: u8, v5: bool) -> Result<Inbound, PacketError> {
    if flags != 0b0010 {
        return Err(malformed("SUBSCRIBE flags not 0010"));
    }
    let pkid = r.u16()?;
    if pkid == 0 {
        return Err(malformed("SUBSCRIBE with packet id 0"));
    }
    let mut subscription_id = None;
    if v5 {
        // Mosquitto 2.0 counts every property error of a SUBSCRIBE as malformed.
        let p = Props::read(r, SUBSCRIBE_PROPS).map_err(as_malformed)?;
        if p.subscription_ids.len() > 1 {
            return Err(malformed("subscription identifier repeated"));
        }
        subscription_id = p.subscription_ids.first().copied();
    }
    let mut filters = Vec::new();
    while !r.0.is_empty() {
        let filter = r.string()?;
        if filter.is_empty() {
            return Err(malformed("empty topic filter"));
        }
        let options = r.u8()?;
        let qos = options & 0b11;
        let retain_handling = (options >> 4) & 0b11;
        let reserved = if v5 {
            options & 0b1100_0000
        } else {
            options & 0b1111_1100
        };
        if qos == 3 || reserved != 0 || retain_handling == 3 {
            return Err(malformed("invalid subscription options"));
        }
        filters.push(SubRequest {
            filter,
            qos,
            rap: v5 && options & 0b1000 != 0,
            retain_handling,
            no_local: v5 && options & 0b0100 != 0,
        });
    }
    if filters.is_empty() {
        // MQTT calls this a protocol error; Mosquitto 2.0 answers 0x81.
        return Err(malformed("SUBSCRIBE without a filter"));
    }
    Ok(Inbound::Subscribe {
        pkid,
        filters,
        subscription_id,
    })
}

fn unsubscribe(r: &mut Reader, flags: u8, v5: bool) -> Result<Inbound, PacketError> {
    if flags != 0b0010 {
        return Err(malformed("UNSUBSCRIBE flags not 0010"));
    }
    let pkid = r.u16()?;
    if pkid == 0 {
        return Err(malformed("UNSUBSCRIBE with packet id 0"));
    }
    if v5 {
        Props::read(r, UNSUBSCRIBE_PROPS).map_err(as_malformed)?;
    }
    let mut filters = Vec::new();
    while !r.0.is_empty() {
        let filter = r.string()?;
        if filter.is_empty() {
            return Err(malformed("empty topic filter"));
        }
        filters.push(filter);
    }
    if filters.is_empty() {
        // MQTT calls this a protocol error; Mosquitto 2.0 answers 0x81.
        return Err(malformed("UNSUBSCRIBE without a filter"));
    }
    Ok(Inbound::Unsubscribe { pkid, filters })
}

fn disconnect(r: &mut Reader, flags: u8, v5: bool) -> Result<Inbound, PacketError> {
    if flags != 0 {
        // As Mosquitto 2.0 (MQTT 5 would say malformed).
        return Err(protocol("DISCONNECT with flags set"));
    }
    let mut will = false;
    let mut session_expiry = None;
    if v5 && !r.0.is_empty() {
        will = r.u8()? == 0x04;
        if !r.0.is_empty() {
            session_expiry = Props::read(r, DISCONNECT_PROPS)?.session_expiry;
        }
    }
    if !r.0.is_empty() {
        return Err(malformed("bytes after DISCONNECT"));
    }
    Ok(Inbound::Disconnect {
        will,
        session_expiry,
    })
}

fn as_malformed(e: PacketError) -> PacketError {
    match e {
        PacketError::Protocol(s) => PacketError::Malformed(s),
        e => e,
    }
}

/// The rest of a packet, read front to back; every read past the end is malformed.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), PacketError> {
        if self.0.len() < n {
            return Err(malformed("truncated"));
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, PacketError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }

    fn u16(&mut self) -> Result<u16, PacketError> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }

    fn u32(&mut self) -> Result<u32, PacketError> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }

    /// A variable byte integer (at most 4 bytes, minimally encoded or not).
    fn varint(&mut self) -> Result<u32, PacketError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("variable byte integer over 4 bytes"))
    }

    /// Binary data: a 2-byte length, then that many bytes.
    fn binary(&mut self) -> Result<Bytes, PacketError> {
        let n = usize::from(self.u16()?);
        self.need(n)?;
        Ok(self.0.split_to(n))
    }

    /// A UTF-8 string: well-formed, without U+0000 (MQTT-1.5.4-1, -2).
    fn string(&mut self) -> Result<String, PacketError> {
        let b = self.binary()?;
        match std::str::from_utf8(&b) {
            Ok(s) if !s.contains('\0') => Ok(s.to_owned()),
            _ => Err(malformed("invalid UTF-8 string")),
        }
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }
}

const PAYLOAD_FORMAT: u8 = 0x01;
const MESSAGE_EXPIRY: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_ID: u8 = 0x0B;
const SESSION_EXPIRY: u8 = 0x11;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const TOPIC_ALIAS: u8 = 0x23;
const USER_PROPERTY: u8 = 0x26;

const PUBLISH_PROPS: &[u8] = &[
    PAYLOAD_FORMAT,
    MESSAGE_EXPIRY,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    SUBSCRIPTION_ID,
    TOPIC_ALIAS,
    USER_PROPERTY,
];
const ACK_PROPS: &[u8] = &[REASON_STRING, USER_PROPERTY];
const SUBSCRIBE_PROPS: &[u8] = &[SUBSCRIPTION_ID, USER_PROPERTY];
const UNSUBSCRIBE_PROPS: &[u8] = &[USER_PROPERTY];
const DISCONNECT_PROPS: &[u8] = &[
    SESSION_EXPIRY,
    REASON_STRING,
    USER_PROPERTY,
    SERVER_REFERENCE,
];

/// The properties a client may send after CONNECT, as read by [`Props::read`].
#[derive(Debug, Default)]
struct Props {
    payload_format: Option<u8>,
    message_expiry: Option<u32>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Bytes>,
    subscription_ids: Vec<u32>,
    session_expiry: Option<u32>,
    topic_alias: Option<u16>,
    user: Vec<(String, String)>,
}

/// Sets `slot` once; a second time is a protocol error (MQTT 5 §2.2.2.2).
fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), PacketError> {
    if slot.replace(value).is_some() {
        return Err(protocol("property repeated"));
    }
    Ok(())
}

impl Props {
    /// Reads a property length and the properties in it, allowing those in `allowed`. An
    /// identifier MQTT does not define, or a length that does not match, is malformed; a
    /// defined property of another packet, a repeated one, or an invalid value is a protocol
    /// error (as Mosquitto 2.0 has it).
    fn read(r: &mut Reader, allowed: &[u8]) -> Result<Props, PacketError> {
        let len = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
        r.need(len)?;
        let mut p = Reader(r.0.split_to(len));
        let mut out = Props::default();
        let mut reason_string = None;
        let mut server_reference = None;
        while !p.0.is_empty() {
            let id = p.u8()?;
            if !is_defined(id) {
                return Err(malformed("unknown property"));
            }
            if !allowed.contains(&id) {
                return Err(protocol("property not allowed in this packet"));
            }
            match id {
                PAYLOAD_FORMAT => {
                    let f = p.u8()?;
                    if f > 1 {
                        return Err(protocol("payload format indicator not 0 or 1"));
                    }
                    once(&mut out.payload_format, f)?;
                }
                MESSAGE_EXPIRY => once(&mut out.message_expiry, p.u32()?)?,
                CONTENT_TYPE => once(&mut out.content_type, p.string()?)?,
                RESPONSE_TOPIC => {
                    let t = p.string()?;
                    if t.contains(['+', '#']) {
                        return Err(protocol("wildcard in the response topic"));
                    }
                    once(&mut out.response_topic, t)?;
                }
                CORRELATION_DATA => once(&mut out.correlation_data, p.binary()?)?,
                SUBSCRIPTION_ID => {
                    let id = p.varint()?;
                    if id == 0 {
                        return Err(protocol("subscription identifier 0"));
                    }
                    out.subscription_ids.push(id);
                }
                SESSION_EXPIRY => once(&mut out.session_expiry, p.u32()?)?,
                TOPIC_ALIAS => once(&mut out.topic_alias, p.u16()?)?,
                REASON_STRING => once(&mut reason_string, p.string()?)?,
                SERVER_REFERENCE => once(&mut server_reference, p.string()?)?,
                _ => {
                    let name = p.string()?;
                    let value = p.string()?;
                    out.user.push((name, value));
                }
            }
        }
        Ok(out)
    }
}

/// Whether MQTT 5 defines property `id` (§2.2.2.2).
fn is_defined(id: u8) -> bool {
    matches!(
        id,
        0x01..=0x03 | 0x08 | 0x09 | 0x0B | 0x11..=0x13 | 0x15..=0x1A | 0x1C | 0x1F | 0x21..=0x2A
    )
}
