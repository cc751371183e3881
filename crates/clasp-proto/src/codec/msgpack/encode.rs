//! Encoding into the legacy MessagePack form (for tests and tools: nobody sends it to clients).

use super::*;

type EResult<T = ()> = std::result::Result<T, EncodeError>;

/// Unwraps the result of a write into a [`ByteBuf`], which cannot fail.
fn done<T>(r: std::result::Result<T, ValueWriteError<Infallible>>) -> T {
    match r {
        Ok(v) => v,
        Err(ValueWriteError::InvalidMarkerWrite(e) | ValueWriteError::InvalidDataWrite(e)) => {
            match e {}
        }
    }
}

/// A length as MessagePack's u32 (anything longer could not be framed anyway).
fn len32(len: usize) -> EResult<u32> {
    u32::try_from(len).map_err(|_| EncodeError::PayloadTooLarge(len))
}

fn put_str(out: &mut ByteBuf, s: &str) -> EResult {
    done(rmp::encode::write_str_len(out, len32(s.len())?));
    out.as_mut_vec().extend_from_slice(s.as_bytes());
    Ok(())
}

fn nest(depth: usize) -> EResult<usize> {
    if depth >= MAX_NESTING {
        Err(EncodeError::TooDeep(MAX_NESTING))
    } else {
        Ok(depth + 1)
    }
}

fn put_value(out: &mut ByteBuf, v: &Value, depth: usize) -> EResult {
    match v {
        Value::Null => {
            let Ok(()) = rmp::encode::write_nil(out);
        }
        Value::Bool(b) => {
            let Ok(()) = rmp::encode::write_bool(out, *b);
        }
        Value::Int(i) => {
            done(rmp::encode::write_sint(out, *i));
        }
        Value::Float(f) => done(rmp::encode::write_f64(out, *f)),
        Value::String(s) => put_str(out, s)?,
        Value::Bytes(b) => {
            done(rmp::encode::write_bin_len(out, len32(b.len())?));
            out.as_mut_vec().extend_from_slice(b);
        }
        Value::Array(items) => {
            let depth = nest(depth)?;
            done(rmp::encode::write_array_len(out, len32(items.len())?));
            for item in items {
                put_value(out, item, depth)?;
            }
        }
        Value::Map(entries) => {
            let depth = nest(depth)?;
            done(rmp::encode::write_map_len(out, len32(entries.len())?));
            for (key, item) in entries {
                put_str(out, key)?;
                put_value(out, item, depth)?;
            }
        }
    }
    Ok(())
}

/// The entries of a map being written, counted so the header can be written first.
struct Fields {
    buf: ByteBuf,
    len: u32,
}

impl Fields {
    fn new() -> Self {
        Fields {
            buf: ByteBuf::new(),
            len: 0,
        }
    }

    /// Starts a message map with its `type`.
    fn message(name: &str) -> EResult<Self> {
        let mut f = Fields::new();
        f.str("type", name)?;
        Ok(f)
    }

    /// Writes a key; the caller writes its value into the returned buffer.
    fn key(&mut self, key: &str) -> EResult<&mut ByteBuf> {
        self.len += 1;
        put_str(&mut self.buf, key)?;
        Ok(&mut self.buf)
    }

    fn str(&mut self, key: &str, v: &str) -> EResult {
        put_str(self.key(key)?, v)
    }

    fn opt_str(&mut self, key: &str, v: Option<&str>) -> EResult {
        v.map_or(Ok(()), |v| self.str(key, v))
    }

    fn uint(&mut self, key: &str, v: u64) -> EResult {
        done(rmp::encode::write_uint(self.key(key)?, v));
        Ok(())
    }

    fn opt_uint(&mut self, key: &str, v: Option<impl Into<u64>>) -> EResult {
        v.map_or(Ok(()), |v| self.uint(key, v.into()))
    }

    fn bool(&mut self, key: &str, v: bool) -> EResult {
        let Ok(()) = rmp::encode::write_bool(self.key(key)?, v);
        Ok(())
    }

    fn f64(&mut self, key: &str, v: f64) -> EResult {
        done(rmp::encode::write_f64(self.key(key)?, v));
        Ok(())
    }

