//! Arbitrary datagrams to the broadcast responder's answer path and to the scanner's reply
//! parsing. Invariants:
//!
//! * nothing panics;
//! * the responder answers exactly the datagrams that decode as a HELLO, and its answer decodes
//!   as a WELCOME (session = router id, its name and features) then an ANNOUNCE whose record
//!   gives back the router's id, name, WebSocket port, features and extras;
//! * a reply ANNOUNCE gives a record only for the discovery namespace, with at most 64
//!   non-empty lower-case keys; the device built from any record (or a bare WELCOME) has a
//!   non-zero port, its fallback id when the record has none, and a `ws://`/`wss://` URL at
//!   its preferred address; merging devices keeps the first one's identity.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use clasp_discovery::{
    ANNOUNCE_NAMESPACE, BroadcastResponder, DEFAULT_WS_PORT, Device, RouterInfo, Source,
    record_from_announce,
};
use clasp_proto::{
    Announce, Features, Hello, Message, SignalDef, SignalMeta, SignalType, Str, Value, Welcome,
    decode_frame, encode,
};
use libfuzzer_sys::fuzz_target;

/// A datagram: raw bytes, or an encoded message (optionally with one byte changed).
#[derive(Debug, Arbitrary)]
enum Datagram {
    Raw(Vec<u8>),
    Hello {
        name: String,
        token: Option<String>,
        features: u8,
        flip: Option<(u16, u8)>,
    },
    Welcome {
        session: String,
        name: String,
        features: u8,
        flip: Option<(u16, u8)>,
    },
    Announce {
        ours: bool,
        entries: Vec<(bool, String, Entry)>,
        flip: Option<(u16, u8)>,
    },
}

#[derive(Debug, Arbitrary)]
enum Entry {
    Str(String),
    Int(i64),
    Bool(bool),
    NoMeta,
}

impl Datagram {
    fn bytes(self) -> Vec<u8> {
        let (message, flip) = match self {
            Datagram::Raw(b) => return b,
            Datagram::Hello {
                name,
                token,
                features,
                flip,
            } => (
                Message::Hello(Hello {
                    version: 1,
                    features: Features(features),
                    name: Str::from(name),
                    token: token.map(Str::from),
                }),
                flip,
            ),
            Datagram::Welcome {
                session,
                name,
                features,
                flip,
            } => (
                Message::Welcome(Welcome {
                    version: 1,
                    features: Features(features),
                    time: 1,
                    session: Str::from(session),
                    name: Str::from(name),
                    token: None,
                }),
                flip,
            ),
            Datagram::Announce {
                ours,
                entries,
                flip,
            } => {
                let namespace = if ours { ANNOUNCE_NAMESPACE } else { "/other" };
                let signals = entries
                    .into_iter()
                    .map(|(prefixed, key, value)| SignalDef {
                        address: Str::from(if prefixed {
                            format!("{namespace}/{key}")
                        } else {
                            key
                        }),
                        signal: SignalType::Param,
                        datatype: None,
                        access: None,
                        meta: match value {
                            Entry::Str(s) => Some(Value::String(Str::from(s))),
                            Entry::Int(i) => Some(Value::Int(i)),
                            Entry::Bool(b) => Some(Value::Bool(b)),
                            Entry::NoMeta => None,
                        }
                        .map(|v| SignalMeta {
                            default: Some(v),
                            ..SignalMeta::default()
                        }),
                    })
                    .collect();
                (
                    Message::Announce(Announce {
                        namespace: Str::from_static(namespace),
                        signals,
                    }),
                    flip,
                )
            }
        };
        let Ok(bytes) = encode(&message) else {
            return Vec::new();
        };
        let mut bytes = bytes.to_vec();
        if let Some((at, b)) = flip
            && !bytes.is_empty()
        {
            let i = usize::from(at) % bytes.len();
            bytes[i] = b;
        }
        bytes
    }
}

struct Fixture {
    _rt: tokio::runtime::Runtime,
    responder: BroadcastResponder,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let info = RouterInfo::new(
            "fuzz router ☃",
            Features(Features::PARAM | Features::EVENT),
            7440,
        )
        .with_id("fuzz-router-id")
        .with_extra("path", "/ws")
        .with_extra("quic", "7441");
        let responder = rt
            .block_on(BroadcastResponder::bind(
                "127.0.0.1:0".parse().expect("addr"),
                info,
            ))
            .expect("bind");
        Fixture { _rt: rt, responder }
    })
}

