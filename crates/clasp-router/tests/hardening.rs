//! Hardening suite: the attacks of issue 13 on a running router, over real WebSocket
//! connections. Each case failed on the router before the fix it names; each asserts the exact
//! refusal, that nothing was lost, and that honest clients are still served.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/auth.rs"]
mod auth;
mod support;

use std::time::Duration;

use auth::*;
use clasp_proto::*;
use clasp_router::server::tokens::{TokenFile, generate};
use clasp_router::server::{Server, ServerConfig};
use support::{WsClient, http_get};

/// A router with a token file and no JWT keys: tokens are required only because of the file.
async fn cpsk_only() -> Env {
    Env::start(|c| c.auth.jwt = None).await
}

/// The labelled counter `clasp_refusals_total{kind="…"}`.
async fn refusals(env: &Env, kind: &str) -> u64 {
    let text = http_get(&env.addr, "/metrics").await;
    let prefix = format!("clasp_refusals_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

fn save_tokens(env: &Env, f: &TokenFile) {
    f.save(&env.token_file()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Authentication never fails open
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoking_the_last_token_refuses_everyone_instead_of_opening_the_router() {
    let env = cpsk_only().await;
    let reader = env.token(&["read:/**"], None).await;
    let mut live = env.connect(&reader).await;
    // Revoke every token, as `clasp token revoke` does: the file stays, with no tokens.
    save_tokens(&env, &TokenFile::default());
    match live.recv().await {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}"),
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert_eq!(live.closed().await, Some(1001));
    // No token, a made-up one, the revoked ones: all refused, saying why.
    let e = env.refused(None).await;
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("no valid token configured"), "{e:?}");
    for t in [generate(), reader.clone(), env.admin.clone()] {
        assert_eq!(env.refused(Some(&t)).await.code, ErrorCode::Unauthorized);
    }
    assert!(refusals(&env, "auth_none_configured").await >= 4);
    // A new token works again.
    let t = env.token(&["admin:/**"], None).await;
    let mut c = env.connect(&t).await;
    assert_eq!(acked(&mut c, "/after/revoke", 1).await, Ok(()));
    env.stop().await;
}

#[tokio::test]
async fn a_token_file_whose_only_token_expired_before_the_start_still_requires_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let t = generate();
    let mut f = TokenFile::default();
    f.tokens
        .insert(t.clone(), record(&t, &["admin:/**"], Some(now_s() - 60)));
    f.save(&path).unwrap();
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    config.auth.token_file = Some(path);
    let server = Server::bind(config).await.unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    for token in [None, Some(t.as_str()), Some(generate().as_str())] {
        let e = match WsClient::connect_token(&url, token).await {
            Ok(_) => panic!("{token:?} was let in"),
            Err(e) => e,
        };
        assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}");
    }
    let _ = stop.send(());
    let _ = task.await;
}

#[tokio::test]
async fn a_blank_token_file_keeps_the_tokens_in_force() {
    let env = cpsk_only().await;
    let mut live = env.connect(&env.admin).await;
    // A rewrite that is not atomic: the file is truncated, and stays so for a while.
    std::fs::write(env.token_file(), b"").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.refused(None).await.code, ErrorCode::Unauthorized);
    assert_eq!(
        env.refused(Some(&generate())).await.code,
        ErrorCode::Unauthorized
    );
    // The admin's session and token still work; nothing was ended.
    assert_eq!(acked(&mut live, "/blank/x", 1).await, Ok(()));
    let mut again = env.connect(&env.admin).await;
    assert_eq!(acked(&mut again, "/blank/y", 2).await, Ok(()));
    // A missing file too.
    std::fs::remove_file(env.token_file()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.refused(None).await.code, ErrorCode::Unauthorized);
    env.connect(&env.admin).await;
    env.stop().await;
}

