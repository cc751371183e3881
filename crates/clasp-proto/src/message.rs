//! The 17 CLASP v3 messages (protocol.md §3), v4's REPLAY, and their enumerations (§2.4).

use crate::error_code::ErrorCode;
use crate::frame::Qos;
use crate::value::{Str, Value};

/// Binary message type codes.
pub mod code {
    /// HELLO.
    pub const HELLO: u8 = 0x01;
    /// WELCOME.
    pub const WELCOME: u8 = 0x02;
    /// ANNOUNCE.
    pub const ANNOUNCE: u8 = 0x03;
    /// SUBSCRIBE.
    pub const SUBSCRIBE: u8 = 0x10;
    /// UNSUBSCRIBE.
    pub const UNSUBSCRIBE: u8 = 0x11;
    /// PUBLISH.
    pub const PUBLISH: u8 = 0x20;
    /// SET.
    pub const SET: u8 = 0x21;
    /// GET.
    pub const GET: u8 = 0x22;
    /// SNAPSHOT.
    pub const SNAPSHOT: u8 = 0x23;
    /// REPLAY (v4): journal entries from a time range.
    pub const REPLAY: u8 = 0x24;
    /// BUNDLE.
    pub const BUNDLE: u8 = 0x30;
    /// SYNC.
    pub const SYNC: u8 = 0x40;
    /// PING.
    pub const PING: u8 = 0x41;
    /// PONG.
    pub const PONG: u8 = 0x42;
    /// ACK.
    pub const ACK: u8 = 0x50;
    /// ERROR.
    pub const ERROR: u8 = 0x51;
    /// QUERY.
    pub const QUERY: u8 = 0x60;
    /// RESULT.
    pub const RESULT: u8 = 0x61;
}

/// The kind of a signal (PUBLISH flags bits 7..5, ANNOUNCE and RESULT entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SignalType {
    /// Stored state (0).
    Param,
    /// A one-off occurrence (1); what unknown codes decode to.
    #[default]
    Event,
    /// A continuous stream of samples (2).
    Stream,
    /// A phased interaction with an id (3).
    Gesture,
    /// A timeline (4). Keyframes are not carried by the v3 binary encoding.
    Timeline,
}

impl SignalType {
    /// All signal types, in wire order.
    pub const ALL: [SignalType; 5] = [
        SignalType::Param,
        SignalType::Event,
        SignalType::Stream,
        SignalType::Gesture,
        SignalType::Timeline,
    ];

    /// The wire code (0-4).
    pub fn code(self) -> u8 {
        match self {
            SignalType::Param => 0,
            SignalType::Event => 1,
            SignalType::Stream => 2,
            SignalType::Gesture => 3,
            SignalType::Timeline => 4,
        }
    }

    /// The signal for a wire code; unknown codes are events, as in every official decoder.
    pub fn from_code(code: u8) -> SignalType {
        match code {
            0 => SignalType::Param,
            2 => SignalType::Stream,
            3 => SignalType::Gesture,
            4 => SignalType::Timeline,
            _ => SignalType::Event,
        }
    }

    /// The lower-case name used by the MessagePack form and the JSON tools.
    pub fn name(self) -> &'static str {
        match self {
            SignalType::Param => "param",
            SignalType::Event => "event",
            SignalType::Stream => "stream",
            SignalType::Gesture => "gesture",
            SignalType::Timeline => "timeline",
        }
    }

    /// Parses a lower-case name.
    pub fn from_name(name: &str) -> Option<SignalType> {
        SignalType::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The bit of this signal in a SUBSCRIBE type mask.
    pub fn mask_bit(self) -> u8 {
        1 << self.code()
    }

    /// The QoS the official encoders use for a PUBLISH of this signal.
    pub fn default_qos(self) -> Qos {
        match self {
            SignalType::Param | SignalType::Event => Qos::Confirm,
            SignalType::Stream | SignalType::Gesture => Qos::Fire,
            SignalType::Timeline => Qos::Commit,
        }
    }
}

