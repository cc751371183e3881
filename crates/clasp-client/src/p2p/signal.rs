//! P2P signalling payloads (protocol.md §11), as CLASP map values.
//!
//! Signals are PUBLISH events to `/clasp/p2p/signal/<target>`, which the router forwards to
//! the target session only. The payload is a map tagged by `type`: `offer`, `answer`,
//! `ice_candidate`, `connected`, `disconnected` as in the spec, plus `relay`, which carries
//! application data through the router when the direct path is not available (clients that do
//! not know it ignore it).

use bytes::Bytes;
use clasp_proto::{Str, Value};

/// Where signals for `session` go.
pub(crate) fn signal_address(session: &str) -> String {
    format!("/clasp/p2p/signal/{session}")
}

/// The announce address.
pub(crate) const ANNOUNCE: &str = "/clasp/p2p/announce";
/// Where the router says that a P2P-capable session has ended (payload `{session_id}`).
pub(crate) const LEAVE: &str = "/clasp/p2p/leave";

/// One signal between two peers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signal {
    /// An SDP offer.
    Offer { sdp: String },
    /// An SDP answer.
    Answer { sdp: String },
    /// A trickled ICE candidate: the JSON text of an `RTCIceCandidateInit`.
    IceCandidate { candidate: String },
    /// The sender's side is connected.
    Connected,
    /// The sender closed the connection.
    Disconnected { reason: Option<String> },
    /// Application data relayed through the router.
    Relay { data: Bytes, reliable: bool },
}

/// A signal with its envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    /// The sending session.
    pub(crate) from: String,
    /// Which connection attempt it belongs to.
    pub(crate) correlation_id: String,
    /// The signal.
    pub(crate) signal: Signal,
}

fn s(v: &str) -> Value {
    Value::String(Str::from(v))
}

impl Envelope {
    /// The map value sent on the wire.
    pub(crate) fn to_value(&self) -> Value {
        let mut m: Vec<(Str, Value)> = Vec::with_capacity(5);
        let kind = match &self.signal {
            Signal::Offer { .. } => "offer",
            Signal::Answer { .. } => "answer",
            Signal::IceCandidate { .. } => "ice_candidate",
            Signal::Connected => "connected",
            Signal::Disconnected { .. } => "disconnected",
            Signal::Relay { .. } => "relay",
        };
        m.push(("type".into(), s(kind)));
        m.push(("from".into(), s(&self.from)));
        match &self.signal {
            Signal::Offer { sdp } | Signal::Answer { sdp } => m.push(("sdp".into(), s(sdp))),
            Signal::IceCandidate { candidate } => m.push(("candidate".into(), s(candidate))),
            Signal::Connected => {}
            Signal::Disconnected { reason } => {
                if let Some(r) = reason {
                    m.push(("reason".into(), s(r)));
                }
            }
            Signal::Relay { data, reliable } => {
                m.push(("data".into(), Value::Bytes(data.clone())));
                m.push(("reliable".into(), Value::Bool(*reliable)));
            }
        }
        m.push(("correlation_id".into(), s(&self.correlation_id)));
        Value::Map(m)
    }

    /// Parses a received payload; `None` for anything that is not a signal we understand.
    pub(crate) fn from_value(v: &Value) -> Option<Envelope> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let from = text("from")?;
        let correlation_id = text("correlation_id").unwrap_or_default();
        let signal = match v.get("type")?.as_str()? {
            "offer" => Signal::Offer { sdp: text("sdp")? },
            "answer" => Signal::Answer { sdp: text("sdp")? },
            "ice_candidate" => Signal::IceCandidate {
                candidate: text("candidate")?,
            },
            "connected" => Signal::Connected,
            "disconnected" => Signal::Disconnected {
                reason: text("reason"),
            },
            "relay" => Signal::Relay {
                data: match v.get("data")? {
                    Value::Bytes(b) => b.clone(),
                    Value::String(t) => Bytes::copy_from_slice(t.as_bytes()),
                    _ => return None,
                },
                reliable: v.get("reliable").and_then(Value::as_bool).unwrap_or(true),
            },
            _ => return None,
        };
        Some(Envelope {
            from,
            correlation_id,
            signal,
        })
    }
}

/// The announce payload: `{session_id, p2p_capable: true, features: [...]}`.
pub(crate) fn announce_value(session: &str) -> Value {
    Value::Map(vec![
        ("session_id".into(), s(session)),
        ("p2p_capable".into(), Value::Bool(true)),
        (
            "features".into(),
            Value::Array(vec![s("webrtc"), s("reliable"), s("unreliable")]),
        ),
    ])
}

