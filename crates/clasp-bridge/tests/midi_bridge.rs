//! The MIDI bridge with a pseudo-terminal as the device (raw mode, as `stty raw` would set a
//! serial port): bytes written on the terminal's other side come out as params and events at
//! the router, and changes made by others go back as bytes, never the device's own echo.
#![allow(clippy::unwrap_used, missing_docs)]

mod pty_support;
#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use clasp_bridge::RouterLink;
use clasp_bridge::midi::{MidiBridge, MidiConfig, MidiStats};
use clasp_client::{Client, ReconnectPolicy, SignalType, Value};
use futures_util::StreamExt;
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
async fn a_device_on_a_pty_both_ways() {
    let r = Router::start().await;
    let c = client(&r).await;
    let (mut far, path) = pty();
    let cfg = MidiConfig {
        name: "nano".into(),
        port: path,
        namespace: "/midi".into(),
        input_only: false,
    };
    let link = RouterLink::connect(&r.url, "midi", None).await.unwrap();
    let bridge = MidiBridge::start(link, cfg).await.unwrap();
    let stats = Arc::new(MidiStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(stats.clone(), stop.clone()));

    let mut sub = c.subscribe("/midi/nano/**").await.unwrap();
    c.ping().await.unwrap();
    // CC 7 = 100, then 101 by running status with a clock byte in the middle, then a note.
    far.send(&[0xB0, 0x07, 0x64, 0x07, 0xF8, 0x65, 0x90, 0x3C, 0x40])
        .await;
    let mut got = Vec::new();
    while got.len() < 4 {
        let u = within("updates from the device", sub.next()).await.unwrap();
        got.push((u.address.to_string(), u.value, u.kind));
    }
    assert_eq!(
        got,
        [
            (
                "/midi/nano/ch/1/cc/7".into(),
                Value::Int(100),
                SignalType::Param
            ),
            ("/midi/nano/clock".into(), Value::Null, SignalType::Event),
            (
                "/midi/nano/ch/1/cc/7".into(),
                Value::Int(101),
                SignalType::Param
            ),
            (
                "/midi/nano/ch/1/note/60".into(),
                Value::Int(64),
                SignalType::Param
            ),
        ]
    );

    // Someone else moves the fader (a normalised float): the device gets a CC. Nothing of its
    // own input came back before it (the echoes came in first and were recognised).
    c.set_confirmed("/midi/nano/ch/1/cc/7", 0.5).await.unwrap();
    assert_eq!(far.recv(3).await, [0xB0, 0x07, 0x40]);
    // A 14-bit value, an NRPN, and a transport event.
    c.set_confirmed("/midi/nano/ch/2/cc14/1", 16383)
        .await
        .unwrap();
    assert_eq!(far.recv(6).await, [0xB1, 0x01, 0x7F, 0xB1, 0x21, 0x7F]);
    c.emit("/midi/nano/transport", "start").await.unwrap();
    assert_eq!(far.recv(1).await, [0xFA]);
    // Not in the layout: counted, nothing sent (the next byte is the next real message).
    c.set_confirmed("/midi/nano/lights", 1).await.unwrap();
    c.set_confirmed("/midi/nano/ch/1/program", 5).await.unwrap();
    assert_eq!(far.recv(2).await, [0xC0, 0x05]);

    let s = &stats;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(s.messages_in.load(Relaxed), 4);
    // Counted just after the write completes: the far end may have the bytes first.
    within("the last write counted", async {
        while s.messages_out.load(Relaxed) < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(s.messages_out.load(Relaxed), 5);
    assert_eq!(s.unmapped.load(Relaxed), 1);
    assert_eq!(s.errors.load(Relaxed), 0);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_device_is_a_clear_error() {
    let r = Router::start().await;
    let link = RouterLink::connect(&r.url, "midi", None).await.unwrap();
    let cfg = MidiConfig {
        name: "nano".into(),
        port: "/nonexistent/midi".into(),
        namespace: "/midi".into(),
        input_only: false,
    };
    let e = MidiBridge::start(link.clone(), cfg.clone())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot open MIDI device /nonexistent/midi: "),
        "{e}"
    );
    // An ALSA sequencer port: without the `alsa` feature, a clear error saying what to do;
    // with it and no sequencer on this host (or no such port), one saying that.
    let seq = MidiConfig {
        port: "alsa:nothing-like-this".into(),
        ..cfg.clone()
    };
    let e = MidiBridge::start(link.clone(), seq)
        .await
        .unwrap_err()
        .to_string();
    if cfg!(feature = "alsa") {
        assert!(e.contains("ALSA sequencer"), "{e}");
    } else {
        assert!(e.contains("build clasp with `--features alsa`"), "{e}");
    }
    let bad = MidiConfig {
        name: "a/b".into(),
        ..cfg
    };
    let e = MidiBridge::start(link, bad).await.unwrap_err();
    assert!(e.to_string().contains("MIDI device name `a/b`"), "{e}");
}