/// Phase of a gesture (PUBLISH flags bits 2..0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GesturePhase {
    /// The gesture begins (0); also what unknown codes decode to and what non-gestures carry.
    #[default]
    Start,
    /// The gesture moves (1).
    Move,
    /// The gesture ends (2).
    End,
    /// The gesture is cancelled (3).
    Cancel,
}

impl GesturePhase {
    /// The wire code (0-3).
    pub fn code(self) -> u8 {
        match self {
            GesturePhase::Start => 0,
            GesturePhase::Move => 1,
            GesturePhase::End => 2,
            GesturePhase::Cancel => 3,
        }
    }

    /// The phase for a wire code; unknown codes are [`GesturePhase::Start`].
    pub fn from_code(code: u8) -> GesturePhase {
        match code {
            1 => GesturePhase::Move,
            2 => GesturePhase::End,
            3 => GesturePhase::Cancel,
            _ => GesturePhase::Start,
        }
    }

    /// The lower-case name used by the MessagePack form.
    pub fn name(self) -> &'static str {
        match self {
            GesturePhase::Start => "start",
            GesturePhase::Move => "move",
            GesturePhase::End => "end",
            GesturePhase::Cancel => "cancel",
        }
    }

    /// Parses a lower-case name.
    pub fn from_name(name: &str) -> Option<GesturePhase> {
        [
            GesturePhase::Start,
            GesturePhase::Move,
            GesturePhase::End,
            GesturePhase::Cancel,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

/// The set of signal types a subscription wants. Empty means "all types".
///
/// On the wire (SUBSCRIBE) the empty set is written as `0xFF`; decoding `0xFF` or `0x00` gives the
/// empty set, and bits other than the five known ones are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SignalTypes(u8);

impl SignalTypes {
    /// The empty set: no filter, every type.
    pub const ALL: SignalTypes = SignalTypes(0);

    /// A set of the given types.
    pub fn of(types: &[SignalType]) -> SignalTypes {
        SignalTypes(types.iter().fold(0, |m, t| m | t.mask_bit()))
    }

    /// From a wire mask.
    pub fn from_mask(mask: u8) -> SignalTypes {
        if mask == 0xFF {
            SignalTypes(0)
        } else {
            SignalTypes(mask & 0x1F)
        }
    }

    /// The wire mask (`0xFF` for the empty set).
    pub fn mask(self) -> u8 {
        if self.0 == 0 { 0xFF } else { self.0 }
    }

    /// Whether the set is empty (no filter).
    pub fn is_all(self) -> bool {
        self.0 == 0
    }

    /// Whether a message of `signal` passes this filter.
    pub fn accepts(self, signal: SignalType) -> bool {
        self.0 == 0 || self.0 & signal.mask_bit() != 0
    }

    /// The types in the set, in wire order (empty for "all").
    pub fn iter(self) -> impl Iterator<Item = SignalType> {
        SignalType::ALL
            .into_iter()
            .filter(move |t| self.0 & t.mask_bit() != 0)
    }
}

/// Feature bitmask of HELLO and WELCOME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features(pub u8);

impl Features {
    /// Params.
    pub const PARAM: u8 = 0x80;
    /// Events.
    pub const EVENT: u8 = 0x40;
    /// Streams.
    pub const STREAM: u8 = 0x20;
    /// Gestures.
    pub const GESTURE: u8 = 0x10;
    /// Timelines.
    pub const TIMELINE: u8 = 0x08;
    /// Federation (v4).
    pub const FEDERATION: u8 = 0x04;
    /// An extension of this implementation (no official client sets it): the session gets a
    /// BUNDLE's updates as one BUNDLE, instead of one message each.
    pub const BUNDLES: u8 = 0x01;
    /// What the official clients announce by default: param, event, stream (0xE0).
    pub const CLIENT_DEFAULT: Features = Features(0xE0);
    /// What a router announces: all five v3 features (0xF8).
    pub const ROUTER: Features = Features(0xF8);

    const NAMES: [(u8, &'static str); 7] = [
        (Features::PARAM, "param"),
        (Features::EVENT, "event"),
        (Features::STREAM, "stream"),
        (Features::GESTURE, "gesture"),
        (Features::TIMELINE, "timeline"),
        (Features::FEDERATION, "federation"),
        (Features::BUNDLES, "bundles"),
    ];

    /// The feature names in wire order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Features::NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name)
    }

    /// Features from names; unknown names are dropped, as the official encoders do.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Features {
        Features(names.into_iter().fold(0, |m, n| {
            m | Features::NAMES
                .iter()
                .find(|(_, name)| *name == n)
                .map_or(0, |(bit, _)| *bit)
        }))
    }
}

/// HELLO (0x01): the first frame of every session.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hello {
    /// Protocol version (always 1).
    pub version: u8,
    /// Features the client supports.
    pub features: Features,
    /// Client name.
    pub name: Str,
    /// Authentication token; on the wire `None` is the empty string.
    pub token: Option<Str>,
}

