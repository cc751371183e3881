//! Proptest strategies shared by the codec tests: random messages of all 17 types.
#![allow(dead_code, unreachable_pub)]

use clasp_proto::*;
use proptest::collection::vec;
use proptest::option::of as maybe;
use proptest::prelude::*;

/// Short strings, including non-ASCII and the empty string.
pub fn text() -> impl Strategy<Value = Str> {
    "[a-z/_é☃ ]{0,12}".prop_map(Str::from)
}

/// Non-empty strings (tokens decode empty as absent).
pub fn nonempty_text() -> impl Strategy<Value = Str> {
    "[a-z0-9_]{1,12}".prop_map(Str::from)
}

/// Finite floats (NaN never compares equal).
pub fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        Just(0.0),
        Just(-0.5),
        Just(f64::MAX),
    ]
}

/// Values of every kind, nested up to a few levels.
pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        float().prop_map(Value::Float),
        text().prop_map(Value::String),
        vec(any::<u8>(), 0..16).prop_map(|b| Value::Bytes(b.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((text(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

pub fn signal() -> impl Strategy<Value = SignalType> {
    proptest::sample::select(SignalType::ALL.to_vec())
}

pub fn phase() -> impl Strategy<Value = GesturePhase> {
    proptest::sample::select(vec![
        GesturePhase::Start,
        GesturePhase::Move,
        GesturePhase::End,
        GesturePhase::Cancel,
    ])
}

pub fn features() -> impl Strategy<Value = Features> {
    (0u8..=0x3F).prop_map(|b| Features(b << 2))
}

fn signal_def(with_meta: bool) -> impl Strategy<Value = SignalDef> {
    let meta = maybe((
        maybe(text()),
        maybe((float(), float())),
        maybe(value()),
        maybe(text()),
    ))
    .prop_map(|m| {
        m.map(|(unit, range, default, description)| SignalMeta {
            unit,
            range,
            default,
            description,
        })
    });
    (text(), signal(), maybe(text()), maybe(text()), meta).prop_map(
        move |(address, signal, datatype, access, meta)| SignalDef {
            address,
            signal,
            datatype,
            access,
            meta: meta.filter(|_| with_meta),
        },
    )
}

fn publish() -> impl Strategy<Value = Publish> {
    let payload = prop_oneof![
        Just(PublishPayload::None),
        value().prop_map(PublishPayload::Value),
        vec(float(), 0..8).prop_map(PublishPayload::Samples),
    ];
    (
        text(),
        signal(),
        phase(),
        payload,
        maybe(any::<u64>()),
        maybe(any::<u32>()),
        maybe(any::<u32>()),
    )
        .prop_map(
            |(address, signal, phase, payload, timestamp, id, rate)| Publish {
                address,
                signal,
                phase,
                payload,
                timestamp,
                id,
                rate,
            },
        )
}

fn set() -> impl Strategy<Value = Set> {
    (
        text(),
        value(),
        maybe(any::<u64>()),
        any::<bool>(),
        any::<bool>(),
        maybe(any::<u32>()),
    )
        .prop_map(|(address, value, revision, lock, unlock, ttl)| Set {
            address,
            value,
            revision,
            lock,
            unlock,
            ttl,
        })
}

fn param() -> impl Strategy<Value = ParamValue> {
    (
        text(),
        value(),
        any::<u64>(),
        maybe(text()),
        maybe(any::<u64>()),
    )
        .prop_map(|(address, value, revision, writer, timestamp)| ParamValue {
            address,
            value,
            revision,
            writer,
            timestamp,
        })
}

/// Every message type except BUNDLE.
pub fn flat_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u8>(), features(), text(), maybe(nonempty_text())).prop_map(
            |(version, features, name, token)| Message::Hello(Hello {
                version,
                features,
                name,
                token
            })
        ),
        (
            any::<u8>(),
            features(),
            any::<u64>(),
            text(),
            text(),
            maybe(nonempty_text())
        )
            .prop_map(|(version, features, time, session, name, token)| {
                Message::Welcome(Welcome {
                    version,
                    features,
                    time,
                    session,
                    name,
                    token,
                })
            }),
        (text(), vec(signal_def(true), 0..4))
            .prop_map(|(namespace, signals)| Message::Announce(Announce { namespace, signals })),
        (
            any::<u32>(),
            text(),
            vec(signal(), 0..3),
            maybe(any::<u32>()),
            maybe(float()),
            maybe(any::<u32>()),
            maybe(any::<u32>())
        )
            .prop_map(|(id, pattern, types, max_rate, epsilon, history, window)| {
                Message::Subscribe(Subscribe {
                    id,
                    pattern,
                    types: SignalTypes::of(&types),
                    options: SubscribeOptions {
                        max_rate,
                        epsilon,
                        history,
                        window,
                    },
                })
            }),
        any::<u32>().prop_map(|id| Message::Unsubscribe(Unsubscribe { id })),
        publish().prop_map(Message::Publish),
        set().prop_map(Message::Set),
        text().prop_map(|address| Message::Get(Get { address })),
        vec(param(), 0..5).prop_map(|params| Message::Snapshot(Snapshot { params })),
        (any::<u64>(), maybe(any::<u64>()), maybe(any::<u64>()))
            .prop_map(|(t1, t2, t3)| Message::Sync(ClockSync { t1, t2, t3 })),
        Just(Message::Ping),
        Just(Message::Pong),
        (
            maybe(text()),
            maybe(any::<u64>()),
            maybe(any::<bool>()),
            maybe(text()),
            maybe(any::<u32>())
        )
            .prop_map(|(address, revision, locked, holder, correlation_id)| {
                Message::Ack(Ack {
                    address,
                    revision,
                    locked,
                    holder,
                    correlation_id,
                })
            }),
        (any::<u16>(), text(), maybe(text()), maybe(any::<u32>())).prop_map(
            |(code, message, address, correlation_id)| Message::Error(ErrorMessage {
                code: ErrorCode::from_code(code),
                message,
                address,
                correlation_id,
            })
        ),
        text().prop_map(|pattern| Message::Query(Query { pattern })),
        (
            text(),
            maybe(any::<u64>()),
            maybe(any::<u64>()),
            maybe(any::<u32>()),
            any::<u8>()
        )
            .prop_map(|(pattern, from, to, limit, mask)| Message::Replay(Replay {
                pattern,
                from,
                to,
                limit,
                types: SignalTypes::from_mask(mask),
            })),
        vec(signal_def(false), 0..4).prop_map(|signals| Message::Result(QueryResult { signals })),
    ]
}

/// Every message type, BUNDLE included (with nested bundles now and then).
pub fn message() -> impl Strategy<Value = Message> {
    flat_message().prop_recursive(2, 16, 4, |inner| {
        (maybe(any::<u64>()), vec(inner, 0..4)).prop_map(|(timestamp, messages)| {
            Message::Bundle(Bundle {
                timestamp,
                messages,
            })
        })
    })
}

/// The encoding of a random message with one corruption: a byte flipped, the frame cut short,
/// or a byte inserted.
pub fn corrupted_frame() -> impl Strategy<Value = Vec<u8>> {
    (message(), any::<prop::sample::Index>(), any::<u8>(), 0u8..3).prop_map(
        |(msg, pos, byte, op)| {
            let mut bytes = encode(&msg).map(|b| b.to_vec()).unwrap_or_default();
            if bytes.is_empty() {
                return bytes;
            }
            let i = pos.index(bytes.len());
            match op {
                0 => bytes[i] ^= byte | 1,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
            bytes
        },
    )
}
