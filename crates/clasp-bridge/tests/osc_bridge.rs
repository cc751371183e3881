//! The OSC bridge with a UDP socket speaking OSC (rosc) as the app: both ways, bundles with
//! future time tags scheduled by the router, address patterns against known params, garbage
//! counted.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clasp_bridge::RouterLink;
use clasp_bridge::osc::bridge::OscStats;
use clasp_bridge::osc::{OscBridge, OscBridgeConfig};
use clasp_client::{Client, ReconnectPolicy, Value};
use clasp_osc::time::unix_micros_to_ntp;
use futures_util::{FutureExt, StreamExt};
use rosc::{OscBundle, OscMessage, OscPacket, OscType};
use support::{Router, within};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

async fn send(app: &UdpSocket, to: std::net::SocketAddr, p: OscPacket) {
    app.send_to(&rosc::encoder::encode(&p).unwrap(), to)
        .await
        .unwrap();
}

fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

async fn recv(app: &UdpSocket) -> OscMessage {
    let mut buf = [0u8; 2048];
    let (n, _) = within("an OSC message from the bridge", app.recv_from(&mut buf))
        .await
        .unwrap();
    match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
        OscPacket::Message(m) => m,
        other => panic!("{other:?}"),
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::test]
async fn an_osc_app_both_ways() {
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    // Params the app will address with a pattern later.
    c.set_confirmed("/osc/mixer/1/mute", false).await.unwrap();
    c.set_confirmed("/osc/mixer/2/mute", false).await.unwrap();
    let app = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = OscBridgeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        targets: vec![app.local_addr().unwrap()],
        namespace: "/osc".into(),
        float64: false,
        oscquery: None,
    };
    let link = RouterLink::connect(&r.url, "osc", None).await.unwrap();
    let bridge = OscBridge::start(link, cfg).await.unwrap();
    let port = bridge.local_addr().unwrap();
    let stats = Arc::new(OscStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(stats.clone(), stop.clone()));
    let mut sub = c.subscribe("/osc/1/**").await.unwrap();
    c.ping().await.unwrap();

    // The app moves a fader.
    send(&app, port, msg("/1/fader1", vec![OscType::Float(0.5)])).await;
    let u = within("the fader", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/osc/1/fader1", &Value::Float(0.5))
    );
    // Someone else moves it: the app hears of it (and not of its own move first).
    c.set_confirmed("/osc/1/fader1", 0.25).await.unwrap();
    let m = recv(&app).await;
    assert_eq!(
        (m.addr.as_str(), m.args.as_slice()),
        ("/1/fader1", &[OscType::Float(0.25)][..])
    );

    // A bundle due 300 ms from now: both values arrive together, not before.
    let at = now_us() + 300_000;
    let started = Instant::now();
    send(
        &app,
        port,
        OscPacket::Bundle(OscBundle {
            timetag: unix_micros_to_ntp(at),
            content: vec![
                msg("/1/a", vec![OscType::Int(1)]),
                msg("/1/b", vec![OscType::Int(2)]),
            ],
        }),
    )
    .await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let u = within("the scheduled bundle", sub.next()).await.unwrap();
        got.push((u.address.to_string(), u.value));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(got.contains(&("/osc/1/a".into(), Value::Int(1))), "{got:?}");
    assert!(got.contains(&("/osc/1/b".into(), Value::Int(2))), "{got:?}");

    // An address pattern sets every known param it matches.
    let mut mutes = c.subscribe("/osc/mixer/**").await.unwrap();
    c.ping().await.unwrap();
    while let Some(Some(_)) = mutes.next().now_or_never() {}
    send(&app, port, msg("/mixer/*/mute", vec![OscType::Bool(true)])).await;
    let mut set = Vec::new();
    while set.len() < 2 {
        let u = within("muted", mutes.next()).await.unwrap();
        assert_eq!(u.value, Value::Bool(true));
        set.push(u.address.to_string());
    }
    set.sort();
    assert_eq!(set, ["/osc/mixer/1/mute", "/osc/mixer/2/mute"]);

    // Not OSC: counted, nothing else.
    app.send_to(b"hello", port).await.unwrap();
    send(&app, port, msg("/1/last", vec![])).await;
    let u = within("after the garbage", sub.next()).await.unwrap();
    assert_eq!(&*u.address, "/osc/1/last");
    assert_eq!(stats.skipped.load(Relaxed), 1);
    assert_eq!(stats.messages_in.load(Relaxed), 5);
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// `curl -s -w '\n%{http_code}' URL`: (status, body as JSON, or null).
async fn curl(url: String) -> (u16, serde_json::Value) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or_default(),
    )
}