/// WELCOME (0x02): the router's answer to HELLO.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Welcome {
    /// Protocol version (always 1).
    pub version: u8,
    /// Features the router supports.
    pub features: Features,
    /// Router clock, µs since the Unix epoch.
    pub time: u64,
    /// The new session's id.
    pub session: Str,
    /// Router name.
    pub name: Str,
    /// Token (always empty from routers); on the wire `None` is the empty string.
    pub token: Option<Str>,
}

/// Optional metadata of an announced signal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignalMeta {
    /// Unit, e.g. `"Hz"`.
    pub unit: Option<Str>,
    /// Range `(min, max)`.
    pub range: Option<(f64, f64)>,
    /// Default value.
    pub default: Option<Value>,
    /// Human description.
    pub description: Option<Str>,
}

/// A signal definition (ANNOUNCE entries; RESULT entries carry no meta).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignalDef {
    /// The signal's address.
    pub address: Str,
    /// Its kind.
    pub signal: SignalType,
    /// Free-text data type, e.g. `"f64"`.
    pub datatype: Option<Str>,
    /// Free-text access, e.g. `"rw"`.
    pub access: Option<Str>,
    /// Metadata (ANNOUNCE only; not encoded in RESULT).
    pub meta: Option<SignalMeta>,
}

/// ANNOUNCE (0x03): a client describes the signals it offers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Announce {
    /// Namespace the signals live under.
    pub namespace: Str,
    /// The signals.
    pub signals: Vec<SignalDef>,
}

/// Subscription options (SUBSCRIBE).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SubscribeOptions {
    /// Maximum delivery rate in Hz.
    pub max_rate: Option<u32>,
    /// Minimum numeric change worth delivering.
    pub epsilon: Option<f64>,
    /// Number of past values wanted.
    pub history: Option<u32>,
    /// Time window (ms).
    pub window: Option<u32>,
}

impl SubscribeOptions {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        *self == SubscribeOptions::default()
    }
}

/// SUBSCRIBE (0x10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscribe {
    /// Subscription id, chosen by the client, unique per session.
    pub id: u32,
    /// Address pattern.
    pub pattern: Str,
    /// Signal types wanted (empty = all).
    pub types: SignalTypes,
    /// Options.
    pub options: SubscribeOptions,
}

/// UNSUBSCRIBE (0x11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    /// The subscription id to remove.
    pub id: u32,
}

/// What a PUBLISH carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum PublishPayload {
    /// Nothing (value indicator 0; what Python sends for `None`).
    #[default]
    None,
    /// One value (indicator 1; covers both `value` and `payload` of the official clients).
    Value(Value),
    /// Stream samples (indicator 2).
    Samples(Vec<f64>),
}

/// PUBLISH (0x20): an event, stream sample, gesture or timeline.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Publish {
    /// Target address.
    pub address: Str,
    /// Signal kind.
    pub signal: SignalType,
    /// Gesture phase ([`GesturePhase::Start`] for non-gestures).
    pub phase: GesturePhase,
    /// The data.
    pub payload: PublishPayload,
    /// Sender's estimate of router time (µs).
    pub timestamp: Option<u64>,
    /// Gesture id.
    pub id: Option<u32>,
    /// Stream sample rate (Hz).
    pub rate: Option<u32>,
}

