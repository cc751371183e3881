//! The typed door for in-process adapters (protocol listeners, bridges, a cluster link,
//! rules): sessions that speak [`Message`]s instead of frames.
//!
//! An adapter opens its session with [`Router::open_adapter`] (the handshake is done at once:
//! no HELLO or WELCOME frame, no connect snapshot) and submits messages with
//! [`Router::submit`], which answers in place: [`Accepted`] (with the new revision for a SET)
//! or the [`Refusal`], exactly what a client would get as ACK or ERROR, counted the same way.
//! What the core produces for the session comes out of [`Router::poll_transmit`] as
//! [`Transmit::Deliver`] batches of [`Delivery`]s: updates tagged with the ids of the
//! adapter's own subscriptions that matched (so it never matches patterns again), made once
//! per fan-out however many adapter sessions receive them (a SET from the write itself, a
//! PUBLISH by decoding the frame made for wire clients), and replies (a SUBSCRIBE's SNAPSHOT,
//! a durable ACK, an ERROR the core sends later) as messages.
//!
//! [`Transmit::Deliver`]: crate::Transmit::Deliver

use super::*;

/// Data an adapter attaches to what it submits (MQTT's QoS, properties and payload bytes,
/// say): carried to the adapter sessions that receive the update, kept with a param it wrote
/// for later subscribers (until the next write), and never seen by wire clients.
pub trait Attachment: std::any::Any + Send + Sync + std::fmt::Debug {
    /// Bytes it holds, counted against the param store's budget while kept with a param.
    fn size(&self) -> usize;
    /// Itself, to downcast to the adapter's own type.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Its stored form, kept with the param on disk (`None`: it is not persisted). After a
    /// restart the param carries it as a [`Persisted`], which the adapter decodes.
    fn persist(&self) -> Option<Persisted> {
        None
    }
}

/// A shared [`Attachment`].
pub type Attached = Arc<dyn Attachment>;

/// An attachment in its stored form: the adapter's own encoding, named by `kind`. A param
/// restored from disk carries its attachment as this until the adapter that wrote it reads it;
/// it is persisted again unchanged, so a router run without that adapter loses nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// Which adapter's encoding `bytes` is (e.g. `mqtt`).
    pub kind: Arc<str>,
    /// The encoding.
    pub bytes: Bytes,
}

impl Persisted {
    /// The stored form of kind `kind` inside `attached`, if that is what it is.
    pub fn of<'a>(attached: &'a Attached, kind: &str) -> Option<&'a Persisted> {
        attached
            .as_any()
            .downcast_ref::<Persisted>()
            .filter(|p| &*p.kind == kind)
    }
}

impl Attachment for Persisted {
    fn size(&self) -> usize {
        32 + self.kind.len() + self.bytes.len()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn persist(&self) -> Option<Persisted> {
        Some(self.clone())
    }
}

/// A param a new subscription matches, with what its writer attached.
#[derive(Debug, Clone)]
pub struct Retained {
    /// The param.
    pub param: ParamValue,
    /// What the adapter that wrote it attached, if any.
    pub attached: Option<Attached>,
}

/// A submission the core accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    /// For a SET: the param's revision after the write.
    pub revision: Option<u64>,
    /// Subscriptions the update matched (of every session, the sender's own included for a
    /// SET); 0 says nobody receives it (MQTT 5's "no matching subscribers").
    pub matched: u32,
}

/// Something the core produced for an adapter session.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// An update that subscriptions of the session matched.
    Update(Update),
    /// The params a new subscription `sub` matches (none: nothing is sent), as a SNAPSHOT
    /// answers a client's SUBSCRIBE.
    Snapshot {
        /// The subscription.
        sub: u32,
        /// The params it matches now.
        params: Vec<Retained>,
    },
    /// A reply or notice: the ACK of a Commit write once
    /// it is on disk, an ERROR about a scheduled bundle or a narrowed scope, a P2P signal.
    /// (Boxed: replies are rare, and a delivery stays small to queue.)
    Reply(Box<Message>),
}

