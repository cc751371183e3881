//! The session state machine driven without sockets: packets in as bytes (coded by rumqttc's
//! mqttbytes), the router a bare core (`clasp_router::core::Router` with recorders and a clock
//! passed by hand) behind the production [`CoreDoor`], what the session writes decoded back.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::{Bytes, BytesMut};
use clasp_proto::{Message, Qos, Subscribe, Value};
use clasp_router::core::adapter::Delivery;
use clasp_router::core::recorder::Recorder;
use clasp_router::core::{ConnId, Now, Router, RouterConfig};
use rumqttc::v5::mqttbytes::v5;
use rumqttc::v5::mqttbytes::{Error as M5Error, QoS};

use super::{Ctx, End, Session};
use crate::MqttConfig;
use crate::door::CoreDoor;
use crate::packet::{DisconnectReason, Version};
use crate::topic::Topics;

/// A router core at a fixed time.
struct Core {
    router: Router<Recorder>,
    now: Now,
}

impl Core {
    fn new() -> Core {
        let mut n = 0;
        let ids = Box::new(move || {
            n += 1;
            format!("session-{n}")
        });
        Core {
            router: Router::new(RouterConfig::default(), ids),
            now: Now {
                mono: 1_000_000,
                wall: 1_700_000_000_000_000,
            },
        }
    }

    /// Opens an adapter session; its connection and what it is delivered.
    fn open(&mut self) -> (ConnId, Recorder) {
        let rec = Recorder::new();
        let conn = self
            .router
            .open_adapter(rec.clone(), None, self.now)
            .unwrap();
        self.router.deliver_recorded();
        (conn, rec)
    }
}

impl Core {
    /// Hands `b` to the session with the core as its door (the production [`CoreDoor`]), then
    /// delivers what the core produced.
    fn process(&mut self, s: &mut Session, b: &mut BytesMut) -> (bool, Option<End>) {
        let mut door = CoreDoor {
            core: &mut self.router,
            now: self.now,
        };
        let r = s.process_input(b, &mut door, std::time::Instant::now());
        self.router.deliver_recorded();
        r
    }
}

/// A core, an MQTT 5 session on it (its CONNECT with session expiry `connect_expiry`), and
/// an observer session subscribed to everything.
fn setup(connect_expiry: u32) -> (Core, Box<Session>, Recorder) {
    let mut core = Core::new();
    let ctx = Arc::new(Ctx {
        config: MqttConfig::default(),
        topics: Topics::new("").unwrap(),
        offline_dropped: AtomicU64::new(0),
    });
    let (conn, _) = core.open();
    let mut s = Session::new(Version::V5, ctx, conn, 16, usize::MAX);
    s.start_connection(connect_expiry);
    let (observer, rec) = core.open();
    let sub = Message::Subscribe(Subscribe {
        id: 1,
        pattern: "/**".into(),
        ..Subscribe::default()
    });
    core.router
        .submit(observer, sub, Qos::Confirm, core.now)
        .unwrap();
    core.router.deliver_recorded();
    rec.take_deliveries();
    (core, s, rec)
}

/// Feeds `p` to the session as bytes; the end it reports at once, if any.
fn feed(s: &mut Session, core: &mut Core, p: v5::Packet) -> Option<End> {
    let mut b = BytesMut::new();
    p.write(&mut b, None).unwrap();
    let (read, end) = core.process(s, &mut b);
    assert!(read && b.is_empty(), "the packet was read whole");
    end
}

/// Feeds raw bytes (packets rumqttc will not code) to the session.
fn feed_bytes(s: &mut Session, core: &mut Core, bytes: &[u8]) -> Option<End> {
    let mut b = BytesMut::from(bytes);
    core.process(s, &mut b).1
}

/// The packets the session has written.
fn written(s: &mut Session) -> Vec<v5::Packet> {
    let mut out = s.take_out();
    let mut got = Vec::new();
    loop {
        match v5::Packet::read(&mut out, None) {
            Ok(p) => got.push(p),
            Err(M5Error::InsufficientBytes(_)) if out.is_empty() => return got,
            Err(e) => panic!("bad packet from the session: {e}"),
        }
    }
}

