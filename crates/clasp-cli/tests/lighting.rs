//! The lighting scenario end to end inside `clasp server`: a 14-bit MIDI fader on a pty drives
//! a moving head's 16-bit pan (coarse and fine channels) on an sACN universe through two
//! mappings, and the sACN packets the bridge sends are read back by Wireshark (`tshark`) with
//! the coarse and fine bytes the fader asked for. Prints `SKIPPED` without tshark.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "../../clasp-router/tests/support/mod.rs"]
mod support;
#[path = "../../clasp-bridge/tests/wire_support/mod.rs"]
mod wire_support;

use std::io::Write;
use std::time::Duration;

use common::{pty, start};

/// The sACN data packets arriving at `s` within `wait`.
async fn gather(s: &tokio::net::UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, s.recv_from(&mut buf)).await {
        got.push(buf[..n].to_vec());
    }
    got
}

#[tokio::test]
async fn a_midi_fader_drives_a_16_bit_pan_on_sacn() {
    if !wire_support::have_tshark() {
        return;
    }
    let (mut far, _slave, dev) = pty();
    let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("show.toml");
    let scale = "{ type = \"scale\", from_min = 0, from_max = 16383, to_min = 0, to_max = 65535 }";
    let config = format!(
        r#"
[[bridge]]
kind = "midi"
name = "fader"
port = "{dev}"

[[bridge]]
kind = "sacn"
bind = "127.0.0.1:0"
multicast = false
targets = ["{receiver}"]
universes = [1]
direction = "output"
source_name = "moving heads"

# Pan of the head at channel 1: coarse on 1, fine on 2.
[[mapping]]
from = "/midi/fader/ch/1/cc14/1"
to = "/sacn/1/1"
transform = [{scale}, {{ type = "split16", part = "coarse" }}]

[[mapping]]
from = "/midi/fader/ch/1/cc14/1"
to = "/sacn/1/2"
transform = [{scale}, {{ type = "split16", part = "fine" }}]
"#,
        dev = dev.display(),
        receiver = receiver.local_addr().unwrap(),
    );
    std::fs::write(&path, config).unwrap();
    let _server = start(&["--memory", "--config", path.to_str().unwrap()]);
    // The fader at 10000 of 16383: CC 1 = 78 (MSB), CC 33 = 16 (LSB) → 16-bit 40002
    // (round(10000 × 65535 / 16383)) → coarse 156, fine 66.
    let want = ((10000.0f64 * 65535.0 / 16383.0).round()) as u16;
    assert_eq!((want >> 8, want & 255), (156, 66));
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        // Sent again until the bridge (started by the server) has it.
        far.write_all(&[0xB0, 0x01, 78, 0xB0, 0x21, 16]).unwrap();
        got = gather(&receiver, Duration::from_millis(300)).await;
        if got
            .iter()
            .any(|p| p.len() == 638 && p[126] == 156 && p[127] == 66)
        {
            break;
        }
    }
    // The data packets (universe discovery goes to the same receiver every 10 s).
    got.retain(|p| p.len() == 638);
    let heur = ["--enable-heuristic", "acn", "-o", "acn.dmx_enable:TRUE"];
    let rows = wire_support::fields(
        &got,
        5568,
        &heur,
        &[
            "acn.dmx.universe",
            "acn.dmx.source_name",
            "acn.dmx.count",
            "_ws.malformed",
        ],
    );
    assert!(rows.iter().all(|r| r[3].is_empty()), "{rows:?}");
    assert!(
        rows.iter().all(|r| r[..3] == ["1", "moving heads", "513"]),
        "{rows:?}"
    );
    // The pan bytes, as Wireshark reads them (hex, without the DMX display).
    let data = wire_support::fields(
        &got,
        5568,
        &[&heur[..], &["--disable-protocol", "dmx_chan"]].concat(),
        &["acn.dmx.data"],
    );
    // Wireshark's own reading of the slots: channel 1 = 0x9C (156), channel 2 = 0x42 (66).
    assert!(
        data.iter().rev().any(|r| r[0].contains("001-020: 9C 42 ")),
        "{data:?}"
    );
    let last = got.iter().rev().find(|p| p.len() == 638).unwrap();
    assert_eq!(
        (last[126], last[127]),
        (156, 66),
        "the pan's coarse and fine"
    );
}
