//! `clasp server --tcp-port --quic-port`: the listeners start where the log says, and the Rust
//! client works over each of them.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use clasp_client::{Client, ReconnectPolicy, Value};
use common::Proc;

/// A running `clasp server` (killed when dropped) and the URLs of its `ready:` log lines.
struct Started {
    _proc: Proc,
    /// In order; the last one is the WebSocket's.
    urls: Vec<String>,
}

fn clasp_server(args: &[&str]) -> Command {
    let mut c = common::clasp(&["server", "--bind", "127.0.0.1", "--port", "0"]);
    c.args(args);
    c
}

/// Starts the server and reads its `ready:` lines up to the WebSocket one (the last).
fn start(args: &[&str]) -> Started {
    let mut child = clasp_server(args).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("server exited before it was ready")
            .unwrap();
        if let Some(i) = line.find("ready: ") {
            let url = line[i + 7..].split_whitespace().next().unwrap().to_owned();
            let last = url.starts_with("ws");
            urls.push(url);
            if last {
                break;
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let url = urls.last().unwrap().clone();
    Started {
        _proc: Proc { child, url },
        urls,
    }
}

fn url<'a>(p: &'a Started, scheme: &str) -> &'a str {
    p.urls
        .iter()
        .find(|u| u.starts_with(&format!("{scheme}://")))
        .unwrap_or_else(|| panic!("no {scheme}:// in {:?}", p.urls))
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_and_quic_listeners_serve_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let p = start(&[
        "--data-dir",
        d,
        "--tls-self-signed",
        "--tcp-port",
        "0",
        "--quic-port",
        "0",
    ]);
    let pem = std::fs::read(dir.path().join("tls").join("self-signed.crt")).unwrap();
    let connect = |u: String| {
        let pem = pem.clone();
        async move {
            Client::builder(&u)
                .add_root_certificate_pem(pem)
                .only_added_roots()
                .reconnect(ReconnectPolicy::disabled())
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await
                .unwrap()
        }
    };
    let wss = connect(url(&p, "wss").to_owned()).await;
    let tcp = connect(url(&p, "tcp").to_owned()).await;
    let quic = connect(url(&p, "quic").to_owned()).await;
    assert_eq!(tcp.set_confirmed("/cli/t", 1).await.unwrap(), 1);
    assert_eq!(quic.set_confirmed("/cli/q", 2).await.unwrap(), 1);
    assert_eq!(wss.get("/cli/t").await.unwrap(), Value::Int(1));
    assert_eq!(tcp.get("/cli/q").await.unwrap(), Value::Int(2));
    assert_eq!(quic.get("/cli/t").await.unwrap(), Value::Int(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn quic_tls_only_keeps_the_websocket_plain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let p = start(&[
        "--data-dir",
        d,
        "--tls-self-signed",
        "--quic-port",
        "0",
        "--quic-tls-only",
    ]);
    let ws = Client::builder(url(&p, "ws"))
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    ws.set_confirmed("/plain", 1).await.unwrap();
    let pem = std::fs::read(dir.path().join("tls").join("self-signed.crt")).unwrap();
    let quic = Client::builder(url(&p, "quic"))
        .add_root_certificate_pem(pem)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    assert_eq!(quic.get("/plain").await.unwrap(), Value::Int(1));
}

#[test]
fn quic_without_a_certificate_is_refused_clearly() {
    let o = clasp_server(&["--memory", "--quic-port", "0"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("QUIC needs a certificate"), "{err}");
}
