//! What one session may make the router hold, driven through the core deterministically:
//! announced signals, QUERY cost, subscriptions, gestures, scheduled bundles and the param
//! store are bounded (in items and in bytes), refused with a clear ERROR, counted, and freed
//! when the session ends.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/harness.rs"]
mod harness;

use clasp_proto::*;
use clasp_router_core::{RefusalKind, RouterConfig};
use harness::*;

fn signal(address: String) -> SignalDef {
    SignalDef {
        address: address.into(),
        signal: SignalType::Param,
        datatype: Some("f64".into()),
        access: Some("rw".into()),
        meta: None,
    }
}

fn announce(namespace: &str, addresses: impl IntoIterator<Item = String>) -> Message {
    Message::Announce(Announce {
        namespace: namespace.into(),
        signals: addresses.into_iter().map(signal).collect(),
    })
}

fn refused(h: &Harness, kind: RefusalKind) -> u64 {
    h.metrics()
        .refusals()
        .find(|(k, _)| *k == kind.label())
        .map_or(0, |(_, n)| n)
}

/// Every signal the QUERY's RESULT frames list, until the PONG that follows a PING.
fn query_all(h: &mut Harness, c: &Client, pattern: &str) -> (Vec<SignalDef>, usize) {
    h.send(
        c,
        Message::Query(Query {
            pattern: pattern.into(),
        }),
    );
    h.send(c, Message::Ping);
    let mut signals = Vec::new();
    let mut frames = 0;
    for _ in 0..10_000 {
        for m in c.msgs() {
            match m {
                Message::Result(r) => {
                    frames += 1;
                    signals.extend(r.signals);
                }
                Message::Pong => return (signals, frames),
                other => panic!("unexpected {other:?}"),
            }
        }
        h.advance(std::time::Duration::from_micros(10));
    }
    panic!("no PONG after the QUERY");
}

#[test]
fn announce_is_bounded_per_session_and_refused_whole() {
    let mut h = Harness::with(RouterConfig {
        max_signals_per_session: 100,
        ..RouterConfig::default()
    });
    let a = h.client();
    h.send_qos(
        &a,
        announce("/a", (0..90).map(|i| format!("/a/{i}"))),
        Some(Qos::Confirm),
    );
    assert!(matches!(a.msgs()[..], [Message::Ack(_)]));
    // 20 more would make 110: refused, and none of them is applied.
    h.send(&a, announce("/a", (90..110).map(|i| format!("/a/{i}"))));
    let got = a.msgs();
    assert_eq!(error_code(&got[0]), Some(429), "{got:?}");
    assert_eq!(h.signal_usage().0, 90);
    assert_eq!(refused(&h, RefusalKind::Announce), 1);
    // Announcing the same addresses again replaces them and costs nothing more.
    h.send(&a, announce("/a", (0..90).map(|i| format!("/a/{i}"))));
    assert!(a.msgs().is_empty());
    assert_eq!(h.signal_usage().0, 90);
}

#[test]
fn announce_is_bounded_in_bytes_and_router_wide() {
    let mut h = Harness::with(RouterConfig {
        max_signal_bytes_per_session: 64 << 10,
        max_signals: 150,
        ..RouterConfig::default()
    });
    let a = h.client();
    let long = "x".repeat(1000);
    h.send(
        &a,
        announce("/a", (0..40).map(|i| format!("/a/{i}/{long}"))),
    );
    let got = a.msgs();
    assert_eq!(error_code(&got[0]), Some(429), "{got:?}");
    assert!(
        matches!(&got[0], Message::Error(e) if e.message.contains("per session")),
        "{got:?}"
    );
    assert_eq!(h.signal_usage(), (0, 0));
    let b = h.client();
    h.send(&a, announce("/a", (0..100).map(|i| format!("/a/{i}"))));
    h.send(&b, announce("/b", (0..100).map(|i| format!("/b/{i}"))));
    let got = b.msgs();
    assert!(
        matches!(&got[0], Message::Error(e) if e.message.contains("router would hold")),
        "{got:?}"
    );
    assert_eq!(h.signal_usage().0, 100);
}

#[test]
fn announced_signals_go_with_their_session() {
    let mut h = Harness::new();
    let a = h.client();
    let b = h.client();
    h.send(&a, announce("/a", (0..500).map(|i| format!("/a/{i}"))));
    h.send(&b, announce("/b", (0..10).map(|i| format!("/b/{i}"))));
    // B takes one of A's signals over by announcing it.
    h.send(&b, announce("/a", ["/a/0".to_owned()]));
    let (n, bytes) = h.signal_usage();
    assert_eq!(n, 510);
    assert!(bytes > 0);
    h.close(&a);
    assert_eq!(h.signal_usage().0, 11);
    h.close(&b);
    assert_eq!(h.signal_usage(), (0, 0));
}

