//! Reflection and amplification (security audit, issue 13 item 3): what the listener sends a
//! source it has not verified is bounded by 3× what the source sent; a cookie round trip or the
//! allow-list lift the bound; every destination has a byte rate limit.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use clasp_client::{Client, Value};
use clasp_osc::{ByteRate, OscConfig};
use common::*;
use rosc::{OscPacket, OscType};

/// A string value of `len` bytes.
fn text(len: usize, c: char) -> Value {
    Value::String(c.to_string().repeat(len).as_str().into())
}

/// `n` params of `len` bytes at `<prefix>/0` … `<prefix>/<n-1>`, all stored when this returns.
async fn params(c: &Client, prefix: &str, n: usize, len: usize) {
    let value = text(len, 'x');
    for i in 0..n - 1 {
        c.set(&format!("{prefix}/{i}"), value.clone())
            .await
            .unwrap();
    }
    c.set_confirmed(&format!("{prefix}/{}", n - 1), value)
        .await
        .unwrap();
}

fn encode(p: &OscPacket) -> Vec<u8> {
    rosc::encoder::encode(p).unwrap()
}

fn total(datagrams: &[Vec<u8>]) -> usize {
    datagrams.iter().map(Vec::len).sum()
}

/// The audit's case: 300 params of 8 KB under /osc/big and one 36-byte subscribe from a source
/// that never proved its address. Before the fix it got ~700 KB back (~19,000×), and ~30,000×
/// with unsubscribe/subscribe repeated. Now it gets a cookie, and the router does no work for
/// it: its registration waits, unsubscribed, until it verifies.
#[tokio::test]
async fn an_unverified_source_gets_at_most_three_times_what_it_sent() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    params(&c, "/osc/big", 300, 8 * 1024).await;
    let sock = udp().await;
    let subscribe = encode(&msg(
        "/clasp/subscribe",
        vec![OscType::String("/osc/big/**".into())],
    ));
    let unsubscribe = encode(&msg(
        "/clasp/unsubscribe",
        vec![OscType::String("/osc/big/**".into())],
    ));
    assert_eq!(subscribe.len(), 36);
    let subscriptions = rig.router.with_core(|core, _| core.subscription_count());
    sock.send_to(&subscribe, rig.osc).await.unwrap();
    // Each subscribe from an unverified source is answered with a cookie (sent or, past the
    // budget, dropped) and nothing else.
    let accounted = |s: &clasp_osc::OscStats| s.cookies_sent + s.amplification_dropped;
    rig.wait_stats("the cookie", |s| accounted(s) >= 1).await;
    let got = received_now(&sock);
    let sent = subscribe.len();
    assert!(
        total(&got) <= 3 * sent,
        "{} bytes back for {sent}",
        total(&got)
    );
    // What it got is the cookie, telling it how to be verified.
    let first = decode(&got[0]);
    assert_eq!(first.addr, "/clasp/verify");
    assert!(matches!(&first.args[..], [OscType::String(s)] if s.len() == 22));
    assert_eq!(
        rig.router.with_core(|core, _| core.subscription_count()),
        subscriptions,
        "the router subscribed for an unverified source"
    );

    // Repeating unsubscribe/subscribe does not add up to more.
    let mut sent = sent;
    for round in 2..=20u64 {
        sock.send_to(&unsubscribe, rig.osc).await.unwrap();
        sock.send_to(&subscribe, rig.osc).await.unwrap();
        sent += unsubscribe.len() + subscribe.len();
        rig.wait_stats("the cookie", |s| accounted(s) >= round)
            .await;
    }
    let got = [got, received_now(&sock)].concat();
    assert!(
        total(&got) <= 3 * sent,
        "{} bytes back for {sent}",
        total(&got)
    );
    let s = rig.stats();
    assert_eq!(s.verified_peers, 0);
    assert_eq!(s.feedback_sent, 0, "{s:?}");
    assert_eq!(
        rig.router.with_core(|core, _| core.subscription_count()),
        subscriptions
    );
    rig.stop().await;
}

