//! The typed door: adapter sessions submit messages, get answers in place, and get updates
//! tagged with their own subscription ids.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::sync::Arc;

use clasp_proto::*;
use clasp_router_core::adapter::{Accepted, Delivery, Update};
use clasp_router_core::auth::{CpskToken, Scopes};
use clasp_router_core::{Operation, RateLimit, Refusal, RouterConfig};
use harness::*;

fn updates(c: &Client) -> Vec<Update> {
    c.deliveries()
        .into_iter()
        .filter_map(|d| match d {
            Delivery::Update(u) => Some(u),
            Delivery::Reply(_) | Delivery::Snapshot { .. } => None,
        })
        .collect()
}

fn subscribe(id: u32, pattern: &str) -> Message {
    Message::Subscribe(Subscribe {
        id,
        pattern: pattern.into(),
        ..Default::default()
    })
}

#[test]
fn a_set_is_answered_with_its_revision_and_reaches_wire_subscribers() {
    let mut h = Harness::new();
    let native = h.client();
    h.sub(&native, 1, "/a/*");
    native.msgs();
    let ad = h.adapter(None).unwrap();
    assert!(h.is_adapter(ad.conn));
    assert!(ad.deliveries().is_empty(), "no WELCOME, no snapshot");
    let first = h.submit(&ad, set("/a/x", Value::Int(1)));
    assert_eq!(
        first,
        Ok(Accepted {
            revision: Some(1),
            matched: 1
        })
    );
    let second = h.submit(&ad, set("/a/x", Value::Int(2)));
    assert_eq!(second.map(|a| a.revision), Ok(Some(2)));
    // Nobody subscribes to this one.
    let lonely = h.submit(&ad, event("/nobody", Value::Int(1))).unwrap();
    assert_eq!(lonely.matched, 0);
    let got = native.msgs();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(&got[1], Message::Set(s) if s.revision == Some(2)));
    assert!(
        ad.deliveries().is_empty(),
        "no ACK queued: the answer was the ACK"
    );
}

#[test]
fn refusals_are_answered_in_place_and_counted_not_queued() {
    let mut h = Harness::new();
    let holder = h.client();
    h.send(
        &holder,
        Message::Set(Set {
            address: "/locked".into(),
            value: Value::Int(1),
            lock: true,
            ..Default::default()
        }),
    );
    let ad = h.adapter(None).unwrap();
    let r = h.submit(&ad, set("/locked", Value::Int(2))).unwrap_err();
    assert_eq!(r.code(), ErrorCode::LockHeld, "{r}");
    let r = h.submit(&ad, set("/bad/*", Value::Int(2))).unwrap_err();
    assert_eq!(r.code(), ErrorCode::InvalidAddress, "{r}");
    assert!(ad.deliveries().is_empty(), "no ERROR queued");
    assert_eq!(h.metrics().errors_sent, 2, "answered errors are counted");
    // A HELLO is not a message an adapter submits.
    assert_eq!(
        h.submit(&ad, Message::Hello(Hello::default())),
        Err(Refusal::SecondHello)
    );
}

#[test]
fn deliveries_name_every_matching_subscription_once_per_update() {
    let mut h = Harness::new();
    let ad = h.adapter(None).unwrap();
    h.submit(&ad, subscribe(7, "/a/*")).unwrap();
    h.submit(&ad, subscribe(8, "/a/**")).unwrap();
    h.submit(&ad, subscribe(9, "/b/*")).unwrap();
    ad.deliveries();
    let w = h.client();
    h.set(&w, "/a/x", Value::Float(0.5));
    let got = updates(&ad);
    assert_eq!(
        got.len(),
        1,
        "one delivery however many subscriptions match"
    );
    let mut subs: Vec<u32> = got[0].subs().collect();
    subs.sort_unstable();
    assert_eq!(subs, [7, 8]);
    assert!(!got[0].own);
    let Message::Set(s) = &*got[0].message else {
        panic!("{:?}", got[0].message)
    };
    assert_eq!((&*s.address, s.revision), ("/a/x", Some(1)));
    assert_eq!(s.value, Value::Float(0.5));
    // An event: delivered the same way, to the matching subscription only.
    h.send(&w, event("/b/e", Value::Int(3)));
    let got = updates(&ad);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subs().collect::<Vec<_>>(), [9]);
    assert!(matches!(&*got[0].message, Message::Publish(p) if &*p.address == "/b/e"));
}

