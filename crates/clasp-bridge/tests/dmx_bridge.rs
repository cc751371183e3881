//! The ENTTEC DMX USB Pro bridge with a pseudo-terminal as the widget: the bytes written match
//! the API's framing exactly (the parameters request first, then label-6 frames with the START
//! code and 512 slots, floats scaled and rounded), a widget reply (label 3) is parsed, an
//! unchanged frame is sent again about once a second, and in input mode received frames
//! (label 5) become params.
#![allow(clippy::unwrap_used, missing_docs)]

mod pty_support;
#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use clasp_bridge::RouterLink;
use clasp_bridge::lighting::dmx_bridge::{Direction, DmxBridge, DmxConfig};
use clasp_bridge::lighting::enttec::Params;
use clasp_bridge::stats::BridgeStats;
use clasp_client::{Client, ReconnectPolicy, Value};
use pty_support::pty;
use support::{Router, within};
use tokio_util::sync::CancellationToken;

async fn client(r: &Router) -> Client {
    Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn frames_to_the_widget_byte_for_byte() {
    let r = Router::start().await;
    let c = client(&r).await;
    c.set_confirmed("/dmx/1/1", 1.0).await.unwrap();
    let (mut widget, path) = pty();
    let link = RouterLink::connect(&r.url, "dmx", None).await.unwrap();
    let b = DmxBridge::start(link, DmxConfig::new(&path)).await.unwrap();
    let params = b.widget();
    let stats = Arc::new(BridgeStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(b.run(stats.clone(), stop.clone()));

    // First the parameters request: label 3, two bytes of user-config size.
    assert_eq!(
        widget.recv(7).await,
        [0x7E, 0x03, 0x02, 0x00, 0x00, 0x00, 0xE7]
    );
    // Then the universe as the router holds it: label 6, length 513, START code 0, slots, 0xE7.
    let frame = widget.recv(518).await;
    assert_eq!(frame[..6], [0x7E, 0x06, 0x01, 0x02, 0x00, 255]);
    assert!(frame[6..517].iter().all(|b| *b == 0));
    assert_eq!(frame[517], 0xE7);
    // A change: channel 2 at 0.5 is 128 (rounded), channel 512 an integer.
    c.set("/dmx/1/2", 0.5).await.unwrap();
    c.set_confirmed("/dmx/1/512", 42).await.unwrap();
    let f = within("the changed frame", async {
        loop {
            let f = widget.recv(518).await;
            if f[516] == 42 && f[6] == 128 {
                return f;
            }
        }
    })
    .await;
    assert_eq!(f[..7], [0x7E, 0x06, 0x01, 0x02, 0x00, 255, 128]);
    // The widget answers the parameters request: firmware 1.68, BREAK 9, MAB 1, 40 Hz.
    widget
        .send(&[0x7E, 0x03, 0x05, 0x00, 0x44, 0x01, 9, 1, 40, 0xE7])
        .await;
    within("the widget's reply parsed", async {
        while params.lock().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        *params.lock(),
        Some(Params {
            firmware: 0x0144,
            break_time: 9,
            mab_time: 1,
            rate: 40
        })
    );
    // Nothing changes: the same frame again within about a second (keep-alive).
    let again = within("the keep-alive", widget.recv(518)).await;
    assert_eq!(again, f);
    assert_eq!(stats.errors.load(Relaxed), 0);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn frames_from_the_widget_become_params() {
    let r = Router::start().await;
    let c = client(&r).await;
    let (mut widget, path) = pty();
    let mut cfg = DmxConfig::new(&path);
    cfg.direction = Direction::Input;
    cfg.universe = 4;
    let link = RouterLink::connect(&r.url, "dmx", None).await.unwrap();
    let b = DmxBridge::start(link, cfg).await.unwrap();
    let stats = Arc::new(BridgeStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(b.run(stats.clone(), stop.clone()));
    // The parameters request, then "send every frame you receive" (label 8, data 0).
    assert_eq!(
        widget.recv(7 + 6).await,
        [
            0x7E, 0x03, 0x02, 0x00, 0x00, 0x00, 0xE7, 0x7E, 0x08, 0x01, 0x00, 0x00, 0xE7
        ]
    );
    // Label 5: status 0, START code 0, slots 10 and 20; garbage before it is skipped.
    widget
        .send(&[0x55, 0x7E, 0x05, 0x04, 0x00, 0x00, 0x00, 10, 20, 0xE7])
        .await;
    within("the received channels", async {
        while c.get("/dmx/4/2").await.ok() != Some(Value::Int(20)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(c.get("/dmx/4/1").await.unwrap(), Value::Int(10));
    assert_eq!(stats.skipped.load(Relaxed), 1);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_widget_and_both_ways_are_clear_errors() {
    let r = Router::start().await;
    let link = RouterLink::connect(&r.url, "dmx", None).await.unwrap();
    let e = DmxBridge::start(link.clone(), DmxConfig::new("/nonexistent/ttyUSB9"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cannot open the DMX widget /nonexistent/ttyUSB9"),
        "{e}"
    );
    let mut both = DmxConfig::new("/dev/null");
    both.direction = Direction::Both;
    let e = DmxBridge::start(link, both).await.unwrap_err().to_string();
    assert!(e.contains("sends or receives, not both"), "{e}");
}
