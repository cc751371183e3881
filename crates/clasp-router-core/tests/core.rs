//! The router core driven deterministically: frames in, frames out, time passed by hand.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use clasp_proto::*;
use clasp_router_core::{CloseReason, RouterConfig};

#[path = "support/harness.rs"]
mod harness;
use harness::*;

#[test]
fn handshake_sends_welcome_then_a_snapshot_even_when_empty() {
    let mut h = Harness::new();
    let c = h.open();
    h.send(&c, Message::Hello(Hello::default()));
    let got = c.msgs();
    assert_eq!(got.len(), 2);
    let Message::Welcome(w) = &got[0] else {
        panic!()
    };
    assert_eq!(
        (w.version, w.features, w.time),
        (1, Features::ROUTER, h.now.wall)
    );
    assert_eq!(w.session, "session-1");
    assert_eq!(got[1], Message::Snapshot(Snapshot { params: vec![] }));
}

#[test]
fn first_frame_must_be_hello() {
    let mut h = Harness::new();
    let c = h.open();
    h.send(&c, Message::Ping);
    let got = c.msgs();
    assert_eq!(error_code(&got[0]), Some(101));
    assert_eq!(c.rec.closed(), Some(CloseReason::Handshake));
    // Garbage also gets an ERROR and a close.
    let d = h.open();
    h.handle(&d, &bytes::Bytes::from_static(&[1, 2, 3]));
    assert_eq!(error_code(&d.msgs()[0]), Some(100));
    assert_eq!(d.rec.closed(), Some(CloseReason::Handshake));
}

#[test]
fn second_hello_is_an_error_and_changes_nothing() {
    let mut h = Harness::new();
    let a = h.client();
    h.sub(&a, 1, "/x");
    h.send(&a, Message::Hello(Hello::default()));
    assert_eq!(error_code(&a.msgs()[0]), Some(101));
    assert_eq!(h.session_count(), 1);
    assert_eq!(h.session_id(a.conn), Some("session-1"));
    h.set(&a, "/x", Value::Int(1));
    assert!(matches!(a.msgs()[0], Message::Set(_)), "subscription kept");
}

#[test]
fn set_is_broadcast_to_subscribers_including_the_writer_before_the_ack() {
    let mut h = Harness::new();
    let a = h.client();
    let b = h.client();
    h.sub(&a, 1, "/test/**");
    h.sub(&b, 1, "/test/**");
    h.set(&a, "/test/value", Value::Float(0.75));
    let got = a.msgs();
    assert_eq!(got.len(), 2);
    let Message::Set(s) = &got[0] else { panic!() };
    assert_eq!((s.revision, &s.value), (Some(1), &Value::Float(0.75)));
    let Message::Ack(ack) = &got[1] else { panic!() };
    assert_eq!(
        (ack.address.as_deref(), ack.revision),
        (Some("/test/value"), Some(1))
    );
    assert_eq!(b.msgs().len(), 1);
    // Revision increments.
    h.set(&b, "/test/value", Value::Float(0.5));
    let Message::Set(s) = &a.msgs()[0] else {
        panic!()
    };
    assert_eq!(s.revision, Some(2));
}

#[test]
fn fire_qos_gets_no_ack_so_the_python_client_keeps_working() {
    let mut h = Harness::new();
    let py = h.client();
    h.sub(&py, 1, "/py/**");
    h.send_qos(&py, set("/py/x", Value::Int(1)), Some(Qos::Fire));
    let got = py.msgs();
    assert_eq!(got.len(), 1, "only the echo, no ACK: {got:?}");
    assert!(matches!(got[0], Message::Set(_)));
    h.send_qos(&py, set("/py/x", Value::Int(2)), Some(Qos::Commit));
    assert!(matches!(py.msgs()[1], Message::Ack(_)));
}

#[test]
fn get_returns_the_param_or_error_201() {
    let mut h = Harness::new();
    let a = h.client();
    h.set(&a, "/g", Value::from("v"));
    a.msgs();
    h.send(
        &a,
        Message::Get(Get {
            address: "/g".into(),
        }),
    );
    let Message::Snapshot(s) = &a.msgs()[0] else {
        panic!()
    };
    assert_eq!(s.params[0].value, Value::from("v"));
    assert_eq!(s.params[0].writer.as_deref(), Some("session-1"));
    h.send(
        &a,
        Message::Get(Get {
            address: "/nope".into(),
        }),
    );
    let got = a.msgs();
    let Message::Error(e) = &got[0] else { panic!() };
    assert_eq!((e.code.code(), e.address.as_deref()), (201, Some("/nope")));
}