#[test]
fn own_sets_are_marked_and_own_events_are_not_sent_back() {
    let mut h = Harness::new();
    let ad = h.adapter(None).unwrap();
    h.submit(&ad, subscribe(1, "/o/**")).unwrap();
    ad.deliveries();
    h.submit(&ad, set("/o/p", Value::Int(1))).unwrap();
    let got = updates(&ad);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].own,
        "a SET comes back to its writer, marked as its own"
    );
    h.submit(&ad, event("/o/e", Value::Int(1))).unwrap();
    assert!(
        updates(&ad).is_empty(),
        "a PUBLISH is not sent back to its sender"
    );
    let w = h.client();
    h.set(&w, "/o/p", Value::Int(2));
    let got = updates(&ad);
    assert!(!got[0].own);
}

#[test]
fn one_decoded_update_is_shared_by_every_adapter() {
    let mut h = Harness::new();
    let a = h.adapter(None).unwrap();
    let b = h.adapter(None).unwrap();
    h.submit(&a, subscribe(1, "/s/*")).unwrap();
    h.submit(&b, subscribe(2, "/s/*")).unwrap();
    let w = h.client();
    h.set(&w, "/s/1", Value::Int(5));
    let (ua, ub) = (updates(&a), updates(&b));
    assert!(Arc::ptr_eq(&ua[0].message, &ub[0].message));
    assert_eq!((ua[0].sub, ub[0].sub), (1, 2));
}

#[test]
fn a_subscription_snapshot_arrives_as_a_reply() {
    let mut h = Harness::new();
    let w = h.client();
    h.set(&w, "/k/1", Value::Int(1));
    h.set(&w, "/k/2", Value::Int(2));
    let ad = h.adapter(None).unwrap();
    h.submit(&ad, subscribe(4, "/k/*")).unwrap();
    let got = ad.deliveries();
    let [Delivery::Snapshot { sub: 4, params }] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(params.len(), 2);
    // A subscription that matches nothing gets nothing.
    h.submit(&ad, subscribe(5, "/none/*")).unwrap();
    assert!(ad.deliveries().is_empty());
}

#[test]
fn tokens_and_scopes_apply_to_adapter_sessions() {
    let mut h = Harness::new();
    let tokens = HashMap::from([(
        "cpsk_0123456789abcdef0123456789abcdef".to_owned(),
        CpskToken {
            subject: None,
            scopes: Scopes::parse("read:/**").unwrap(),
            expires_at: None,
        },
    )]);
    h.core(|r, _| r.auth_mut().set_cpsk(tokens));
    let before = h.connection_count();
    let r = h.adapter(None).unwrap_err();
    assert_eq!(r.code(), ErrorCode::Unauthorized, "{r}");
    let r = h.adapter(Some("cpsk_nope")).unwrap_err();
    assert_eq!(r.code(), ErrorCode::Unauthorized, "{r}");
    assert_eq!(
        h.connection_count(),
        before,
        "a refused adapter leaves nothing"
    );
    let ad = h
        .adapter(Some("cpsk_0123456789abcdef0123456789abcdef"))
        .unwrap();
    assert_eq!(
        h.submit(&ad, set("/x", Value::Int(1))),
        Err(Refusal::Scope(Operation::Write))
    );
    assert!(h.submit(&ad, subscribe(1, "/x/*")).is_ok());
}

