//! `clasp server` as a process: persistence across SIGTERM and `kill -9`, exit codes, errors.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-router/tests/support/mod.rs"]
mod support;

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clasp_proto::*;
use common::{signal, start};
use support::WsClient;

async fn write_params(url: &str, n: usize) {
    write_acked(url, "/persist", n, Qos::Confirm).await;
}

/// Writes `n` params under `prefix` with `qos`, pipelined, and waits for every ACK.
async fn write_acked(url: &str, prefix: &str, n: usize, qos: Qos) {
    let (mut c, _) = WsClient::connect(url).await;
    for i in 0..n {
        c.send_qos(
            Message::Set(Set {
                address: format!("{prefix}/{i}").into(),
                value: Value::Int(i as i64),
                ..Default::default()
            }),
            Some(qos),
        )
        .await;
    }
    let mut acked = 0;
    while acked < n {
        match c.recv().await {
            Message::Ack(_) => acked += 1,
            Message::Error(e) => panic!("{e:?}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_state_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut p = start(&["--data-dir", d]);
    write_params(&p.url, 50).await;
    signal(&p, "-TERM");
    let status = p.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut p = start(&["--data-dir", d]);
    let (_c, params) = WsClient::connect(&p.url).await;
    assert_eq!(params.len(), 50);
    signal(&p, "-TERM");
    assert!(p.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_at_most_the_last_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut p = start(&["--data-dir", d]);
    write_params(&p.url, 500).await;
    // Every write above was acknowledged; within a flush interval (50 ms by default) the writer
    // thread has them on disk. Wait until the router reports nothing left to persist (polling
    // /metrics rather than sleeping, so a slow machine cannot make this flaky), then kill it
    // without warning.
    let host = p
        .url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = support::http_get(&host, "/metrics").await;
        let pending = support::metric(&m, "clasp_params_unpersisted");
        let written = support::metric(&m, "clasp_persisted_params_total");
        if pending == Some(0.0) && written >= Some(500.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "state not persisted within 10 s: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&p, "-KILL");
    p.child.wait().unwrap();
    let mut p = start(&["--data-dir", d]);
    let (_c, params) = WsClient::connect(&p.url).await;
    assert_eq!(
        params.len(),
        500,
        "every param acknowledged before the last flush survived"
    );
    let p7 = params.iter().find(|x| x.address == "/persist/7").unwrap();
    assert_eq!((p7.value.clone(), p7.revision), (Value::Int(7), 1));
    signal(&p, "-TERM");
    assert!(p.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_acknowledged_writes_survive_kill_9_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut p = start(&["--data-dir", d]);
    // 3,000 Commit writes, pipelined; the router is killed the moment the last ACK arrives,
    // with no time for a write-behind pass.
    let n = 3000;
    write_acked(&p.url, "/durable", n, Qos::Commit).await;
    signal(&p, "-KILL");
    p.child.wait().unwrap();
    let mut p = start(&["--data-dir", d]);
    let (_c, params) = WsClient::connect(&p.url).await;
    assert_eq!(params.len(), n, "a Commit-acknowledged write was lost");
    signal(&p, "-TERM");
    assert!(p.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_mode_keeps_nothing() {
    let mut p = start(&["--memory"]);
    write_params(&p.url, 5).await;
    signal(&p, "-TERM");
    assert!(p.child.wait().unwrap().success());
    let mut p = start(&["--memory"]);
    let (_c, params) = WsClient::connect(&p.url).await;
    assert!(params.is_empty());
    signal(&p, "-TERM");
    assert!(p.child.wait().unwrap().success());
}

#[test]
fn a_data_dir_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut p = start(&["--data-dir", d]);
    let out = Command::new(env!("CARGO_BIN_EXE_clasp"))
        .args([
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            d,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another clasp server is using this data directory"),
        "{err}"
    );
    signal(&p, "-TERM");
    assert!(p.child.wait().unwrap().success());
}

#[test]
fn an_empty_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let state = dir.path().join("state.redb");
    std::fs::write(&state, b"").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clasp"))
        .args([
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            d,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It must exit at once; a server that started instead is stopped and the test fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("clasp server started on an empty state file instead of refusing it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&state.display().to_string()) && err.contains("empty (0 bytes)"),
        "{err}"
    );
    assert!(err.contains("move the file away"), "{err}");
    // The router refused to start instead of replacing the file with an empty database.
    assert_eq!(std::fs::metadata(&state).unwrap().len(), 0);
}

#[test]
fn bad_config_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "port = 7330\nbogus = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_clasp"))
        .args(["server", "--memory", "--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid config file") && err.contains("bogus"),
        "{err}"
    );
}
