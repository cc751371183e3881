//! The OSC listener against a real router, driven by real UDP sockets speaking OSC (rosc) and
//! observed through a real CLASP client over WebSocket.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use clasp_client::{Client, ReconnectPolicy, Value};
use clasp_osc::time::unix_micros_to_ntp;
use clasp_osc::{InboundMode, OscConfig};
use clasp_router::server::ServerConfig;
use common::*;
use rosc::{OscArray, OscColor, OscMidiMessage, OscType};

#[tokio::test]
async fn a_message_sets_a_param_seen_by_get_and_subscription() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    let mut sub = c.subscribe("/synth/**").await.unwrap();
    let sock = udp().await;
    send(
        &sock,
        rig.osc,
        &msg("/synth/volume", vec![OscType::Float(0.5)]),
    )
    .await;
    let u = next(&mut sub).await;
    assert_eq!(&*u.address, "/synth/volume");
    assert_eq!(u.value, Value::Float(0.5));
    assert_eq!(c.get("/synth/volume").await.unwrap(), Value::Float(0.5));
    // The writer is a real session named after the source address.
    let p = c.get_param("/synth/volume").await.unwrap();
    assert!(p.writer.is_some());
    assert_eq!(rig.stats().peers, 1);
    assert_eq!(rig.stats().messages, 1);
    rig.stop().await;
}

#[tokio::test]
async fn a_namespace_prefixes_addresses() {
    let rig = Rig::start(OscConfig {
        namespace: "/osc".into(),
        ..OscConfig::default()
    })
    .await;
    let c = rig.client().await;
    let sock = udp().await;
    send(&sock, rig.osc, &msg("/synth/volume", vec![OscType::Int(3)])).await;
    wait_value(&c, "/osc/synth/volume", &Value::Int(3)).await;
    assert!(c.get("/synth/volume").await.is_err());
    rig.stop().await;
}

#[tokio::test]
async fn every_argument_type_maps_to_a_value() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    let sock = udp().await;
    let at = 1_700_000_000_123_456u64;
    let cases: Vec<(&str, Vec<OscType>, Value)> = vec![
        ("/t/int", vec![OscType::Int(-7)], Value::Int(-7)),
        ("/t/long", vec![OscType::Long(1 << 40)], Value::Int(1 << 40)),
        ("/t/float", vec![OscType::Float(0.25)], Value::Float(0.25)),
        ("/t/double", vec![OscType::Double(0.1)], Value::Float(0.1)),
        (
            "/t/string",
            vec![OscType::String("hi".into())],
            Value::String("hi".into()),
        ),
        (
            "/t/blob",
            vec![OscType::Blob(vec![1, 2, 3])],
            Value::Bytes(vec![1u8, 2, 3].into()),
        ),
        (
            "/t/char",
            vec![OscType::Char('x')],
            Value::String("x".into()),
        ),
        (
            "/t/color",
            vec![OscType::Color(OscColor {
                red: 1,
                green: 2,
                blue: 3,
                alpha: 255,
            })],
            Value::Array(vec![
                Value::Int(1),
                Value::Int(2),
                Value::Int(3),
                Value::Int(255),
            ]),
        ),
        (
            "/t/midi",
            vec![OscType::Midi(OscMidiMessage {
                port: 0,
                status: 0x90,
                data1: 60,
                data2: 127,
            })],
            Value::Array(vec![
                Value::Int(0),
                Value::Int(0x90),
                Value::Int(60),
                Value::Int(127),
            ]),
        ),
        ("/t/true", vec![OscType::Bool(true)], Value::Bool(true)),
        ("/t/false", vec![OscType::Bool(false)], Value::Bool(false)),
        ("/t/nil", vec![OscType::Nil], Value::Null),
        ("/t/inf", vec![OscType::Inf], Value::Float(f64::INFINITY)),
        (
            "/t/time",
            vec![OscType::Time(unix_micros_to_ntp(at))],
            Value::Int(at as i64),
        ),
        (
            "/t/array",
            vec![OscType::Array(OscArray {
                content: vec![OscType::Int(1), OscType::String("a".into())],
            })],
            Value::Array(vec![Value::Int(1), Value::String("a".into())]),
        ),
        (
            "/t/several",
            vec![OscType::Int(1), OscType::Float(2.5), OscType::Bool(true)],
            Value::Array(vec![Value::Int(1), Value::Float(2.5), Value::Bool(true)]),
        ),
        ("/t/none", vec![], Value::Null),
    ];
    for (addr, args, _) in &cases {
        send(&sock, rig.osc, &msg(addr, args.clone())).await;
    }
    for (addr, _, expected) in &cases {
        wait_value(&c, addr, expected).await;
    }
    rig.stop().await;
}

