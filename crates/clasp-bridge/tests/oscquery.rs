//! OSCQuery: the tree the OSC bridge serves (attributes, LISTEN, PATH_ADDED) and another
//! OSCQuery server's tree mirrored into params, both ways.
#![allow(clippy::unwrap_used, missing_docs)]

mod osc_support;
#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use clasp_bridge::RouterLink;
use clasp_bridge::osc::bridge::OscStats;
use clasp_bridge::osc::{OscBridge, OscBridgeConfig};
use clasp_client::{Client, ReconnectPolicy, Value};
use futures_util::{FutureExt, StreamExt};
use osc_support::{curl, msg};
use rosc::{OscPacket, OscType};
use support::{Router, within};
use tokio_util::sync::CancellationToken;

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
        oscquery: Some("127.0.0.1:0".parse().unwrap()),
        ..OscBridgeConfig::new("127.0.0.1:0".parse().unwrap())
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

/// A bridge on `ns` with OSCQuery on loopback, running until the token is cancelled.
async fn bridge(
    r: &Router,
    cfg: OscBridgeConfig,
) -> (
    std::net::SocketAddr,
    Option<std::net::SocketAddr>,
    Arc<OscStats>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), clasp_bridge::BridgeError>>,
) {
    let link = RouterLink::connect(&r.url, "osc", None).await.unwrap();
    let b = OscBridge::start(link, cfg).await.unwrap();
    let (udp, q) = (b.local_addr().unwrap(), b.oscquery_addr());
    let stats = Arc::new(OscStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(b.run(stats.clone(), stop.clone()));
    (udp, q, stats, stop, task)
}

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn oscquery_describes_ranges_and_announces_new_paths() {
    use futures_util::SinkExt;
    use serde_json::json;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    c.set_confirmed("/osc/mixer/1/volume", 0.5).await.unwrap();
    let rules: clasp_bridge::osc::query::Describe = toml::from_str(
        r#"
        pattern = "/mixer/*/volume"
        range = [0.0, 1.0]
        description = "Channel volume"
        unit = "gain"
        "#,
    )
    .unwrap();
    let mode: clasp_bridge::osc::query::Describe =
        toml::from_str("pattern = \"/mode\"\nvalues = [\"a\", \"b\"]\naccess = 1").unwrap();
    let cfg = OscBridgeConfig {
        oscquery: Some(loopback()),
        describe: vec![rules, mode],
        name: "Desk".into(),
        ..OscBridgeConfig::new(loopback())
    };
    let (_, q, _, stop, task) = bridge(&r, cfg).await;
    let q = q.unwrap();
    let base = format!("http://{q}");
    let (code, node) = curl(format!("{base}/mixer/1/volume")).await;
    assert_eq!(code, 200);
    assert_eq!(
        node,
        json!({
            "FULL_PATH": "/mixer/1/volume", "TYPE": "f", "VALUE": [0.5], "ACCESS": 3,
            "RANGE": [{"MIN": 0.0, "MAX": 1.0}], "DESCRIPTION": "Channel volume",
            "UNIT": ["gain"]
        })
    );
    let (code, range) = curl(format!("{base}/mixer/1/volume?RANGE")).await;
    assert_eq!(
        (code, range),
        (200, json!({"RANGE": [{"MIN": 0.0, "MAX": 1.0}]}))
    );
    let (_, info) = curl(format!("{base}/?HOST_INFO")).await;
    assert_eq!(info["NAME"], "Desk");
    assert_eq!(info["EXTENSIONS"]["RANGE"], true);
    assert_eq!(info["EXTENSIONS"]["PATH_CHANGED"], true);

    // A param that appears later: PATH_ADDED to WebSocket clients, then its node, with the
    // attributes of its rule.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{q}/"))
        .await
        .unwrap();
    ws.send(WsMessage::text(r#"{"COMMAND":"LISTEN","DATA":"/mode"}"#))
        .await
        .unwrap();
    c.set_confirmed("/osc/mode", "b").await.unwrap();
    let added = within("PATH_ADDED", async {
        loop {
            if let Some(Ok(WsMessage::Text(t))) = ws.next().await {
                return serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap();
            }
        }
    })
    .await;
    assert_eq!(added, json!({"COMMAND": "PATH_ADDED", "DATA": "/mode"}));
    let (_, node) = curl(format!("{base}/mode")).await;
    assert_eq!(
        (&node["RANGE"], &node["ACCESS"], &node["VALUE"]),
        (&json!([{"VALS": ["a", "b"]}]), &json!(1), &json!(["b"]))
    );
    // The value listened to follows as OSC.
    let got = within("the listened value", async {
        loop {
            if let Some(Ok(WsMessage::Binary(b))) = ws.next().await {
                return rosc::decoder::decode_udp(&b).unwrap().1;
            }
        }
    })
    .await;
    let OscPacket::Message(m) = got else { panic!() };
    assert_eq!(
        (m.addr.as_str(), m.args),
        ("/mode", vec![OscType::String("b".into())])
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Waits until `address` holds `want` in the router.
async fn until_value(c: &Client, address: &str, want: Value) {
    within(&format!("{address} = {want:?}"), async {
        loop {
            if c.get(address).await.ok() == Some(want.clone()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn mirrors_another_oscquery_server_both_ways_without_loops() {
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    // App A: an OSC app behind bridge A (namespace /a), whose tree A serves over OSCQuery.
    c.set_confirmed("/a/mixer/1/level", 0.5).await.unwrap();
    c.set_confirmed("/a/mode", "live").await.unwrap();
    let app = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let range: clasp_bridge::osc::query::Describe =
        toml::from_str("pattern = \"/mixer/*/level\"\nrange = [0.0, 1.0]").unwrap();
    let cfg_a = OscBridgeConfig {
        namespace: "/a".into(),
        targets: vec![app.local_addr().unwrap()],
        oscquery: Some(loopback()),
        describe: vec![range],
        ..OscBridgeConfig::new(loopback())
    };
    let (udp_a, q_a, _, stop_a, task_a) = bridge(&r, cfg_a).await;
    // Bridge B mirrors A's tree under /b and serves it again, ranges included.
    let cfg_b = OscBridgeConfig {
        namespace: "/b".into(),
        oscquery: Some(loopback()),
        mirror: Some(format!("http://{}", q_a.unwrap())),
        ..OscBridgeConfig::new(loopback())
    };
    let (_, q_b, stats_b, stop_b, task_b) = bridge(&r, cfg_b).await;
    until_value(&c, "/b/mixer/1/level", Value::Float(0.5)).await;
    until_value(&c, "/b/mode", Value::String("live".into())).await;
    let (_, node) = curl(format!("http://{}/mixer/1/level", q_b.unwrap())).await;
    assert_eq!(node["RANGE"], serde_json::json!([{"MIN": 0.0, "MAX": 1.0}]));

    // The app changes a value: A writes /a, A's LISTEN stream brings it to B, B writes /b.
    osc_support::send(
        &app,
        udp_a,
        msg("/mixer/1/level", vec![OscType::Float(0.75)]),
    )
    .await;
    until_value(&c, "/a/mixer/1/level", Value::Float(0.75)).await;
    until_value(&c, "/b/mixer/1/level", Value::Float(0.75)).await;

    // A param that appears on A later reaches B through PATH_ADDED.
    c.set_confirmed("/a/mixer/2/level", 0.25).await.unwrap();
    until_value(&c, "/b/mixer/2/level", Value::Float(0.25)).await;

    // Written on /b from elsewhere: B sends OSC to A's advertised port with the type A
    // declared (an integer 1 becomes the float 1.0), so /a follows, and the app hears it.
    c.set_confirmed("/b/mixer/1/level", 1).await.unwrap();
    until_value(&c, "/a/mixer/1/level", Value::Float(1.0)).await;
    let mut heard = osc_support::recv(&app).await;
    while heard.addr == "/mixer/2/level" {
        heard = osc_support::recv(&app).await;
    }
    assert_eq!(
        (heard.addr.as_str(), heard.args),
        ("/mixer/1/level", vec![OscType::Float(1.0)])
    );

    // No loop: once settled, nothing more flows.
    let mut sub = c.subscribe("/**").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(Some(_)) = sub.next().now_or_never() {}
    let out_before = stats_b
        .messages_out
        .load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sub.next().now_or_never().is_none(), "updates kept flowing");
    assert_eq!(
        stats_b
            .messages_out
            .load(std::sync::atomic::Ordering::Relaxed),
        out_before
    );
    stop_b.cancel();
    task_b.await.unwrap().unwrap();
    stop_a.cancel();
    task_a.await.unwrap().unwrap();
}
