//! MQTT sessions driven deterministically, in the style of quinn's `Pair`: a real router core
//! (no server, no sockets) as the door, several sessions, a clock advanced by hand, and what
//! each client was sent read back with rumqttc's decoder.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clasp_proto::{Message, Qos};
use clasp_router::core::recorder::Recorder;
use clasp_router::core::{Now, Router, RouterConfig};
use rumqttc::v5::mqttbytes::v5;

use super::{Ctx, Session};
use crate::MqttConfig;
use crate::door::CoreDoor;
use crate::packet::{Inbound, PubAckReason, Publish, PublishProps, SubRequest, Version};
use crate::topic::Topics;

/// The router core and the harness's time (its door: [`CoreDoor`]).
struct TestCore {
    router: Router<Recorder>,
    now: Now,
}

/// A core, MQTT sessions on it, and the clock.
struct Pair {
    door: TestCore,
    ctx: Arc<Ctx>,
    start: Instant,
    elapsed: Duration,
    sessions: Vec<(Box<Session>, Recorder)>,
}

/// A packet a client received, as rumqttc reads it.
type Got = v5::Packet;

impl Pair {
    fn new() -> Pair {
        let mut n = 0;
        let ids = Box::new(move || {
            n += 1;
            format!("s{n}")
        });
        Pair {
            door: TestCore {
                router: Router::new(RouterConfig::default(), ids),
                now: Now {
                    mono: 1_000_000,
                    wall: 1_700_000_000_000_000,
                },
            },
            ctx: Arc::new(Ctx {
                config: MqttConfig::default(),
                topics: Topics::new("").unwrap(),
                offline_dropped: AtomicU64::new(0),
            }),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            sessions: Vec::new(),
        }
    }

    fn instant(&self) -> Instant {
        self.start + self.elapsed
    }

    /// Passes `d`: the core's timers run (a retained message's expiry, say).
    fn advance(&mut self, d: Duration) {
        self.elapsed += d;
        let us = u64::try_from(d.as_micros()).unwrap();
        self.door.now.mono += us;
        self.door.now.wall += us;
        self.door.router.tick(self.door.now);
        self.pump();
    }

    /// A new MQTT 5 session; its index.
    fn session(&mut self) -> usize {
        let rec = Recorder::new();
        let conn = self
            .door
            .router
            .open_adapter(rec.clone(), None, self.door.now)
            .unwrap();
        let s = Session::new(Version::V5, self.ctx.clone(), conn, 20, usize::MAX);
        self.sessions.push((s, rec));
        self.sessions.len() - 1
    }

    /// Hands what the core produced to the sessions.
    fn pump(&mut self) {
        self.door.router.deliver_recorded();
        let now = self.instant();
        for (s, rec) in &mut self.sessions {
            let d = rec.take_deliveries();
            if !d.is_empty() {
                s.on_deliveries(d, rec.closed(), now);
            }
        }
    }

    /// Client `i` sends `p`.
    fn send(&mut self, i: usize, p: Inbound) {
        self.sessions[i].0.now = self.instant();
        let mut door = CoreDoor {
            core: &mut self.door.router,
            now: self.door.now,
        };
        let end = self.sessions[i].0.on_packet(p, &mut door);
        assert!(end.is_none(), "{end:?}");
        self.pump();
    }

    fn subscribe(&mut self, i: usize, filter: &str, qos: u8) {
        self.send(
            i,
            Inbound::Subscribe {
                pkid: 1,
                filters: vec![SubRequest {
                    filter: filter.into(),
                    qos,
                    rap: false,
                    retain_handling: 0,
                    no_local: false,
                }],
                subscription_id: None,
            },
        );
    }

    fn publish(&mut self, i: usize, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        self.publish_with(i, topic, payload, qos, retain, None);
    }