#[tokio::test]
async fn a_bundle_tagged_immediately_is_applied_at_once_and_whole() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    let sock = udp().await;
    let b = bundle(
        NOW,
        vec![
            msg("/b/one", vec![OscType::Int(1)]),
            msg("/b/two", vec![OscType::Int(2)]),
        ],
    );
    send(&sock, rig.osc, &b).await;
    wait_value(&c, "/b/two", &Value::Int(2)).await;
    assert_eq!(c.get("/b/one").await.unwrap(), Value::Int(1));
    assert_eq!(rig.stats().bundles, 1);
    assert_eq!(rig.stats().scheduled, 0);
    rig.stop().await;
}

#[tokio::test]
async fn a_future_bundle_is_applied_no_earlier_than_its_time_tag() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    let mut sub = c.subscribe("/late/**").await.unwrap();
    let sock = udp().await;
    let target = wall_us() + 300_000;
    let b = bundle(
        unix_micros_to_ntp(target),
        vec![
            msg("/late/a", vec![OscType::Int(1)]),
            msg("/late/b", vec![OscType::Int(2)]),
        ],
    );
    send(&sock, rig.osc, &b).await;
    rig.wait_stats("the bundle to be scheduled", |s| s.scheduled == 1)
        .await;
    let first = next(&mut sub).await;
    let arrived = wall_us();
    assert!(
        arrived >= target,
        "applied {} µs before its time tag",
        target - arrived
    );
    assert_eq!(&*first.address, "/late/a");
    let second = next(&mut sub).await;
    assert_eq!(&*second.address, "/late/b", "elements run in order");
    rig.stop().await;
}

#[tokio::test]
async fn nested_bundles_run_in_order_and_never_before_their_parent() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    // Immediate nesting: everything applies, inner bundles included.
    let sock = udp().await;
    let b = bundle(
        NOW,
        vec![
            msg("/n/a", vec![OscType::Int(1)]),
            bundle(
                NOW,
                vec![
                    msg("/n/b", vec![OscType::Int(2)]),
                    bundle(NOW, vec![msg("/n/c", vec![OscType::Int(3)])]),
                ],
            ),
            msg("/n/d", vec![OscType::Int(4)]),
        ],
    );
    send(&sock, rig.osc, &b).await;
    for (a, v) in [("/n/a", 1), ("/n/b", 2), ("/n/c", 3), ("/n/d", 4)] {
        wait_value(&c, a, &Value::Int(v)).await;
    }

    // A future parent: a child tagged "immediately" or earlier runs at the parent's time, a
    // later child at its own.
    let mut sub = c.subscribe("/f/**").await.unwrap();
    let parent = wall_us() + 300_000;
    let later = parent + 200_000;
    let b = bundle(
        unix_micros_to_ntp(parent),
        vec![
            bundle(NOW, vec![msg("/f/immediate", vec![OscType::Int(1)])]),
            bundle(
                unix_micros_to_ntp(parent - 250_000),
                vec![msg("/f/earlier", vec![OscType::Int(2)])],
            ),
            bundle(
                unix_micros_to_ntp(later),
                vec![msg("/f/later", vec![OscType::Int(3)])],
            ),
        ],
    );
    send(&sock, rig.osc, &b).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let u = next(&mut sub).await;
        seen.push((u.address.to_string(), wall_us()));
    }
    let names: Vec<&str> = seen.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, ["/f/immediate", "/f/earlier", "/f/later"]);
    assert!(seen[0].1 >= parent && seen[1].1 >= parent, "{seen:?}");
    assert!(seen[2].1 >= later, "{seen:?}");
    rig.stop().await;
}