    fn value(&mut self, key: &str, v: &Value, depth: usize) -> EResult {
        put_value(self.key(key)?, v, depth)
    }

    fn names(&mut self, key: &str, names: &[&str]) -> EResult {
        let out = self.key(key)?;
        done(rmp::encode::write_array_len(out, len32(names.len())?));
        names.iter().try_for_each(|n| put_str(out, n))
    }

    fn map(&mut self, key: &str, inner: Fields) -> EResult {
        inner.finish(self.key(key)?);
        Ok(())
    }

    /// Writes the map (header and entries) to `out`.
    fn finish(self, out: &mut ByteBuf) {
        done(rmp::encode::write_map_len(out, self.len));
        out.as_mut_vec().extend_from_slice(self.buf.as_slice());
    }
}

/// Encodes the legacy MessagePack payload of `msg` (no frame header).
///
/// For tests and tools only: routers never emit this form. Keys come in the order the Python
/// client writes them (`type` first; BUNDLE: `type, timestamp` (nil when absent), `messages`;
/// SET: `type, address, value`, then `revision`, `lock`, `unlock`, `ttl` only when set), integers
/// take their shortest form, floats are always float64, [`Value::Bytes`] is a bin, and `None`
/// fields are left out. Fails if values or bundles nest deeper than [`MAX_NESTING`] or the
/// payload would exceed the 65,535-byte frame limit.
pub fn encode(msg: &Message) -> std::result::Result<Vec<u8>, EncodeError> {
    let mut out = ByteBuf::new();
    message_fields(msg, 0)?.finish(&mut out);
    let out = out.into_vec();
    if out.len() > MAX_PAYLOAD {
        return Err(EncodeError::PayloadTooLarge(out.len()));
    }
    Ok(out)
}

fn signal_def(def: &SignalDef, depth: usize) -> EResult<Fields> {
    let mut f = Fields::new();
    f.str("address", &def.address)?;
    f.str("type", def.signal.name())?;
    f.opt_str("datatype", def.datatype.as_deref())?;
    f.opt_str("access", def.access.as_deref())?;
    if let Some(meta) = &def.meta {
        let mut m = Fields::new();
        m.opt_str("unit", meta.unit.as_deref())?;
        if let Some((min, max)) = meta.range {
            let out = m.key("range")?;
            done(rmp::encode::write_array_len(out, 2));
            done(rmp::encode::write_f64(out, min));
            done(rmp::encode::write_f64(out, max));
        }
        if let Some(default) = &meta.default {
            m.value("default", default, depth)?;
        }
        m.opt_str("description", meta.description.as_deref())?;
        f.map("meta", m)?;
    }
    Ok(f)
}

fn signal_defs(f: &mut Fields, signals: &[SignalDef], depth: usize) -> EResult {
    let out = f.key("signals")?;
    done(rmp::encode::write_array_len(out, len32(signals.len())?));
    for def in signals {
        signal_def(def, depth)?.finish(out);
    }
    Ok(())
}