#[test]
fn a_large_query_is_answered_in_slices_and_frames_that_fit() {
    let mut h = Harness::new();
    let owners: Vec<Client> = (0..5).map(|_| h.client()).collect();
    for (n, owner) in owners.iter().enumerate() {
        for chunk in 0..10 {
            let addresses =
                (0..200).map(move |i| format!("/rig/{n}/{chunk}/a-fairly-long-signal-name-{i}"));
            h.send(owner, announce("/rig", addresses));
        }
    }
    assert_eq!(h.signal_usage().0, 10_000);
    let q = h.client();
    // One call answers one slice at most: the first RESULT frames hold far fewer signals
    // than the registry.
    h.send(
        &q,
        Message::Query(Query {
            pattern: "/**".into(),
        }),
    );
    let first: usize = q
        .msgs()
        .iter()
        .map(|m| match m {
            Message::Result(r) => r.signals.len(),
            other => panic!("unexpected {other:?}"),
        })
        .sum();
    assert!(first < 2100, "{first} signals answered in one call");
    // A second QUERY and a PING sent meanwhile are answered after the first QUERY's RESULTs,
    // in order: the rest of the first answer, then all of the second, then the PONG.
    let (rest, frames) = query_all(&mut h, &q, "/rig/**");
    assert_eq!(rest.len(), 20_000 - first);
    assert!(frames > 2);
    let (narrow, _) = query_all(&mut h, &q, "/rig/3/**");
    assert_eq!(narrow.len(), 2000);
    assert!(narrow.iter().all(|s| s.address.starts_with("/rig/3/")));
    let (exact, _) = query_all(&mut h, &q, "/rig/3/4/a-fairly-long-signal-name-7");
    assert_eq!(exact.len(), 1);
    let (none, frames) = query_all(&mut h, &q, "/elsewhere/**");
    assert!(none.is_empty());
    assert_eq!(frames, 1, "an empty answer is one empty RESULT");
}

#[test]
fn frames_sent_during_a_query_are_handled_after_it_in_order() {
    let mut h = Harness::new();
    let owner = h.client();
    for chunk in 0..20 {
        h.send(
            &owner,
            announce("/s", (0..500).map(move |i| format!("/s/{chunk}/{i}"))),
        );
    }
    let q = h.client();
    h.send(
        &q,
        Message::Query(Query {
            pattern: "/**".into(),
        }),
    );
    h.send_qos(&q, set("/after/query", Value::Int(1)), Some(Qos::Confirm));
    let mut order = Vec::new();
    for _ in 0..1000 {
        for m in q.msgs() {
            order.push(match m {
                Message::Result(_) => "result",
                Message::Ack(_) => "ack",
                other => panic!("unexpected {other:?}"),
            });
        }
        if order.last() == Some(&"ack") {
            break;
        }
        h.advance(std::time::Duration::from_micros(10));
    }
    assert_eq!(order.last(), Some(&"ack"));
    assert!(order[..order.len() - 1].iter().all(|k| *k == "result"));
    assert!(order.len() > 2);
}

#[test]
fn subscription_patterns_are_bounded_in_bytes_and_freed_on_unsubscribe() {
    let mut h = Harness::with(RouterConfig {
        max_subscription_bytes: 64 << 10,
        ..RouterConfig::default()
    });
    let a = h.client();
    // Each is counted for about 24 KB (twice its length), so two fit in 64 KiB and three do not.
    let long = format!("/x/{}", "y".repeat(12_000));
    h.sub(&a, 1, &long);
    h.sub(&a, 2, &long);
    assert!(a.msgs().iter().all(|m| error_code(m).is_none()));
    h.sub(&a, 3, &long);
    let got = a.msgs();
    assert_eq!(error_code(&got[0]), Some(429), "{got:?}");
    assert_eq!(refused(&h, RefusalKind::Subscriptions), 1);
    assert_eq!(h.subscription_count(), 2);
    // Replacing a subscription's pattern costs only the difference; unsubscribing frees it.
    h.sub(&a, 2, "/short");
    h.sub(&a, 3, &long);
    assert!(a.msgs().iter().all(|m| error_code(m).is_none()));
    h.send(&a, Message::Unsubscribe(Unsubscribe { id: 1 }));
    h.sub(&a, 4, &long);
    assert!(a.msgs().iter().all(|m| error_code(m).is_none()));
    assert_eq!(h.subscription_count(), 3);
}

fn gesture(address: &str, id: u32, phase: GesturePhase, v: Value) -> Message {
    Message::Publish(Publish {
        address: address.into(),
        signal: SignalType::Gesture,
        phase,
        id: Some(id),
        payload: PublishPayload::Value(v),
        ..Default::default()
    })
}