#[test]
fn publish_goes_to_subscribers_but_not_back_to_the_sender() {
    let mut h = Harness::new();
    let a = h.client();
    let b = h.client();
    h.sub(&a, 1, "/ev/**");
    h.sub(&b, 1, "/ev/**");
    h.send(&a, event("/ev/go", Value::Int(1)));
    assert!(a.msgs().is_empty());
    assert_eq!(b.msgs(), vec![event("/ev/go", Value::Int(1))]);
}

#[test]
fn publish_frames_are_forwarded_byte_for_byte() {
    let mut h = Harness::new();
    let a = h.client();
    let b = h.client();
    h.sub(&b, 1, "/ev/**");
    b.msgs();
    // Python's null form (indicator 0), an i8 value tag, a frame timestamp and Commit QoS:
    // what the subscriber receives is exactly what was sent.
    let python_null = encode_with(
        &Message::Publish(Publish {
            address: "/ev/a".into(),
            ..Default::default()
        }),
        FrameOptions {
            qos: Some(Qos::Commit),
            timestamp: Some(42),
        },
    )
    .unwrap();
    let mut narrow = vec![0x53, 0x41, 0, 0, 0x20, 0x20, 0, 5];
    narrow.extend_from_slice(b"/ev/b");
    narrow.extend_from_slice(&[1, 0x02, 0xFF]);
    let len = (narrow.len() - 4) as u16;
    narrow[2..4].copy_from_slice(&len.to_be_bytes());
    for frame in [python_null, bytes::Bytes::from(narrow)] {
        h.handle(&a, &frame);
        let got = b.raw();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].frame(), &frame);
    }
    // SET broadcasts carry the router's revision and are re-encoded.
    h.set(&a, "/ev/p", Value::String("x".into()));
    assert_eq!(
        b.msgs(),
        vec![Message::Set(Set {
            address: "/ev/p".into(),
            value: Value::String("x".into()),
            revision: Some(1),
            ..Default::default()
        })]
    );
}

