//! The few MQTT 3.1.1 packets `mqtt` writes and reads, by hand (see the module docs of
//! `mqtt` for why).

use super::*;

pub(super) fn put_remaining_length(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

pub(super) fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level: 3.1.1
    body.push(0x02); // clean session
    body.extend_from_slice(&KEEP_ALIVE_SECS.to_be_bytes());
    put_str(&mut body, client_id.as_bytes());
    let mut p = vec![0x10];
    put_remaining_length(&mut p, body.len());
    p.extend_from_slice(&body);
    p
}

pub(super) fn subscribe_packet(topic: &str) -> Vec<u8> {
    let mut body = vec![0, 1]; // packet id 1
    put_str(&mut body, topic.as_bytes());
    body.push(0); // QoS 0
    let mut p = vec![0x82];
    put_remaining_length(&mut p, body.len());
    p.extend_from_slice(&body);
    p
}

/// Appends a QoS 0 PUBLISH of message `seq`, sent at `sent_us`, with a payload of `size`
/// bytes.
pub(super) fn put_publish(out: &mut Vec<u8>, topic: &[u8], seq: u64, sent_us: u64, size: usize) {
    out.push(0x30);
    put_remaining_length(out, 2 + topic.len() + size);
    put_str(out, topic);
    out.push(MARK);
    out.extend_from_slice(&((seq % SEQ_MOD) as u32).to_le_bytes()[..3]);
    out.extend_from_slice(&(sent_us as u32).to_le_bytes());
    out.resize(out.len() + (size - HEADER), 0xA5);
}

/// A whole packet at the start of `buf`: (first byte, body range, packet length); `Ok(None)`
/// if more bytes are needed.
pub(super) fn split_packet(buf: &[u8]) -> anyhow::Result<Option<(u8, std::ops::Range<usize>)>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7F) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            bail!("malformed remaining length from the broker");
        }
    }
    if buf.len() < i + len {
        return Ok(None);
    }
    Ok(Some((first, i..i + len)))
}

/// The payload of a PUBLISH packet's body.
pub(super) fn publish_payload(first: u8, body: &[u8]) -> Option<&[u8]> {
    let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let pkid = if (first >> 1) & 3 > 0 { 2 } else { 0 };
    body.get(2 + topic_len + pkid..)
}

/// Reads one packet (during setup).
pub(super) async fn read_packet(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(u8, Vec<u8>)> {
    loop {
        if let Some((first, body)) = split_packet(buf)? {
            let b = buf[body.clone()].to_vec();
            buf.drain(..body.end);
            return Ok((first, b));
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("the broker closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
