//! What a subscription asks for ([`SubscribeOptions`]) and what it delivers ([`Update`]).

use clasp_proto::{GesturePhase, SignalType, SignalTypes, Str, Value};

/// What a subscription asks the router for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeOptions {
    pub(crate) types: Vec<SignalType>,
    pub(crate) max_rate: Option<u32>,
    pub(crate) epsilon: Option<f64>,
    pub(crate) buffer: Option<usize>,
    pub(crate) history: Option<u32>,
}

impl SubscribeOptions {
    /// All signal types, every update.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these signal types (default: all).
    pub fn types(mut self, types: impl IntoIterator<Item = SignalType>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// At most this many updates per second per address (params and streams; the router keeps
    /// the latest value and delivers it when the interval has passed).
    pub fn max_rate(mut self, per_second: u32) -> Self {
        self.max_rate = Some(per_second);
        self
    }

    /// Skip numeric updates that differ from the last delivered one by less than `epsilon`.
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = Some(epsilon);
        self
    }

    /// Ask for the last `n` earlier values of the pattern first, oldest first, before the
    /// current values and the live updates (the router keeps them in its journal, or a few
    /// per address in memory; one without either refuses the subscription). Asked again on
    /// every reconnect.
    pub fn history(mut self, n: u32) -> Self {
        self.history = (n > 0).then_some(n);
        self
    }

    /// Updates buffered for a slow consumer before further ones are dropped and counted
    /// (default 4096; see [`Subscription::dropped`]).
    pub fn buffer(mut self, updates: usize) -> Self {
        self.buffer = Some(updates.max(1));
        self
    }

    pub(crate) fn wire(&self) -> (SignalTypes, clasp_proto::SubscribeOptions) {
        (
            SignalTypes::of(&self.types),
            clasp_proto::SubscribeOptions {
                max_rate: self.max_rate,
                epsilon: self.epsilon,
                history: self.history,
                window: None,
            },
        )
    }

    /// Whether every param update reaches this subscription (no rate or epsilon filter), so a
    /// cached value under it is current.
    pub(crate) fn unfiltered(&self) -> bool {
        self.max_rate.is_none() && self.epsilon.is_none()
    }
}

/// One update delivered to a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The address that changed or fired.
    pub address: Str,
    /// The value (for a PUBLISH of samples, an array of floats; without payload, null).
    pub value: Value,
    /// What kind of signal it is.
    pub kind: SignalType,
    /// The param's revision (params only).
    pub revision: Option<u64>,
    /// The session that wrote the param, when the router says (snapshots).
    pub writer: Option<Str>,
    /// The sender's or router's timestamp, µs, when present.
    pub timestamp: Option<u64>,
    /// Gesture id (gestures only).
    pub gesture_id: Option<u32>,
    /// Gesture phase (gestures only).
    pub phase: Option<GesturePhase>,
    /// Set when the update arrived inside a BUNDLE from the router: every update of that
    /// BUNDLE carries the same number (counted per connection from 1), so a consumer can keep
    /// them together. `None` for updates that arrived on their own. (Our router applies a
    /// client's BUNDLE atomically but forwards its members as separate messages, one after
    /// another; this is `Some` only when a router forwards a BUNDLE as such.)
    pub bundle: Option<u64>,
}

impl Update {
    /// A SET as an update.
    pub fn from_set(s: clasp_proto::Set) -> Update {
        Update {
            address: s.address,
            value: s.value,
            kind: SignalType::Param,
            revision: s.revision,
            writer: None,
            timestamp: None,
            gesture_id: None,
            phase: None,
            bundle: None,
        }
    }

    /// A param of a SNAPSHOT as an update.
    pub fn from_param(p: clasp_proto::ParamValue) -> Update {
        Update {
            address: p.address,
            value: p.value,
            kind: SignalType::Param,
            revision: Some(p.revision),
            writer: p.writer,
            timestamp: p.timestamp,
            gesture_id: None,
            phase: None,
            bundle: None,
        }
    }

    /// A PUBLISH as an update (samples as an array of floats, no payload as null).
    pub fn from_publish(p: clasp_proto::Publish) -> Update {
        let value = match p.payload {
            clasp_proto::PublishPayload::Value(v) => v,
            clasp_proto::PublishPayload::Samples(s) => {
                Value::Array(s.into_iter().map(Value::Float).collect())
            }
            clasp_proto::PublishPayload::None => Value::Null,
        };
        let gesture = p.signal == SignalType::Gesture;
        Update {
            address: p.address,
            value,
            kind: p.signal,
            revision: None,
            writer: None,
            timestamp: p.timestamp,
            gesture_id: p.id,
            phase: gesture.then_some(p.phase),
            bundle: None,
        }
    }
}