    fn publish_with(
        &mut self,
        i: usize,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        props: Option<PublishProps>,
    ) {
        let p = Publish {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload),
            qos,
            retain,
            dup: false,
            pkid: if qos > 0 { 7 } else { 0 },
            topic_alias: None,
            props: props.map(Box::new),
        };
        self.send(i, Inbound::Publish(p));
    }

    /// Every packet client `i` was sent since last asked.
    fn got(&mut self, i: usize) -> Vec<Got> {
        let mut out: BytesMut = self.sessions[i].0.take_out();
        let mut got = Vec::new();
        while !out.is_empty() {
            got.push(v5::Packet::read(&mut out, None).unwrap());
        }
        got
    }

    /// The PUBLISH packets client `i` was sent since last asked.
    fn publishes(&mut self, i: usize) -> Vec<v5::Publish> {
        self.got(i)
            .into_iter()
            .filter_map(|p| match p {
                v5::Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn delivery_qos_is_the_lower_of_published_and_granted() {
    let mut p = Pair::new();
    let (sub1, sub2, publ) = (p.session(), p.session(), p.session());
    p.subscribe(sub1, "q/#", 1);
    p.subscribe(sub2, "q/#", 2);
    p.got(sub1);
    p.got(sub2);
    for qos in 0..=2 {
        p.publish(publ, &format!("q/{qos}"), b"x", qos, false);
    }
    let qos = |ps: Vec<v5::Publish>| ps.iter().map(|p| p.qos as u8).collect::<Vec<_>>();
    assert_eq!(qos(p.publishes(sub1)), [0, 1, 1]);
    assert_eq!(qos(p.publishes(sub2)), [0, 1, 2]);
}

#[test]
fn a_qos_2_delivery_completes_with_pubrec_pubrel_pubcomp() {
    let mut p = Pair::new();
    let (sub, publ) = (p.session(), p.session());
    p.subscribe(sub, "t", 2);
    p.got(sub);
    p.publish(publ, "t", b"exactly once", 2, false);
    let got = p.publishes(sub);
    assert_eq!(got.len(), 1);
    let pkid = got[0].pkid;
    p.send(
        sub,
        Inbound::PubRec {
            pkid,
            reason: PubAckReason::Success,
        },
    );
    assert!(
        matches!(&p.got(sub)[..], [v5::Packet::PubRel(r)] if r.pkid == pkid),
        "PUBREL follows PUBREC"
    );
    assert_eq!(p.sessions[sub].0.inflight.len(), 1, "awaiting PUBCOMP");
    p.send(sub, Inbound::PubComp(pkid));
    assert!(p.sessions[sub].0.inflight.is_empty());
    // The publisher's side: PUBREC, then PUBCOMP for its PUBREL.
    let got = p.got(publ);
    assert!(
        matches!(&got[..], [v5::Packet::PubRec(r)] if r.pkid == 7),
        "{got:?}"
    );
    p.send(publ, Inbound::PubRel(7));
    assert!(matches!(&p.got(publ)[..], [v5::Packet::PubComp(c)] if c.pkid == 7));
}

#[test]
fn payload_bytes_and_properties_arrive_as_published_live_and_retained() {
    let mut p = Pair::new();
    let (live, publ) = (p.session(), p.session());
    p.subscribe(live, "m/#", 1);
    p.got(live);
    let props = PublishProps {
        payload_format: Some(1),
        content_type: Some("text/plain".into()),
        response_topic: Some("m/reply".into()),
        correlation_data: Some(Bytes::from_static(b"c-1")),
        user: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        ..Default::default()
    };
    p.publish_with(publ, "m/a", b" 007 ", 1, true, Some(props.clone()));
    let got = p.publishes(live);
    assert_eq!(&got[0].payload[..], b" 007 ", "byte for byte");
    let theirs = got[0].properties.clone().unwrap();
    assert_eq!(theirs.content_type.as_deref(), Some("text/plain"));
    assert_eq!(theirs.response_topic.as_deref(), Some("m/reply"));
    assert_eq!(theirs.correlation_data.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(theirs.payload_format_indicator, Some(1));
    assert_eq!(theirs.user_properties.len(), 2);
    // A later subscriber gets the retained message with the same bytes and properties.
    let late = p.session();
    p.subscribe(late, "m/+", 1);
    let got = p.publishes(late);
    assert_eq!((got.len(), got[0].retain), (1, true));
    assert_eq!(&got[0].payload[..], b" 007 ");
    assert_eq!(
        got[0].properties.clone().unwrap().content_type.as_deref(),
        Some("text/plain")
    );
}

#[test]
fn a_retained_message_expires_and_its_expiry_counts_down() {
    let mut p = Pair::new();
    let publ = p.session();
    let props = PublishProps {
        message_expiry: Some(10),
        ..Default::default()
    };
    p.publish_with(publ, "e/x", b"soon gone", 0, true, Some(props));
    p.advance(Duration::from_millis(2_100));
    let a = p.session();
    p.subscribe(a, "e/x", 0);
    let got = p.publishes(a);
    let left = got[0].properties.clone().unwrap().message_expiry_interval;
    assert_eq!(left, Some(8), "10 s less the 2.1 s that passed, rounded up");
    p.advance(Duration::from_secs(9));
    let b = p.session();
    p.subscribe(b, "e/x", 0);
    assert!(p.publishes(b).is_empty(), "expired");
    assert!(
        p.door.router.params().get("/e/x").is_none(),
        "gone from the router too"
    );
}

#[test]
fn a_publish_nobody_subscribes_to_is_acknowledged_as_such() {
    let mut p = Pair::new();
    let (publ, sub) = (p.session(), p.session());
    p.publish(publ, "nobody", b"x", 1, false);
    let got = p.got(publ);
    assert!(
        matches!(&got[..], [v5::Packet::PubAck(a)] if a.reason == v5::PubAckReason::NoMatchingSubscribers),
        "{got:?}"
    );
    p.subscribe(sub, "somebody", 0);
    p.publish(publ, "somebody", b"x", 1, false);
    let got = p.got(publ);
    assert!(
        matches!(&got[..], [v5::Packet::PubAck(a)] if a.reason == v5::PubAckReason::Success),
        "{got:?}"
    );
    // Its own subscription counts: MQTT sends a client its own publish.
    p.subscribe(publ, "mine", 0);
    p.got(publ);
    p.publish(publ, "mine", b"x", 1, false);
    let got = p.got(publ);
    assert!(
        got.iter()
            .any(|g| matches!(g, v5::Packet::PubAck(a) if a.reason == v5::PubAckReason::Success)),
        "{got:?}"
    );
}

#[test]
fn no_local_skips_the_clients_own_sets_and_events() {
    let mut p = Pair::new();
    let (me, other) = (p.session(), p.session());
    p.send(
        me,
        Inbound::Subscribe {
            pkid: 1,
            filters: vec![SubRequest {
                filter: "n/#".into(),
                qos: 0,
                rap: false,
                retain_handling: 2,
                no_local: true,
            }],
            subscription_id: None,
        },
    );
    p.got(me);
    p.publish(me, "n/state", b"1", 0, true);
    p.publish(me, "n/event", b"2", 0, false);
    assert!(
        p.publishes(me).is_empty(),
        "its own publishes are not sent back"
    );
    p.publish(other, "n/state", b"3", 0, true);
    let got = p.publishes(me);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"3");
}

#[test]
fn dollar_topics_do_not_match_filters_that_start_with_a_wildcard() {
    let mut p = Pair::new();
    let (wild, exact, publ) = (p.session(), p.session(), p.session());
    p.subscribe(wild, "#", 0);
    p.subscribe(exact, "$SYSX/#", 0);
    p.got(wild);
    p.got(exact);
    p.publish(publ, "$SYSX/load", b"1", 0, false);
    assert!(p.publishes(wild).is_empty());
    assert_eq!(p.publishes(exact).len(), 1);
}

#[test]
fn clasp_updates_reach_mqtt_subscribers_as_values() {
    let mut p = Pair::new();
    let sub = p.session();
    p.subscribe(sub, "c/#", 2);
    p.got(sub);
    let rec = Recorder::new();
    let now = p.door.now;
    let clasp = p.door.router.open_adapter(rec, None, now).unwrap();
    let set = Message::Set(clasp_proto::Set {
        address: "/c/level".into(),
        value: clasp_proto::Value::Float(0.5),
        ..Default::default()
    });
    p.door.router.submit(clasp, set, Qos::Confirm, now).unwrap();
    p.pump();
    let got = p.publishes(sub);
    assert_eq!(&got[0].payload[..], b"0.5");
    assert_eq!(
        got[0].qos as u8, 1,
        "a CLASP update counts as published at QoS 1"
    );
}

#[test]
fn subscription_identifiers_come_back_with_what_they_match() {
    let mut p = Pair::new();
    let (sub, publ) = (p.session(), p.session());
    for (filter, id) in [("i/+", Some(42)), ("i/#", Some(7)), ("i/x", None)] {
        p.send(
            sub,
            Inbound::Subscribe {
                pkid: 1,
                filters: vec![SubRequest {
                    filter: filter.into(),
                    qos: 0,
                    rap: false,
                    retain_handling: 0,
                    no_local: false,
                }],
                subscription_id: id,
            },
        );
    }
    p.got(sub);
    p.publish(publ, "i/x", b"1", 0, false);
    let got = p.publishes(sub);
    assert_eq!(got.len(), 1, "one copy however many subscriptions match");
    let mut ids = got[0].properties.clone().unwrap().subscription_identifiers;
    ids.sort_unstable();
    assert_eq!(ids, [7, 42]);
}

#[test]
fn a_shared_subscription_gives_each_message_to_one_member() {
    let mut p = Pair::new();
    let (a, b, plain, publ) = (p.session(), p.session(), p.session(), p.session());
    p.subscribe(a, "$share/g/w/+", 1);
    p.subscribe(b, "$share/g/w/+", 1);
    p.subscribe(plain, "w/+", 0);
    for i in [a, b, plain] {
        let got = p.got(i);
        assert!(matches!(&got[..], [v5::Packet::SubAck(_)]), "{got:?}");
    }
    for i in 0..10 {
        p.publish(publ, "w/job", format!("{i}").as_bytes(), 1, false);
    }
    let (na, nb) = (p.publishes(a).len(), p.publishes(b).len());
    assert_eq!(
        na + nb,
        10,
        "each message to exactly one member ({na} + {nb})"
    );
    assert!(na > 0 && nb > 0, "both members get some ({na} + {nb})");
    assert_eq!(p.publishes(plain).len(), 10);
}