#[tokio::test]
async fn oscquery_serves_the_tree_and_streams_listened_values() {
    use futures_util::SinkExt;
    use serde_json::json;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    c.set_confirmed("/osc/mixer/1/level", 0.5).await.unwrap();
    c.set_confirmed("/osc/mixer/2/mute", true).await.unwrap();
    let cfg = OscBridgeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        targets: Vec::new(),
        namespace: "/osc".into(),
        float64: false,
        oscquery: Some("127.0.0.1:0".parse().unwrap()),
    };
    let link = RouterLink::connect(&r.url, "osc", None).await.unwrap();
    let bridge = OscBridge::start(link, cfg).await.unwrap();
    let osc_port = bridge.local_addr().unwrap().port();
    let q = bridge.oscquery_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(Arc::new(OscStats::default()), stop.clone()));
    let base = format!("http://{q}");

    // The whole tree, a node, one attribute, host info, and the errors.
    let (code, tree) = curl(format!("{base}/")).await;
    assert_eq!(code, 200);
    let level = &tree["CONTENTS"]["mixer"]["CONTENTS"]["1"]["CONTENTS"]["level"];
    assert_eq!(
        level,
        &json!({"FULL_PATH": "/mixer/1/level", "TYPE": "f", "VALUE": [0.5], "ACCESS": 3})
    );
    assert_eq!(
        tree["CONTENTS"]["mixer"]["CONTENTS"]["2"]["CONTENTS"]["mute"]["TYPE"],
        "T"
    );
    let (code, node) = curl(format!("{base}/mixer/1")).await;
    assert_eq!((code, &node["FULL_PATH"]), (200, &json!("/mixer/1")));
    let (code, v) = curl(format!("{base}/mixer/1/level?VALUE")).await;
    assert_eq!((code, v), (200, json!({"VALUE": [0.5]})));
    let (code, info) = curl(format!("{base}/?HOST_INFO")).await;
    assert_eq!(
        (code, &info["OSC_PORT"], &info["OSC_TRANSPORT"]),
        (200, &json!(osc_port), &json!("UDP"))
    );
    assert_eq!(info["EXTENSIONS"]["LISTEN"], true);
    assert_eq!(curl(format!("{base}/nothing")).await.0, 404);
    assert_eq!(curl(format!("{base}/mixer/1/level?NONSENSE")).await.0, 400);
    assert_eq!(curl(format!("{base}/mixer?VALUE")).await.0, 204);

    // LISTEN over the WebSocket: changes come as OSC packets; OSC packets sent are applied.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{q}/"))
        .await
        .unwrap();
    ws.send(WsMessage::text(
        r#"{"COMMAND": "LISTEN", "DATA": "/mixer/1/level"}"#,
    ))
    .await
    .unwrap();
    let got = within("a listened value", async {
        let mut v = 0.6;
        loop {
            c.set_confirmed("/osc/mixer/1/level", v).await.unwrap();
            if let Ok(Some(Ok(WsMessage::Binary(b)))) =
                tokio::time::timeout(Duration::from_millis(200), ws.next()).await
            {
                return rosc::decoder::decode_udp(&b).unwrap().1;
            }
            v += 0.01;
        }
    })
    .await;
    let OscPacket::Message(m) = got else { panic!() };
    assert_eq!(m.addr, "/mixer/1/level");
    let mut sub = c.subscribe("/osc/mixer/2/**").await.unwrap();
    c.ping().await.unwrap();
    while let Some(Some(_)) = sub.next().now_or_never() {}
    let packet = rosc::encoder::encode(&msg("/mixer/2/mute", vec![OscType::Bool(false)])).unwrap();
    ws.send(WsMessage::binary(packet)).await.unwrap();
    let u = within("the mute from the WebSocket", sub.next())
        .await
        .unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/osc/mixer/2/mute", &Value::Bool(false))
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
