//! Encoding packets to the client. Acknowledgements take the shortest form MQTT 5 allows
//! (no reason code for success, no property length without properties), as Mosquitto does.

use bytes::{BufMut, BytesMut};

use super::{Outbound, PublishProps, ServerCaps, Version};

/// Largest remaining length MQTT can express.
const MAX_REMAINING: usize = 268_435_455;

/// Appends `p` to `buf`; `false` if it exceeds `max` bytes (the client's limit) or cannot be
/// expressed (a string over 65,535 bytes, a packet over 256 MiB), and was not written.
pub(crate) fn encode(version: Version, p: Outbound, buf: &mut BytesMut, max: usize) -> bool {
    let start = buf.len();
    let written = write(version, &p, buf).is_some();
    if !written || buf.len() - start > max {
        buf.truncate(start);
        return false;
    }
    true
}

fn write(version: Version, p: &Outbound, buf: &mut BytesMut) -> Option<()> {
    let v5 = version == Version::V5;
    match p {
        Outbound::ConnAck {
            refused,
            assigned_id,
            session_present,
            session_expiry,
            caps,
        } => {
            let flags = u8::from(*session_present && refused.is_none());
            let reason = refused.map(|r| r.reason());
            if !v5 {
                let code = reason.map_or(0, |r| r.v4_code());
                buf.put_slice(&[0x20, 0x02, flags, code]);
                return Some(());
            }
            let mut props = Props::default();
            if refused.is_none() {
                connack_props(&mut props, *session_expiry, assigned_id.as_deref(), caps)?;
            }
            header(buf, 0x20, 2 + props.encoded_len())?;
            buf.put_u8(flags);
            buf.put_u8(reason.map_or(0, |r| r.code()));
            props.write(buf);
        }
        Outbound::Publish {
            topic,
            payload,
            qos,
            retain,
            pkid,
            dup,
            props,
        } => {
            let mut pr = Props::default();
            if v5 && let Some(pp) = props {
                publish_props(&mut pr, pp)?;
            }
            let mut len = 2 + topic.len() + payload.len();
            if *qos > 0 {
                len += 2;
            }
            if v5 {
                len += pr.encoded_len();
            }
            let first = 0x30 | u8::from(*dup) << 3 | (qos & 0b11) << 1 | u8::from(*retain);
            header(buf, first, len)?;
            put_str(buf, topic)?;
            if *qos > 0 {
                buf.put_u16(*pkid);
            }
            if v5 {
                pr.write(buf);
            }
            buf.put_slice(payload);
        }
        Outbound::PubAck { pkid, reason } => ack(buf, 0x40, *pkid, v5.then(|| reason.code())),
        Outbound::PubRec { pkid, reason } => ack(buf, 0x50, *pkid, v5.then(|| reason.code())),
        Outbound::PubRel { pkid, reason } => ack(buf, 0x62, *pkid, v5.then(|| reason.code())),
        Outbound::PubComp { pkid, reason } => ack(buf, 0x70, *pkid, v5.then(|| reason.code())),
        Outbound::SubAck { pkid, codes } => {
            header(buf, 0x90, 2 + usize::from(v5) + codes.len())?;
            buf.put_u16(*pkid);
            if v5 {
                buf.put_u8(0);
            }
            for c in codes {
                buf.put_u8(if v5 { c.code() } else { c.v4_code() });
            }
        }
        Outbound::UnsubAck { pkid, codes } => {
            if !v5 {
                buf.put_u8(0xB0);
                buf.put_u8(2);
                buf.put_u16(*pkid);
                return Some(());
            }
            header(buf, 0xB0, 3 + codes.len())?;
            buf.put_u16(*pkid);
            buf.put_u8(0);
            for c in codes {
                buf.put_u8(c.code());
            }
        }
        Outbound::PingResp => buf.put_slice(&[0xD0, 0x00]),
        Outbound::Disconnect { reason } => {
            if v5 {
                match reason.code() {
                    0 => buf.put_slice(&[0xE0, 0x00]),
                    code => buf.put_slice(&[0xE0, 0x01, code]),
                }
            }
        }
    }
    Some(())
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP; `reason` for MQTT 5, left out when it is success.
fn ack(buf: &mut BytesMut, first: u8, pkid: u16, reason: Option<u8>) {
    match reason {
        Some(code) if code != 0 => {
            buf.put_slice(&[first, 0x03]);
            buf.put_u16(pkid);
            buf.put_u8(code);
        }
        _ => {
            buf.put_slice(&[first, 0x02]);
            buf.put_u16(pkid);
        }
    }
}

fn connack_props(
    p: &mut Props,
    session_expiry: Option<u32>,
    assigned_id: Option<&str>,
    caps: &ServerCaps,
) -> Option<()> {
    if let Some(v) = session_expiry {
        p.u32(0x11, v);
    }
    if let Some(v) = caps.receive_max {
        p.u16(0x21, v);
    }
    if let Some(v) = caps.max_qos {
        p.u8(0x24, v);
    }
    if let Some(v) = caps.retain {
        p.u8(0x25, u8::from(v));
    }
    if let Some(v) = caps.max_packet {
        p.u32(0x27, v);
    }
    if let Some(id) = assigned_id {
        p.str(0x12, id)?;
    }
    if let Some(v) = caps.topic_alias_max {
        p.u16(0x22, v);
    }
    if let Some(v) = caps.wildcards {
        p.u8(0x28, u8::from(v));
    }
    if let Some(v) = caps.subscription_ids {
        p.u8(0x29, u8::from(v));
    }
    if let Some(v) = caps.shared {
        p.u8(0x2A, u8::from(v));
    }
    if let Some(v) = caps.keep_alive {
        p.u16(0x13, v);
    }
    Some(())
}

fn publish_props(p: &mut Props, pp: &PublishProps) -> Option<()> {
    if let Some(v) = pp.payload_format {
        p.u8(0x01, v);
    }
    if let Some(v) = pp.message_expiry {
        p.u32(0x02, v);
    }
    if let Some(v) = &pp.content_type {
        p.str(0x03, v)?;
    }
    if let Some(v) = &pp.response_topic {
        p.str(0x08, v)?;
    }
    if let Some(v) = &pp.correlation_data {
        p.binary(0x09, v)?;
    }
    for (name, value) in &pp.user {
        p.buf.put_u8(0x26);
        put_str(&mut p.buf, name)?;
        put_str(&mut p.buf, value)?;
    }
    for id in &pp.subscription_ids {
        p.buf.put_u8(0x0B);
        put_varint(&mut p.buf, usize::try_from(*id).ok()?)?;
    }
    Some(())
}

/// Properties being encoded (without their length).
#[derive(Default)]
struct Props {
    buf: BytesMut,
}

impl Props {
    fn u8(&mut self, id: u8, v: u8) {
        self.buf.put_slice(&[id, v]);
    }

    fn u16(&mut self, id: u8, v: u16) {
        self.buf.put_u8(id);
        self.buf.put_u16(v);
    }

    fn u32(&mut self, id: u8, v: u32) {
        self.buf.put_u8(id);
        self.buf.put_u32(v);
    }

    fn str(&mut self, id: u8, v: &str) -> Option<()> {
        self.binary(id, v.as_bytes())
    }

    fn binary(&mut self, id: u8, v: &[u8]) -> Option<()> {
        self.buf.put_u8(id);
        put_str(&mut self.buf, v)
    }

    /// Length with the property length in front.
    fn encoded_len(&self) -> usize {
        varint_len(self.buf.len()) + self.buf.len()
    }

    fn write(&self, buf: &mut BytesMut) {
        // The length was checked by `header`, which every packet writes first.
        let _ = put_varint(buf, self.buf.len());
        buf.put_slice(&self.buf);
    }
}

/// Writes the fixed header of a packet with `len` bytes after it.
fn header(buf: &mut BytesMut, first: u8, len: usize) -> Option<()> {
    if len > MAX_REMAINING {
        return None;
    }
    buf.reserve(5 + len);
    buf.put_u8(first);
    put_varint(buf, len)
}

/// A length-prefixed string or binary; `None` over 65,535 bytes.
fn put_str(buf: &mut BytesMut, s: impl AsRef<[u8]>) -> Option<()> {
    let s = s.as_ref();
    buf.put_u16(u16::try_from(s.len()).ok()?);
    buf.put_slice(s);
    Some(())
}

fn put_varint(buf: &mut BytesMut, mut n: usize) -> Option<()> {
    if n > MAX_REMAINING {
        return None;
    }
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if n == 0 {
            return Some(());
        }
    }
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}