#[tokio::test]
async fn bundles_too_far_ahead_are_dropped_and_counted() {
    let rig = Rig::start(OscConfig {
        max_schedule_ahead: Duration::from_secs(60),
        ..OscConfig::default()
    })
    .await;
    let c = rig.client().await;
    let sock = udp().await;
    let far = unix_micros_to_ntp(wall_us() + 3_600_000_000);
    send(
        &sock,
        rig.osc,
        &bundle(far, vec![msg("/far", vec![OscType::Int(1)])]),
    )
    .await;
    send(&sock, rig.osc, &msg("/near", vec![OscType::Int(1)])).await;
    wait_value(&c, "/near", &Value::Int(1)).await;
    assert_eq!(rig.stats().schedule_rejected, 1);
    assert!(c.get("/far").await.is_err());
    rig.stop().await;
}

#[tokio::test]
async fn a_client_set_is_fed_back_to_a_static_peer() {
    let peer = udp().await;
    let rig = Rig::start(OscConfig {
        namespace: "/osc".into(),
        feedback: vec![peer.local_addr().unwrap()],
        ..OscConfig::default()
    })
    .await;
    rig.wait_stats("the static feedback session", |s| s.peers == 1)
        .await;
    let c = rig.client().await;
    c.set("/osc/fx/gain", 0.25).await.unwrap();
    expect(&peer, "/fx/gain", vec![OscType::Float(0.25)]).await;
    c.set("/osc/fx/name", "hall").await.unwrap();
    c.set("/osc/fx/big", 1i64 << 40).await.unwrap();
    c.set("/outside", 1).await.unwrap();
    c.set(
        "/osc/fx/list",
        Value::Array(vec![Value::Int(1), Value::Bool(false), Value::Null]),
    )
    .await
    .unwrap();
    expect(&peer, "/fx/name", vec![OscType::String("hall".into())]).await;
    expect(&peer, "/fx/big", vec![OscType::Long(1 << 40)]).await;
    // `/outside` is not under the namespace: never sent.
    expect(
        &peer,
        "/fx/list",
        vec![OscType::Int(1), OscType::Bool(false), OscType::Nil],
    )
    .await;
    // An event with a value is fed back too.
    c.emit("/osc/fx/hit", 7).await.unwrap();
    expect(&peer, "/fx/hit", vec![OscType::Int(7)]).await;
    rig.stop().await;
}

#[tokio::test]
async fn a_peer_registers_gets_changes_not_its_own_and_unregisters() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    c.set_confirmed("/mix/a", 1).await.unwrap();
    let peer = verified(&rig).await;
    control(&peer, rig.osc, "/clasp/subscribe", "/mix/**").await;
    // The current value comes first.
    expect(&peer, "/mix/a", vec![OscType::Int(1)]).await;
    c.set("/mix/a", 2).await.unwrap();
    expect(&peer, "/mix/a", vec![OscType::Int(2)]).await;

    // The peer's own change is not echoed back to it; the next change is.
    send(&peer, rig.osc, &msg("/mix/own", vec![OscType::Int(5)])).await;
    wait_value(&c, "/mix/own", &Value::Int(5)).await;
    c.set("/mix/other", 6).await.unwrap();
    expect(&peer, "/mix/other", vec![OscType::Int(6)]).await;
    assert_eq!(rig.stats().echo_suppressed, 1);

    // Unsubscribe, then register a probe pattern; a change under /mix after that must not
    // arrive before the probe's.
    c.set_confirmed("/probe/x", 0).await.unwrap();
    control(&peer, rig.osc, "/clasp/unsubscribe", "/mix/**").await;
    control(&peer, rig.osc, "/clasp/subscribe", "/probe/**").await;
    expect(&peer, "/probe/x", vec![OscType::Int(0)]).await;
    c.set("/mix/a", 3).await.unwrap();
    c.set("/probe/x", 1).await.unwrap();
    expect(&peer, "/probe/x", vec![OscType::Int(1)]).await;
    rig.stop().await;
}

