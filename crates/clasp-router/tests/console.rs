//! The web console's server side on a real router with tokens: the page and its assets are
//! served with a strict content policy; the feed on `/console/ws` opens a session with the
//! viewer's token (refused without one, with the router's reason), sends every param the token
//! may read, then changes within a batch, signals as counts and last values, the session list
//! and counters; an edit goes through the token's scopes (refused writes say why); kicking a
//! session takes admin scope. Browser tests of the page itself are in `scripts/console-check.sh`.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/auth.rs"]
mod auth;
mod support;

use std::time::Duration;

use auth::Env;
use clasp_proto::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::Message as Ws;

type Feed =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn http_get(env: &Env, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&env.addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

async fn feed(env: &Env, token: Option<&str>) -> Feed {
    let url = format!("ws://{}/console/ws", env.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = json!({"op": "hello", "token": token});
    ws.send(Ws::Text(hello.to_string().into())).await.unwrap();
    ws
}

/// The next message with op `op` (others are skipped), within 5 s.
async fn next(ws: &mut Feed, op: &str) -> Json {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Ws::Text(t) => {
                    let j: Json = serde_json::from_str(&t).unwrap();
                    if j["op"] == op {
                        return j;
                    }
                }
                Ws::Close(_) => panic!("the feed closed while waiting for {op}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {op} within 5 s"))
}

/// Params batches until `address` is in one; returns that row.
async fn param_row(ws: &mut Feed, address: &str) -> Json {
    loop {
        let m = next(ws, "params").await;
        if let Some(r) = m["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["a"] == address)
        {
            return r.clone();
        }
    }
}

async fn op(ws: &mut Feed, msg: Json) {
    ws.send(Ws::Text(msg.to_string().into())).await.unwrap();
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy() {
    let env = Env::start(|_| {}).await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let (head, body) = http_get(&env, path).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(head.contains(&format!("content-type: {kind}")), "{head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "{head}"
        );
        assert!(!body.is_empty());
    }
    // The page names its script and style; nothing else is loaded.
    let (_, html) = http_get(&env, "/console").await;
    assert!(html.contains("/console/console.js") && html.contains("/console/console.css"));
}

#[tokio::test]
async fn the_feed_needs_a_token_and_shows_what_it_may_read() {
    let env = Env::start(|_| {}).await;
    // No token: refused with the router's reason, nothing sent.
    let mut ws = feed(&env, None).await;
    let e = next(&mut ws, "error").await;
    assert!(e["error"].as_str().unwrap().contains("token"), "{e}");

    let mut writer = env.connect(&env.admin).await;
    writer
        .send(Message::Set(Set {
            address: "/lights/a".into(),
            value: Value::Float(0.5),
            ..Default::default()
        }))
        .await;
    writer
        .send(Message::Set(Set {
            address: "/secret/b".into(),
            value: Value::Int(1),
            ..Default::default()
        }))
        .await;
    let viewer = env
        .token(&["read:/lights/**", "write:/lights/**"], None)
        .await;
    let mut ws = feed(&env, Some(&viewer)).await;
    let w = next(&mut ws, "welcome").await;
    assert_eq!(
        (w["auth"].clone(), w["admin"].clone(), w["read_all"].clone()),
        (json!(true), json!(false), json!(false))
    );
    let first = next(&mut ws, "params").await;
    assert_eq!(first["full"], true);
    let items = first["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|r| r["a"] == "/lights/a" && r["v"] == 0.5 && r["r"] == 1),
        "{first}"
    );
    assert!(
        !items.iter().any(|r| r["a"] == "/secret/b"),
        "outside the token's read scope: {first}"
    );

    // A change arrives in a batch, with its writer.
    writer
        .send(Message::Set(Set {
            address: "/lights/a".into(),
            value: Value::Float(0.75),
            ..Default::default()
        }))
        .await;
    let row = param_row(&mut ws, "/lights/a").await;
    assert_eq!(
        (row["v"].clone(), row["r"].clone()),
        (json!(0.75), json!(2))
    );
    assert!(!row["w"].as_str().unwrap().is_empty(), "{row}");

    // Edits: inside the write scope it is written; outside, refused with the reason.
    op(
        &mut ws,
        json!({"op": "set", "id": 1, "address": "/lights/a", "value": 1.0}),
    )
    .await;
    let ok = next(&mut ws, "result").await;
    assert_eq!(
        (ok["id"].clone(), ok["ok"].clone(), ok["revision"].clone()),
        (json!(1), json!(true), json!(3))
    );
    op(
        &mut ws,
        json!({"op": "set", "id": 2, "address": "/secret/b", "value": 2}),
    )
    .await;
    let no = next(&mut ws, "result").await;
    assert_eq!(
        (no["id"].clone(), no["ok"].clone(), no["code"].clone()),
        (json!(2), json!(false), json!(301))
    );
    assert!(no["error"].as_str().unwrap().contains("scope"), "{no}");
    // Kicking needs admin scope.
    op(
        &mut ws,
        json!({"op": "kick", "id": 3, "session": writer.session}),
    )
    .await;
    let no = next(&mut ws, "result").await;
    assert_eq!(no["ok"], false, "{no}");
    // Who else is connected, from where, is not this viewer's to see: its own session only.
    assert_eq!(w["operator"], false);
    let s = next(&mut ws, "sessions").await;
    let rows = s["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{s}");
    assert_eq!(rows[0]["id"], w["session"]);
}

#[tokio::test]
async fn a_page_of_another_site_cannot_open_the_feed() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let env = Env::start(|_| {}).await;
    let url = format!("ws://{}/console/ws", env.addr);
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    let e = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
}

#[tokio::test]
async fn signals_sessions_metrics_and_kicks() {
    let env = Env::start(|_| {}).await;
    let mut ws = feed(&env, Some(&env.admin)).await;
    let w = next(&mut ws, "welcome").await;
    assert_eq!(
        (
            w["admin"].clone(),
            w["read_all"].clone(),
            w["operator"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    let mut c = env.connect(&env.admin).await;
    for i in 0..5 {
        c.send(Message::Publish(Publish {
            address: "/fx/hit".into(),
            signal: SignalType::Event,
            payload: PublishPayload::Value(Value::Int(i)),
            ..Default::default()
        }))
        .await;
    }
    let mut count = 0;
    let mut last = Json::Null;
    while count < 5 {
        let m = next(&mut ws, "signals").await;
        for s in m["items"].as_array().unwrap() {
            if s["a"] == "/fx/hit" {
                assert_eq!(s["k"], "event");
                count += s["n"].as_u64().unwrap();
                last = s["v"].clone();
            }
        }
    }
    assert_eq!((count, last), (5, json!(4)));
    // The monitor's pattern is applied by the router.
    op(&mut ws, json!({"op": "monitor", "pattern": "/other/**"})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send(Message::Publish(Publish {
        address: "/fx/hit".into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(Value::Int(9)),
        ..Default::default()
    }))
    .await;
    // Nothing of /fx/hit comes after the monitor moved away.
    let quiet = tokio::time::timeout(Duration::from_millis(400), async {
        loop {
            let m = next(&mut ws, "signals").await;
            if m["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["a"] == "/fx/hit")
            {
                return m;
            }
        }
    })
    .await;
    assert!(
        quiet.is_err(),
        "a signal outside the monitor's pattern: {quiet:?}"
    );
    // Two sessions tell each other they are connected directly (protocol.md §11).
    let d = env.connect(&env.admin).await;
    c.send(Message::Publish(Publish {
        address: format!("/clasp/p2p/signal/{}", d.session).into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(Value::Map(vec![
            ("type".into(), Value::String("connected".into())),
            ("from".into(), Value::String(c.session.as_str().into())),
        ])),
        ..Default::default()
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = next(&mut ws, "sessions").await;
    let links = s["links"].as_array().unwrap();
    let pair = {
        let mut p = [c.session.clone(), d.session.clone()];
        p.sort();
        p
    };
    assert!(
        links
            .iter()
            .any(|l| l[0] == pair[0].as_str() && l[1] == pair[1].as_str()),
        "{s}"
    );
    let rows = s["items"].as_array().unwrap();
    let me = rows.iter().find(|r| r["id"] == c.session).unwrap();
    assert_eq!(
        (me["name"].clone(), me["transport"].clone()),
        (json!("test"), json!("ws"))
    );
    assert!(
        me["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{me}"
    );
    assert!(
        rows.iter()
            .any(|r| r["name"] == "console" && r["transport"] == "adapter")
    );
    op(&mut ws, json!({"op": "ping", "t": 12.5})).await;
    assert_eq!(next(&mut ws, "pong").await["t"], 12.5);
    let m = next(&mut ws, "metrics").await;
    assert!(m["counters"]["messages_in"].as_u64().unwrap() >= 6, "{m}");
    // Kick: the session gets ERROR 301 saying so and is closed.
    op(
        &mut ws,
        json!({"op": "kick", "id": 7, "session": c.session}),
    )
    .await;
    let r = next(&mut ws, "result").await;
    assert_eq!((r["id"].clone(), r["ok"].clone()), (json!(7), json!(true)));
    let Message::Error(e) = c.recv().await else {
        panic!("no ERROR before the close")
    };
    assert!(e.message.contains("closed by an operator"), "{e:?}");
    c.closed().await;
}
