//! `clasp bridge --config FILE` as a process against a real `clasp server`: mappings run both
//! ways, the process stops cleanly on SIGINT, and a bad configuration is refused with the reason.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "../../clasp-router/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clasp_client::{Client, ReconnectPolicy, Value};
use common::{pty, start};
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
[[mapping]]
from = "/midi/{dev}/ch/1/cc/{n}"
to = "/mixer/{dev}/{n}/volume"
transform = [{ type = "scale", from_min = 0, from_max = 127, to_min = 0.0, to_max = 1.0 }]
both_ways = true
"#;

fn bridge(config: &std::path::Path, url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clasp"));
    c.args(["bridge", "--config"])
        .arg(config)
        .args(["--router", url, "--status-every", "0"])
        .env_remove("CLASP_TOKEN")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    c
}

#[tokio::test]
async fn mappings_run_from_a_config_file_and_stop_on_sigint() {
    let server = start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let mut child = bridge(&path, &server.url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = rx.recv_timeout(WAIT).unwrap();
    assert!(
        first.contains("1 mapping(s) running against ws://"),
        "{first}"
    );

    let c = Client::builder(&server.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let mut mixer = c.subscribe("/mixer/**").await.unwrap();
    c.set_confirmed("/midi/nano/ch/1/cc/7", 127).await.unwrap();
    let u = tokio::time::timeout(WAIT, mixer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/mixer/nano/7/volume", &Value::Float(1.0))
    );

    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let last = rx.recv_timeout(WAIT).unwrap();
    assert!(
        last.starts_with("clasp bridge: mappings (1) stopped ("),
        "{last}"
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_bad_mapping_is_refused_with_its_number_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        "[[mapping]]\nfrom = \"/a\"\nto = \"/b\"\n\n[[mapping]]\nfrom = \"/a/{n}\"\nto = \"/b/{m}\"\n",
    )
    .unwrap();
    // No router is needed to find out: the file is checked first.
    let out = bridge(&path, "ws://127.0.0.1:9").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("mapping 2: `to` uses `{m}`, which `from` does not capture"),
        "{err}"
    );
}

#[tokio::test]
async fn clasp_server_runs_the_mappings_of_its_config_file_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let server = start(&["--memory", "--config", path.to_str().unwrap()]);
    let c = Client::builder(&server.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let mut mixer = c.subscribe("/mixer/**").await.unwrap();
    c.set_confirmed("/midi/nano/ch/1/cc/7", 127).await.unwrap();
    let u = tokio::time::timeout(WAIT, mixer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/mixer/nano/7/volume", &Value::Float(1.0))
    );
    // Feedback, in-process too.
    let mut fader = c.subscribe("/midi/**").await.unwrap();
    c.ping().await.unwrap();
    c.set_confirmed("/mixer/nano/7/volume", 0.0).await.unwrap();
    loop {
        let u = tokio::time::timeout(WAIT, fader.next())
            .await
            .unwrap()
            .unwrap();
        if u.value == Value::Int(0) {
            assert_eq!(&*u.address, "/midi/nano/ch/1/cc/7");
            break;
        }
    }
    counters_reach(
        &server.url,
        &[
            ("mappings", "messages_out_total", 2.0),
            ("mappings", "errors_total", 0.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_midi_fader_drives_a_mixer_inside_the_router_and_gets_feedback() {
    use std::io::{Read, Write};
    let (mut far, _slave, dev) = pty();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    let config = format!(
        "[[bridge]]\nkind = \"midi\"\nname = \"nano\"\nport = \"{}\"\n{CONFIG}",
        dev.display()
    );
    std::fs::write(&path, config).unwrap();
    let server = start(&["--memory", "--config", path.to_str().unwrap()]);
    let c = Client::builder(&server.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let mut mixer = c.subscribe("/mixer/**").await.unwrap();
    c.ping().await.unwrap();
    // The fader sends CC 7 = 127 on channel 1: the mixer follows, scaled.
    far.write_all(&[0xB0, 0x07, 0x7F]).unwrap();
    let u = tokio::time::timeout(WAIT, mixer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/mixer/nano/7/volume", &Value::Float(1.0))
    );
    // The mixer moves elsewhere: the fader gets the CC back, and only that.
    c.set_confirmed("/mixer/nano/7/volume", 0.5).await.unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut b = [0u8; 3];
        far.read_exact(&mut b).unwrap();
        b
    });
    let got = tokio::time::timeout(WAIT, got).await.unwrap().unwrap();
    assert_eq!(got, [0xB0, 0x07, 0x40]);
    counters_reach(
        &server.url,
        &[
            ("midi nano", "messages_in_total", 1.0),
            ("midi nano", "messages_out_total", 1.0),
        ],
    )
    .await;
}

/// The show the bridges exist for: a MIDI fader drives a VJ app's OSC mixer through a scaling
/// mapping, and the app's own moves come back to the fader; everything inside `clasp server`,
/// and no loop.
#[tokio::test]
async fn midi_cc_to_osc_app_and_back_with_no_loop() {
    use std::io::{Read, Write};
    let (mut far, _slave, dev) = pty();
    let app = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let osc_in = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("show.toml");
    let config = format!(
        r#"
[[bridge]]
kind = "midi"
name = "nano"
port = "{dev}"

[[bridge]]
kind = "osc"
listen = "{osc_in}"
targets = ["{app}"]

[[mapping]]
from = "/midi/nano/ch/1/cc/{{n}}"
to = "/osc/mixer/{{n}}/volume"
transform = [{{ type = "scale", from_min = 0, from_max = 127, to_min = 0.0, to_max = 1.0 }}]
both_ways = true
"#,
        dev = dev.display(),
        app = app.local_addr().unwrap(),
    );
    std::fs::write(&path, config).unwrap();
    let server = start(&["--memory", "--config", path.to_str().unwrap()]);
    // Fader up: the app's mixer gets 1.0.
    far.write_all(&[0xB0, 0x07, 0x7F]).unwrap();
    let m = recv_osc(&app).await;
    assert_eq!(
        (m.addr.as_str(), m.args.as_slice()),
        ("/mixer/7/volume", &[rosc::OscType::Float(1.0)][..])
    );
    // The app moves its mixer to 0.25: the fader gets CC 7 = 32.
    let msg = rosc::OscPacket::Message(rosc::OscMessage {
        addr: "/mixer/7/volume".into(),
        args: vec![rosc::OscType::Float(0.25)],
    });
    app.send_to(&rosc::encoder::encode(&msg).unwrap(), osc_in)
        .await
        .unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut b = [0u8; 3];
        far.read_exact(&mut b).unwrap();
        (b, far)
    });
    let (got, mut far) = tokio::time::timeout(WAIT, got).await.unwrap().unwrap();
    assert_eq!(got, [0xB0, 0x07, 0x20]);
    // No loop: a second fader move goes through, and it is the next thing the app hears (an
    // echo of the app's own move, or of the fader's feedback, would have come first).
    far.write_all(&[0xB0, 0x07, 0x00]).unwrap();
    let m = recv_osc(&app).await;
    assert_eq!(m.args, [rosc::OscType::Float(0.0)]);
    let osc = format!("osc {osc_in}");
    counters_reach(
        &server.url,
        &[
            ("midi nano", "messages_in_total", 2.0),
            ("midi nano", "messages_out_total", 1.0),
            (osc.as_str(), "messages_in_total", 1.0),
            (osc.as_str(), "messages_out_total", 2.0),
            ("mappings", "messages_out_total", 3.0),
        ],
    )
    .await;
}

/// Waits until the bridges' counters in `/metrics` are exactly `want` (a counter is bumped
/// just after its write completes, so the far side may see the write first); a loop would
/// overshoot and never settle there.
async fn counters_reach(url: &str, want: &[(&str, &str, f64)]) {
    let host = url.trim_start_matches("ws://").trim_end_matches('/');
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = support::http_get(host, "/metrics").await;
        let got: Vec<Option<f64>> = want
            .iter()
            .map(|(bridge, name, _)| {
                support::metric(
                    &metrics,
                    &format!("clasp_bridge_{name}{{bridge=\"{bridge}\"}}"),
                )
            })
            .collect();
        if got.iter().zip(want).all(|(g, (_, _, w))| *g == Some(*w)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters {got:?}, wanted {want:?}\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next OSC message on `app`.
async fn recv_osc(app: &tokio::net::UdpSocket) -> rosc::OscMessage {
    let mut buf = [0u8; 1024];
    let (n, _) = tokio::time::timeout(WAIT, app.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
        rosc::OscPacket::Message(m) => m,
        other => panic!("{other:?}"),
    }
}