#[test]
fn the_rate_limit_answers_every_refused_submission() {
    let mut h = Harness::with(RouterConfig {
        rate_limit: Some(RateLimit {
            per_sec: 1,
            burst: 3,
        }),
        ..Default::default()
    });
    let ad = h.adapter(None).unwrap();
    let answers: Vec<_> = (0..5)
        .map(|i| h.submit(&ad, set("/r", Value::Int(i))).is_ok())
        .collect();
    assert_eq!(answers, [true, true, true, false, false]);
    assert!(matches!(
        h.submit(&ad, set("/r", Value::Int(9))),
        Err(Refusal::RateLimited { .. })
    ));
    assert_eq!(h.params().get("/r").map(|p| p.revision), Some(3));
}

#[test]
fn closing_an_adapter_session_releases_its_subscriptions() {
    let mut h = Harness::new();
    let ad = h.adapter(None).unwrap();
    h.submit(&ad, subscribe(1, "/z/*")).unwrap();
    assert_eq!(h.subscription_count(), 1);
    h.close(&ad);
    assert_eq!(h.subscription_count(), 0);
    assert_eq!(
        h.submit(&ad, set("/z/1", Value::Int(1))),
        Err(Refusal::NoSession)
    );
}

#[derive(Debug)]
struct Tag(&'static str);

impl clasp_router_core::adapter::Attachment for Tag {
    fn size(&self) -> usize {
        self.0.len()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn tag(a: &Option<clasp_router_core::adapter::Attached>) -> Option<&'static str> {
    a.as_ref()
        .and_then(|a| a.as_any().downcast_ref::<Tag>())
        .map(|t| t.0)
}

#[test]
fn attachments_reach_adapters_and_stay_with_the_param_until_the_next_write() {
    let mut h = Harness::new();
    let writer = h.adapter(None).unwrap();
    let reader = h.adapter(None).unwrap();
    h.submit(&reader, subscribe(1, "/m/*")).unwrap();
    let native = h.client();
    h.sub(&native, 1, "/m/*");
    native.msgs();
    let before = h.params().bytes();
    h.core(|r, now| {
        r.submit_attached(
            writer.conn,
            set("/m/t", Value::Int(1)),
            Qos::Fire,
            Some(Arc::new(Tag("qos=1;props"))),
            now,
        )
    })
    .unwrap();
    let got = updates(&reader);
    assert_eq!(tag(&got[0].attached), Some("qos=1;props"));
    assert!(
        matches!(&native.msgs()[..], [Message::Set(_)]),
        "wire clients get the plain SET"
    );
    // A later subscriber finds it with the param, counted in the store's bytes.
    let late = h.adapter(None).unwrap();
    h.submit(&late, subscribe(2, "/m/*")).unwrap();
    let got = late.deliveries();
    let [Delivery::Snapshot { sub: 2, params }] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(tag(&params[0].attached), Some("qos=1;props"));
    let with_tag = h.params().bytes();
    assert!(with_tag > before);
    // A write without it (from a wire client) clears it.
    h.set(&native, "/m/t", Value::Int(2));
    let got = updates(&reader);
    assert_eq!(tag(&got[0].attached), None);
    let again = h.adapter(None).unwrap();
    h.submit(&again, subscribe(2, "/m/*")).unwrap();
    let got = again.deliveries();
    let [Delivery::Snapshot { params, .. }] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(tag(&params[0].attached), None);
}

#[test]
fn submissions_meet_the_same_size_limit_as_frames() {
    let mut h = Harness::with(RouterConfig {
        max_payload: 1000,
        ..Default::default()
    });
    let ad = h.adapter(None).unwrap();
    let big = Value::from("x".repeat(2000));
    let r = h.submit(&ad, event("/big", big.clone())).unwrap_err();
    assert!(matches!(r, Refusal::FrameTooLarge { max: 1000, .. }), "{r}");
    let bundle = Message::Bundle(Bundle {
        timestamp: None,
        messages: (0..20)
            .map(|i| set(&format!("/b/{i}"), Value::from("y".repeat(100))))
            .collect(),
    });
    let r = h.submit(&ad, bundle).unwrap_err();
    assert!(matches!(r, Refusal::FrameTooLarge { .. }), "{r}");
    assert_eq!(h.params().len(), 0, "nothing of it applied");
    assert!(h.submit(&ad, event("/small", Value::Int(1))).is_ok());
}

#[test]
fn a_shared_group_splits_updates_one_member_each() {
    let mut h = Harness::new();
    let members: Vec<Client> = (0..3).map(|_| h.adapter(None).unwrap()).collect();
    for (i, m) in members.iter().enumerate() {
        let s = Subscribe {
            id: 10 + i as u32,
            pattern: "/work/*".into(),
            ..Default::default()
        };
        h.core(|r, now| r.subscribe_shared(m.conn, s, "g\0/work/*", now))
            .unwrap();
        m.deliveries();
    }
    let plain = h.adapter(None).unwrap();
    h.submit(&plain, subscribe(1, "/work/*")).unwrap();
    let w = h.client();
    for i in 0..30 {
        h.send(&w, event("/work/job", Value::Int(i)));
    }
    let counts: Vec<usize> = members.iter().map(|m| updates(m).len()).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        30,
        "each update to one member: {counts:?}"
    );
    assert!(
        counts.iter().all(|n| *n == 10),
        "rotating through the group: {counts:?}"
    );
    assert_eq!(
        updates(&plain).len(),
        30,
        "a plain subscription still gets everything"
    );
    // A member that leaves is no longer chosen.
    h.close(&members[0]);
    for i in 0..10 {
        h.send(&w, event("/work/job", Value::Int(i)));
    }
    assert_eq!(updates(&members[1]).len() + updates(&members[2]).len(), 10);
}

#[test]
fn the_set_an_adapter_gets_is_the_one_the_frame_carries() {
    let mut h = Harness::new();
    let ad = h.adapter(None).unwrap();
    h.submit(&ad, subscribe(1, "/same/*")).unwrap();
    let wire = h.client();
    h.sub(&wire, 1, "/same/*");
    wire.msgs();
    let writer = h.client();
    for (lock, unlock) in [(false, false), (true, false), (false, true)] {
        h.send(
            &writer,
            Message::Set(Set {
                address: "/same/p".into(),
                value: Value::from("v"),
                lock,
                unlock,
                ttl: Some(30),
                ..Default::default()
            }),
        );
        let on_wire = wire.msgs();
        let got = updates(&ad);
        assert_eq!(got.len(), 1);
        assert_eq!(*got[0].message, on_wire[0], "lock {lock}, unlock {unlock}");
    }
}

#[test]
fn the_publish_an_adapter_gets_from_another_is_the_one_the_frame_carries() {
    let mut h = Harness::new();
    let from = h.adapter(None).unwrap();
    let to = h.adapter(None).unwrap();
    h.submit(&to, subscribe(1, "/same/**")).unwrap();
    let wire = h.client();
    h.sub(&wire, 1, "/same/**");
    wire.msgs();
    let publishes = [
        Publish {
            address: "/same/event".into(),
            signal: SignalType::Event,
            payload: PublishPayload::Value(Value::Map(vec![("n".into(), Value::Int(7))])),
            timestamp: Some(1_700_000_000_000_000),
            ..Default::default()
        },
        Publish {
            address: "/same/stream".into(),
            signal: SignalType::Stream,
            payload: PublishPayload::Samples(vec![0.25, 0.5]),
            rate: Some(60),
            ..Default::default()
        },
        Publish {
            address: "/same/gesture".into(),
            signal: SignalType::Gesture,
            phase: GesturePhase::Start,
            id: Some(3),
            payload: PublishPayload::Value(Value::Float(1.5)),
            ..Default::default()
        },
    ];
    for p in publishes {
        h.submit(&from, Message::Publish(p.clone())).unwrap();
        let on_wire = wire.msgs();
        let got = updates(&to);
        assert_eq!(got.len(), 1, "{p:?}");
        assert_eq!(*got[0].message, on_wire[0]);
        assert_eq!(*got[0].message, Message::Publish(p));
    }
}
