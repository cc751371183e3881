//! The WebSocket JSON bridge with tokio-tungstenite peers: as a server several peers connect
//! to, and as a client of a peer's server; both ways, namespaced, no echo of own writes.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use clasp_bridge::RouterLink;
use clasp_bridge::ws::{WsBridge, WsBridgeConfig, WsMode, WsStats};
use clasp_client::{Client, ReconnectPolicy, SignalType, Value};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use support::{Router, within};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

async fn client(r: &Router) -> Client {
    Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap()
}

/// The next text frame as JSON.
async fn next_json<S>(ws: &mut S) -> Json
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    loop {
        match within("a frame", ws.next()).await.unwrap().unwrap() {
            WsMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn peers_of_a_websocket_server_both_ways() {
    let r = Router::start().await;
    let c = client(&r).await;
    let link = RouterLink::connect(&r.url, "ws", None).await.unwrap();
    let cfg = WsBridgeConfig {
        mode: WsMode::Server,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        url: None,
        namespace: "/ws".into(),
    };
    let bridge = WsBridge::start(link, cfg).await.unwrap();
    let url = format!("ws://{}/", bridge.local_addr().unwrap());
    let stats = Arc::new(WsStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(stats.clone(), stop.clone()));
    let (mut a, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let mut sub = c.subscribe("/ws/**").await.unwrap();
    c.ping().await.unwrap();

    // A peer sets a value: under the namespace, whatever address it names.
    a.send(WsMessage::text(
        r#"{"address": "/page/slider", "value": 0.5}"#,
    ))
    .await
    .unwrap();
    let u = within("the slider", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/ws/page/slider", &Value::Float(0.5))
    );
    // The other peer hears of it; the sender does not get its own write back.
    assert_eq!(
        next_json(&mut b).await,
        json!({"address": "/page/slider", "value": 0.5})
    );
    // A CLASP client's change reaches both peers (a first, proving nothing came before).
    c.set_confirmed("/ws/page/slider", 0.75).await.unwrap();
    within("our own write", sub.next()).await.unwrap();
    assert_eq!(
        next_json(&mut a).await,
        json!({"address": "/page/slider", "value": 0.75})
    );
    assert_eq!(
        next_json(&mut b).await,
        json!({"address": "/page/slider", "value": 0.75})
    );
    // Events both ways, the reference's `data` shape, and plain text.
    b.send(WsMessage::text(
        r#"{"address": "cue/go", "kind": "event", "data": {"n": 1}}"#,
    ))
    .await
    .unwrap();
    let u = within("the event", sub.next()).await.unwrap();
    assert_eq!((&*u.address, u.kind), ("/ws/cue/go", SignalType::Event));
    assert_eq!(
        next_json(&mut a).await,
        json!({"address": "/cue/go", "value": {"n": 1}, "kind": "event"})
    );
    a.send(WsMessage::text("hello")).await.unwrap();
    let u = within("text", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/ws/text", &Value::String("hello".into()))
    );
    // An address a CLASP address cannot hold is skipped and counted.
    a.send(WsMessage::text(r#"{"address": "/a b/*", "value": 1}"#))
        .await
        .unwrap();
    a.send(WsMessage::text(r#"{"address": "/after", "value": 1}"#))
        .await
        .unwrap();
    let u = within("after the bad one", sub.next()).await.unwrap();
    assert_eq!(&*u.address, "/ws/after");
    assert_eq!(stats.skipped.load(std::sync::atomic::Ordering::Relaxed), 1);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_of_a_peers_websocket_server() {
    let r = Router::start().await;
    let c = client(&r).await;
    // The peer: a WebSocket server that sends one message, then echoes what it gets to us.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel::<Json>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(WsMessage::text(r#"{"address": "/show/scene", "value": 3}"#))
            .await
            .unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if let WsMessage::Text(t) = m {
                let _ = got_tx.send(serde_json::from_str(t.as_str()).unwrap());
            }
        }
    });
    let mut sub = c.subscribe("/peer/**").await.unwrap();
    c.ping().await.unwrap();
    let link = RouterLink::connect(&r.url, "ws", None).await.unwrap();
    let cfg = WsBridgeConfig {
        mode: WsMode::Client,
        listen: None,
        url: Some(url),
        namespace: "/peer".into(),
    };
    let bridge = WsBridge::start(link, cfg).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(Arc::new(WsStats::default()), stop.clone()));
    let u = within("the peer's scene", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/peer/show/scene", &Value::Int(3))
    );
    c.set_confirmed("/peer/show/scene", 4).await.unwrap();
    assert_eq!(
        within("the change, at the peer", got.recv()).await.unwrap(),
        json!({"address": "/show/scene", "value": 4})
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
