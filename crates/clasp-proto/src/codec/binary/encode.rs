//! Encoding in the compact binary format: messages, values, SET fields, and size estimates.

use crate::MAX_NESTING;
use crate::error::EncodeError;
use crate::message::*;
use crate::value::Value;

use super::lists::{put_param, put_signal_def};

pub(super) type EResult = std::result::Result<(), EncodeError>;

/// A capacity guess for the framed encoding of `msg`: exact for the small hot-path messages,
/// a starting point for the rest.
pub(crate) fn size_hint(msg: &Message) -> usize {
    const HEADER: usize = 12;
    HEADER
        + match msg {
            Message::Set(s) => 16 + s.address.len() + scalar_hint(&s.value),
            Message::Publish(p) => {
                24 + p.address.len()
                    + match &p.payload {
                        PublishPayload::Value(v) => scalar_hint(v),
                        PublishPayload::Samples(s) => 2 + 8 * s.len(),
                        PublishPayload::None => 0,
                    }
            }
            Message::Snapshot(s) => 3 + s.params.len() * 64,
            _ => 64,
        }
}

/// The exact payload length of a SET or PUBLISH (the messages sent most), so their frames can be
/// encoded straight into an allocation of the right size; `None` for other messages and for
/// values nested deeper than the encoder allows.
pub(crate) fn exact_payload_len(msg: &Message) -> Option<usize> {
    match msg {
        Message::Set(s) => set_payload_len(&SetRef::from(s)),
        Message::Publish(p) => Some(
            5 + p.address.len()
                + match &p.payload {
                    PublishPayload::None => 0,
                    PublishPayload::Value(v) => 1 + value_len(v, 0)?,
                    PublishPayload::Samples(s) => 2 + 8 * s.len(),
                }
                + if p.timestamp.is_some() { 8 } else { 0 }
                + if p.id.is_some() { 4 } else { 0 }
                + if p.rate.is_some() { 4 } else { 0 },
        ),
        _ => None,
    }
}

/// The exact payload length of a SET.
pub(crate) fn set_payload_len(s: &SetRef<'_>) -> Option<usize> {
    Some(
        4 + s.address.len()
            + value_len(s.value, 0)?
            + if s.revision.is_some() { 8 } else { 0 }
            + if s.ttl.is_some() { 4 } else { 0 },
    )
}

/// The length of a value's data after its tag, as [`put_value_data`] writes it.
pub(super) fn value_len(v: &Value, depth: usize) -> Option<usize> {
    Some(match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 8,
        Value::String(s) => 2 + s.len(),
        Value::Bytes(b) => 2 + b.len(),
        Value::Array(items) => {
            let depth = nest(depth).ok()?;
            let mut n = 2;
            for item in items {
                n += 1 + value_len(item, depth)?;
            }
            n
        }
        Value::Map(entries) => {
            let depth = nest(depth).ok()?;
            let mut n = 2;
            for (k, item) in entries {
                n += 2 + k.len() + 1 + value_len(item, depth)?;
            }
            n
        }
    })
}

fn scalar_hint(v: &Value) -> usize {
    match v {
        Value::String(s) => 3 + s.len(),
        Value::Bytes(b) => 3 + b.len(),
        Value::Array(a) => 3 + 9 * a.len(),
        Value::Map(m) => 3 + 24 * m.len(),
        _ => 9,
    }
}

