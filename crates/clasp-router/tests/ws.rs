//! The router over real WebSocket connections.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use clasp_proto::*;
use clasp_router::server::{Server, ServerConfig};
use support::{WsClient, http_get};

struct Running {
    url: String,
    http: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(config: ServerConfig) -> Running {
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Running {
            url: format!("ws://{addr}/clasp"),
            http: format!("{addr}"),
            stop: Some(stop),
            task,
        }
    }

    async fn memory() -> Running {
        Running::start(local(ServerConfig::default())).await
    }

    async fn session_count(&self) -> u64 {
        let h = http_get(&self.http, "/healthz").await;
        let i = h.find("\"sessions\":").unwrap() + 11;
        h[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn local(mut c: ServerConfig) -> ServerConfig {
    c.listen = "127.0.0.1:0".parse().unwrap();
    c
}

#[tokio::test]
async fn handshake_echoes_the_subprotocol_and_sends_welcome_and_snapshot() {
    let r = Running::memory().await;
    let (c, params) = WsClient::connect(&r.url).await;
    assert_eq!(c.protocol.as_deref(), Some("clasp"));
    assert_eq!(c.session.len(), 36, "a UUID");
    assert!(params.is_empty());
    r.stop().await;
}

#[tokio::test]
async fn set_subscribe_and_late_joiners_over_websocket() {
    let r = Running::memory().await;
    let (mut a, _) = WsClient::connect(&r.url).await;
    let (mut b, _) = WsClient::connect(&r.url).await;
    b.subscribe(1, "/test/**").await;
    a.set("/test/value", Value::Float(0.75)).await;
    let Message::Set(s) = b.recv().await else {
        panic!()
    };
    assert_eq!((s.revision, s.value), (Some(1), Value::Float(0.75)));
    let Message::Ack(ack) = a.recv().await else {
        panic!()
    };
    assert_eq!(ack.revision, Some(1));
    // A late joiner gets the state at connect and again on subscribe.
    let (mut c, params) = WsClient::connect(&r.url).await;
    assert_eq!(params.len(), 1);
    c.subscribe(1, "/test/*").await;
    let Message::Snapshot(s) = c.recv().await else {
        panic!()
    };
    assert_eq!(s.params[0].address, "/test/value");
    r.stop().await;
}

#[tokio::test]
async fn healthz_metrics_and_plain_http() {
    let r = Running::memory().await;
    let (mut a, _) = WsClient::connect(&r.url).await;
    a.set("/m", Value::Int(1)).await;
    a.recv().await;
    let h = http_get(&r.http, "/healthz").await;
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert!(
        h.contains("\"sessions\":1") && h.contains("\"params\":1"),
        "{h}"
    );
    let m = http_get(&r.http, "/metrics").await;
    assert!(m.contains("clasp_messages_in_total{type=\"SET\"} 1"), "{m}");
    assert!(m.contains("clasp_sessions 1"), "{m}");
    let other = http_get(&r.http, "/anything").await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    r.stop().await;
}

#[tokio::test]
async fn oversize_websocket_frames_get_an_error_and_the_connection_stays() {
    let mut cfg = local(ServerConfig::default());
    cfg.router.max_payload = 1000;
    let r = Running::start(cfg).await;
    let (mut a, _) = WsClient::connect(&r.url).await;
    a.set("/big", Value::from("x".repeat(5000))).await;
    let Message::Error(e) = a.recv().await else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::TooLarge);
    a.send(Message::Ping).await;
    assert_eq!(a.recv().await, Message::Pong);
    r.stop().await;
}

#[tokio::test]
async fn bad_handshake_gets_an_error_and_a_close() {
    let r = Running::memory().await;
    let mut c = WsClient::open(&r.url).await;
    c.send(Message::Ping).await;
    let Message::Error(e) = c.recv().await else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::InvalidMessage);
    assert_eq!(c.closed().await, Some(1008));
    r.stop().await;
}

#[tokio::test]
async fn handshake_timeout_closes_silent_connections() {
    let mut cfg = local(ServerConfig::default());
    cfg.handshake_timeout = Duration::from_millis(200);
    let r = Running::start(cfg).await;
    let mut c = WsClient::open(&r.url).await;
    assert_eq!(c.closed().await, Some(1001));
    r.stop().await;
}

#[tokio::test]
async fn max_sessions_refuses_with_an_error() {
    let mut cfg = local(ServerConfig::default());
    cfg.router.max_sessions = 1;
    let r = Running::start(cfg).await;
    let (_a, _) = WsClient::connect(&r.url).await;
    let mut b = WsClient::open(&r.url).await;
    b.send(Message::Hello(Hello::default())).await;
    let Message::Error(e) = b.recv().await else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::Overloaded);
    assert_eq!(b.closed().await, Some(1013));
    r.stop().await;
}

#[tokio::test]
async fn shutdown_sends_close_frames() {
    let r = Running::memory().await;
    let (mut a, _) = WsClient::connect(&r.url).await;
    let stop = tokio::spawn(r.stop());
    assert_eq!(a.closed().await, Some(1001));
    stop.await.unwrap();
}

#[tokio::test]
async fn state_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local(ServerConfig::default());
    cfg.data_dir = Some(dir.path().to_path_buf());
    let r = Running::start(cfg.clone()).await;
    let (mut a, _) = WsClient::connect(&r.url).await;
    for i in 0..100 {
        a.set(&format!("/keep/{i}"), Value::Int(i)).await;
    }
    a.set("/keep/0", Value::from("last")).await;
    for _ in 0..101 {
        a.recv().await;
    }
    r.stop().await;
    let r = Running::start(cfg).await;
    let (_b, params) = WsClient::connect(&r.url).await;
    assert_eq!(params.len(), 100);
    let p0 = params.iter().find(|p| p.address == "/keep/0").unwrap();
    assert_eq!((p0.revision, &p0.value), (2, &Value::from("last")));
    r.stop().await;
}