#[test]
fn every_accepted_pattern_gets_live_updates() {
    // The reference never delivers live updates to `/zone*/x`.
    let mut h = Harness::new();
    let a = h.client();
    let w = h.client();
    h.sub(&a, 1, "/zone*/x");
    h.sub(&a, 2, "/a*");
    h.set(&w, "/zone5/x", Value::Int(1));
    h.set(&w, "/abc", Value::Int(2));
    h.set(&w, "/zone5/y", Value::Int(3));
    let got = a.msgs();
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn one_copy_per_session_and_type_filters_apply() {
    let mut h = Harness::new();
    let a = h.client();
    let w = h.client();
    h.sub(&a, 1, "/m/**");
    h.sub(&a, 2, "/m/*");
    h.send(
        &a,
        Message::Subscribe(Subscribe {
            id: 3,
            pattern: "/e/**".into(),
            types: SignalTypes::of(&[SignalType::Event]),
            ..Default::default()
        }),
    );
    h.set(&w, "/m/x", Value::Int(1));
    assert_eq!(a.msgs().len(), 1);
    h.set(&w, "/e/x", Value::Int(1));
    assert!(
        a.msgs().is_empty(),
        "event-only subscription does not see SETs"
    );
    h.send(&w, event("/e/x", Value::Null));
    assert_eq!(a.msgs().len(), 1);
}

#[test]
fn subscribe_sends_a_snapshot_of_matching_params_only_if_any() {
    let mut h = Harness::new();
    let w = h.client();
    h.set(&w, "/s/1", Value::Int(1));
    h.set(&w, "/s/2", Value::Int(2));
    h.set(&w, "/t/1", Value::Int(3));
    let late = h.client();
    h.sub(&late, 1, "/s/*");
    let Message::Snapshot(s) = &late.msgs()[0] else {
        panic!()
    };
    assert_eq!(s.params.len(), 2);
    h.sub(&late, 2, "/none/**");
    assert!(late.msgs().is_empty());
}

#[test]
fn connect_snapshot_is_chunked_by_size_and_complete() {
    let mut h = Harness::new();
    let w = h.client();
    for i in 0..300 {
        h.set(&w, &format!("/big/{i}"), Value::from("x".repeat(1000)));
    }
    let late = h.open();
    h.send(&late, Message::Hello(Hello::default()));
    let frames = late.raw();
    let mut total = 0;
    for f in &frames[1..] {
        assert!(f.frame().len() <= 4 + 65_535);
        let Message::Snapshot(s) = decode_frame(f.frame()).unwrap().message else {
            panic!()
        };
        total += s.params.len();
    }
    assert!(frames.len() > 3, "several chunks");
    assert_eq!(total, 300, "no param is skipped");
}

#[test]
fn locks_hold_against_everyone_else_and_end_with_the_session() {
    let mut h = Harness::new();
    let a = h.client();
    let b = h.client();
    h.send(
        &a,
        Message::Set(Set {
            address: "/f".into(),
            value: Value::Float(0.5),
            lock: true,
            ..Default::default()
        }),
    );
    let Message::Ack(ack) = &a.msgs()[0] else {
        panic!()
    };
    assert_eq!(
        (ack.locked, ack.holder.as_deref()),
        (Some(true), Some("session-1"))
    );
    // Plain write and the reference's unlock-flag bypass both fail.
    h.set(&b, "/f", Value::Float(0.1));
    h.send(
        &b,
        Message::Set(Set {
            address: "/f".into(),
            value: Value::Float(0.2),
            unlock: true,
            ..Default::default()
        }),
    );
    let got = b.msgs();
    assert_eq!(
        got.iter().filter_map(error_code).collect::<Vec<_>>(),
        vec![401, 401]
    );
    assert_eq!(h.params().get("/f").unwrap().value, Value::Float(0.5));
    // The holder leaves: the lock goes with it.
    h.close(&a);
    h.set(&b, "/f", Value::Float(0.3));
    assert!(matches!(b.msgs()[0], Message::Ack(_)));
}

#[test]
fn revision_conflicts_are_reported() {
    let mut h = Harness::new();
    let a = h.client();
    h.set(&a, "/r", Value::Int(1));
    a.msgs();
    h.send(
        &a,
        Message::Set(Set {
            address: "/r".into(),
            value: Value::Int(2),
            revision: Some(99),
            ..Default::default()
        }),
    );
    let Message::Error(e) = &a.msgs()[0] else {
        panic!()
    };
    assert_eq!(e.code.code(), 409);
    assert_eq!(
        e.message,
        "revision conflict: expected revision 99, current revision is 1"
    );
}

#[test]
fn bundles_are_atomic() {
    let mut h = Harness::new();
    let a = h.client();
    let b = h.client();
    h.sub(&b, 1, "/**");
    h.set(&a, "/b/2", Value::Int(0));
    b.msgs();
    a.msgs();
    let bad = Message::Bundle(Bundle {
        timestamp: None,
        messages: vec![
            set("/b/1", Value::Int(1)),
            Message::Set(Set {
                address: "/b/2".into(),
                value: Value::Int(2),
                revision: Some(7),
                ..Default::default()
            }),
        ],
    });
    h.send(&a, bad);
    let got = a.msgs();
    assert_eq!(got.len(), 1);
    let Message::Error(e) = &got[0] else { panic!() };
    assert_eq!(e.address.as_deref(), Some("/b/2"));
    assert!(h.params().get("/b/1").is_none(), "nothing applied");
    assert!(b.msgs().is_empty());
    let good = Message::Bundle(Bundle {
        timestamp: None,
        messages: vec![
            set("/b/1", Value::Int(1)),
            set("/b/1", Value::Int(2)),
            event("/b/ev", Value::Null),
        ],
    });
    h.send(&a, good);
    let Message::Ack(ack) = &a.msgs()[0] else {
        panic!()
    };
    assert_eq!(ack.revision, Some(2));
    assert_eq!(b.msgs().len(), 3);
}

#[test]
fn future_bundles_run_at_their_time() {
    let mut h = Harness::new();
    let a = h.client();
    let at = h.now.wall + 50_000;
    h.send(
        &a,
        Message::Bundle(Bundle {
            timestamp: Some(at),
            messages: vec![set("/later", Value::Int(1))],
        }),
    );
    assert!(a.msgs().is_empty());
    assert!(h.params().get("/later").is_none());
    assert_eq!(h.poll_timeout(), Some(h.now.mono + 50_000));
    h.advance(Duration::from_millis(49));
    assert!(h.params().get("/later").is_none());
    h.advance(Duration::from_millis(1));
    assert!(h.params().get("/later").is_some());
    assert!(matches!(a.msgs()[0], Message::Ack(_)));
}

#[test]
fn max_rate_coalesces_params_and_always_delivers_the_latest() {
    let mut h = Harness::new();
    let a = h.client();
    let w = h.client();
    h.sub_with(
        &a,
        1,
        "/fast",
        SubscribeOptions {
            max_rate: Some(10),
            ..Default::default()
        },
    );
    for i in 0..50 {
        h.set(&w, "/fast", Value::Int(i));
        h.advance(Duration::from_millis(2));
    }
    h.advance(Duration::from_millis(200));
    // 100 ms of writes at 10 Hz: the first at once, then at most one per 100 ms.
    let got = a.msgs();
    assert!(got.len() <= 3, "{}", got.len());
    let Some(Message::Set(last)) = got.last() else {
        panic!("{got:?}")
    };
    assert_eq!(last.value, Value::Int(49), "the final state is delivered");
}

#[test]
fn epsilon_skips_small_changes() {
    let mut h = Harness::new();
    let a = h.client();
    let w = h.client();
    h.sub_with(
        &a,
        1,
        "/e",
        SubscribeOptions {
            epsilon: Some(0.1),
            ..Default::default()
        },
    );
    for v in [0.0, 0.05, 0.09, 0.2, 0.25, 0.31] {
        h.set(&w, "/e", Value::Float(v));
    }
    let vals: Vec<f64> = a
        .msgs()
        .iter()
        .filter_map(|m| match m {
            Message::Set(s) => s.value.as_f64(),
            _ => None,
        })
        .collect();
    assert_eq!(vals, vec![0.0, 0.2, 0.31]);
}

/// Found by the core fuzzer: a small change arriving while a larger one waited for the rate
/// limit used to be skipped, so the waiting (older) value went out later, after the session
/// had already seen the newer revision through another subscription.
#[test]
fn max_rate_with_epsilon_never_delivers_an_older_revision() {
    let mut h = Harness::new();
    let a = h.client();
    let w = h.client();
    h.sub_with(
        &a,
        1,
        "/m",
        SubscribeOptions {
            max_rate: Some(10),
            epsilon: Some(1.0),
            ..Default::default()
        },
    );
    h.sub(&a, 2, "/*");
    a.msgs();
    h.set(&w, "/m", Value::Float(0.0)); // rev 1: sent at once
    h.advance(Duration::from_millis(10));
    h.set(&w, "/m", Value::Float(5.0)); // rev 2: waits for the rate limit (sub 1)
    h.advance(Duration::from_millis(10));
    h.set(&w, "/m", Value::Float(0.5)); // rev 3: within epsilon of what sub 1 last sent
    h.advance(Duration::from_millis(200));
    let revs: Vec<(u64, f64)> = a
        .msgs()
        .iter()
        .filter_map(|m| match m {
            Message::Set(s) => Some((s.revision.unwrap(), s.value.as_f64().unwrap())),
            _ => None,
        })
        .collect();
    assert!(
        revs.windows(2).all(|p| p[0].0 <= p[1].0),
        "revisions went back: {revs:?}"
    );
    assert_eq!(revs.last(), Some(&(3, 0.5)), "{revs:?}");
}

/// Found by the core fuzzer: when a session got a new value through one subscription, a value
/// held back for another subscription's rate limit was still sent afterwards, older than what
/// the client already had.
#[test]
fn a_held_back_value_never_follows_a_newer_one_from_another_subscription() {
    let mut h = Harness::new();
    let a = h.client();
    let w = h.client();
    let limited = SubscribeOptions {
        max_rate: Some(10),
        ..Default::default()
    };
    h.sub_with(&a, 1, "/**", limited);
    h.set(&w, "/m", Value::Int(1)); // rev 1: sent
    h.advance(Duration::from_millis(10));
    h.set(&w, "/m", Value::Int(2)); // rev 2: held back by sub 1
    h.sub_with(&a, 2, "/m", limited); // its snapshot carries rev 2
    h.advance(Duration::from_millis(10));
    h.set(&w, "/m", Value::Int(3)); // rev 3: through sub 2 (the exact pattern comes first)
    h.advance(Duration::from_millis(300));
    let revs: Vec<u64> = a
        .msgs()
        .iter()
        .flat_map(|m| match m {
            Message::Set(s) => vec![s.revision.unwrap()],
            Message::Snapshot(s) => s.params.iter().map(|p| p.revision).collect(),
            _ => vec![],
        })
        .collect();
    assert!(
        revs.windows(2).all(|p| p[0] <= p[1]),
        "revisions went back: {revs:?}"
    );
    assert_eq!(revs.last(), Some(&3), "{revs:?}");
}

/// A BUNDLE costs one message per member against the rate limit, so bundling cannot get
/// around it; a refused bundle applies nothing, and one ERROR 429 says why.
#[test]
fn bundles_cost_their_size_against_the_rate_limit() {
    let mut h = Harness::with(RouterConfig {
        rate_limit: Some(clasp_router_core::RateLimit {
            per_sec: 1,
            burst: 10,
        }),
        ..Default::default()
    });
    let a = h.client();
    let bundle = |n: usize| {
        Message::Bundle(Bundle {
            timestamp: None,
            messages: (0..n)
                .map(|i| set(&format!("/rl/{i}"), Value::Int(i as i64)))
                .collect(),
        })
    };
    h.send(&a, bundle(20));
    let got = a.msgs();
    assert_eq!(got.iter().filter_map(error_code).collect::<Vec<_>>(), [429]);
    assert_eq!(h.params().len(), 0, "nothing of the refused bundle applied");
    // Within the burst, a bundle goes through.
    h.send(&a, bundle(8));
    assert!(a.msgs().iter().all(|m| error_code(m).is_none()));
    assert_eq!(h.params().len(), 8);
}

#[test]
fn history_without_journal_or_depth_and_window_are_refused_clearly() {
    let mut h = Harness::with(RouterConfig {
        history_depth: 0,
        ..RouterConfig::default()
    });
    let a = h.client();
    let opts = |history, window| SubscribeOptions {
        history,
        window,
        ..Default::default()
    };
    h.sub_with(&a, 1, "/h", opts(Some(5), None));
    let Message::Error(e) = &a.msgs()[0] else {
        panic!()
    };
    assert!(e.message.contains("`history`"), "{}", e.message);
    assert!(e.message.contains("--journal"), "{}", e.message);
    h.sub_with(&a, 2, "/h", opts(None, Some(5)));
    let Message::Error(e) = &a.msgs()[0] else {
        panic!()
    };
    assert!(e.message.contains("`window`"), "{}", e.message);
    assert_eq!(h.subscription_count(), 0);
}

#[test]
fn gesture_moves_are_throttled_not_starved() {
    let mut h = Harness::new();
    let a = h.client();
    let g = h.client();
    h.sub(&a, 1, "/touch");
    let gesture = |phase, x: f64| {
        Message::Publish(Publish {
            address: "/touch".into(),
            signal: SignalType::Gesture,
            phase,
            id: Some(1),
            payload: PublishPayload::Value(Value::Float(x)),
            ..Default::default()
        })
    };
    h.send(&g, gesture(GesturePhase::Start, 0.0));
    // A continuous 1 kHz drag for 100 ms.
    for i in 1..=100 {
        h.advance(Duration::from_millis(1));
        h.send(&g, gesture(GesturePhase::Move, i as f64));
    }
    h.send(&g, gesture(GesturePhase::End, 100.0));
    let got = a.msgs();
    let moves = got
        .iter()
        .filter(|m| matches!(m, Message::Publish(p) if p.phase == GesturePhase::Move))
        .count();
    // One move per 16 ms keeps flowing during the drag (the reference sends none until it stops).
    assert!((5..=8).contains(&moves), "{moves} moves");
    assert!(matches!(&got[0], Message::Publish(p) if p.phase == GesturePhase::Start));
    assert!(matches!(got.last(), Some(Message::Publish(p)) if p.phase == GesturePhase::End));
    assert!(g.msgs().is_empty(), "never echoed to the sender");
}

#[test]
fn oversize_frames_get_an_error_and_the_session_continues() {
    let mut h = Harness::with(RouterConfig {
        max_payload: 1000,
        ..Default::default()
    });
    let a = h.client();
    h.set(&a, "/big", Value::from("x".repeat(2000)));
    let Message::Error(e) = &a.msgs()[0] else {
        panic!()
    };
    assert_eq!(e.code.code(), 413);
    h.send(&a, Message::Ping);
    assert_eq!(a.msgs(), vec![Message::Pong]);
}

#[test]
fn a_full_router_refuses_with_an_error_then_closes() {
    let mut h = Harness::with(RouterConfig {
        max_sessions: 1,
        ..Default::default()
    });
    let _a = h.client();
    let b = h.open();
    h.send(&b, Message::Hello(Hello::default()));
    assert_eq!(error_code(&b.msgs()[0]), Some(503));
    assert_eq!(b.rec.closed(), Some(CloseReason::Full));
}

#[test]
fn p2p_signals_go_only_to_the_target() {
    let mut h = Harness::new();
    let a = h.client();
    let b = h.client();
    let c = h.client();
    h.sub(&c, 1, "/**");
    let sig = Message::Publish(Publish {
        address: "/clasp/p2p/signal/session-2".into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(Value::Map(vec![
            ("type".into(), "offer".into()),
            ("from".into(), "session-1".into()),
        ])),
        ..Default::default()
    });
    h.send(&a, sig.clone());
    assert_eq!(b.msgs(), vec![sig]);
    assert!(c.msgs().is_empty());
    // Speaking for another session (or for nobody) is refused, and nothing is forwarded.
    for from in [Some("session-3"), None] {
        let mut entries = vec![("type".into(), Value::from("offer"))];
        entries.extend(from.map(|f| ("from".into(), Value::from(f))));
        h.send(
            &a,
            Message::Publish(Publish {
                address: "/clasp/p2p/signal/session-2".into(),
                payload: PublishPayload::Value(Value::Map(entries)),
                ..Default::default()
            }),
        );
        assert_eq!(error_code(&a.msgs()[0]), Some(301));
        assert!(b.msgs().is_empty());
    }
    h.send(
        &a,
        Message::Publish(Publish {
            address: "/clasp/p2p/signal/nobody".into(),
            payload: PublishPayload::Value(Value::Map(vec![("from".into(), "session-1".into())])),
            ..Default::default()
        }),
    );
    assert_eq!(error_code(&a.msgs()[0]), Some(404));
}

#[test]
fn sync_ping_query_and_announce() {
    let mut h = Harness::new();
    let a = h.client();
    h.send(
        &a,
        Message::Sync(ClockSync {
            t1: 5,
            t2: None,
            t3: None,
        }),
    );
    h.send(&a, Message::Ping);
    assert_eq!(
        a.msgs(),
        vec![
            Message::Sync(ClockSync {
                t1: 5,
                t2: Some(h.now.wall),
                t3: Some(h.now.wall)
            }),
            Message::Pong
        ]
    );
    h.send_qos(
        &a,
        Message::Announce(Announce {
            namespace: "/app".into(),
            signals: vec![SignalDef {
                address: "/app/x".into(),
                signal: SignalType::Param,
                datatype: Some("f64".into()),
                ..Default::default()
            }],
        }),
        Some(Qos::Confirm),
    );
    assert!(matches!(&a.msgs()[0], Message::Ack(ack) if ack.address.as_deref() == Some("/app")));
    h.send(
        &a,
        Message::Query(Query {
            pattern: "/app/**".into(),
        }),
    );
    let Message::Result(r) = &a.msgs()[0] else {
        panic!()
    };
    assert_eq!(r.signals.len(), 1);
}

#[test]
fn unsubscribe_stops_delivery_and_close_cleans_up() {
    let mut h = Harness::new();
    let a = h.client();
    let w = h.client();
    h.sub(&a, 1, "/u");
    h.send(&a, Message::Unsubscribe(Unsubscribe { id: 1 }));
    h.set(&w, "/u", Value::Int(1));
    assert!(a.msgs().is_empty());
    h.sub(&a, 2, "/u/**");
    assert_eq!(h.subscription_count(), 1);
    h.close(&a);
    assert_eq!((h.subscription_count(), h.session_count()), (0, 1));
}

#[test]
fn invalid_addresses_and_patterns_are_errors() {
    let mut h = Harness::new();
    let a = h.client();
    h.set(&a, "no-slash", Value::Int(1));
    h.set(&a, "/a/*", Value::Int(1));
    h.sub(&a, 1, "/x/{a,b}/*");
    let codes: Vec<u16> = a.msgs().iter().filter_map(error_code).collect();
    assert_eq!(codes, vec![200, 200, 202]);
}

#[test]
fn a_value_too_large_to_snapshot_is_refused_not_lost_later() {
    let mut h = Harness::new();
    let a = h.client();
    // Fits a SET frame but not a SNAPSHOT entry (which adds writer and timestamp).
    let s = "y".repeat(65_535 - 30);
    h.set(&a, "/huge", Value::from(s));
    let Message::Error(e) = &a.msgs()[0] else {
        panic!()
    };
    assert_eq!(e.code.code(), 413);
    assert!(h.params().get("/huge").is_none());
}

#[test]
fn param_ttl_expires_params() {
    let mut h = Harness::with(RouterConfig {
        param_ttl: Some(Duration::from_secs(2)),
        ..Default::default()
    });
    let a = h.client();
    h.set(&a, "/ttl", Value::Int(1));
    h.advance(Duration::from_secs(1));
    assert!(h.params().get("/ttl").is_some());
    h.advance(Duration::from_secs(1));
    assert!(h.params().get("/ttl").is_none());
}

#[test]
fn a_burst_handled_at_once_keeps_every_frame_in_order() {
    let mut h = Harness::new();
    let a = h.client();
    let w = h.client();
    h.sub(&a, 1, "/burst/**");
    let frames: Vec<bytes::Bytes> = (0..5)
        .map(|i| encode(&set(&format!("/burst/{}", i % 2), Value::Int(i))).unwrap())
        .collect();
    h.handle_many(&w, &frames);
    let got: Vec<i64> = a
        .msgs()
        .iter()
        .filter_map(|m| match m {
            Message::Set(s) => s.value.as_i64(),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        w.msgs()
            .iter()
            .filter(|m| matches!(m, Message::Ack(_)))
            .count(),
        5
    );
}

#[test]
fn max_rate_and_epsilon_apply_to_streams_too() {
    let mut h = Harness::new();
    let a = h.client();
    let s = h.client();
    h.sub_with(
        &a,
        1,
        "/sensor/x",
        SubscribeOptions {
            max_rate: Some(10),
            epsilon: Some(0.5),
            ..Default::default()
        },
    );
    let sample = |v: f64| {
        Message::Publish(Publish {
            address: "/sensor/x".into(),
            signal: SignalType::Stream,
            payload: PublishPayload::Value(Value::Float(v)),
            ..Default::default()
        })
    };
    // 1 kHz samples for 300 ms, rising by 0.01 each: at 10 Hz at most ~4 get through, each at
    // least 0.5 away from the last one delivered, and the last one delivered is the latest.
    for i in 0..300 {
        h.send(&s, sample(f64::from(i) * 0.01));
        h.advance(Duration::from_millis(1));
    }
    h.advance(Duration::from_millis(200));
    let vals: Vec<f64> = a
        .msgs()
        .iter()
        .filter_map(|m| match m {
            Message::Publish(p) => p.value().and_then(Value::as_f64),
            _ => None,
        })
        .collect();
    assert!((2..=5).contains(&vals.len()), "{vals:?}");
    assert!(vals.windows(2).all(|w| w[1] - w[0] >= 0.5), "{vals:?}");
    assert!((vals[vals.len() - 1] - 2.99).abs() < 1e-9, "{vals:?}");
}