/// The session and features of an announce, if it is one from a P2P-capable peer.
pub(crate) fn parse_announce(v: &Value) -> Option<(String, Vec<String>)> {
    let session = v.get("session_id")?.as_str()?.to_owned();
    if v.get("p2p_capable").and_then(Value::as_bool) == Some(false) {
        return None;
    }
    let features = match v.get("features") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Some((session, features))
}

/// The m-section of an SDP that the data channels use, which trickled candidates name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataSection {
    /// Its `a=mid:` value (str0m picks a random one), if it has one.
    pub(crate) mid: Option<String>,
    /// Its position among the SDP's m-lines (`sdpMLineIndex`).
    pub(crate) index: u32,
}

/// The data channels' m-section of `sdp`: the first `m=application` section (the first
/// section when there is none, which str0m does not produce).
pub(crate) fn data_section(sdp: &str) -> DataSection {
    // (index, is application, mid) of every m-section, in order.
    let mut sections: Vec<(u32, bool, Option<String>)> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(media) = line.strip_prefix("m=") {
            let index = u32::try_from(sections.len()).unwrap_or(u32::MAX);
            sections.push((index, media.starts_with("application"), None));
        } else if let Some(mid) = line.strip_prefix("a=mid:")
            && let Some(last) = sections.last_mut()
            && last.2.is_none()
        {
            last.2 = Some(mid.trim().to_owned());
        }
    }
    match sections.iter().find(|s| s.1).or_else(|| sections.first()) {
        Some((index, _, mid)) => DataSection {
            mid: mid.clone(),
            index: *index,
        },
        None => DataSection {
            mid: None,
            index: 0,
        },
    }
}

/// The ICE candidate as browsers and the reference clients exchange it: the JSON text of an
/// `RTCIceCandidateInit` naming the data channels' m-section of the local SDP (browsers
/// reject a candidate whose `sdpMid` is not a mid of that SDP).
pub(crate) fn candidate_json(candidate_line: &str, section: &DataSection) -> String {
    serde_json::json!({
        "candidate": candidate_line,
        "sdpMid": section.mid,
        "sdpMLineIndex": section.index,
        "usernameFragment": null,
    })
    .to_string()
}