#[tokio::test]
async fn a_session_admitted_in_open_mode_ends_when_tokens_become_required() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    config.auth.token_file = Some(path.clone());
    let server = Server::bind(config).await.unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    // No token file yet: open mode.
    let (mut anon, _) = WsClient::connect(&url).await;
    assert_eq!(acked(&mut anon, "/open/x", 1).await, Ok(()));
    // The operator creates the first token.
    let t = generate();
    let mut f = TokenFile::default();
    f.tokens.insert(t.clone(), record(&t, &["read:/**"], None));
    f.save(&path).unwrap();
    match anon.recv().await {
        Message::Error(e) => {
            assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}");
            assert!(e.message.contains("now required"), "{e:?}");
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert_eq!(anon.closed().await, Some(1001));
    match WsClient::connect_token(&url, None).await {
        Ok(_) => panic!("an anonymous session was let in"),
        Err(e) => assert_eq!(e.code, ErrorCode::Unauthorized),
    }
    let (mut reader, _) = WsClient::connect_token(&url, Some(&t)).await.unwrap();
    assert_eq!(acked(&mut reader, "/open/y", 1).await, Err(301));
    let _ = stop.send(());
    let _ = task.await;
}

#[tokio::test]
async fn narrowed_scopes_apply_to_live_sessions() {
    let env = cpsk_only().await;
    let t = env.token(&["read:/**", "write:/a/**"], None).await;
    let mut c = env.connect(&t).await;
    c.subscribe(1, "/**").await;
    c.subscribe(2, "/a/**").await;
    assert_eq!(acked(&mut c, "/a/locked", 1).await, Ok(()));
    // Narrow the token to the /a subtree.
    let mut f = TokenFile::load(&env.token_file()).unwrap();
    f.tokens.get_mut(&t).unwrap().scopes = vec!["write:/a/**".into()];
    save_tokens(&env, &f);
    // The subscription to everything is removed, with an ERROR naming it.
    loop {
        match c.recv().await {
            Message::Error(e) => {
                assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}");
                assert_eq!(e.address.as_deref(), Some("/**"));
                break;
            }
            Message::Set(_) => continue,
            other => panic!("expected ERROR, got {other:?}"),
        }
    }
    // What the admin writes outside /a no longer reaches it; inside /a it does.
    let mut admin = env.connect(&env.admin).await;
    assert_eq!(acked(&mut admin, "/b/secret", 7).await, Ok(()));
    assert_eq!(acked(&mut admin, "/a/visible", 8).await, Ok(()));
    loop {
        match c.recv().await {
            Message::Set(s) => {
                assert_ne!(
                    &*s.address, "/b/secret",
                    "a write outside the new scopes leaked"
                );
                if &*s.address == "/a/visible" {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Reads and writes outside the new scopes are refused.
    assert_eq!(
        error_after(
            &mut c,
            Message::Get(Get {
                address: "/b/secret".into()
            }),
            None
        )
        .await,
        301
    );
    assert_eq!(acked(&mut c, "/b/x", 1).await, Err(301));
    assert_eq!(acked(&mut c, "/a/y", 1).await, Ok(()));
    // Widening applies too, without reconnecting.
    let mut f = TokenFile::load(&env.token_file()).unwrap();
    f.tokens.get_mut(&t).unwrap().scopes = vec!["admin:/**".into()];
    save_tokens(&env, &f);
    let mut widened = false;
    for _ in 0..100 {
        if acked(&mut c, "/b/x", 2).await.is_ok() {
            widened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(widened, "widened scopes never applied");
    env.stop().await;
}

#[tokio::test]
async fn a_jwt_without_jti_opens_one_session_only() {
    let env = Env::start(|_| {}).await;
    let token = env.jwt(claims("write:/j/**", None, 600));
    env.connect(&token).await;
    let e = env.refused(Some(&token)).await;
    assert!(e.message.contains("already used"), "{e:?}");
    assert!(refusals(&env, "auth_replayed").await >= 1);
    env.stop().await;
}

#[tokio::test]
async fn the_audience_is_compared_exactly() {
    let env = Env::start(|_| {}).await;
    let mut c = claims("write:/j/**", Some("aud-1"), 600);
    // Space-separated audiences are one string, not a list: refused.
    c["aud"] = "other clasp-test".into();
    let e = env.refused(Some(&env.jwt(c))).await;
    assert!(e.message.contains("audience"), "{e:?}");
    // A list that holds the audience is accepted.
    let mut c = claims("write:/j/**", Some("aud-2"), 600);
    c["aud"] = serde_json::json!(["other", "clasp-test"]);
    env.connect(&env.jwt(c)).await;
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Only the router, or a session about itself, says that a session left
// ---------------------------------------------------------------------------------------------

fn leave(session: &str) -> Message {
    Message::Publish(Publish {
        address: "/clasp/p2p/leave".into(),
        payload: PublishPayload::Value(Value::Map(vec![("session_id".into(), session.into())])),
        ..Default::default()
    })
}

#[tokio::test]
async fn a_forged_p2p_leave_is_refused() {
    let env = Env::start(|_| {}).await;
    let t = env
        .token(&["write:/clasp/p2p/**", "read:/clasp/p2p/**"], None)
        .await;
    let mut peer_a = env.connect(&t).await;
    let mut peer_b = env.connect(&t).await;
    let mut third = env.connect(&t).await;
    peer_a.subscribe(1, "/clasp/p2p/leave").await;
    peer_a.send(Message::Ping).await;
    assert_eq!(peer_a.recv().await, Message::Pong);
    let b = peer_b.session.clone();
    assert_eq!(error_after(&mut third, leave(&b), None).await, 301);
    assert!(peer_a.try_recv(Duration::from_millis(300)).await.is_none());
    assert!(refusals(&env, "p2p_spoof").await >= 1);
    // B may say so itself.
    peer_b.send(leave(&b)).await;
    assert_eq!(peer_a.recv().await, leave(&b));
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. The HELLO deadline is absolute from accept
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn websocket_pings_do_not_stretch_the_hello_deadline() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;
    let env = Env::start(|c| c.handshake_timeout = Duration::from_millis(1500)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(env.url.as_str())
        .await
        .unwrap();
    let start = std::time::Instant::now();
    // A ping every 300 ms and never a HELLO: the connection must still end at the deadline.
    let closed = loop {
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
        if ws.send(Ws::Ping(vec![1].into())).await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
            Ok(Some(Ok(Ws::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break true,
            _ => {}
        }
    };
    assert!(
        closed,
        "a WebSocket sending pings stayed open without HELLO"
    );
    assert!(refusals(&env, "handshake_timeout").await >= 1);
    env.assert_serving().await;
    env.stop().await;
}

#[tokio::test]
async fn a_dribbling_tcp_connection_is_closed_at_the_hello_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        handshake_timeout: Duration::from_millis(1500),
        ..ServerConfig::default()
    };
    config.auth = Default::default();
    let server = Server::bind(config).await.unwrap();
    let tcp = server.tcp_local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut s = tokio::net::TcpStream::connect(tcp).await.unwrap();
    // A length prefix promising a frame, then one byte every 300 ms.
    s.write_all(&[0, 0, 0, 200]).await.unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let closed = loop {
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
        if s.write_all(&[0x53]).await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            _ => {}
        }
    };
    assert!(
        closed,
        "a connection dribbling bytes stayed open without HELLO"
    );
    let _ = stop.send(());
    let _ = task.await;
}

// ---------------------------------------------------------------------------------------------
// 5. Gauges follow the outbox's life
// ---------------------------------------------------------------------------------------------

/// An open-mode router on loopback: (ws url, http address, stop, task).
async fn open_router(
    tweak: impl FnOnce(&mut ServerConfig),
) -> (
    String,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), clasp_router::server::ServerError>>,
) {
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    config.auth = Default::default();
    tweak(&mut config);
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (format!("ws://{addr}/"), addr, stop, task)
}

async fn gauge(addr: &str, name: &str) -> f64 {
    let text = http_get(addr, "/metrics").await;
    support::metric(&text, name).unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn a_backlogged_subscriber_that_leaves_does_not_slow_publishers() {
    let (url, addr, stop, task) = open_router(|_| {}).await;
    let (mut slow, _) = WsClient::connect(&url).await;
    slow.subscribe(1, "/flood/**").await;
    slow.send(Message::Ping).await;
    assert_eq!(slow.recv().await, Message::Pong);
    // The subscriber stops reading; distinct addresses, so nothing coalesces, until its queue
    // is backlogged (a quarter of the soft limit) but not congested.
    let (mut publisher, _) = WsClient::connect(&url).await;
    let value = Value::Bytes(vec![7u8; 2048].into());
    let mut i = 0u32;
    while gauge(&addr, "clasp_backlogged_consumers").await < 1.0 {
        for _ in 0..500 {
            i += 1;
            let frame = encode(&Message::Set(Set {
                address: format!("/flood/{i}").into(),
                value: value.clone(),
                ..Default::default()
            }))
            .unwrap();
            publisher.send_raw(frame.to_vec()).await;
        }
        assert!(i < 200_000, "the subscriber's queue never filled");
    }
    assert_eq!(gauge(&addr, "clasp_slow_consumers").await, 0.0);
    // It leaves with its queue full.
    drop(slow);
    let mut cleared = false;
    for _ in 0..200 {
        if gauge(&addr, "clasp_backlogged_consumers").await == 0.0 {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cleared, "the backlogged gauge outlived the connection");
    assert_eq!(gauge(&addr, "clasp_queued_bytes").await, 0.0);
    // Publishers no longer wait for it: a flat-out burst is not held back once.
    let waits = gauge(&addr, "clasp_publisher_waits_total").await;
    for _ in 0..5000 {
        i += 1;
        let frame = encode(&Message::Set(Set {
            address: format!("/flood/{i}").into(),
            value: Value::Int(1),
            ..Default::default()
        }))
        .unwrap();
        publisher.send_raw(frame.to_vec()).await;
    }
    publisher.send(Message::Ping).await;
    loop {
        if let Message::Pong = publisher.recv().await {
            break;
        }
    }
    assert_eq!(gauge(&addr, "clasp_publisher_waits_total").await, waits);
    let _ = stop.send(());
    let _ = task.await;
}

// ---------------------------------------------------------------------------------------------
// 4. Memory budgets count bytes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_cut_off_by_bytes_not_frames() {
    let (url, addr, stop, task) = open_router(|_| {}).await;
    let (mut slow, _) = WsClient::connect(&url).await;
    slow.subscribe(1, "/big/**").await;
    slow.send(Message::Ping).await;
    assert_eq!(slow.recv().await, Message::Pong);
    let (mut publisher, _) = WsClient::connect(&url).await;
    let frame = encode(&Message::Publish(Publish {
        address: "/big/event".into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(Value::Bytes(vec![9u8; 60_000].into())),
        ..Default::default()
    }))
    .unwrap();
    let mut peak = 0.0f64;
    for i in 0..1000 {
        publisher.send_raw(frame.to_vec()).await;
        if i % 50 == 0 {
            peak = peak.max(gauge(&addr, "clasp_queued_bytes").await);
        }
    }
    publisher.send(Message::Ping).await;
    loop {
        if let Message::Pong = publisher.recv().await {
            break;
        }
    }
    // 60 MB were sent to it; at most the 16 MiB bound was ever queued, then it was cut off.
    assert!(peak <= (17 << 20) as f64, "{peak} bytes queued");
    assert_eq!(gauge(&addr, "clasp_slow_disconnects_total").await, 1.0);
    // Its goodbye ERROR waits for a socket that never drains, until the writer is dropped.
    let mut freed = false;
    for _ in 0..300 {
        if gauge(&addr, "clasp_queued_bytes").await == 0.0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "queued bytes outlived the connection");
    drop(slow);
    let _ = stop.send(());
    let _ = task.await;
}