fn message_fields(msg: &Message, depth: usize) -> EResult<Fields> {
    let mut f = Fields::message(msg.name())?;
    match msg {
        Message::Hello(m) => {
            f.uint("version", m.version.into())?;
            f.str("name", &m.name)?;
            f.names("features", &m.features.names().collect::<Vec<_>>())?;
            f.opt_str("token", m.token.as_deref())?;
        }
        Message::Welcome(m) => {
            f.uint("version", m.version.into())?;
            f.str("session", &m.session)?;
            f.str("name", &m.name)?;
            f.names("features", &m.features.names().collect::<Vec<_>>())?;
            f.uint("time", m.time)?;
            f.opt_str("token", m.token.as_deref())?;
        }
        Message::Announce(m) => {
            f.str("namespace", &m.namespace)?;
            signal_defs(&mut f, &m.signals, depth)?;
        }
        Message::Subscribe(m) => {
            f.uint("id", m.id.into())?;
            f.str("pattern", &m.pattern)?;
            let types: Vec<_> = m.types.iter().map(SignalType::name).collect();
            f.names("types", &types)?;
            if !m.options.is_empty() {
                let o = &m.options;
                let mut of = Fields::new();
                of.opt_uint("max_rate", o.max_rate)?;
                if let Some(e) = o.epsilon {
                    of.f64("epsilon", e)?;
                }
                of.opt_uint("history", o.history)?;
                of.opt_uint("window", o.window)?;
                f.map("options", of)?;
            }
        }
        Message::Unsubscribe(m) => f.uint("id", m.id.into())?,
        Message::Publish(m) => {
            f.str("address", &m.address)?;
            f.str("signal", m.signal.name())?;
            if m.signal == SignalType::Gesture || m.phase != GesturePhase::Start {
                f.str("phase", m.phase.name())?;
            }
            match &m.payload {
                PublishPayload::None => {}
                PublishPayload::Value(v) => f.value("value", v, depth)?,
                PublishPayload::Samples(samples) => {
                    let out = f.key("samples")?;
                    done(rmp::encode::write_array_len(out, len32(samples.len())?));
                    for s in samples {
                        done(rmp::encode::write_f64(out, *s));
                    }
                }
            }
            f.opt_uint("timestamp", m.timestamp)?;
            f.opt_uint("id", m.id)?;
            f.opt_uint("rate", m.rate)?;
        }
        Message::Set(m) => {
            f.str("address", &m.address)?;
            f.value("value", &m.value, depth)?;
            f.opt_uint("revision", m.revision)?;
            if m.lock {
                f.bool("lock", true)?;
            }
            if m.unlock {
                f.bool("unlock", true)?;
            }
            f.opt_uint("ttl", m.ttl)?;
        }
        Message::Get(m) => f.str("address", &m.address)?,
        Message::Snapshot(m) => {
            let out = f.key("params")?;
            done(rmp::encode::write_array_len(out, len32(m.params.len())?));
            for p in &m.params {
                let mut pf = Fields::new();
                pf.str("address", &p.address)?;
                pf.value("value", &p.value, depth)?;
                pf.uint("revision", p.revision)?;
                pf.opt_str("writer", p.writer.as_deref())?;
                pf.opt_uint("timestamp", p.timestamp)?;
                pf.finish(out);
            }
        }
        Message::Bundle(m) => {
            let inner = nest(depth)?;
            match m.timestamp {
                Some(ts) => f.uint("timestamp", ts)?,
                None => {
                    let Ok(()) = rmp::encode::write_nil(f.key("timestamp")?);
                }
            }
            let out = f.key("messages")?;
            done(rmp::encode::write_array_len(out, len32(m.messages.len())?));
            for inner_msg in &m.messages {
                message_fields(inner_msg, inner)?.finish(out);
            }
        }
        Message::Sync(m) => {
            f.uint("t1", m.t1)?;
            f.opt_uint("t2", m.t2)?;
            f.opt_uint("t3", m.t3)?;
        }
        Message::Ping | Message::Pong => {}
        Message::Ack(m) => {
            f.opt_str("address", m.address.as_deref())?;
            f.opt_uint("revision", m.revision)?;
            if let Some(locked) = m.locked {
                f.bool("locked", locked)?;
            }
            f.opt_str("holder", m.holder.as_deref())?;
            f.opt_uint("correlation_id", m.correlation_id)?;
        }
        Message::Error(m) => {
            f.uint("code", m.code.code().into())?;
            f.str("message", &m.message)?;
            f.opt_str("address", m.address.as_deref())?;
            f.opt_uint("correlation_id", m.correlation_id)?;
        }
        Message::Query(m) => f.str("pattern", &m.pattern)?,
        // v4 defines REPLAY in the binary encoding only; the legacy form carries its fields
        // by name (no official decoder reads them; ours does).
        Message::Replay(m) => {
            f.str("pattern", &m.pattern)?;
            f.opt_uint("from", m.from)?;
            f.opt_uint("to", m.to)?;
            f.opt_uint("limit", m.limit)?;
            f.uint("types", m.types.mask().into())?;
        }
        Message::Result(m) => signal_defs(&mut f, &m.signals, depth)?,
    }
    Ok(f)
}
