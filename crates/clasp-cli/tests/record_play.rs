//! `clasp record` and `clasp play` as processes against real routers: a scripted sequence
//! (params, events, a bundle, bytes) recorded with its timing, played onto a fresh router while
//! another recorder listens there, and compared: the same entries in the same order, the same
//! values, the bundle sent as one BUNDLE, the gaps within loose bounds. Also `--from` (the state
//! at that point restored first) and `--loop` ended by Ctrl-C.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clasp_client::proto::{Publish, PublishPayload};
use clasp_client::recording::value::identical;
use clasp_client::recording::{Entry, EntryKind, Recording, Writer, read};
use clasp_client::{Client, Message, SignalType, Value};
use common::{Proc, start};

/// How long a test waits for a tool.
const WAIT: Duration = Duration::from_secs(15);
/// How far a played gap may be from the recorded one (loose: a slow or busy machine).
const SLACK_US: i64 = 50_000;

fn clasp(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clasp"));
    c.args(args)
        .env_remove("CLASP_URL")
        .env_remove("CLASP_TOKEN");
    c
}

/// A `clasp record` running in the background, its initial state written.
struct Recorder {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Recorder {
    fn start(url: &str, out: &Path) -> Recorder {
        let mut child = clasp(&["record", "--pattern", "/show/**", "--url", url])
            .arg("--out")
            .arg(out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let _ = tx.send(line.unwrap_or_default());
            }
        });
        let line = rx.recv_timeout(WAIT).expect("record did not start");
        assert!(line.contains("params at the start"), "{line}");
        Recorder { child, stderr: rx }
    }

    /// Ends it with SIGTERM; returns its recording and its last line.
    fn stop(mut self, out: &Path) -> (Recording, String) {
        signal(&self.child, "-TERM");
        let status = self.child.wait().unwrap();
        let lines: Vec<String> = self.stderr.try_iter().collect();
        assert!(status.success(), "record failed: {lines:?}");
        let last = lines.last().cloned().unwrap_or_default();
        let rec = read(BufReader::new(std::fs::File::open(out).unwrap())).unwrap();
        (rec, last)
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// `clasp play FILE ARGS --url URL --json`, to the end.
fn play(file: &Path, url: &str, args: &[&str]) -> (serde_json::Value, String) {
    let out: Output = clasp(&["play"])
        .arg(file)
        .args(args)
        .args(["--url", url, "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "play failed: {err}");
    let report = serde_json::from_slice(&out.stdout).unwrap();
    (report, err)
}

/// A counter from the router's `/metrics`.
fn metric(p: &Proc, name: &str) -> u64 {
    let hostport = p.url.trim_start_matches("ws://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

fn event(address: &str, v: Value) -> Message {
    Message::Publish(Publish {
        address: address.into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(v),
        ..Publish::default()
    })
}

fn set(address: &str, v: Value) -> Message {
    Message::Set(clasp_client::proto::Set {
        address: address.into(),
        value: v,
        ..Default::default()
    })
}

/// The script: state first, then changes 60 ms apart (a bundle among them).
async fn script(url: &str, initial: bool) {
    let c = Client::connect(url).await.unwrap();
    if initial {
        c.set_confirmed("/show/level", 0.25).await.unwrap();
        c.set_confirmed("/show/name", "intro").await.unwrap();
        let blob = Value::Bytes(vec![0u8, 1, 254, 255].into());
        c.set_confirmed("/show/blob", blob).await.unwrap();
        c.close().await;
        return;
    }
    let gap = Duration::from_millis(60);
    c.set_confirmed("/show/level", 0.5).await.unwrap();
    tokio::time::sleep(gap).await;
    let cue = Value::Map(vec![("n".into(), Value::Int(1)), ("n".into(), Value::Null)]);
    c.emit("/show/cue", cue).await.unwrap();
    tokio::time::sleep(gap).await;
    c.bundle(vec![
        set("/show/a", Value::Int(1)),
        set(
            "/show/b",
            Value::Array(vec![Value::Float(2.0), Value::Int(2)]),
        ),
        event("/show/go", Value::String("now".into())),
    ])
    .await
    .unwrap();
    tokio::time::sleep(gap).await;
    c.set_confirmed("/show/level", Value::Int(3)).await.unwrap();
    tokio::time::sleep(gap).await;
    c.set_confirmed("/show/name", Value::Float(f64::INFINITY))
        .await
        .unwrap();
    c.ping().await.unwrap();
    c.close().await;
}

fn live(rec: &Recording) -> Vec<&Entry> {
    rec.entries
        .iter()
        .filter(|e| e.kind != EntryKind::Initial)
        .collect()
}

fn same(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind && a.address == b.address && identical(&a.value, &b.value)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_plays_back_the_same_entries_with_their_timing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        start(&["--memory"]),
        start(&["--memory"]),
        start(&["--memory"]),
    );

    // Record the script on A.
    script(&a.url, true).await;
    let first = dir.path().join("first.jsonl");
    let r = Recorder::start(&a.url, &first);
    script(&a.url, false).await;
    let (rec, last) = r.stop(&first);
    assert!(
        last.contains("terminated") && last.contains("0 dropped"),
        "{last}"
    );
    let initial: Vec<Entry> = rec
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Initial)
        .cloned()
        .collect();
    assert_eq!(initial.len(), 3, "{:?}", rec.entries);
    assert!(initial.iter().all(|e| e.t_us == 0 && e.revision == Some(1)));
    let blob = initial
        .iter()
        .find(|e| &*e.address == "/show/blob")
        .unwrap();
    assert_eq!(blob.value, Value::Bytes(vec![0u8, 1, 254, 255].into()));
    let kinds: Vec<(EntryKind, &str)> = live(&rec).iter().map(|e| (e.kind, &*e.address)).collect();
    let want = [
        (EntryKind::Set, "/show/level"),
        (EntryKind::Event, "/show/cue"),
        (EntryKind::Set, "/show/a"),
        (EntryKind::Set, "/show/b"),
        (EntryKind::Event, "/show/go"),
        (EntryKind::Set, "/show/level"),
        (EntryKind::Set, "/show/name"),
    ];
    assert_eq!(kinds, want);
    assert_eq!(rec.end.map(|e| e.dropped), Some(0));

    // The recorder asks for whole bundles: the bundle's members share a number and a time.
    let members: Vec<&_> = rec
        .entries
        .iter()
        .filter(|e| matches!(&*e.address, "/show/a" | "/show/b" | "/show/go"))
        .collect();
    assert_eq!(members.len(), 3);
    assert!(members[0].bundle.is_some(), "{:?}", members[0]);
    assert!(
        members
            .iter()
            .all(|e| e.bundle == members[0].bundle && e.t_us == members[0].t_us)
    );
    assert!(
        rec.entries
            .iter()
            .filter(|e| !matches!(&*e.address, "/show/a" | "/show/b" | "/show/go"))
            .all(|e| e.bundle.is_none() || e.bundle != members[0].bundle)
    );
    // Play it onto B while a recorder listens there.
    let second = dir.path().join("second.jsonl");
    let r = Recorder::start(&b.url, &second);
    let bundles_before = metric(&b, "clasp_messages_in_total{type=\"BUNDLE\"}");
    let (report, err) = play(&first, &b.url, &[]);
    let (again, _) = r.stop(&second);
    let p99 = report["p99_us"].as_u64().expect("p99_us in the report");
    println!("clasp play's own report: p99 lateness {p99} µs; {report}");
    assert!(err.contains("p99"), "{err}");
    assert_eq!(report["sent"], 7);
    assert_eq!(report["cues"], 5, "the bundle is one cue");
    assert_eq!(report["restored"], 3);
    assert_eq!(report["refused"], 0);
    let bundles = metric(&b, "clasp_messages_in_total{type=\"BUNDLE\"}") - bundles_before;
    assert_eq!(bundles, 1, "the bundle's members went out as one BUNDLE");

    // B's recording: the restored state (as SETs, before anything else), then the same entries.
    let got = live(&again);
    assert!(got.len() > 3, "{got:?}");
    let (restored, played) = got.split_at(3);
    let key = |e: &Entry| format!("{:?} {} {:?}", e.kind, e.address, e.value);
    let mut restored: Vec<String> = restored.iter().map(|e| key(e)).collect();
    let mut want_restored: Vec<String> = initial
        .iter()
        .map(|e| {
            key(&Entry::new(
                0,
                EntryKind::Set,
                e.address.clone(),
                e.value.clone(),
            ))
        })
        .collect();
    restored.sort();
    want_restored.sort();
    assert_eq!(restored, want_restored);
    let original = live(&rec);
    assert_eq!(played.len(), original.len(), "{played:?}");
    for (g, w) in played.iter().zip(&original) {
        assert!(same(g, w), "played {g:?}, recorded {w:?}");
    }
    // Timing: every gap within SLACK_US of the recorded one.
    for i in 1..original.len() {
        let want = original[i].t_us as i64 - original[i - 1].t_us as i64;
        let got = played[i].t_us as i64 - played[i - 1].t_us as i64;
        assert!(
            (got - want).abs() <= SLACK_US,
            "gap {i}: played {got} µs, recorded {want} µs"
        );
    }

    // --from: the state as it was then first (the level set at the start, the cue after it
    // skipped), then the rest.
    let from_us = (original[1].t_us + original[2].t_us) / 2;
    let third = dir.path().join("third.jsonl");
    let r = Recorder::start(&c.url, &third);
    let from = format!("{}", from_us as f64 / 1e6);
    let (report, _) = play(&first, &c.url, &["--from", &from]);
    let (from_rec, _) = r.stop(&third);
    assert_eq!(report["sent"], 5);
    let got = live(&from_rec);
    let level = got.iter().find(|e| &*e.address == "/show/level").unwrap();
    assert_eq!(
        level.value,
        Value::Float(0.5),
        "the level as it was at --from"
    );
    assert!(got.iter().all(|e| &*e.address != "/show/cue"));
    assert_eq!(got.len(), 3 + 5);
}

#[test]
fn a_looping_playback_ends_cleanly_on_ctrl_c_with_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(&["--memory"]);
    let file = dir.path().join("loop.jsonl");
    let header = clasp_client::recording::Header {
        started_at_us: 0,
        pattern: "/**".into(),
        url: "ws://x".into(),
        tool: "test".into(),
        types: Vec::new(),
    };
    let mut w = Writer::new(std::fs::File::create(&file).unwrap(), &header).unwrap();
    w.entry(&Entry::new(0, EntryKind::Initial, "/l/x", Value::Int(0)))
        .unwrap();
    for i in 0..10 {
        w.entry(&Entry::new(
            i * 20_000,
            EntryKind::Set,
            "/l/x",
            Value::Int(i as i64),
        ))
        .unwrap();
    }
    w.finish(200_000, 0).unwrap();
    let mut child = clasp(&["play", "--loop", "--url", &b.url])
        .arg(&file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(900));
    signal(&child, "-INT");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("stopped: ") && last.contains("p99"),
        "{err}"
    );
    let passes: u32 = last
        .split(" pass")
        .next()
        .and_then(|s| s.rsplit(", ").next())
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passes >= 2, "looped: {last}");
}