#[tokio::test]
async fn malformed_datagrams_are_counted_and_the_listener_keeps_working() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    let bad = udp().await;
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"hello".to_vec(),
        b"/a\0\0,i\0\0\0\0".to_vec(),           // truncated int
        b"/a\0\0,Q\0\0\0\0\0\0".to_vec(),       // unknown type tag
        b"/a\0\0,[[[[i\0\0\0\0\0\x01".to_vec(), // unclosed arrays
        b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\x40/a\0\0".to_vec(), // element past the end
        [b"/a\0\0,".as_slice(), &[b'['; 500], &[b']'; 500], &[0u8; 3]].concat(),
    ];
    // Bundles nested far deeper than allowed.
    let mut deep = msg("/deep", vec![OscType::Int(1)]);
    for _ in 0..200 {
        deep = bundle(NOW, vec![deep]);
    }
    garbage.push(rosc::encoder::encode(&deep).unwrap());
    // A valid bundle followed by trailing junk is refused whole.
    let mut trailing =
        rosc::encoder::encode(&bundle(NOW, vec![msg("/junk", vec![OscType::Int(1)])])).unwrap();
    trailing.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3]);
    garbage.push(trailing);
    // Random bytes, and random corruptions of a valid message.
    let valid = rosc::encoder::encode(&msg(
        "/ok",
        vec![OscType::Int(1), OscType::String("s".into())],
    ))
    .unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let len = (next() % 64) as usize;
        garbage.push((0..len).map(|_| next() as u8).collect());
        let mut v = valid.clone();
        let i = (next() as usize) % v.len();
        v[i] = next() as u8;
        garbage.push(v);
    }
    // Paced, so that the socket's receive buffer never overflows (UDP would drop datagrams).
    for (i, g) in garbage.iter().enumerate() {
        bad.send_to(g, rig.osc).await.unwrap();
        if i % 16 == 15 {
            let n = i as u64 + 1;
            rig.wait_stats("the datagrams to be read", |s| s.datagrams == n)
                .await;
        }
    }
    let n = garbage.len() as u64;
    let s = rig
        .wait_stats("every datagram to be read", |s| s.datagrams == n)
        .await;
    assert!(s.decode_errors >= 9, "{s:?}");
    assert!(c.get("/junk").await.is_err());
    assert!(c.get("/deep").await.is_err());
    // Still serving.
    let good = udp().await;
    send(
        &good,
        rig.osc,
        &msg("/still/alive", vec![OscType::Bool(true)]),
    )
    .await;
    wait_value(&c, "/still/alive", &Value::Bool(true)).await;
    rig.stop().await;
}

#[tokio::test]
async fn max_peers_is_enforced() {
    let rig = Rig::start(OscConfig {
        max_peers: 2,
        ..OscConfig::default()
    })
    .await;
    let c = rig.client().await;
    let socks = [udp().await, udp().await, udp().await];
    for (i, s) in socks.iter().enumerate().take(2) {
        send(
            s,
            rig.osc,
            &msg(&format!("/peer/{i}"), vec![OscType::Int(1)]),
        )
        .await;
        wait_value(&c, &format!("/peer/{i}"), &Value::Int(1)).await;
    }
    let before = rig.sessions();
    send(&socks[2], rig.osc, &msg("/peer/2", vec![OscType::Int(1)])).await;
    let s = rig
        .wait_stats("the third peer to be refused", |s| s.peers_refused == 1)
        .await;
    assert_eq!(s.peers, 2);
    assert_eq!(
        rig.sessions(),
        before,
        "no router session for the refused peer"
    );
    assert!(c.get("/peer/2").await.is_err());
    // Known peers keep working.
    send(&socks[0], rig.osc, &msg("/peer/0", vec![OscType::Int(2)])).await;
    wait_value(&c, "/peer/0", &Value::Int(2)).await;
    rig.stop().await;
}