#[inline]
pub(super) fn put_str(out: &mut Vec<u8>, s: &str, field: &'static str) -> EResult {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong {
        field,
        len: s.len(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

#[inline]
pub(super) fn put_count(out: &mut Vec<u8>, count: usize, field: &'static str) -> EResult {
    let n = u16::try_from(count).map_err(|_| EncodeError::TooMany { field, count })?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

pub(super) fn put_value(out: &mut Vec<u8>, v: &Value, depth: usize) -> EResult {
    out.push(v.tag());
    put_value_data(out, v, depth)
}

fn put_value_data(out: &mut Vec<u8>, v: &Value, depth: usize) -> EResult {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::Int(i) => out.extend_from_slice(&i.to_be_bytes()),
        Value::Float(f) => out.extend_from_slice(&f.to_be_bytes()),
        Value::String(s) => put_str(out, s, "string")?,
        Value::Bytes(b) => {
            let len = u16::try_from(b.len()).map_err(|_| EncodeError::StringTooLong {
                field: "bytes",
                len: b.len(),
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            let depth = nest(depth)?;
            put_count(out, items.len(), "array")?;
            for item in items {
                put_value(out, item, depth)?;
            }
        }
        Value::Map(entries) => {
            let depth = nest(depth)?;
            put_count(out, entries.len(), "map")?;
            for (k, item) in entries {
                put_str(out, k, "map key")?;
                put_value(out, item, depth)?;
            }
        }
    }
    Ok(())
}

fn nest(depth: usize) -> std::result::Result<usize, EncodeError> {
    if depth >= MAX_NESTING {
        Err(EncodeError::TooDeep(MAX_NESTING))
    } else {
        Ok(depth + 1)
    }
}

pub(super) fn flag(cond: bool, bit: u8) -> u8 {
    if cond { bit } else { 0 }
}

/// Appends the binary payload of `msg` to `out`. On error, `out` may hold a partial payload;
/// [`Message::encode_payload`] and [`crate::encode_into`] restore it.
pub(crate) fn encode_payload(msg: &Message, out: &mut Vec<u8>) -> EResult {
    encode_at(msg, out, 0)
}

fn encode_at(msg: &Message, out: &mut Vec<u8>, depth: usize) -> EResult {
    out.push(msg.code());
    match msg {
        Message::Hello(m) => {
            out.push(m.version);
            out.push(m.features.0);
            put_str(out, &m.name, "name")?;
            put_str(out, m.token.as_deref().unwrap_or(""), "token")?;
        }
        Message::Welcome(m) => {
            out.push(m.version);
            out.push(m.features.0);
            out.extend_from_slice(&m.time.to_be_bytes());
            put_str(out, &m.session, "session")?;
            put_str(out, &m.name, "name")?;
            put_str(out, m.token.as_deref().unwrap_or(""), "token")?;
        }
        Message::Announce(m) => {
            put_str(out, &m.namespace, "namespace")?;
            put_count(out, m.signals.len(), "signals")?;
            for s in &m.signals {
                put_signal_def(out, s, true)?;
            }
        }
        Message::Subscribe(m) => {
            out.extend_from_slice(&m.id.to_be_bytes());
            put_str(out, &m.pattern, "pattern")?;
            out.push(m.types.mask());
            let o = &m.options;
            out.push(
                flag(o.max_rate.is_some(), 0x01)
                    | flag(o.epsilon.is_some(), 0x02)
                    | flag(o.history.is_some(), 0x04)
                    | flag(o.window.is_some(), 0x08),
            );
            if let Some(v) = o.max_rate {
                out.extend_from_slice(&v.to_be_bytes());
            }
            if let Some(v) = o.epsilon {
                out.extend_from_slice(&v.to_be_bytes());
            }
            if let Some(v) = o.history {
                out.extend_from_slice(&v.to_be_bytes());
            }
            if let Some(v) = o.window {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Message::Unsubscribe(m) => out.extend_from_slice(&m.id.to_be_bytes()),
        Message::Publish(m) => {
            out.push(
                (m.signal.code() << 5)
                    | flag(m.timestamp.is_some(), 0x10)
                    | flag(m.id.is_some(), 0x08)
                    | m.phase.code(),
            );
            put_str(out, &m.address, "address")?;
            match &m.payload {
                PublishPayload::None => out.push(0),
                PublishPayload::Value(v) => {
                    out.push(1);
                    put_value(out, v, depth)?;
                }
                PublishPayload::Samples(s) => {
                    out.push(2);
                    put_count(out, s.len(), "samples")?;
                    for x in s {
                        out.extend_from_slice(&x.to_be_bytes());
                    }
                }
            }
            if let Some(ts) = m.timestamp {
                out.extend_from_slice(&ts.to_be_bytes());
            }
            if let Some(id) = m.id {
                out.extend_from_slice(&id.to_be_bytes());
            }
            if let Some(rate) = m.rate {
                out.extend_from_slice(&rate.to_be_bytes());
            }
        }
        Message::Set(m) => put_set_fields(out, &SetRef::from(m), depth)?,
        Message::Get(m) => put_str(out, &m.address, "address")?,
        Message::Snapshot(m) => {
            put_count(out, m.params.len(), "params")?;
            for p in &m.params {
                put_param(out, p, depth)?;
            }
        }
        Message::Replay(m) => {
            let flags = flag(m.from.is_some(), 0x80)
                | flag(m.to.is_some(), 0x40)
                | flag(m.limit.is_some(), 0x20);
            out.push(flags);
            put_str(out, &m.pattern, "pattern")?;
            for t in [m.from, m.to].into_iter().flatten() {
                out.extend_from_slice(&t.to_be_bytes());
            }
            if let Some(n) = m.limit {
                out.extend_from_slice(&n.to_be_bytes());
            }
            out.push(m.types.mask());
        }
        Message::Bundle(m) => {
            let depth = nest(depth)?;
            out.push(flag(m.timestamp.is_some(), 0x80));
            put_count(out, m.messages.len(), "messages")?;
            if let Some(ts) = m.timestamp {
                out.extend_from_slice(&ts.to_be_bytes());
            }
            for inner in &m.messages {
                let len_at = out.len();
                out.extend_from_slice(&[0, 0]);
                encode_at(inner, out, depth)?;
                let len = out.len() - len_at - 2;
                let len = u16::try_from(len).map_err(|_| EncodeError::PayloadTooLarge(len))?;
                out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
            }
        }
        Message::Sync(m) => {
            out.push(flag(m.t2.is_some(), 0x01) | flag(m.t3.is_some(), 0x02));
            out.extend_from_slice(&m.t1.to_be_bytes());
            if let Some(t) = m.t2 {
                out.extend_from_slice(&t.to_be_bytes());
            }
            if let Some(t) = m.t3 {
                out.extend_from_slice(&t.to_be_bytes());
            }
        }
        Message::Ping | Message::Pong => {}
        Message::Ack(m) => {
            out.push(
                flag(m.address.is_some(), 0x01)
                    | flag(m.revision.is_some(), 0x02)
                    | flag(m.locked.is_some(), 0x04)
                    | flag(m.holder.is_some(), 0x08)
                    | flag(m.correlation_id.is_some(), 0x10),
            );
            if let Some(a) = &m.address {
                put_str(out, a, "address")?;
            }
            if let Some(r) = m.revision {
                out.extend_from_slice(&r.to_be_bytes());
            }
            if let Some(l) = m.locked {
                out.push(u8::from(l));
            }
            if let Some(h) = &m.holder {
                put_str(out, h, "holder")?;
            }
            if let Some(c) = m.correlation_id {
                out.extend_from_slice(&c.to_be_bytes());
            }
        }
        Message::Error(m) => {
            out.extend_from_slice(&m.code.code().to_be_bytes());
            put_str(out, &m.message, "message")?;
            out.push(flag(m.address.is_some(), 0x01) | flag(m.correlation_id.is_some(), 0x02));
            if let Some(a) = &m.address {
                put_str(out, a, "address")?;
            }
            if let Some(c) = m.correlation_id {
                out.extend_from_slice(&c.to_be_bytes());
            }
        }
        Message::Query(m) => put_str(out, &m.pattern, "pattern")?,
        Message::Result(m) => {
            put_count(out, m.signals.len(), "signals")?;
            for s in &m.signals {
                put_signal_def(out, s, false)?;
            }
        }
    }
    Ok(())
}

/// The fields of a SET after its type code.
pub(crate) fn put_set_fields(out: &mut Vec<u8>, m: &SetRef<'_>, depth: usize) -> EResult {
    out.push(
        flag(m.revision.is_some(), 0x80)
            | flag(m.lock, 0x40)
            | flag(m.unlock, 0x20)
            | flag(m.ttl.is_some(), 0x10)
            | m.value.tag(),
    );
    put_str(out, m.address, "address")?;
    put_value_data(out, m.value, depth)?;
    if let Some(rev) = m.revision {
        out.extend_from_slice(&rev.to_be_bytes());
    }
    if let Some(ttl) = m.ttl {
        out.extend_from_slice(&ttl.to_be_bytes());
    }
    Ok(())
}