/// An update for an adapter session.
#[derive(Debug, Clone)]
pub struct Update {
    /// The subscription it was delivered for.
    pub sub: u32,
    /// Further subscriptions of the session that matched it too (usually none).
    pub also: Vec<u32>,
    /// The update: a SET (a param, with its revision) or a PUBLISH, shared by every adapter
    /// session that receives it.
    pub message: Arc<Message>,
    /// Its size as a frame on the wire, for queue accounting.
    pub size: usize,
    /// The session's own SET, sent back to it like to every subscriber (MQTT's no-local
    /// subscriptions skip it). Not set for a value a subscription's `maxRate` held back.
    pub own: bool,
    /// What the submitting adapter attached, if any (see [`Attachment`]).
    pub attached: Option<Attached>,
}

impl Update {
    /// Every subscription that matched: [`Update::sub`], then [`Update::also`].
    pub fn subs(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.sub).chain(self.also.iter().copied())
    }
}

/// An adapter session's refusal captured by [`Router::submit`] instead of sent as ERROR.
pub(super) struct Capture {
    pub(super) conn: ConnId,
    pub(super) refusal: Option<Refusal>,
}

impl<H: Clone> Router<H> {
    /// Opens an adapter session (as a HELLO would: `token` is checked like a HELLO's), whose
    /// output is given back with `handle`. The session gets no connect
    /// snapshot (its clients get state through their subscriptions).
    pub fn open_adapter(
        &mut self,
        handle: H,
        token: Option<&str>,
        now: Now,
    ) -> Result<ConnId, Refusal> {
        self.open_adapter_named(handle, token, "adapter", now)
    }

