//! The MQTT listener against a real router, real MQTT clients (mosquitto_pub / mosquitto_sub,
//! rumqttc) and a real CLASP client.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use clasp_proto::Value;
use common::{Env, Setup, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn have_mosquitto(test: &str) -> bool {
    common::have(&["mosquitto_pub", "mosquitto_sub"], test)
}

async fn auth_env() -> Env {
    Env::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await
}

async fn mosquitto_pub(env: &Env, version: &str, args: &[&str]) -> std::process::Output {
    let mut c = common::mosquitto("mosquitto_pub", env, version);
    c.args(args);
    tokio::time::timeout(WAIT, c.output())
        .await
        .unwrap()
        .unwrap()
}

/// Runs mosquitto_sub printing `retain|qos|topic|payload` lines until `count` messages.
fn mosquitto_sub(env: &Env, version: &str, args: &[&str], count: usize) -> tokio::process::Child {
    let mut c = common::mosquitto("mosquitto_sub", env, version);
    c.args(["-F", "%r|%q|%t|%p", "-C", &count.to_string(), "-W", "30"]);
    c.args(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

async fn output(child: tokio::process::Child) -> String {
    common::output_of(child, "mosquitto_sub").await
}

#[tokio::test]
async fn retained_publish_is_a_param_for_late_mqtt_and_clasp_readers() {
    if !have_mosquitto("retained_publish_is_a_param_for_late_mqtt_and_clasp_readers") {
        return;
    }
    let env = Env::plain().await;
    let clasp = env.client(None).await;
    for (i, v) in ["mqttv311", "mqttv5"].iter().enumerate() {
        let topic = format!("sensors/{i}/temp");
        let out = mosquitto_pub(&env, v, &["-t", &topic, "-m", "21.5", "-r", "-q", "1"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A later subscriber with a `#` filter sees it as a retained message.
        let sub = mosquitto_sub(&env, v, &["-t", &format!("sensors/{i}/#"), "-q", "1"], 1);
        assert_eq!(output(sub).await.trim(), format!("1|1|{topic}|21.5"));
        // A `+` filter too.
        let sub = mosquitto_sub(&env, v, &["-t", "sensors/+/temp"], 1);
        assert!(output(sub).await.starts_with("1|0|sensors/"));
        // And a CLASP client reads it as state.
        assert_eq!(
            clasp.get(&format!("/{topic}")).await.unwrap(),
            Value::Float(21.5)
        );
        // An empty retained payload clears it for MQTT (the param becomes null).
        let out = mosquitto_pub(&env, v, &["-t", &topic, "-n", "-r"]).await;
        assert!(out.status.success());
    }
    // Non-retained publishes are events: not stored.
    let out = mosquitto_pub(&env, "mqttv311", &["-t", "events/x", "-m", "hi"]).await;
    assert!(out.status.success());
    assert!(clasp.get("/events/x").await.is_err());
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn clasp_set_reaches_mosquitto_sub_live_with_qos_1() {
    if !have_mosquitto("clasp_set_reaches_mosquitto_sub_live_with_qos_1") {
        return;
    }
    let env = Env::plain().await;
    let clasp = env.client(None).await;
    for v in ["mqttv311", "mqttv5"] {
        // -R: ignore retained (stale) messages, so only a live SET ends the wait.
        let sub = mosquitto_sub(&env, v, &["-t", "lights/+/level", "-q", "1", "-R"], 1);
        let setter = async {
            loop {
                clasp.set("/lights/7/level", 0.75).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let out = tokio::select! {
            o = output(sub) => o,
            () = setter => unreachable!(),
        };
        assert_eq!(out.trim(), "0|1|lights/7/level|0.75", "{v}");
    }
    clasp.close().await;
    env.stop().await;
}

/// Spawns a task that forwards the events of a rumqttc event loop (v4 or v5) into a channel
/// until the first error; evaluates to the receiver.
macro_rules! pump {
    ($el:ident) => {{
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let e = $el.poll().await.map_err(|e| e.to_string());
                let stop = e.is_err();
                if tx.send(e).is_err() || stop {
                    break;
                }
            }
        });
        rx
    }};
}

/// A rumqttc v4 client and its events.
fn rumqttc_v4(
    env: &Env,
    id: &str,
    token: Option<&str>,
) -> (rumqttc::AsyncClient, Events<rumqttc::Event>) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", env.mqtt.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some(t) = token {
        o.set_credentials("user", t);
    }
    let (client, mut el) = rumqttc::AsyncClient::new(o, 64);
    (client, pump!(el))
}

/// A rumqttc v5 client and its events.
fn rumqttc_v5(
    env: &Env,
    id: &str,
    token: Option<&str>,
) -> (rumqttc::v5::AsyncClient, Events<rumqttc::v5::Event>) {
    let mut o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", env.mqtt.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some(t) = token {
        o.set_credentials("user", t);
    }
    let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 64);
    (client, pump!(el))
}

type Events<E> = tokio::sync::mpsc::UnboundedReceiver<Result<E, String>>;

/// The next event matching `f`; panics if the connection fails first.
async fn next_event<E, T>(rx: &mut Events<E>, mut f: impl FnMut(&E) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await.unwrap() {
                Ok(e) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Err(e) => panic!("connection failed: {e}"),
            }
        }
    })
    .await
    .unwrap()
}