/// The `candidate:...` line inside an `RTCIceCandidateInit` JSON text (or the text itself when
/// it already is a candidate line). `sdpMid` and `sdpMLineIndex` are not looked at: a link has
/// one m-section, and peers name it differently (the reference clients send `""`).
pub(crate) fn candidate_line(json_or_line: &str) -> Option<String> {
    let t = json_or_line.trim();
    if t.starts_with("candidate:") || t.starts_with("a=candidate:") {
        return Some(t.trim_start_matches("a=").to_owned());
    }
    let j: serde_json::Value = serde_json::from_str(t).ok()?;
    let line = j.get("candidate")?.as_str()?.trim();
    (!line.is_empty()).then(|| line.trim_start_matches("a=").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary values, maps with the keys signals use more often than chance would.
    fn value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("type".to_owned()),
            Just("from".to_owned()),
            Just("sdp".to_owned()),
            Just("candidate".to_owned()),
            Just("data".to_owned()),
            Just("session_id".to_owned()),
            ".{0,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            ".{0,40}".prop_map(|t| Value::String(t.as_str().into())),
            prop_oneof![
                Just("offer"),
                Just("answer"),
                Just("ice_candidate"),
                Just("relay")
            ]
            .prop_map(|t| Value::String(t.into())),
            proptest::collection::vec(any::<u8>(), 0..16)
                .prop_map(|b| Value::Bytes(Bytes::from(b))),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| {
                    Value::Map(
                        kv.into_iter()
                            .map(|(k, v)| (k.as_str().into(), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest! {
        /// Whatever another peer sends, parsing never panics; what parses re-encodes to the
        /// same envelope.
        #[test]
        fn arbitrary_payloads_parse_or_are_ignored(v in value()) {
            let _ = parse_announce(&v);
            if let Some(env) = Envelope::from_value(&v) {
                prop_assert_eq!(Envelope::from_value(&env.to_value()), Some(env));
            }
        }

        #[test]
        fn arbitrary_candidate_texts_never_panic(t in ".{0,200}") {
            let _ = candidate_line(&t);
        }

        #[test]
        fn envelopes_round_trip(from in ".{0,30}", corr in ".{0,30}", sdp in ".{0,200}",
                                data in proptest::collection::vec(any::<u8>(), 0..64),
                                reliable in any::<bool>()) {
            for signal in [
                Signal::Offer { sdp: sdp.clone() },
                Signal::Answer { sdp: sdp.clone() },
                Signal::IceCandidate { candidate: sdp.clone() },
                Signal::Connected,
                Signal::Disconnected { reason: Some(sdp.clone()) },
                Signal::Relay { data: Bytes::from(data.clone()), reliable },
            ] {
                let env = Envelope { from: from.clone(), correlation_id: corr.clone(), signal };
                prop_assert_eq!(Envelope::from_value(&env.to_value()), Some(env));
            }
        }
    }

    fn env(signal: Signal) -> Envelope {
        Envelope {
            from: "a".into(),
            correlation_id: "a-b-1".into(),
            signal,
        }
    }

    #[test]
    fn every_signal_round_trips() {
        for sig in [
            Signal::Offer { sdp: "v=0".into() },
            Signal::Answer { sdp: "v=0".into() },
            Signal::IceCandidate {
                candidate: candidate_json(
                    "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
                    &DataSection {
                        mid: Some("x7q".into()),
                        index: 0,
                    },
                ),
            },
            Signal::Connected,
            Signal::Disconnected { reason: None },
            Signal::Disconnected {
                reason: Some("bye".into()),
            },
            Signal::Relay {
                data: Bytes::from_static(b"\x00\x01"),
                reliable: false,
            },
        ] {
            let e = env(sig);
            assert_eq!(Envelope::from_value(&e.to_value()), Some(e));
        }
    }

    #[test]
    fn the_wire_shape_follows_the_spec() {
        let v = env(Signal::Offer { sdp: "x".into() }).to_value();
        assert_eq!(v.get("type").and_then(Value::as_str), Some("offer"));
        assert_eq!(v.get("from").and_then(Value::as_str), Some("a"));
        assert_eq!(v.get("sdp").and_then(Value::as_str), Some("x"));
        assert_eq!(
            v.get("correlation_id").and_then(Value::as_str),
            Some("a-b-1")
        );
    }

    #[test]
    fn unknown_or_incomplete_payloads_are_ignored() {
        assert_eq!(Envelope::from_value(&Value::Null), None);
        let no_sdp = Value::Map(vec![("type".into(), s("offer")), ("from".into(), s("a"))]);
        assert_eq!(Envelope::from_value(&no_sdp), None);
        let odd = Value::Map(vec![("type".into(), s("weird")), ("from".into(), s("a"))]);
        assert_eq!(Envelope::from_value(&odd), None);
    }

    #[test]
    fn candidates_come_out_of_json_or_plain_lines() {
        let line = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host";
        let section = DataSection {
            mid: Some("x7q".into()),
            index: 0,
        };
        assert_eq!(
            candidate_line(&candidate_json(line, &section)).as_deref(),
            Some(line)
        );
        assert_eq!(candidate_line(line).as_deref(), Some(line));
        assert_eq!(candidate_line(&format!("a={line}")).as_deref(), Some(line));
        assert_eq!(candidate_line("{\"candidate\":\"\"}"), None);
        assert_eq!(candidate_line("not json"), None);
    }

    #[test]
    fn received_candidates_are_taken_whatever_their_mid() {
        let line = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host";
        for init in [
            serde_json::json!({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}),
            serde_json::json!({"candidate": line, "sdpMid": "", "sdpMLineIndex": 0}),
            serde_json::json!({"candidate": line, "sdpMid": "Yx3", "sdpMLineIndex": 7}),
            serde_json::json!({"candidate": line, "sdpMid": null, "sdpMLineIndex": null}),
            serde_json::json!({"candidate": line}),
        ] {
            assert_eq!(candidate_line(&init.to_string()).as_deref(), Some(line));
        }
    }

    #[test]
    fn the_data_section_is_the_application_m_line() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\na=group:BUNDLE a1 Qz9\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a1\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:Qz9\r\n\
                   a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n";
        assert_eq!(
            data_section(sdp),
            DataSection {
                mid: Some("Qz9".into()),
                index: 1,
            }
        );
        let only = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:k2P\r\n";
        assert_eq!(
            data_section(only),
            DataSection {
                mid: Some("k2P".into()),
                index: 0,
            }
        );
        let json: serde_json::Value =
            serde_json::from_str(&candidate_json("candidate:x", &data_section(only)))
                .unwrap_or_default();
        assert_eq!(json["sdpMid"], "k2P");
        assert_eq!(json["sdpMLineIndex"], 0);
        // No mid at all: sdpMid is null and the index alone names the section.
        let json: serde_json::Value =
            serde_json::from_str(&candidate_json("candidate:x", &data_section("v=0\r\n")))
                .unwrap_or_default();
        assert!(json["sdpMid"].is_null());
        assert_eq!(json["sdpMLineIndex"], 0);
    }

    #[test]
    fn announces_parse() {
        let (id, features) = parse_announce(&announce_value("s1")).unwrap_or_default();
        assert_eq!(id, "s1");
        assert_eq!(features, vec!["webrtc", "reliable", "unreliable"]);
        let off = Value::Map(vec![
            ("session_id".into(), s("s1")),
            ("p2p_capable".into(), Value::Bool(false)),
        ]);
        assert_eq!(parse_announce(&off), None);
    }
}
