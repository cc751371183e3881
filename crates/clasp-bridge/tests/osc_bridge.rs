//! The OSC bridge with a UDP socket speaking OSC (rosc) as the app: both ways, bundles with
//! future time tags scheduled by the router, address patterns against known params, garbage
//! counted.
#![allow(clippy::unwrap_used, missing_docs)]

mod osc_support;
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
use osc_support::{msg, recv, send};
use rosc::{OscBundle, OscPacket, OscType};
use support::{Router, within};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

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
        targets: vec![app.local_addr().unwrap()],
        ..OscBridgeConfig::new("127.0.0.1:0".parse().unwrap())
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

#[tokio::test]
async fn a_change_from_one_app_reaches_the_other_apps() {
    let r = Router::start().await;
    let surface = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let visuals = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = OscBridgeConfig {
        targets: vec![surface.local_addr().unwrap(), visuals.local_addr().unwrap()],
        ..OscBridgeConfig::new("127.0.0.1:0".parse().unwrap())
    };
    let link = RouterLink::connect(&r.url, "osc", None).await.unwrap();
    let bridge = OscBridge::start(link, cfg).await.unwrap();
    let port = bridge.local_addr().unwrap();
    let stats = Arc::new(OscStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(stats.clone(), stop.clone()));
    // The surface moves a fader (sending from the port it listens on): the visuals hear it,
    // the surface does not get its own move back.
    send(&surface, port, msg("/fader/1", vec![OscType::Float(0.5)])).await;
    let heard = recv(&visuals).await;
    assert_eq!(
        (heard.addr.as_str(), heard.args),
        ("/fader/1", vec![OscType::Float(0.5)])
    );
    send(&visuals, port, msg("/scene", vec![OscType::Int(2)])).await;
    let heard = recv(&surface).await;
    assert_eq!(
        heard.addr, "/scene",
        "the surface heard its own fader first"
    );
    let mut buf = [0u8; 256];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), visuals.recv_from(&mut buf))
            .await
            .is_err(),
        "the visuals got their own scene back"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