impl Publish {
    /// The single value carried, if any.
    pub fn value(&self) -> Option<&Value> {
        match &self.payload {
            PublishPayload::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// SET (0x21): write a param.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Set {
    /// Param address.
    pub address: Str,
    /// New value.
    pub value: Value,
    /// Client→router: the expected current revision; router→client: the new revision.
    pub revision: Option<u64>,
    /// Take the lock.
    pub lock: bool,
    /// Release the lock.
    pub unlock: bool,
    /// Param TTL in seconds (the v4 extension, flags bit 4); v3 clients never send it.
    pub ttl: Option<u32>,
}

/// A SET whose address and value are borrowed, for encoding without building a [`Set`]
/// (see [`crate::codec::encode_set`]). The fields mean what they mean in [`Set`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetRef<'a> {
    /// The param's address.
    pub address: &'a str,
    /// The value.
    pub value: &'a Value,
    /// Expected revision (client to router) or new revision (router to client).
    pub revision: Option<u64>,
    /// Take the lock.
    pub lock: bool,
    /// Release the lock.
    pub unlock: bool,
    /// Time to live in seconds (v4 extension).
    pub ttl: Option<u32>,
}

impl<'a> From<&'a Set> for SetRef<'a> {
    fn from(s: &'a Set) -> Self {
        SetRef {
            address: &s.address,
            value: &s.value,
            revision: s.revision,
            lock: s.lock,
            unlock: s.unlock,
            ttl: s.ttl,
        }
    }
}

/// GET (0x22).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Get {
    /// Param address.
    pub address: Str,
}

/// One param in a SNAPSHOT.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamValue {
    /// Address.
    pub address: Str,
    /// Current value.
    pub value: Value,
    /// Current revision.
    pub revision: u64,
    /// Session id of the last writer.
    pub writer: Option<Str>,
    /// Router time of the last write (µs).
    pub timestamp: Option<u64>,
}

/// SNAPSHOT (0x23): current values of params.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// The params.
    pub params: Vec<ParamValue>,
}

/// BUNDLE (0x30): messages applied together, optionally at a given router time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bundle {
    /// Execute-at time (router µs).
    pub timestamp: Option<u64>,
    /// Inner messages.
    pub messages: Vec<Message>,
}

/// SYNC (0x40): clock synchronisation (NTP-style t1..t3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockSync {
    /// Client send time.
    pub t1: u64,
    /// Router receive time.
    pub t2: Option<u64>,
    /// Router send time.
    pub t3: Option<u64>,
}

/// ACK (0x50).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// Address acknowledged.
    pub address: Option<Str>,
    /// Revision after the write.
    pub revision: Option<u64>,
    /// Whether the param is locked.
    pub locked: Option<bool>,
    /// Session holding the lock.
    pub holder: Option<Str>,
    /// Correlation id.
    pub correlation_id: Option<u32>,
}

/// ERROR (0x51).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage {
    /// The code.
    pub code: ErrorCode,
    /// Human-readable text.
    pub message: Str,
    /// Address or pattern concerned.
    pub address: Option<Str>,
    /// Correlation id.
    pub correlation_id: Option<u32>,
}

/// QUERY (0x60): list announced signals matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// The pattern.
    pub pattern: Str,
}

/// RESULT (0x61): the answer to QUERY.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Matching signals (meta is not carried).
    pub signals: Vec<SignalDef>,
}

/// REPLAY (0x24, a v4 addition): asks the router for the journaled SETs and PUBLISHes of a
/// pattern in a time range. The router answers each entry as the SET (with its revision) or
/// PUBLISH it broadcast, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replay {
    /// The addresses to replay.
    pub pattern: Str,
    /// From this router wall-clock time (µs since the Unix epoch), inclusive.
    pub from: Option<u64>,
    /// To this router wall-clock time (µs), inclusive.
    pub to: Option<u64>,
    /// At most this many entries (the first ones of the range).
    pub limit: Option<u32>,
    /// The signal types wanted (the SUBSCRIBE mask; all when empty).
    pub types: SignalTypes,
}