    /// Like [`Router::open_adapter`], the session named `name` in session lists (what a
    /// client's HELLO name is for a wire session).
    pub fn open_adapter_named(
        &mut self,
        handle: H,
        token: Option<&str>,
        name: &str,
        now: Now,
    ) -> Result<ConnId, Refusal> {
        let conn = self.open(handle, now);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.adapter = true;
        }
        self.capture = Some(Capture {
            conn,
            refusal: None,
        });
        self.last_now = now;
        let hello = HelloInfo {
            token,
            name,
            features: Features::default(),
        };
        self.on_hello(conn, hello, now);
        let refusal = self.capture.take().and_then(|c| c.refusal);
        match refusal {
            None => {
                self.flush();
                Ok(conn)
            }
            Some(r) => {
                self.conns.remove(&conn);
                self.dirty.retain(|c| *c != conn);
                self.output.retain(|o| o.conn != conn);
                Err(r)
            }
        }
    }

    /// Handles `msg` from adapter session `conn` as if it came in a frame with `qos`, and
    /// answers in place. With [`Qos::Commit`] and durable ACKs on, the ACK follows later as a
    /// [`Delivery::Reply`]; otherwise no ACK or ERROR is queued for the session.
    pub fn submit(
        &mut self,
        conn: ConnId,
        msg: Message,
        qos: Qos,
        now: Now,
    ) -> Result<Accepted, Refusal> {
        self.submit_attached(conn, msg, qos, None, now)
    }

    /// Like [`Router::submit`], with `attached` carried to the adapter sessions the update
    /// reaches and kept with the param a SET writes (see [`Attachment`]).
    pub fn submit_attached(
        &mut self,
        conn: ConnId,
        msg: Message,
        qos: Qos,
        attached: Option<Attached>,
        now: Now,
    ) -> Result<Accepted, Refusal> {
        if self.session(conn).is_none() {
            return Err(Refusal::NoSession);
        }
        self.last_now = now;
        self.metrics.count_in(msg.code());
        // The same size limit as for a frame on the wire.
        match clasp_proto::codec::payload_len(&msg) {
            Ok(len) if len > self.config.max_payload => {
                self.metrics.frames_rejected += 1;
                let r = Refusal::FrameTooLarge {
                    len,
                    max: self.config.max_payload,
                };
                if let Some(kind) = r.kind() {
                    self.metrics.refuse(kind);
                }
                self.metrics.errors_sent += 1;
                return Err(r);
            }
            Ok(_) => {}
            Err(e) => {
                self.metrics.errors_sent += 1;
                return Err(e.into());
            }
        }
        let cost = match &msg {
            Message::Bundle(b) => b.messages.len().max(1) as f64,
            _ => 1.0,
        };
        self.capture = Some(Capture {
            conn,
            refusal: None,
        });
        let allowed = self.within_rate_cost(conn, cost, now);
        // Only a Commit write's ACK is still wanted (it says "on disk", later).
        let qos = if qos == Qos::Commit {
            Qos::Commit
        } else {
            Qos::Fire
        };
        let mut accepted = Accepted::default();
        self.attaching = attached;
        self.matched = 0;
        if allowed {
            match msg {
                Message::Set(s) => {
                    let req = SetReq::owned(&s);
                    match self.on_set(conn, qos, &req, now) {
                        Ok(revision) => accepted.revision = revision,
                        Err(r) => self.refuse(conn, r, Some(s.address.clone())),
                    }
                }
                Message::Hello(_) => self.refuse(conn, Refusal::SecondHello, None),
                other => self.dispatch(conn, qos, other, now),
            }
        }
        let refusal = self.capture.take().and_then(|c| c.refusal);
        self.attaching = None;
        accepted.matched = u32::try_from(self.matched).unwrap_or(u32::MAX);
        self.flush();
        match refusal {
            Some(r) => Err(r),
            None if !allowed => Err(self.rate_refusal()),
            None => Ok(accepted),
        }
    }

    /// Reads through the door, answered in place: the params `pattern` matches that adapter
    /// session `conn` may read, sorted by address. An address with no wildcard that holds no
    /// param is [`Refusal::NoParam`]; one the session may not read is [`Refusal::Scope`]
    /// (params outside the read scope are left out of a pattern's answer). Counted as a GET.
    pub fn read(
        &mut self,
        conn: ConnId,
        pattern: &str,
        now: Now,
    ) -> Result<Vec<ParamValue>, Refusal> {
        if self.session(conn).is_none() {
            return Err(Refusal::NoSession);
        }
        self.last_now = now;
        self.metrics.count_in(clasp_proto::message::code::GET);
        let compiled = clasp_proto::pattern::Pattern::compile(pattern)?;
        if !pattern.contains('*') {
            if !self.permits(conn, Action::Read, pattern) {
                return Err(Refusal::Scope(Operation::Read));
            }
            return match self.store.get(pattern) {
                Some(p) => Ok(vec![param_value(pattern, p)]),
                None => Err(Refusal::NoParam(pattern.to_owned())),
            };
        }
        let mut out: Vec<ParamValue> = self
            .store
            .iter()
            .filter(|(a, _)| compiled.matches(a) && self.permits(conn, Action::Read, a))
            .map(|(a, p)| param_value(a, p))
            .collect();
        out.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(out)
    }

    /// The params `filter` lets through, with their attachments, for an adapter's new
    /// subscription.
    pub(super) fn retained(&self, filter: impl Fn(&str) -> bool) -> Vec<Retained> {
        self.store
            .iter()
            .filter(|(a, _)| filter(a))
            .map(|(a, p)| Retained {
                param: param_value(a, p),
                attached: p.attached.clone(),
            })
            .collect()
    }

    /// Queues `params`, what subscription `sub` of adapter `conn` matches now.
    pub(super) fn send_adapter_snapshot(&mut self, conn: ConnId, sub: u32, params: Vec<Retained>) {
        if params.is_empty() {
            return;
        }
        self.metrics
            .count_out(clasp_proto::message::code::SNAPSHOT, 0);
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.staged.is_empty() && c.typed.is_empty() {
                self.dirty.push(conn);
            }
            c.typed.push(Delivery::Snapshot { sub, params });
        }
    }

    /// Whether `conn` is an adapter session (see [`Router::open_adapter`]).
    pub fn is_adapter(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.adapter)
    }

    /// Takes `r` for the submission in progress if it is `conn`'s; `false` if it must be sent.
    pub(super) fn capture_refusal(&mut self, conn: ConnId, r: &mut Option<Refusal>) -> bool {
        match &mut self.capture {
            Some(c) if c.conn == conn => {
                if c.refusal.is_none() {
                    c.refusal = r.take();
                }
                true
            }
            _ => false,
        }
    }

    fn rate_refusal(&self) -> Refusal {
        let limit = self.config.rate_limit.unwrap_or(RateLimit {
            per_sec: 0,
            burst: 0,
        });
        Refusal::RateLimited {
            per_sec: limit.per_sec,
            burst: limit.burst,
        }
    }
}
