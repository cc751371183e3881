//! Dissecting what a bridge sent with Wireshark's own dissectors: datagrams are written as a
//! capture with `text2pcap` (dummy IPv4 and UDP headers on the protocol's port) and read back
//! with `tshark`. Debian's `tshark` package; tests print `SKIPPED` without it.
#![allow(dead_code, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::process::Command;

/// Whether tshark and text2pcap are here (else a SKIPPED line is printed).
pub(crate) fn have_tshark() -> bool {
    let ok = ["tshark", "text2pcap"].iter().all(|t| {
        Command::new(t)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        println!("SKIPPED: tshark/text2pcap missing (apt-get install tshark)");
    }
    ok
}

/// A capture of `datagrams` as UDP from and to `port`.
fn capture(datagrams: &[Vec<u8>], port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for d in datagrams {
        for (i, chunk) in d.chunks(16).enumerate() {
            let _ = write!(text, "{:06x}", i * 16);
            for b in chunk {
                let _ = write!(text, " {b:02x}");
            }
            text.push('\n');
        }
        text.push('\n');
    }
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let out = Command::new("text2pcap")
        .args(["-q", "-4", "10.0.0.1,10.0.0.2", "-u"])
        .arg(format!("{port},{port}"))
        .arg(dir.path().join("in.txt"))
        .arg(dir.path().join("cap.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "text2pcap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// `tshark -T fields` over the capture: one row per packet, one column per field (`extra`
/// arguments before the fields, e.g. `--disable-protocol dmx_chan`).
pub(crate) fn fields(
    datagrams: &[Vec<u8>],
    port: u16,
    extra: &[&str],
    fields: &[&str],
) -> Vec<Vec<String>> {
    let dir = capture(datagrams, port);
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(dir.path().join("cap.pcap"))
        .args(extra)
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// Every malformed-packet or expert message Wireshark has about the capture (empty: clean).
pub(crate) fn complaints(datagrams: &[Vec<u8>], port: u16) -> Vec<String> {
    fields(
        datagrams,
        port,
        &[],
        &["_ws.malformed", "_ws.expert.message"],
    )
    .into_iter()
    .flatten()
    .filter(|c| !c.is_empty())
    .collect()
}
