//! What the router refuses, answered in place on the typed door: a session opened with a token
//! it does not accept, and a registration the token's scopes do not allow.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use clasp_client::{Client, ReconnectPolicy, Value};
use clasp_osc::OscConfig;
use clasp_router::server::ServerConfig;
use common::*;
use rosc::OscType;

/// A router that requires tokens: `token` may write and read under `/synth`, `admin` anything.
fn auth_config(dir: &tempfile::TempDir, token: &str, admin: &str) -> ServerConfig {
    let file = dir.path().join("tokens.txt");
    std::fs::write(
        &file,
        format!("{token} write:/synth/**\n{admin} admin:/**\n"),
    )
    .unwrap();
    let mut config = ServerConfig::default();
    config.auth.token_file = Some(file);
    config
}

#[tokio::test]
async fn a_refused_token_opens_no_session_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let token = clasp_router::server::tokens::generate();
    let admin = clasp_router::server::tokens::generate();
    let target = udp().await;
    let rig = Rig::start_with(
        auth_config(&dir, &token, &admin),
        OscConfig {
            // Not in the token file.
            token: Some(clasp_router::server::tokens::generate()),
            feedback: vec![target.local_addr().unwrap()],
            ..OscConfig::default()
        },
    )
    .await;
    // The static target is told why it gets nothing.
    let m = recv(&target).await;
    assert_eq!(m.addr, "/clasp/error");
    assert!(matches!(m.args[0], OscType::Int(300..=399)), "{m:?}");
    let base = rig.sessions();
    let sock = udp().await;
    send(&sock, rig.osc, &msg("/synth/volume", vec![OscType::Int(1)])).await;
    let s = rig
        .wait_stats("the refused source's datagram", |s| {
            s.rejected_datagrams >= 1
        })
        .await;
    assert_eq!(s.peers, 0, "{s:?}");
    assert!(s.peers_opened >= 2 && s.router_errors >= 2, "{s:?}");
    assert_eq!(
        rig.sessions(),
        base,
        "no router session for a refused token"
    );
    let c = Client::builder(&rig.url)
        .token(admin)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    assert!(c.get("/synth/volume").await.is_err());
    rig.stop().await;
}

#[tokio::test]
async fn a_refused_registration_is_dropped_and_can_be_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let token = clasp_router::server::tokens::generate();
    let admin = clasp_router::server::tokens::generate();
    let rig = Rig::start_with(
        auth_config(&dir, &token, &admin),
        OscConfig {
            token: Some(token),
            max_registrations_per_peer: 1,
            ..OscConfig::default()
        },
    )
    .await;
    let peer = verified(&rig).await;
    // Refused by the scopes: it does not take the peer's only registration slot.
    for _ in 0..2 {
        control(&peer, rig.osc, "/clasp/subscribe", "/lights/**").await;
        let m = recv(&peer).await;
        assert_eq!(m.addr, "/clasp/error");
        assert_eq!(m.args[0], OscType::Int(301));
    }
    control(&peer, rig.osc, "/clasp/subscribe", "/synth/**").await;
    send(&peer, rig.osc, &msg("/synth/own", vec![OscType::Int(1)])).await;
    let c = Client::builder(&rig.url)
        .token(admin)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    wait_value(&c, "/synth/own", &Value::Int(1)).await;
    c.set("/synth/other", 2).await.unwrap();
    // Its own write is not echoed; the other is fed back.
    expect(&peer, "/synth/other", vec![OscType::Int(2)]).await;
    assert_eq!(rig.stats().echo_suppressed, 1);
    rig.stop().await;
}