#[tokio::test]
async fn a_flooded_subscriber_ends_with_every_final_value() {
    // A subscriber that stops reading: its params coalesce; when it reads again it has the
    // final value of every address.
    let r = Running::memory().await;
    let (mut slow, _) = WsClient::connect(&r.url).await;
    slow.subscribe(1, "/flood/**").await;
    let (mut w, _) = WsClient::connect(&r.url).await;
    let payload = "p".repeat(2000);
    for round in 0..40 {
        for i in 0..100 {
            w.send_qos(
                Message::Set(Set {
                    address: format!("/flood/{i}").into(),
                    value: Value::from(format!("{round}:{payload}")),
                    ..Default::default()
                }),
                Some(Qos::Fire),
            )
            .await;
        }
    }
    w.send(Message::Ping).await;
    assert_eq!(w.recv().await, Message::Pong);
    let mut last = std::collections::HashMap::new();
    while let Some(m) = slow.try_recv(Duration::from_millis(500)).await {
        if let Message::Set(s) = m {
            last.insert(s.address, s.value);
        }
    }
    assert_eq!(last.len(), 100);
    for v in last.values() {
        assert!(
            v.as_str().unwrap().starts_with("39:"),
            "final value delivered"
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn silent_peers_are_closed_and_live_ones_kept() {
    let mut cfg = local(ServerConfig::default());
    cfg.idle_timeout = Duration::from_millis(1000);
    cfg.ping_interval = Duration::from_millis(100);
    let r = Running::start(cfg).await;
    // `silent` never reads again, like a peer whose machine went away; `live` keeps reading, so
    // its WebSocket layer answers the router's pings although it sends nothing itself.
    let (mut silent, _) = WsClient::connect(&r.url).await;
    let (mut live, _) = WsClient::connect(&r.url).await;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(3000) {
        live.try_recv(Duration::from_millis(50)).await;
    }
    live.send(Message::Ping).await;
    assert_eq!(
        live.recv().await,
        Message::Pong,
        "a live peer is never reaped"
    );
    // The silent peer was closed: a close frame, or a reset because it never answered.
    assert!(matches!(silent.closed().await, Some(1001) | None));
    assert_eq!(r.session_count().await, 1);
    r.stop().await;
}

#[tokio::test]
async fn frames_written_inline_and_by_the_writer_pool_keep_their_order() {
    // Frames for /few reach one subscriber (written inline by the publisher's reader); frames
    // for /many reach nine (written by the writer pool). The watcher gets both, interleaved,
    // and must see them in exactly the order they were sent.
    let r = Running::memory().await;
    let (mut watcher, _) = WsClient::connect(&r.url).await;
    watcher.subscribe(1, "/order/**").await;
    let mut others = Vec::new();
    for i in 0..8 {
        let (mut c, _) = WsClient::connect(&r.url).await;
        c.subscribe(i + 10, "/order/many").await;
        others.push(c);
    }
    let (mut w, _) = WsClient::connect(&r.url).await;
    let n = 2000;
    for i in 0..n {
        let address = if i % 3 == 0 {
            "/order/many"
        } else {
            "/order/few"
        };
        w.send_qos(
            Message::Set(Set {
                address: address.into(),
                value: Value::Int(i),
                ..Default::default()
            }),
            Some(Qos::Fire),
        )
        .await;
    }
    let mut next = 0;
    while next < n {
        match watcher.recv().await {
            Message::Set(s) => {
                assert_eq!(s.value, Value::Int(next), "delivered in send order");
                next += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    r.stop().await;
}

#[tokio::test]
async fn same_runtime_writers_work_too() {
    // writer_threads = 0: every writer on the caller's runtime; the same exchange works.
    let mut c = local(ServerConfig::default());
    c.writer_threads = 0;
    let r = Running::start(c).await;
    let (mut sub, _) = WsClient::connect(&r.url).await;
    sub.subscribe(1, "/x").await;
    let (mut w, _) = WsClient::connect(&r.url).await;
    w.set("/x", Value::Int(7)).await;
    loop {
        if let Message::Set(s) = sub.recv().await {
            assert_eq!(s.value, Value::Int(7));
            break;
        }
    }
    r.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_after_its_session_ends() {
    // The slow client's writer waits for socket space that never comes. Its session ends at
    // the event limit; past the close grace period the socket is dropped too, which frees its
    // per-IP slot (without that, the slot would stay taken forever).
    let mut c = local(ServerConfig::default());
    c.max_connections_per_ip = 2;
    c.outbox = clasp_router::server::outbox::OutboxLimits {
        soft: 50,
        max_streams: 50,
        max_events: 100,
        ..Default::default()
    };
    let r = Running::start(c).await;
    let (mut slow, _) = WsClient::connect(&r.url).await;
    slow.subscribe(1, "/ev/**").await;
    let (mut w, _) = WsClient::connect(&r.url).await;
    let event = Message::Publish(Publish {
        address: "/ev/x".into(),
        payload: PublishPayload::Value(Value::String("y".repeat(10_000).into())),
        ..Default::default()
    });
    for _ in 0..3000 {
        w.send(event.clone()).await;
    }
    w.send(Message::Ping).await;
    while !matches!(w.recv().await, Message::Pong) {}
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if tokio_tungstenite::connect_async(r.url.as_str())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck connection still holds its slot"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(slow);
    r.stop().await;
}
