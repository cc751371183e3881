//! Requests as the core handles them: SETs and PUBLISHes borrowed from a frame or owned.

use super::*;

/// `s` as a [`Str`]: sharing `frame` when it was read from it, else a copy.
pub(super) fn shared_str(frame: Option<&Bytes>, s: &str) -> Str {
    match frame {
        Some(f) => view::share(f, s),
        None => Str::from(s),
    }
}

/// A SET as the core applies it: borrowed from a frame, or from a bundle's owned message.
pub(super) struct SetReq<'a> {
    pub(super) set: SetRef<'a>,
    /// The frame `set.address` borrows from, if any.
    pub(super) frame: Option<&'a Bytes>,
}

impl<'a> SetReq<'a> {
    pub(super) fn owned(s: &'a clasp_proto::Set) -> Self {
        SetReq {
            set: SetRef::from(s),
            frame: None,
        }
    }

    /// The address as a shared string (for ACKs and ERRORs).
    pub(super) fn address_str(&self) -> Str {
        shared_str(self.frame, self.set.address)
    }
}

/// A PUBLISH as the core routes it: its routing fields and the frame that is forwarded.
pub(super) struct PubReq<'a> {
    pub(super) address: &'a str,
    pub(super) signal: SignalType,
    pub(super) phase: GesturePhase,
    pub(super) id: Option<u32>,
    /// The number `maxRate`/`epsilon` look at: the value if numeric, else the last sample.
    pub(super) numeric: Option<f64>,
    /// The frame subscribers receive: the received frame itself, or the bundle's PUBLISH encoded.
    pub(super) frame: Bytes,
    /// The buffer `address` borrows from, if any.
    pub(super) source: Option<&'a Bytes>,
    /// For P2P signals, announces and leaves, the session the payload claims to come from (`from`,
    /// or `session_id` in an announce or a leave; `""` when absent).
    pub(super) p2p_sender: Option<&'a str>,
    /// The message itself when the router has it typed (an adapter's submission, a bundle's
    /// PUBLISH): what adapter sessions get, instead of decoding `frame`.
    pub(super) typed: Option<&'a Publish>,
}

/// For an owned P2P signal or announce, the session its payload names (see [`p2p_field`]).
pub(super) fn claimed_sender(p: &Publish) -> Option<&str> {
    p2p_field(&p.address).map(|field| {
        p.value()
            .and_then(|v| v.get(field))
            .and_then(clasp_proto::Value::as_str)
            .unwrap_or("")
    })
}

/// The sender a P2P payload names: `from` in signals, `session_id` in announces and leaves
/// (only the router, or a session about itself, may say that a session left).
pub(super) fn p2p_field(address: &str) -> Option<&'static str> {
    if address == P2P_ANNOUNCE || address == P2P_LEAVE {
        Some("session_id")
    } else if address.starts_with(P2P_SIGNAL_PREFIX) {
        Some("from")
    } else {
        None
    }
}

impl<'a> PubReq<'a> {
    pub(super) fn from_view(p: &PublishView<'a>, frame: Bytes, source: &'a Bytes) -> Self {
        let numeric = match p.payload {
            PayloadRef::Value(v) => v.as_f64(),
            PayloadRef::Samples(s) => s.iter().last(),
            PayloadRef::None => None,
        };
        let p2p_sender = p2p_field(p.address).map(|field| match p.payload {
            PayloadRef::Value(ValueRef::Map(m)) => match m.get(field) {
                Some(ValueRef::String(s)) => s,
                _ => "",
            },
            _ => "",
        });
        PubReq {
            address: p.address,
            signal: p.signal,
            phase: p.phase,
            id: p.id,
            numeric,
            frame,
            source: Some(source),
            p2p_sender,
            typed: None,
        }
    }

    pub(super) fn owned(p: &'a Publish, frame: Bytes) -> Self {
        let numeric = match &p.payload {
            PublishPayload::Value(v) => v.as_f64(),
            PublishPayload::Samples(s) => s.last().copied(),
            PublishPayload::None => None,
        };
        PubReq {
            p2p_sender: claimed_sender(p),
            address: &p.address,
            signal: p.signal,
            phase: p.phase,
            id: p.id,
            numeric,
            frame,
            source: None,
            typed: Some(p),
        }
    }

    /// The address as a shared string (for ERRORs).
    pub(super) fn address_str(&self) -> Str {
        shared_str(self.source, self.address)
    }
}