#[tokio::test]
async fn idle_sessions_are_reaped_and_free_their_slot() {
    let rig = Rig::start(OscConfig {
        session_timeout: Duration::from_millis(300),
        max_peers: 1,
        ..OscConfig::default()
    })
    .await;
    let c = rig.client().await;
    let base = rig.sessions();
    let peer = udp().await;
    send(&peer, rig.osc, &msg("/idle/x", vec![OscType::Int(1)])).await;
    wait_value(&c, "/idle/x", &Value::Int(1)).await;
    assert_eq!(rig.stats().peers_opened, 1);
    let s = rig
        .wait_stats("the idle session to be reaped", |s| s.peers_reaped == 1)
        .await;
    assert_eq!(s.peers, 0);
    assert_eq!(rig.sessions(), base, "the CLASP session was closed");
    // The slot is free again: another source gets in.
    let other = udp().await;
    send(&other, rig.osc, &msg("/idle/y", vec![OscType::Int(2)])).await;
    wait_value(&c, "/idle/y", &Value::Int(2)).await;
    rig.stop().await;
}

#[tokio::test]
async fn the_token_scopes_limit_what_osc_peers_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let token = clasp_router::server::tokens::generate();
    let admin = clasp_router::server::tokens::generate();
    let file = dir.path().join("tokens.txt");
    std::fs::write(
        &file,
        format!("{token} write:/synth/**\n{admin} admin:/**\n"),
    )
    .unwrap();
    let mut config = ServerConfig::default();
    config.auth.token_file = Some(file);
    let rig = Rig::start_with(
        config,
        OscConfig {
            token: Some(token),
            ..OscConfig::default()
        },
    )
    .await;
    let c = Client::builder(&rig.url)
        .token(admin)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let peer = verified(&rig).await;
    send(&peer, rig.osc, &msg("/lights/dim", vec![OscType::Int(1)])).await;
    send(&peer, rig.osc, &msg("/synth/volume", vec![OscType::Int(1)])).await;
    wait_value(&c, "/synth/volume", &Value::Int(1)).await;
    rig.wait_stats("the refused write", |s| s.router_errors >= 1)
        .await;
    assert!(c.get("/lights/dim").await.is_err());
    // Reading outside /synth is not granted: registering for it is refused with an OSC
    // error; registering under /synth works (write implies read).
    control(&peer, rig.osc, "/clasp/subscribe", "/lights/**").await;
    let m = recv(&peer).await;
    assert_eq!(m.addr, "/clasp/error");
    assert_eq!(m.args[0], OscType::Int(301));
    control(&peer, rig.osc, "/clasp/subscribe", "/synth/**").await;
    expect(&peer, "/synth/volume", vec![OscType::Int(1)]).await;
    rig.stop().await;
}

#[tokio::test]
async fn publish_mode_sends_events() {
    let rig = Rig::start(OscConfig {
        mode: InboundMode::Publish,
        ..OscConfig::default()
    })
    .await;
    let c = rig.client().await;
    let mut sub = c.subscribe("/cue/**").await.unwrap();
    // Subscriptions start asynchronously: a confirmed write from the same client orders after.
    c.set_confirmed("/cue/ready", true).await.unwrap();
    let u = next(&mut sub).await;
    assert_eq!(&*u.address, "/cue/ready");
    let sock = udp().await;
    send(&sock, rig.osc, &msg("/cue/go", vec![OscType::Int(9)])).await;
    let u = next(&mut sub).await;
    assert_eq!(&*u.address, "/cue/go");
    assert_eq!(u.value, Value::Int(9));
    assert_eq!(u.kind, clasp_client::SignalType::Event);
    assert!(c.get("/cue/go").await.is_err(), "events are not stored");
    rig.stop().await;
}
