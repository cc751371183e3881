//! The Rust client against a `clasp server` process that is killed with SIGKILL and started
//! again on the same port: the client notices, reconnects, resubscribes and resynchronises
//! from the state the router restored from disk.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-router/tests/support/mod.rs"]
mod support;

mod common;

use std::time::Duration;

use clasp_client::{Client, ConnectionEvent, ReconnectPolicy, SignalType, SubscribeOptions, Value};
use common::{free_port, signal, start_on};
use futures_util::StreamExt;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until the router at `url` has written everything to disk.
async fn persisted(url: &str) {
    let host = url.trim_start_matches("ws://").trim_end_matches('/');
    within("state on disk", async {
        loop {
            let m = support::http_get(host, "/metrics").await;
            if support::metric(&m, "clasp_params_unpersisted") == Some(0.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_survives_kill_9_and_resyncs_the_restored_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let port = free_port();
    let mut p = start_on(port, &["--data-dir", d]);
    let c = Client::builder(&p.url)
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(300),
            ..ReconnectPolicy::default()
        })
        .connect()
        .await
        .unwrap();
    let mut events = c.events();
    let mut sub = c
        .subscribe_with("/k/**", SubscribeOptions::new().types([SignalType::Param]))
        .await
        .unwrap();
    c.set_confirmed("/k/a", 1).await.unwrap();
    let u = within("own write", sub.next()).await.unwrap();
    assert_eq!((&*u.address, &u.value), ("/k/a", &Value::Int(1)));
    persisted(&p.url).await;

    // No close frame, no FIN from a graceful shutdown: the process is just gone.
    signal(&p, "-KILL");
    p.child.wait().unwrap();
    let e = within("disconnect event", events.recv()).await.unwrap();
    assert!(matches!(e, ConnectionEvent::Disconnected { .. }), "{e:?}");

    let p = start_on(port, &["--data-dir", d]);
    let other = Client::connect(&p.url).await.unwrap();
    other.set_confirmed("/k/b", 2).await.unwrap();
    within("reconnected event", async {
        loop {
            if let Ok(ConnectionEvent::Reconnected { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await;
    // The resubscription brings what was written while we were away; the restored param is
    // unchanged (same revision, same value), so the subscription does not see it twice...
    let u = within("resync", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value, u.revision),
        ("/k/b", &Value::Int(2), Some(1))
    );
    // ...but it is there, restored from disk, in the rebuilt cache.
    assert_eq!(c.get("/k/a").await.unwrap(), Value::Int(1));
    // Live updates flow again, and the restored revision continues.
    other.set_confirmed("/k/a", 3).await.unwrap();
    let u = within("live update", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value, u.revision),
        ("/k/a", &Value::Int(3), Some(2))
    );
    assert_eq!(c.get("/k/b").await.unwrap(), Value::Int(2));
    c.close().await;
    other.close().await;
}
