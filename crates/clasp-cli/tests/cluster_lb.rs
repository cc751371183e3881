//! A client behind a load balancer rides out the death of its router: Debian's HAProxy with
//! `deploy/haproxy/clasp.cfg` (addresses changed to 127.0.0.1) in front of two clustered
//! `clasp server` processes on a real nats-server. A `clasp-client` that reconnects on its own
//! is connected through HAProxy and subscribed; its router is killed with `kill -9`; the client
//! comes back through HAProxy on the other router, resubscribes, and gets both a value written
//! while it was away (from the snapshot) and the live updates after it. Skipped (with a line
//! saying so) when haproxy or nats-server is not installed.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "../../clasp-cluster/tests/nats_support/mod.rs"]
mod nats_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clasp_client::{Client, ConnectionEvent, ReconnectPolicy, Value};
use common::{Proc, free_port, start_on};
use futures_util::StreamExt;
use nats_support::Nats;

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy on `port` with the guide's configuration, in front of routers on `routers`.
fn haproxy(port: u16, routers: [u16; 2], dir: &std::path::Path) -> Option<Haproxy> {
    let cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/haproxy/clasp.cfg"
    ))
    .unwrap()
    .replace("bind 0.0.0.0:7330", &format!("bind 127.0.0.1:{port}"))
    .replace("10.0.0.1:7330", &format!("127.0.0.1:{}", routers[0]))
    .replace("10.0.0.2:7330", &format!("127.0.0.1:{}", routers[1]))
    .lines()
    .filter(|l| !l.contains("server r3 "))
    .collect::<Vec<_>>()
    .join("\n");
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg + "\n").unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Haproxy(child))
}

/// The `sessions` figure of the router on `port`.
async fn sessions(port: u16) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body[body.find('{').unwrap()..]).unwrap();
    v["sessions"].as_u64().unwrap()
}

#[tokio::test]
async fn a_client_behind_haproxy_rides_out_the_death_of_its_router() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("SKIPPED: haproxy is not installed (scripts/test.sh installs it)");
        return;
    }
    let Some(n) = Nats::start() else { return };
    let ports = [free_port(), free_port()];
    let cluster = ["--memory", "--cluster", &n.url(), "--cluster-name", "lb"];
    let mut routers: Vec<Option<Proc>> =
        ports.iter().map(|p| Some(start_on(*p, &cluster))).collect();
    let dir = std::env::temp_dir().join(format!("clasp-lb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lb = free_port();
    let _hp = haproxy(lb, ports, &dir).unwrap();
    let url = format!("ws://127.0.0.1:{lb}/");
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        ..ReconnectPolicy::default()
    };
    // HAProxy takes a moment to start listening.
    let deadline = Instant::now() + Duration::from_secs(10);
    let client = loop {
        match Client::builder(&url)
            .reconnect(policy.clone())
            .connect()
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no connection through HAProxy: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut events = client.events();
    let mut updates = client.subscribe("/lb/**").await.unwrap();
    client.set_confirmed("/lb/before", 1).await.unwrap();
    within("the first update", updates.next()).await.unwrap();

    // Kill the router the client is on.
    let on = if sessions(ports[0]).await == 1 { 0 } else { 1 };
    let other = Client::builder(&routers[1 - on].as_ref().unwrap().url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let mut dead = routers[on].take().unwrap();
    dead.child.kill().unwrap();
    let _ = dead.child.wait();
    let killed = Instant::now();
    // Written through the other router while the client is away.
    other.set_confirmed("/lb/while-away", 2).await.unwrap();
    within("the client's reconnection", async {
        while let Ok(e) = events.recv().await {
            if matches!(e, ConnectionEvent::Reconnected { .. }) {
                return;
            }
        }
    })
    .await;
    println!(
        "reconnected through HAProxy to the other router {:?} after the kill",
        killed.elapsed()
    );
    // Resynced: the value written meanwhile, then live updates.
    let mut seen = Vec::new();
    other.set_confirmed("/lb/after", 3).await.unwrap();
    within("the resync and the live update", async {
        while let Some(u) = updates.next().await {
            seen.push((u.address.to_string(), u.value.clone()));
            if &*u.address == "/lb/after" {
                return;
            }
        }
    })
    .await;
    assert!(
        seen.contains(&("/lb/while-away".into(), Value::Int(2))),
        "the value written while away did not come: {seen:?}"
    );
    assert_eq!(client.get("/lb/while-away").await.unwrap(), Value::Int(2));
    let _ = std::fs::remove_dir_all(&dir);
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