/// A QoS 1 PUBLISH of `payload` to `topic` with packet id `pkid` and topic alias `alias`.
fn publish(topic: &str, payload: &str, pkid: u16, alias: Option<u16>) -> v5::Packet {
    let mut p = v5::Publish::new(topic, QoS::AtLeastOnce, payload.as_bytes().to_vec(), None);
    p.pkid = pkid;
    if let Some(a) = alias {
        p.properties = Some(v5::PublishProperties {
            topic_alias: Some(a),
            ..v5::PublishProperties::default()
        });
    }
    v5::Packet::Publish(p)
}

/// The addresses and values of the events the observer was delivered.
fn events(rec: &Recorder) -> Vec<(String, Value)> {
    rec.take_deliveries()
        .into_iter()
        .filter_map(|d| match d {
            Delivery::Update(u) => match &*u.message {
                Message::Publish(p) => Some((
                    p.address.to_string(),
                    p.value().cloned().unwrap_or(Value::Null),
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The reason codes of the PUBACKs written.
fn pubacks(got: &[v5::Packet]) -> Vec<(u16, v5::PubAckReason)> {
    got.iter()
        .filter_map(|p| match p {
            v5::Packet::PubAck(a) => Some((a.pkid, a.reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_topic_alias_is_set_with_a_topic_and_then_stands_for_it() {
    let (mut core, mut s, rec) = setup(0);
    assert_eq!(
        feed(&mut s, &mut core, publish("t/a", "1", 1, Some(1))),
        None
    );
    assert_eq!(feed(&mut s, &mut core, publish("", "2", 2, Some(1))), None);
    // Set again to another topic.
    assert_eq!(
        feed(&mut s, &mut core, publish("t/b", "3", 3, Some(1))),
        None
    );
    assert_eq!(feed(&mut s, &mut core, publish("", "4", 4, Some(1))), None);
    // Alias 10, the maximum announced, is allowed.
    assert_eq!(
        feed(&mut s, &mut core, publish("t/c", "5", 5, Some(10))),
        None
    );
    assert_eq!(feed(&mut s, &mut core, publish("", "6", 6, Some(10))), None);
    assert!(s.take_closing().is_none());
    let ok = v5::PubAckReason::Success;
    assert_eq!(
        pubacks(&written(&mut s)),
        [(1, ok), (2, ok), (3, ok), (4, ok), (5, ok), (6, ok)]
    );
    let want: Vec<(String, Value)> = [
        ("/t/a", 1),
        ("/t/a", 2),
        ("/t/b", 3),
        ("/t/b", 4),
        ("/t/c", 5),
        ("/t/c", 6),
    ]
    .into_iter()
    .map(|(a, v)| (a.to_owned(), Value::Int(v)))
    .collect();
    assert_eq!(events(&rec), want);
}

#[test]
fn a_topic_alias_never_set_is_a_protocol_error() {
    let (mut core, mut s, rec) = setup(0);
    assert_eq!(feed(&mut s, &mut core, publish("", "1", 1, Some(2))), None);
    assert_eq!(
        s.take_closing(),
        Some((DisconnectReason::ProtocolError, End::Violation))
    );
    assert!(written(&mut s).is_empty(), "no PUBACK");
    assert!(events(&rec).is_empty());
}

#[test]
fn topic_aliases_belong_to_the_connection() {
    let (mut core, mut s, rec) = setup(60);
    assert_eq!(feed(&mut s, &mut core, publish("t", "1", 1, Some(1))), None);
    assert_eq!(events(&rec).len(), 1);
    // The session resumed on a new connection: alias 1 is not set there.
    s.start_connection(60);
    assert_eq!(feed(&mut s, &mut core, publish("", "2", 2, Some(1))), None);
    assert_eq!(
        s.take_closing(),
        Some((DisconnectReason::ProtocolError, End::Violation))
    );
    assert!(events(&rec).is_empty());
}

#[test]
fn a_topic_alias_above_the_maximum_is_invalid() {
    let (mut core, mut s, rec) = setup(0);
    assert_eq!(
        feed(&mut s, &mut core, publish("t", "1", 1, Some(11))),
        None
    );
    assert_eq!(
        s.take_closing(),
        Some((DisconnectReason::TopicAliasInvalid, End::Violation))
    );
    assert!(events(&rec).is_empty());
}

#[test]
fn a_publish_to_a_wildcard_topic_is_a_protocol_error() {
    for topic in ["t/+", "t/#"] {
        let (mut core, mut s, rec) = setup(0);
        // rumqttc will not code such a topic: QoS 1, packet id 1, no properties.
        let mut b = vec![0x32, 0, 0, 3];
        b.extend_from_slice(topic.as_bytes());
        b.extend_from_slice(&[0, 1, 0, b'x']);
        b[1] = u8::try_from(b.len() - 2).unwrap();
        assert_eq!(feed_bytes(&mut s, &mut core, &b), None);
        assert_eq!(
            s.take_closing(),
            Some((DisconnectReason::ProtocolError, End::Violation)),
            "{topic}"
        );
        assert!(events(&rec).is_empty());
    }
}

#[test]
fn a_second_connect_ends_the_connection_without_a_disconnect() {
    let (mut core, mut s, _) = setup(0);
    let connect = v5::Connect {
        keep_alive: 30,
        client_id: "again".into(),
        clean_start: true,
        properties: None,
    };
    let end = feed(&mut s, &mut core, v5::Packet::Connect(connect, None, None));
    assert_eq!(end, Some(End::Violation));
    assert!(s.take_closing().is_none(), "no DISCONNECT to send");
    assert!(written(&mut s).is_empty());
}

/// DISCONNECT 0x00 with session expiry `secs`.
fn disconnect_with_expiry(secs: u32) -> Vec<u8> {
    let mut b = vec![0xE0, 0x07, 0x00, 0x05, 0x11];
    b.extend_from_slice(&secs.to_be_bytes());
    b
}

#[test]
fn a_disconnect_may_not_set_a_session_expiry_the_connect_had_not() {
    let (mut core, mut s, _) = setup(0);
    assert_eq!(
        feed_bytes(&mut s, &mut core, &disconnect_with_expiry(30)),
        None
    );
    assert_eq!(
        s.take_closing(),
        Some((DisconnectReason::ProtocolError, End::Violation)),
        "DISCONNECT 0x82, and the will goes out"
    );
    assert_eq!(s.disconnect_expiry, None, "the DISCONNECT is not taken");
    assert!(End::Violation.publish_will());

    // Expiry 0 again is no change, so no error.
    let (mut core, mut s, _) = setup(0);
    assert_eq!(
        feed_bytes(&mut s, &mut core, &disconnect_with_expiry(0)),
        Some(End::Disconnect(false))
    );
    assert_eq!(s.disconnect_expiry, Some(0));

    // After a CONNECT with an expiry, DISCONNECT may change it.
    let (mut core, mut s, _) = setup(60);
    assert_eq!(
        feed_bytes(&mut s, &mut core, &disconnect_with_expiry(30)),
        Some(End::Disconnect(false))
    );
    assert!(s.take_closing().is_none());
    assert_eq!(s.disconnect_expiry, Some(30));
}

#[test]
fn an_own_event_sent_by_alias_comes_back_under_its_topic() {
    let (mut core, mut s, _) = setup(0);
    let sub = v5::Subscribe::new(v5::Filter::new("t/#", QoS::AtMostOnce), None);
    let mut sub = sub;
    sub.pkid = 1;
    assert_eq!(feed(&mut s, &mut core, v5::Packet::Subscribe(sub)), None);
    written(&mut s);
    assert_eq!(
        feed(&mut s, &mut core, publish("t/x", "1", 1, Some(3))),
        None
    );
    assert_eq!(feed(&mut s, &mut core, publish("", "2", 2, Some(3))), None);
    let got: Vec<(Bytes, Bytes)> = written(&mut s)
        .into_iter()
        .filter_map(|p| match p {
            v5::Packet::Publish(p) => Some((p.topic, p.payload)),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            (Bytes::from("t/x"), Bytes::from("1")),
            (Bytes::from("t/x"), Bytes::from("2"))
        ]
    );
}
