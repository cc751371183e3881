//! The client against the reference router (crates.io clasp-router 3.3.0, the benchmark peer in
//! `bench/peers/reference-router`). The peer is not part of the default build; build it with
//! `cargo build --release --manifest-path bench/peers/reference-router/Cargo.toml
//! --target-dir target/reference-router` (or point `CLASP_REFERENCE_ROUTER` at the binary).
//! Without it these tests print why and pass without running.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clasp_client::{Client, Error, ReconnectPolicy, SignalType, Value};
use futures_util::StreamExt;

struct Peer {
    child: Child,
    url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer() -> Option<Peer> {
    let path = std::env::var_os("CLASP_REFERENCE_ROUTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/reference-router/release/reference-router")
        });
    if !path.exists() {
        eprintln!(
            "SKIPPED: reference router not built ({}); see the comment at the top of this file",
            path.display()
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(path)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Some(Peer {
        child,
        url: format!("ws://127.0.0.1:{port}"),
    })
}

async fn client(url: &str) -> Client {
    Client::builder(url)
        .reconnect(ReconnectPolicy::disabled())
        .request_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn works_against_the_reference_router() {
    let Some(p) = peer() else { return };
    let a = client(&p.url).await;
    let b = client(&p.url).await;
    assert!(a.session_id().is_some());

    let mut sub = b.subscribe("/ref/**").await.unwrap();
    b.ping().await.unwrap();
    let rev = a.set_confirmed("/ref/level", 0.5).await.unwrap();
    assert!(rev >= 1);
    let u = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&*u.address, &u.value, u.kind),
        ("/ref/level", &Value::Float(0.5), SignalType::Param)
    );

    // Fire-and-forget writes work even though the reference acknowledges them anyway.
    a.set("/ref/name", "x").await.unwrap();
    let u = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.value, Value::String("x".into()));
    assert_eq!(a.get("/ref/level").await.unwrap(), Value::Float(0.5));

    a.emit("/ref/go", 1).await.unwrap();
    let u = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.kind, SignalType::Event);

    // The reference never answers a GET of a missing address: a timeout, not a hang.
    assert!(matches!(
        a.get("/ref/missing").await,
        Err(Error::Timeout(_))
    ));

    // Clock sync exchanges work with the reference's SYNC reply.
    assert!(a.clock().samples >= 1);
    a.close().await;
    b.close().await;
}
