//! Decoding: the fields of each message type, read from its map (the second pass).

use super::*;

/// The fields of each message type (second pass over its map).
impl<'a> Reader<'a> {
    /// The single required field `key` of a message, read by `read`.
    pub(super) fn only_field<T>(
        &mut self,
        map: &MapAt,
        key: &'static str,
        mut read: impl FnMut(&mut Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let mut found = None;
        self.entries(map, |r, k| {
            if k != key {
                return Ok(false);
            }
            found = read(r)?;
            Ok(true)
        })?;
        self.required(found, key, map)
    }

    /// A list of feature names.
    pub(super) fn features(&mut self, field: &'static str) -> Result<Features> {
        let mut bits = 0;
        self.names(field, |n| bits |= Features::from_names([n]).0)?;
        Ok(Features(bits))
    }

    pub(super) fn hello(&mut self, map: &MapAt) -> Result<Message> {
        let (mut version, mut name, mut features, mut token) = (None, None, Features(0), None);
        self.entries(map, |r, key| {
            match key {
                "version" => version = r.opt_uint("version")?,
                "name" => name = r.opt_string("name")?,
                "features" => features = r.features("features")?,
                "token" => token = r.token("token")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Hello(Hello {
            version: self.required(version, "version", map)?,
            features,
            name: self.required(name, "name", map)?,
            token,
        }))
    }

    pub(super) fn welcome(&mut self, map: &MapAt) -> Result<Message> {
        let (mut version, mut session, mut name, mut time) = (None, None, None, None);
        let (mut features, mut token) = (Features(0), None);
        self.entries(map, |r, key| {
            match key {
                "version" => version = r.opt_uint("version")?,
                "session" => session = r.opt_string("session")?,
                "name" => name = r.opt_string("name")?,
                "features" => features = r.features("features")?,
                "time" => time = r.opt_uint("time")?,
                "token" => token = r.token("token")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Welcome(Welcome {
            version: self.required(version, "version", map)?,
            features,
            time: self.required(time, "time", map)?,
            session: self.required(session, "session", map)?,
            name: self.required(name, "name", map)?,
            token,
        }))
    }

    /// `range: [min, max]`; nil is `None`.
    pub(super) fn range(&mut self, field: &'static str) -> Result<Option<(f64, f64)>> {
        match self.head(field)? {
            (_, Head::Nil) => Ok(None),
            (_, Head::Array(2)) => Ok(Some((self.f64(field)?, self.f64(field)?))),
            (at, Head::Array(n)) => Err(self.fail(
                at,
                format!(
                    "field `{field}` of {}: expected an array of 2 numbers, found an array of {n}",
                    self.msg
                ),
            )),
            (at, other) => Err(self.mismatch(at, field, "array of 2 numbers", &other)),
        }
    }

    pub(super) fn meta(&mut self, depth: usize) -> Result<Option<SignalMeta>> {
        let Some(map) = self.opt_map("signals[].meta")? else {
            return Ok(None);
        };
        let mut meta = SignalMeta::default();
        self.entries(&map, |r, key| {
            match key {
                "unit" => meta.unit = r.opt_string("signals[].meta.unit")?,
                "range" => meta.range = r.range("signals[].meta.range")?,
                "default" => meta.default = r.opt_value("signals[].meta.default", depth)?,
                "description" => meta.description = r.opt_string("signals[].meta.description")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Some(meta))
    }

    /// One entry of ANNOUNCE or RESULT `signals`.
    pub(super) fn signal_def(&mut self, depth: usize) -> Result<SignalDef> {
        let map = self.map("signals[]")?;
        let mut def = SignalDef::default();
        let mut address = None;
        self.entries(&map, |r, key| {
            match key {
                "address" => address = r.opt_string("signals[].address")?,
                "type" => {
                    def.signal = r
                        .opt_str("signals[].type")?
                        .and_then(SignalType::from_name)
                        .unwrap_or_default();
                }
                "datatype" => def.datatype = r.opt_string("signals[].datatype")?,
                "access" => def.access = r.opt_string("signals[].access")?,
                "meta" => def.meta = r.meta(depth)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        def.address = self.required(address, "signals[].address", &map)?;
        Ok(def)
    }

    pub(super) fn announce(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let (mut namespace, mut signals) = (None, Vec::new());
        self.entries(map, |r, key| {
            match key {
                "namespace" => namespace = r.opt_string("namespace")?,
                "signals" => signals = r.list("signals", |r| r.signal_def(depth))?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Announce(Announce {
            namespace: self.required(namespace, "namespace", map)?,
            signals,
        }))
    }

    pub(super) fn result(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let mut signals = Vec::new();
        self.entries(map, |r, key| {
            if key != "signals" {
                return Ok(false);
            }
            signals = r.list("signals", |r| r.signal_def(depth))?;
            Ok(true)
        })?;
        Ok(Message::Result(QueryResult { signals }))
    }

    pub(super) fn options(&mut self) -> Result<SubscribeOptions> {
        let mut o = SubscribeOptions::default();
        let Some(map) = self.opt_map("options")? else {
            return Ok(o);
        };
        self.entries(&map, |r, key| {
            match key {
                "max_rate" => o.max_rate = r.opt_uint("options.max_rate")?,
                "epsilon" => o.epsilon = r.opt_f64("options.epsilon")?,
                "history" => o.history = r.opt_uint("options.history")?,
                "window" => o.window = r.opt_uint("options.window")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(o)
    }

    pub(super) fn subscribe(&mut self, map: &MapAt) -> Result<Message> {
        let (mut id, mut pattern) = (None, None);
        let (mut types, mut options) = (SignalTypes::ALL, SubscribeOptions::default());
        self.entries(map, |r, key| {
            match key {
                "id" => id = r.opt_uint("id")?,
                "pattern" => pattern = r.opt_string("pattern")?,
                "types" => {
                    let mut set: Vec<SignalType> = Vec::new();
                    r.names("types", |n| {
                        if let Some(t) = SignalType::from_name(n)
                            && !set.contains(&t)
                        {
                            set.push(t);
                        }
                    })?;
                    types = SignalTypes::of(&set);
                }
                "options" => options = r.options()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Subscribe(Subscribe {
            id: self.required(id, "id", map)?,
            pattern: self.required(pattern, "pattern", map)?,
            types,
            options,
        }))
    }

    pub(super) fn publish(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let mut address = None;
        let (mut signal, mut phase) = (SignalType::Event, GesturePhase::Start);
        let (mut value, mut payload, mut samples) = (None, None, None);
        let (mut timestamp, mut id, mut rate) = (None, None, None);
        self.entries(map, |r, key| {
            match key {
                "address" => address = r.opt_string("address")?,
                "signal" => {
                    signal = r
                        .opt_str("signal")?
                        .and_then(SignalType::from_name)
                        .unwrap_or_default();
                }
                "phase" => {
                    phase = r
                        .opt_str("phase")?
                        .and_then(GesturePhase::from_name)
                        .unwrap_or_default();
                }
                "value" => value = r.opt_value("value", depth)?,
                "payload" => payload = r.opt_value("payload", depth)?,
                "samples" => {
                    samples = if r.take_nil() {
                        None
                    } else {
                        Some(r.list("samples", |r| r.f64("samples"))?)
                    };
                }
                "timestamp" => timestamp = r.opt_uint("timestamp")?,
                "id" => id = r.opt_uint("id")?,
                "rate" => rate = r.opt_uint("rate")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let payload = match (value.or(payload), samples) {
            (Some(v), _) => PublishPayload::Value(v),
            (None, Some(s)) => PublishPayload::Samples(s),
            (None, None) => PublishPayload::None,
        };
        Ok(Message::Publish(Publish {
            address: self.required(address, "address", map)?,
            signal,
            phase,
            payload,
            timestamp,
            id,
            rate,
        }))
    }

    pub(super) fn set(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let (mut address, mut value, mut revision, mut ttl) = (None, None, None, None);
        let (mut lock, mut unlock) = (false, false);
        self.entries(map, |r, key| {
            match key {
                "address" => address = r.opt_string("address")?,
                "value" => value = Some(r.value("value", depth)?),
                "revision" => revision = r.opt_uint("revision")?,
                "lock" => lock = r.opt_bool("lock")?.unwrap_or(false),
                "unlock" => unlock = r.opt_bool("unlock")?.unwrap_or(false),
                "ttl" => ttl = r.opt_uint("ttl")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Set(Set {
            address: self.required(address, "address", map)?,
            value: self.required(value, "value", map)?,
            revision,
            lock,
            unlock,
            ttl,
        }))
    }

    /// One entry of SNAPSHOT `params`.
    pub(super) fn param(&mut self, depth: usize) -> Result<ParamValue> {
        let map = self.map("params[]")?;
        let (mut address, mut value, mut revision) = (None, None, None);
        let (mut writer, mut timestamp) = (None, None);
        self.entries(&map, |r, key| {
            match key {
                "address" => address = r.opt_string("params[].address")?,
                "value" => value = Some(r.value("params[].value", depth)?),
                "revision" => revision = r.opt_uint("params[].revision")?,
                "writer" => writer = r.opt_string("params[].writer")?,
                "timestamp" => timestamp = r.opt_uint("params[].timestamp")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(ParamValue {
            address: self.required(address, "params[].address", &map)?,
            value: self.required(value, "params[].value", &map)?,
            revision: self.required(revision, "params[].revision", &map)?,
            writer,
            timestamp,
        })
    }

    pub(super) fn snapshot(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let mut params = Vec::new();
        self.entries(map, |r, key| {
            if key != "params" {
                return Ok(false);
            }
            params = r.list("params", |r| r.param(depth))?;
            Ok(true)
        })?;
        Ok(Message::Snapshot(Snapshot { params }))
    }

    pub(super) fn bundle(&mut self, map: &MapAt, depth: usize) -> Result<Message> {
        let inner = self.nest(map.at, depth)?;
        let (mut timestamp, mut messages) = (None, Vec::new());
        self.entries(map, |r, key| {
            match key {
                "timestamp" => timestamp = r.opt_uint("timestamp")?,
                "messages" => messages = r.list("messages", |r| r.message(inner))?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Bundle(Bundle {
            timestamp,
            messages,
        }))
    }

    /// REPLAY (v4 defines it in the binary encoding only; here with the binary fields by
    /// name, `types` as the type mask).
    pub(super) fn replay(&mut self, map: &MapAt) -> Result<Message> {
        let mut pattern = None;
        let mut m = Replay::default();
        self.entries(map, |r, key| {
            match key {
                "pattern" => pattern = r.opt_string("pattern")?,
                "from" => m.from = r.opt_uint("from")?,
                "to" => m.to = r.opt_uint("to")?,
                "limit" => m.limit = r.opt_uint("limit")?,
                "types" => {
                    let mask: Option<u8> = r.opt_uint("types")?;
                    m.types = SignalTypes::from_mask(mask.unwrap_or(0xFF));
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        m.pattern = self.required(pattern, "pattern", map)?;
        Ok(Message::Replay(m))
    }

    pub(super) fn sync(&mut self, map: &MapAt) -> Result<Message> {
        let (mut t1, mut t2, mut t3) = (None, None, None);
        self.entries(map, |r, key| {
            match key {
                "t1" => t1 = r.opt_uint("t1")?,
                "t2" => t2 = r.opt_uint("t2")?,
                "t3" => t3 = r.opt_uint("t3")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Sync(ClockSync {
            t1: self.required(t1, "t1", map)?,
            t2,
            t3,
        }))
    }

    pub(super) fn ack(&mut self, map: &MapAt) -> Result<Message> {
        let mut ack = Ack::default();
        self.entries(map, |r, key| {
            match key {
                "address" => ack.address = r.opt_string("address")?,
                "revision" => ack.revision = r.opt_uint("revision")?,
                "locked" => ack.locked = r.opt_bool("locked")?,
                "holder" => ack.holder = r.opt_string("holder")?,
                "correlation_id" => ack.correlation_id = r.opt_uint("correlation_id")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Ack(ack))
    }

    pub(super) fn error_msg(&mut self, map: &MapAt) -> Result<Message> {
        let (mut code, mut message) = (None, None);
        let (mut address, mut correlation_id) = (None, None);
        self.entries(map, |r, key| {
            match key {
                "code" => code = r.opt_uint::<u16>("code")?,
                "message" => message = r.opt_string("message")?,
                "address" => address = r.opt_string("address")?,
                "correlation_id" => correlation_id = r.opt_uint("correlation_id")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Message::Error(ErrorMessage {
            code: ErrorCode::from_code(self.required(code, "code", map)?),
            message: self.required(message, "message", map)?,
            address,
            correlation_id,
        }))
    }
}