#[tokio::test]
async fn after_the_cookie_round_trip_the_source_gets_its_feedback() {
    let rig = Rig::start(OscConfig::default()).await;
    let c = rig.client().await;
    c.set_confirmed("/fb/big", text(1000, 'a')).await.unwrap();
    let sock = udp().await;
    control(&sock, rig.osc, "/clasp/subscribe", "/fb/**").await;
    let m = recv(&sock).await;
    assert_eq!(m.addr, "/clasp/verify");
    let cookie = m.args;
    // Its registration waits: a datagram a second later, whatever it is, brings another
    // cookie (reminders go at most once a second).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(
        &sock,
        rig.osc,
        &msg("/elsewhere/note", vec![OscType::Int(1)]),
    )
    .await;
    let again = recv(&sock).await;
    assert_eq!(again.addr, "/clasp/verify");
    rig.wait_stats("the second cookie", |s| s.cookies_sent == 2)
        .await;

    // Someone else's cookie (or a wrong one) verifies nothing; a fresh cookie comes back.
    let other = udp().await;
    send(&other, rig.osc, &msg("/clasp/verify", cookie.clone())).await;
    let fresh = recv(&other).await;
    assert_eq!(fresh.addr, "/clasp/verify");
    assert_ne!(fresh.args, cookie);
    assert_eq!(rig.stats().verify_failed, 1);
    assert_eq!(rig.stats().verifications, 0);

    // The round trip: the source is verified, and gets the current value it missed, then
    // changes, whatever their size.
    send(&sock, rig.osc, &msg("/clasp/verify", cookie)).await;
    let s = rig
        .wait_stats("the verification", |s| s.verifications == 1)
        .await;
    assert_eq!(s.verified_peers, 1);
    expect(&sock, "/fb/big", vec![OscType::String("a".repeat(1000))]).await;
    c.set("/fb/big", text(5000, 'b')).await.unwrap();
    expect(&sock, "/fb/big", vec![OscType::String("b".repeat(5000))]).await;
    rig.stop().await;
}

#[tokio::test]
async fn an_allow_listed_source_gets_feedback_without_a_round_trip() {
    let rig = Rig::start(OscConfig {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        ..OscConfig::default()
    })
    .await;
    let c = rig.client().await;
    c.set_confirmed("/lan/x", text(1000, 'a')).await.unwrap();
    let sock = udp().await;
    control(&sock, rig.osc, "/clasp/subscribe", "/lan/**").await;
    // The value comes first: no cookie, no budget.
    expect(&sock, "/lan/x", vec![OscType::String("a".repeat(1000))]).await;
    c.set("/lan/x", text(5000, 'b')).await.unwrap();
    expect(&sock, "/lan/x", vec![OscType::String("b".repeat(5000))]).await;
    let s = rig.stats();
    assert_eq!(
        (s.cookies_sent, s.amplification_dropped, s.verified_peers),
        (0, 0, 1),
        "{s:?}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn the_per_source_rate_limit_drops_and_counts() {
    let start = Instant::now();
    let rate = ByteRate {
        per_sec: 1,
        burst: 4096,
    };
    let rig = Rig::start(OscConfig {
        allow: vec!["127.0.0.1/32".parse().unwrap()],
        send_rate: Some(rate),
        ..OscConfig::default()
    })
    .await;
    let c = rig.client().await;
    params(&c, "/rl", 20, 1000).await;
    let sock = udp().await;
    control(&sock, rig.osc, "/clasp/subscribe", "/rl/**").await;
    let s = rig
        .wait_stats("the snapshot to be handled", |s| {
            s.feedback_sent + s.rate_limited >= 20
        })
        .await;
    let got = received_now(&sock);
    // Each value is a 1016-byte message: four fit the burst, the refill (1 byte/s) adds none
    // for the next quarter of an hour.
    let bound = rate.burst + rate.per_sec * (start.elapsed().as_secs() + 1);
    assert!(total(&got) as u64 <= bound, "{} bytes", total(&got));
    assert!(s.rate_limited >= 1, "{s:?}");
    assert_eq!(got.len() as u64, s.feedback_sent, "{s:?}");
    assert_eq!(s.amplification_dropped, 0, "allow-listed: no budget");
    rig.stop().await;
}
