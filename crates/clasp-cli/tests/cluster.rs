//! Faults in a cluster of `clasp server` processes on a real `nats-server` (JetStream, on
//! 127.0.0.1): a router killed with `kill -9` in the middle of a stream of confirmed writes,
//! and the NATS server killed and restarted in the middle of one. Every write a client saw
//! acknowledged must be readable through the surviving router afterwards; the counts of what
//! was acknowledged, refused and found are printed. A router killed is seen gone by the others
//! (its P2P sessions told as left, the router list in `/healthz` without it). Also the flags'
//! errors.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "../../clasp-cluster/tests/nats_support/mod.rs"]
mod nats_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clasp_client::{Client, ReconnectPolicy, Value};
use common::{Proc, start};
use nats_support::Nats;

fn router(n: &Nats, name: &str) -> Proc {
    start(&["--memory", "--cluster", &n.url(), "--cluster-name", name])
}

async fn client(url: &str) -> Client {
    Client::builder(url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap()
}

/// Which of `acked` the router at `url` does not have (`/k/{i}` = i).
async fn missing(url: &str, acked: &BTreeSet<i64>) -> Vec<i64> {
    let c = client(url).await;
    let snap = c.snapshot("/k/**").await.unwrap();
    let have: BTreeSet<i64> = snap
        .iter()
        .filter_map(|p| match p.value {
            Value::Int(i) if *p.address == format!("/k/{i}") => Some(i),
            _ => None,
        })
        .collect();
    acked.difference(&have).copied().collect()
}

/// The body of `/healthz` of the router at `url` (`ws://127.0.0.1:PORT/`).
async fn healthz(url: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    serde_json::from_str(&body[body.find('{').unwrap()..]).unwrap()
}

#[tokio::test]
async fn kill_9_of_a_router_loses_nothing_acknowledged() {
    let Some(n) = Nats::start() else { return };
    let mut a = router(&n, "k9");
    let b = router(&n, "k9");
    // A P2P peer on A, known on B.
    let watcher = client(&b.url).await;
    let mut leaves = watcher.subscribe("/clasp/p2p/leave").await.unwrap();
    let peer = client(&a.url).await;
    let peer_id = peer.session_id().unwrap();
    peer.emit(
        "/clasp/p2p/announce",
        Value::Map(vec![(
            "session_id".into(),
            Value::String(peer_id.as_str().into()),
        )]),
    )
    .await
    .unwrap();
    let a_id = healthz(&a.url).await["cluster"]["router_id"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = healthz(&b.url).await;
        let routers = h["cluster"]["routers"].as_array().unwrap().clone();
        if routers
            .iter()
            .any(|r| r["id"] == a_id && r["sessions"] == 1)
            && h["cluster"]["remote_p2p_peers"] == 1
        {
            assert_eq!(h["cluster"]["sessions"], 2, "{h}");
            break;
        }
        assert!(Instant::now() < deadline, "B does not see A's peer: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Four writers on A, each with a confirmed write in flight at any time.
    let acked = std::sync::Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let writer = client(&a.url).await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for j in 0..100_000i64 {
                let i = j * 4 + w;
                match writer.set_confirmed(&format!("/k/{i}"), i).await {
                    Ok(_) => {
                        acked.lock().insert(i);
                    }
                    Err(_) => {
                        failed += 1;
                        break;
                    }
                }
            }
            failed
        }));
    }
    while acked.lock().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Mid-stream: the router dies without a word, writes in flight.
    a.child.kill().unwrap();
    let _ = a.child.wait();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    let acked = acked.lock().clone();
    // The clients come back on the other router and find every acknowledged write there.
    let lost = missing(&b.url, &acked).await;
    println!(
        "kill -9 of a router: {} acknowledged, {failed} in flight and failed, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    // B takes A for gone after its heartbeats stop, and says its peer left.
    let left = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let u = futures_util::StreamExt::next(&mut leaves).await.unwrap();
            if let Value::Map(m) = &u.value
                && m.iter()
                    .any(|(k, v)| k == "session_id" && *v == Value::String(peer_id.as_str().into()))
            {
                return;
            }
        }
    })
    .await;
    assert!(left.is_ok(), "B never told that A's peer left");
    let h = healthz(&b.url).await;
    assert_eq!(h["cluster"]["routers"], serde_json::json!([]), "{h}");
    assert_eq!(h["cluster"]["remote_p2p_peers"], 0, "{h}");
}

#[tokio::test]
async fn kill_9_of_nats_loses_nothing_acknowledged() {
    let Some(mut n) = Nats::start() else { return };
    let a = router(&n, "nk9");
    let b = router(&n, "nk9");
    let writer = client(&a.url).await;
    let mut acked = BTreeSet::new();
    let mut refused = 0;
    let mut i = 0i64;
    let write = async |i: i64, acked: &mut BTreeSet<i64>, refused: &mut u32| match writer
        .set_confirmed(&format!("/k/{i}"), i)
        .await
    {
        Ok(_) => {
            acked.insert(i);
        }
        Err(_) => *refused += 1,
    };
    while i < 200 {
        write(i, &mut acked, &mut refused).await;
        i += 1;
    }
    // NATS dies mid-stream; the writer goes on through the outage and the restart.
    n.kill();
    let outage = Instant::now() + Duration::from_millis(500);
    while Instant::now() < outage {
        write(i, &mut acked, &mut refused).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n.start_again();
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = acked.len();
    while acked.len() < before + 200 {
        assert!(
            Instant::now() < deadline,
            "writes never came back after NATS restarted"
        );
        write(i, &mut acked, &mut refused).await;
        i += 1;
        if acked.len() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Router B caught up with what was written after the restart too.
    let mut lost = Vec::new();
    let caught_up = Instant::now() + Duration::from_secs(20);
    while Instant::now() < caught_up {
        lost = missing(&b.url, &acked).await;
        if lost.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "kill -9 of NATS: {} acknowledged, {refused} refused during the outage, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(refused > 0, "the outage was not noticed");
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

#[test]
fn cluster_flags_say_what_is_wrong() {
    for (args, want) in [
        (
            vec!["--cluster", "http://x:4222"],
            "give a NATS URL, nats://HOST:PORT",
        ),
        (
            vec!["--cluster", "nats://127.0.0.1:1", "--cluster-name", "a.b"],
            "--cluster-name: cluster name `a.b`",
        ),
        (vec!["--cluster-name", "x"], "need --cluster"),
        (
            vec!["--cluster", "nats://127.0.0.1:1", "--cluster-replicas", "7"],
            "JetStream keeps 1 to 5 copies",
        ),
    ] {
        let out = common::clasp(&["server", "--memory", "--port", "0"])
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
