//! The MIDI bridge on ALSA sequencer ports (the `alsa` feature): two virtual ports made with
//! midir play the device, the bridge connects to them by name, both ways. Needs a host with the
//! sequencer (`/dev/snd/seq`, e.g. the `snd-seq-dummy` module); elsewhere it prints `SKIPPED`.
#![cfg(feature = "alsa")]
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use clasp_bridge::RouterLink;
use clasp_bridge::midi::{MidiBridge, MidiConfig, MidiStats};
use clasp_client::{Client, ReconnectPolicy, Value};
use futures_util::StreamExt;
use midir::os::unix::{VirtualInput, VirtualOutput};
use midir::{MidiInput, MidiOutput};
use support::{Router, within};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_sequencer_port_both_ways() {
    if !std::path::Path::new("/dev/snd/seq").exists() {
        println!("SKIPPED: no ALSA sequencer on this host (/dev/snd/seq)");
        return;
    }
    // The "device": a port the bridge reads (our virtual output) and one it writes (our
    // virtual input), both named clasp-test-dev.
    let mut to_bridge = MidiOutput::new("clasp-test")
        .unwrap()
        .create_virtual("clasp-test-dev")
        .unwrap();
    let (tx, mut from_bridge) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let _listening = MidiInput::new("clasp-test")
        .unwrap()
        .create_virtual(
            "clasp-test-dev",
            move |_, msg, _| {
                let _ = tx.send(msg.to_vec());
            },
            (),
        )
        .unwrap();

    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let cfg = MidiConfig {
        name: "dev".into(),
        port: "alsa:clasp-test-dev".into(),
        namespace: "/midi".into(),
        input_only: false,
    };
    let link = RouterLink::connect(&r.url, "midi", None).await.unwrap();
    let bridge = MidiBridge::start(link, cfg).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(Arc::new(MidiStats::default()), stop.clone()));
    let mut sub = c.subscribe("/midi/dev/**").await.unwrap();
    c.ping().await.unwrap();

    to_bridge.send(&[0xB0, 0x07, 0x64]).unwrap();
    let u = within("the CC from the port", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/midi/dev/ch/1/cc/7", &Value::Int(100))
    );
    c.set_confirmed("/midi/dev/ch/1/cc/7", 0.5).await.unwrap();
    let got = within("the CC at the port", from_bridge.recv())
        .await
        .unwrap();
    assert_eq!(got, [0xB0, 0x07, 0x40]);
    stop.cancel();
    task.await.unwrap().unwrap();
}