/// A CLASP message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// HELLO (0x01).
    Hello(Hello),
    /// WELCOME (0x02).
    Welcome(Welcome),
    /// ANNOUNCE (0x03).
    Announce(Announce),
    /// SUBSCRIBE (0x10).
    Subscribe(Subscribe),
    /// UNSUBSCRIBE (0x11).
    Unsubscribe(Unsubscribe),
    /// PUBLISH (0x20).
    Publish(Publish),
    /// SET (0x21).
    Set(Set),
    /// GET (0x22).
    Get(Get),
    /// SNAPSHOT (0x23).
    Snapshot(Snapshot),
    /// REPLAY (0x24, v4).
    Replay(Replay),
    /// BUNDLE (0x30).
    Bundle(Bundle),
    /// SYNC (0x40).
    Sync(ClockSync),
    /// PING (0x41).
    Ping,
    /// PONG (0x42).
    Pong,
    /// ACK (0x50).
    Ack(Ack),
    /// ERROR (0x51).
    Error(ErrorMessage),
    /// QUERY (0x60).
    Query(Query),
    /// RESULT (0x61).
    Result(QueryResult),
}

impl Message {
    /// The binary type code.
    pub fn code(&self) -> u8 {
        match self {
            Message::Hello(_) => code::HELLO,
            Message::Welcome(_) => code::WELCOME,
            Message::Announce(_) => code::ANNOUNCE,
            Message::Subscribe(_) => code::SUBSCRIBE,
            Message::Unsubscribe(_) => code::UNSUBSCRIBE,
            Message::Publish(_) => code::PUBLISH,
            Message::Set(_) => code::SET,
            Message::Get(_) => code::GET,
            Message::Snapshot(_) => code::SNAPSHOT,
            Message::Replay(_) => code::REPLAY,
            Message::Bundle(_) => code::BUNDLE,
            Message::Sync(_) => code::SYNC,
            Message::Ping => code::PING,
            Message::Pong => code::PONG,
            Message::Ack(_) => code::ACK,
            Message::Error(_) => code::ERROR,
            Message::Query(_) => code::QUERY,
            Message::Result(_) => code::RESULT,
        }
    }

    /// The upper-case message name (`"SET"`, `"PUBLISH"`, ...).
    pub fn name(&self) -> &'static str {
        name_of(self.code()).unwrap_or("UNKNOWN")
    }

    /// The QoS the official encoders put on this message (protocol.md §5.4).
    pub fn default_qos(&self) -> Qos {
        match self {
            Message::Set(_)
            | Message::Subscribe(_)
            | Message::Unsubscribe(_)
            | Message::Replay(_) => Qos::Confirm,
            Message::Publish(p) => p.signal.default_qos(),
            Message::Bundle(_) => Qos::Commit,
            _ => Qos::Fire,
        }
    }
}

/// The name of a binary message type code.
pub fn name_of(code: u8) -> Option<&'static str> {
    Some(match code {
        code::HELLO => "HELLO",
        code::WELCOME => "WELCOME",
        code::ANNOUNCE => "ANNOUNCE",
        code::SUBSCRIBE => "SUBSCRIBE",
        code::UNSUBSCRIBE => "UNSUBSCRIBE",
        code::PUBLISH => "PUBLISH",
        code::SET => "SET",
        code::GET => "GET",
        code::SNAPSHOT => "SNAPSHOT",
        code::REPLAY => "REPLAY",
        code::BUNDLE => "BUNDLE",
        code::SYNC => "SYNC",
        code::PING => "PING",
        code::PONG => "PONG",
        code::ACK => "ACK",
        code::ERROR => "ERROR",
        code::QUERY => "QUERY",
        code::RESULT => "RESULT",
        _ => return None,
    })
}

macro_rules! impl_from_payload {
    ($($ty:ident => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for Message {
            fn from(m: $ty) -> Self {
                Message::$variant(m)
            }
        })*
    };
}

impl_from_payload!(
    Hello => Hello, Welcome => Welcome, Announce => Announce, Subscribe => Subscribe,
    Unsubscribe => Unsubscribe, Publish => Publish, Set => Set, Get => Get, Snapshot => Snapshot,
    Replay => Replay, Bundle => Bundle, ClockSync => Sync, Ack => Ack, ErrorMessage => Error, Query => Query,
    QueryResult => Result,
);