fn check_device(d: &Device, fallback_id: &str, record: &BTreeMap<String, String>) {
    assert_ne!(d.ws_port, 0);
    if record.get("id").is_none_or(|s| s.is_empty()) {
        assert_eq!(d.id, fallback_id);
    }
    match d.addresses.first() {
        Some(a) => {
            assert!(
                d.ws_url.starts_with("ws://") || d.ws_url.starts_with("wss://"),
                "{}",
                d.ws_url
            );
            assert_eq!(d.ws_url, d.ws_url_for(*a));
        }
        None => assert!(d.ws_url.is_empty()),
    }
}

fn addresses(bytes: &[u8]) -> Vec<IpAddr> {
    bytes
        .chunks(5)
        .map(|c| {
            let b = |i: usize| c.get(i).copied().unwrap_or(0);
            if b(0) & 1 == 0 {
                IpAddr::V4(Ipv4Addr::new(b(1), b(2), b(3), b(4)))
            } else {
                IpAddr::V6(Ipv6Addr::new(
                    0xfe80,
                    0,
                    0,
                    0,
                    0,
                    0,
                    u16::from(b(1)),
                    u16::from(b(2)),
                ))
            }
        })
        .take(8)
        .collect()
}

fuzz_target!(|input: (Vec<u8>, Datagram)| {
    let (addr_bytes, datagram) = input;
    let datagram = datagram.bytes();
    let f = fixture();
    let info = f.responder.info();
    let decoded = decode_frame(&datagram);
    let is_hello = matches!(&decoded, Ok(d) if matches!(d.message, Message::Hello(_)));

    // Responder.
    let answer = f.responder.answer(&datagram);
    assert_eq!(
        answer.is_some(),
        is_hello,
        "answered a non-HELLO or ignored a HELLO"
    );
    if let Some([welcome, announce]) = answer {
        let Message::Welcome(w) = decode_frame(&welcome).expect("WELCOME decodes").message else {
            panic!("first answer is not a WELCOME");
        };
        assert_eq!(&*w.session, info.id);
        assert_eq!(&*w.name, info.name);
        assert_eq!(w.features, info.features);
        let Message::Announce(a) = decode_frame(&announce).expect("ANNOUNCE decodes").message
        else {
            panic!("second answer is not an ANNOUNCE");
        };
        let record = record_from_announce(&a).expect("our ANNOUNCE has a record");
        let d = Device::from_record(
            record,
            [IpAddr::V4(Ipv4Addr::LOCALHOST)],
            "x",
            "",
            Source::Broadcast,
        );
        assert_eq!(d.id, info.id);
        assert_eq!(d.name, info.name);
        assert_eq!(d.ws_port, info.ws_port);
        assert_eq!(d.features, info.features);
        assert_eq!(d.ws_url, "ws://127.0.0.1:7440/ws");
        for (k, v) in &info.extras {
            assert_eq!(d.txt.get(k), Some(v));
        }
    }

    // Scanner.
    let addrs = addresses(&addr_bytes);
    let Ok(frame) = decoded else { return };
    match frame.message {
        Message::Announce(a) => {
            let record = record_from_announce(&a);
            assert_eq!(record.is_some(), &*a.namespace == ANNOUNCE_NAMESPACE);
            let Some(record) = record else { return };
            assert!(record.len() <= 64);
            for k in record.keys() {
                assert!(!k.is_empty());
                assert_eq!(*k, k.to_ascii_lowercase());
            }
            let mut d = Device::from_record(
                record.clone(),
                addrs.clone(),
                "fallback",
                "",
                Source::Broadcast,
            );
            check_device(&d, "fallback", &record);
            let other = Device::from_record(BTreeMap::new(), addrs, "other", "n", Source::Mdns);
            let (id, source) = (d.id.clone(), d.source);
            d.merge(other);
            assert_eq!((d.id.as_str(), d.source), (id.as_str(), source));
            check_device(&d, "fallback", &record);
        }
        Message::Welcome(w) => {
            let mut d = Device::from_record(
                BTreeMap::new(),
                addrs,
                &w.session,
                &w.name,
                Source::Broadcast,
            );
            d.features = w.features;
            d.ws_port = DEFAULT_WS_PORT;
            check_device(&d, &w.session, &BTreeMap::new());
        }
        _ => {}
    }
});