/// The next incoming v4 packet matching `f`.
async fn next_v4<T>(
    rx: &mut Events<rumqttc::Event>,
    mut f: impl FnMut(&rumqttc::Packet) -> Option<T>,
) -> T {
    next_event(rx, |e| match e {
        rumqttc::Event::Incoming(p) => f(p),
        _ => None,
    })
    .await
}

/// The next incoming v5 packet matching `f`.
async fn next_v5<T>(
    rx: &mut Events<rumqttc::v5::Event>,
    mut f: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
) -> T {
    next_event(rx, |e| match e {
        rumqttc::v5::Event::Incoming(p) => f(p),
        _ => None,
    })
    .await
}

/// The error that ends the connection (a refused CONNECT).
async fn first_error<E>(rx: &mut Events<E>) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Err(e) = rx.recv().await.unwrap() {
                return e;
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn rumqttc_v4_round_trip_and_unsubscribe_stops_delivery() {
    use rumqttc::{Packet, QoS};
    let env = Env::plain().await;
    let clasp = env.client(None).await;
    let (c, mut rx) = rumqttc_v4(&env, "rv4", None);
    next_v4(&mut rx, |p| matches!(p, Packet::ConnAck(_)).then_some(())).await;
    c.subscribe("room/#", QoS::AtLeastOnce).await.unwrap();
    let codes = next_v4(&mut rx, |p| match p {
        Packet::SubAck(s) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        codes,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // Our own retained publish comes back (CLASP echoes SETs), with QoS 1.
    c.publish("room/a", QoS::AtLeastOnce, true, r#"{"on":true,"level":3}"#)
        .await
        .unwrap();
    let (topic, qos, payload) = next_v4(&mut rx, |p| match p {
        Packet::Publish(p) => Some((p.topic.clone(), p.qos, p.payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!((topic.as_str(), qos), ("room/a", QoS::AtLeastOnce));
    assert_eq!(&payload[..], br#"{"on":true,"level":3}"#);
    assert_eq!(
        clasp.get("/room/a").await.unwrap(),
        Value::Map(vec![
            ("on".into(), Value::Bool(true)),
            ("level".into(), Value::Int(3))
        ])
    );
    // CLASP events reach the subscriber as non-retained messages.
    clasp.emit("/room/bell", "ding").await.unwrap();
    let (topic, retain, payload) = next_v4(&mut rx, |p| match p {
        Packet::Publish(p) => Some((p.topic.clone(), p.retain, p.payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        (topic.as_str(), retain, &payload[..]),
        ("room/bell", false, &b"ding"[..])
    );

    // UNSUBSCRIBE removes the CLASP subscription: a later SET is not delivered, while a SET
    // on a still-subscribed topic is.
    c.subscribe("other", QoS::AtMostOnce).await.unwrap();
    next_v4(&mut rx, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    c.unsubscribe("room/#").await.unwrap();
    next_v4(&mut rx, |p| matches!(p, Packet::UnsubAck(_)).then_some(())).await;
    clasp.set("/room/a", 1).await.unwrap();
    clasp.set("/other", 2).await.unwrap();
    let topic = next_v4(&mut rx, |p| match p {
        Packet::Publish(p) => Some(p.topic.clone()),
        _ => None,
    })
    .await;
    assert_eq!(topic, "other", "nothing from the removed subscription");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn rumqttc_v5_round_trip_with_readonly_token_refused() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
    let env = auth_env().await;
    let (c, mut rx) = rumqttc_v5(&env, "rv5", Some(&env.full));
    next_v5(&mut rx, |p| matches!(p, Packet::ConnAck(_)).then_some(())).await;
    c.subscribe("v5/+", QoS::AtLeastOnce).await.unwrap();
    let codes = next_v5(&mut rx, |p| match p {
        Packet::SubAck(s) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    c.publish("v5/x", QoS::AtLeastOnce, false, "42")
        .await
        .unwrap();
    let reason = next_v5(&mut rx, |p| match p {
        Packet::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, PubAckReason::Success);

    // Read-only token: connects, may subscribe, but its publish is refused with 0x87 and
    // nobody receives it.
    let (ro, mut ro_rx) = rumqttc_v5(&env, "ro5", Some(&env.readonly));
    next_v5(&mut ro_rx, |p| {
        matches!(p, Packet::ConnAck(_)).then_some(())
    })
    .await;
    ro.publish("v5/y", QoS::AtLeastOnce, true, "1")
        .await
        .unwrap();
    let reason = next_v5(&mut ro_rx, |p| match p {
        Packet::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, PubAckReason::NotAuthorized);
    let clasp = env.client(Some(&env.full)).await;
    assert!(clasp.get("/v5/y").await.is_err(), "refused SET not stored");
    clasp.set("/v5/z", true).await.unwrap();
    let topic = next_v5(&mut rx, |p| match p {
        Packet::Publish(p) => Some(String::from_utf8(p.topic.to_vec()).unwrap()),
        _ => None,
    })
    .await;
    assert_eq!(topic, "v5/z", "the refused publish was not delivered");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn bad_tokens_get_connack_refusals_and_readonly_subscribe_is_scoped() {
    let env = auth_env().await;
    // 3.1.1: bad token → return code 4.
    let (_c, mut rx) = rumqttc_v4(&env, "bad4", Some("cpsk_not-a-real-token"));
    let err = first_error(&mut rx).await;
    assert!(err.contains("BadUserNamePassword"), "{err}");
    // 5: bad token → 0x86; no token at all → also refused.
    for token in [Some("cpsk_nope"), None] {
        let (_c, mut rx) = rumqttc_v5(&env, "bad5", token);
        let err = first_error(&mut rx).await;
        assert!(err.contains("BadUserNamePassword"), "{err}");
    }
    // A token restricted to reading /lights/** may not subscribe elsewhere.
    if have_mosquitto("bad_tokens_get_connack_refusals (mosquitto part)") {
        let out = mosquitto_pub(
            &env,
            "mqttv311",
            &["-t", "a", "-m", "1", "-u", "x", "-P", "cpsk_wrong"],
        )
        .await;
        assert!(!out.status.success(), "bad token refused");
        let out = mosquitto_pub(
            &env,
            "mqttv5",
            &["-t", "a", "-m", "1", "-P", &env.full, "-q", "1"],
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.stop().await;
}

#[tokio::test]
async fn read_scoped_subscription_refused_outside_its_scope() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    let env = auth_env().await;
    // A token that may read only /lights/**.
    let lights = env.add_token(&["read:/lights/**"]);
    // The router polls the token file: retry until the token is accepted.
    let (c, mut rx) = loop {
        let (c, mut rx) = rumqttc_v5(&env, "lights", Some(&lights));
        let ok = tokio::time::timeout(WAIT, async {
            loop {
                match rx.recv().await.unwrap() {
                    Ok(rumqttc::v5::Event::Incoming(Packet::ConnAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap();
        if ok {
            break (c, rx);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    c.subscribe_many([
        rumqttc::v5::mqttbytes::v5::Filter::new("lights/#", QoS::AtLeastOnce),
        rumqttc::v5::mqttbytes::v5::Filter::new("secret/#", QoS::AtLeastOnce),
    ])
    .await
    .unwrap();
    let codes = next_v5(&mut rx, |p| match p {
        Packet::SubAck(s) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized,
        ]
    );
    let clasp = env.client(Some(&env.full)).await;
    clasp.set("/secret/a", 1).await.unwrap();
    clasp.set("/lights/a", 2).await.unwrap();
    let topic = next_v5(&mut rx, |p| match p {
        Packet::Publish(p) => Some(String::from_utf8(p.topic.to_vec()).unwrap()),
        _ => None,
    })
    .await;
    assert_eq!(topic, "lights/a");
    clasp.close().await;
    env.stop().await;
}

fn connect_packet(v5: bool, keep_alive: u16) -> BytesMut {
    let mut b = BytesMut::new();
    if v5 {
        let c = rumqttc::v5::mqttbytes::v5::Connect {
            keep_alive,
            client_id: "raw".into(),
            clean_start: true,
            properties: None,
        };
        rumqttc::v5::mqttbytes::v5::Packet::Connect(c, None, None)
            .write(&mut b, None)
            .unwrap();
    } else {
        let mut c = rumqttc::mqttbytes::v4::Connect::new("raw");
        c.keep_alive = keep_alive;
        rumqttc::mqttbytes::v4::Packet::Connect(c)
            .write(&mut b, 1 << 20)
            .unwrap();
    }
    b
}

/// Reads until EOF; returns everything read.
async fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut all))
        .await
        .expect("connection not closed")
        .unwrap_or(0);
    all
}

#[tokio::test]
async fn malformed_oversized_and_silent_clients_are_disconnected_and_others_still_served() {
    let env = Env::plain().await;
    // Garbage instead of CONNECT: closed without an answer.
    let mut s = TcpStream::connect(env.mqtt).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(read_to_eof(&mut s).await.is_empty());
    // 3.1.1: CONNECT, then an invalid packet type: CONNACK, then closed.
    let mut s = TcpStream::connect(env.mqtt).await.unwrap();
    s.write_all(&connect_packet(false, 0)).await.unwrap();
    s.write_all(&[0xF0, 0x00]).await.unwrap();
    assert_eq!(read_to_eof(&mut s).await, [0x20, 0x02, 0x00, 0x00]);
    // 5: CONNECT, then a PUBLISH announcing 1 MiB: DISCONNECT 0x95 (packet too large).
    let mut s = TcpStream::connect(env.mqtt).await.unwrap();
    s.write_all(&connect_packet(true, 0)).await.unwrap();
    s.write_all(&[0x30, 0x80, 0x80, 0x40]).await.unwrap();
    let got = read_to_eof(&mut s).await;
    assert_eq!(got[0], 0x20, "CONNACK first");
    let disconnect = &got[2 + usize::from(got[1])..];
    assert_eq!(&disconnect[..3], &[0xE0, 0x01, 0x95][..], "{got:?}");
    // 5: a malformed SUBSCRIBE (filter length past the end): DISCONNECT 0x81.
    let mut s = TcpStream::connect(env.mqtt).await.unwrap();
    s.write_all(&connect_packet(true, 0)).await.unwrap();
    s.write_all(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x09])
        .await
        .unwrap();
    let got = read_to_eof(&mut s).await;
    let disconnect = &got[2 + usize::from(got[1])..];
    assert_eq!(&disconnect[..3], &[0xE0, 0x01, 0x81][..], "{got:?}");
    // Keep-alive 1 s and then silence: closed after 1.5 s (the wait is generous).
    let mut s = TcpStream::connect(env.mqtt).await.unwrap();
    s.write_all(&connect_packet(false, 1)).await.unwrap();
    assert_eq!(read_to_eof(&mut s).await, [0x20, 0x02, 0x00, 0x00]);

    // The listener still serves a well-behaved client.
    let (c, mut rx) = rumqttc_v4(&env, "after", None);
    next_v4(&mut rx, |p| {
        matches!(p, rumqttc::Packet::ConnAck(_)).then_some(())
    })
    .await;
    c.publish("still/here", rumqttc::QoS::AtLeastOnce, true, "yes")
        .await
        .unwrap();
    next_v4(&mut rx, |p| {
        matches!(p, rumqttc::Packet::PubAck(_)).then_some(())
    })
    .await;
    let clasp = env.client(None).await;
    assert_eq!(
        clasp.get("/still/here").await.unwrap(),
        Value::String("yes".into())
    );
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_over() {
    let env = Env::plain().await;
    // Both raw MQTT 5 connections use client id "raw".
    let mut a = TcpStream::connect(env.mqtt).await.unwrap();
    a.write_all(&connect_packet(true, 0)).await.unwrap();
    let mut connack = [0u8; 2];
    a.read_exact(&mut connack).await.unwrap();
    let mut rest = vec![0u8; usize::from(connack[1])];
    a.read_exact(&mut rest).await.unwrap();
    assert_eq!((connack[0], rest[1]), (0x20, 0x00), "accepted");
    let mut b = TcpStream::connect(env.mqtt).await.unwrap();
    b.write_all(&connect_packet(true, 0)).await.unwrap();
    // The first one is told (DISCONNECT 0x8E, session taken over) and closed.
    assert_eq!(read_to_eof(&mut a).await, [0xE0, 0x01, 0x8E]);
    // The second one stays connected: PINGREQ is answered.
    b.write_all(&[0xC0, 0x00]).await.unwrap();
    let mut got = vec![0u8; 2];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(got[0], 0x20, "CONNACK");
    let mut rest = vec![0u8; usize::from(got[1])];
    b.read_exact(&mut rest).await.unwrap();
    let mut pong = [0u8; 2];
    b.read_exact(&mut pong).await.unwrap();
    assert_eq!(pong, [0xD0, 0x00]);
    env.stop().await;
}