#[test]
fn gestures_in_progress_are_bounded_and_freed_when_they_end() {
    let mut h = Harness::with(RouterConfig {
        max_gestures: 10,
        max_gesture_bytes: 64 << 10,
        ..RouterConfig::default()
    });
    let a = h.client();
    let watcher = h.client();
    h.sub(&watcher, 1, "/g/**");
    for id in 0..10 {
        h.send(&a, gesture("/g/x", id, GesturePhase::Start, Value::Null));
    }
    assert!(a.msgs().is_empty());
    h.send(&a, gesture("/g/x", 10, GesturePhase::Start, Value::Null));
    let got = a.msgs();
    assert_eq!(error_code(&got[0]), Some(429), "{got:?}");
    assert_eq!(refused(&h, RefusalKind::Gestures), 1);
    assert_eq!(
        watcher.msgs().len(),
        10,
        "the refused start was not forwarded"
    );
    // Moves held back for coalescing are bounded in bytes: past the bound they go at once.
    let big = Value::Bytes(vec![1u8; 20_000].into());
    for id in 0..10 {
        h.send(&a, gesture("/g/x", id, GesturePhase::Move, big.clone()));
        h.send(&a, gesture("/g/x", id, GesturePhase::Move, big.clone()));
    }
    // No time passes, so every move would be held back; three 20 KB moves fit in 64 KiB, the
    // other seven gestures' moves are forwarded at once instead (two each).
    assert_eq!(watcher.msgs().len(), 14);
    // Ending them forwards the three held moves and frees every place.
    for id in 0..10 {
        h.send(&a, gesture("/g/x", id, GesturePhase::End, Value::Null));
    }
    assert_eq!(watcher.msgs().len(), 13);
    h.send(&a, gesture("/g/x", 11, GesturePhase::Start, Value::Null));
    assert!(a.msgs().is_empty());
}

#[test]
fn scheduled_bundles_are_bounded_in_bytes() {
    let mut h = Harness::with(RouterConfig {
        max_scheduled_bytes: 100 << 10,
        ..RouterConfig::default()
    });
    let a = h.client();
    let later = h.now.wall + 60_000_000;
    let bundle = |n: usize| {
        Message::Bundle(Bundle {
            timestamp: Some(later),
            messages: vec![set("/b/x", Value::Bytes(vec![0u8; n].into()))],
        })
    };
    h.send(&a, bundle(40_000));
    h.send(&a, bundle(40_000));
    assert!(a.msgs().is_empty());
    h.send(&a, bundle(40_000));
    let got = a.msgs();
    assert_eq!(error_code(&got[0]), Some(429), "{got:?}");
    assert_eq!(refused(&h, RefusalKind::Scheduled), 1);
    // When they have run, their bytes are free again.
    h.advance(std::time::Duration::from_secs(61));
    h.send(&a, bundle(40_000));
    assert!(
        a.msgs().iter().all(|m| error_code(m).is_none()),
        "a bundle was refused after the earlier ones ran"
    );
}

#[test]
fn the_param_store_is_bounded_in_bytes() {
    let mut h = Harness::with(RouterConfig {
        max_param_bytes: 1 << 20,
        ..RouterConfig::default()
    });
    let a = h.client();
    let blob = Value::Bytes(vec![0u8; 60_000].into());
    // Each is counted for about 60.1 KB: 17 fit in 1 MiB, the 18th does not.
    for i in 0..18 {
        h.send_qos(
            &a,
            set(&format!("/p/{i}"), blob.clone()),
            Some(Qos::Confirm),
        );
    }
    let errors: Vec<u16> = a.msgs().iter().filter_map(error_code).collect();
    assert_eq!(
        errors,
        vec![400],
        "store refusals are ERROR 400 as in the reference"
    );
    assert_eq!(h.params().len(), 17);
    assert!(h.params().bytes() <= 1 << 20);
    assert_eq!(refused(&h, RefusalKind::Params), 1);
    // Replacing a value by a smaller one always fits, and frees room.
    h.send_qos(&a, set("/p/0", Value::Int(1)), Some(Qos::Confirm));
    h.send_qos(&a, set("/p/17", blob.clone()), Some(Qos::Confirm));
    assert!(a.msgs().iter().all(|m| error_code(m).is_none()));
    // A bundle that would pass the budget is refused whole.
    h.send(
        &a,
        Message::Bundle(Bundle {
            timestamp: None,
            messages: vec![set("/q/1", Value::Int(1)), set("/q/2", blob)],
        }),
    );
    let got = a.msgs();
    assert_eq!(error_code(&got[0]), Some(400), "{got:?}");
    assert!(h.params().get("/q/1").is_none());
}

#[test]
fn rate_filter_state_is_bounded_per_session() {
    let mut h = Harness::new();
    let a = h.client();
    let watcher = h.client();
    h.sub_with(
        &watcher,
        1,
        "/f/**",
        SubscribeOptions {
            max_rate: Some(1),
            ..Default::default()
        },
    );
    watcher.msgs();
    // Streams to more distinct addresses than the filter keeps state for: every first sample
    // is still delivered, and nothing is held back without bound.
    for i in 0..12_000 {
        h.send(
            &a,
            Message::Publish(Publish {
                address: format!("/f/{i}").into(),
                signal: SignalType::Stream,
                payload: PublishPayload::Value(Value::Float(1.0)),
                ..Default::default()
            }),
        );
    }
    assert_eq!(watcher.msgs().len(), 12_000);
}
