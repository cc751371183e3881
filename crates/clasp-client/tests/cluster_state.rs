//! The shared state of a cluster of routers on a real `nats-server` (Debian's 2.9, started here
//! on 127.0.0.1), beyond single SETs: bundles reach a subscriber on another router whole, with
//! no other router's writes between their members, while a third router writes into the same
//! addresses as fast as it can (a bundle of signals alone arrives whole too); a param written
//! with a TTL through one router is gone from another router when it expires, even with the
//! writing router gone, and from the bucket; a router that joins later does not bring it back.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-cluster/tests/nats_support/mod.rs"]
mod nats_support;
mod support;
#[path = "support/client.rs"]
mod support_client;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clasp_client::{Error, Message, SetOptions, Value};
use clasp_proto::{Publish, PublishPayload, Set, SignalType};
use clasp_router::server::ClusterConfig;
use futures_util::StreamExt;
use nats_support::Nats;
use support::{Router, within};
use support_client::client;

async fn router(n: &Nats) -> Router {
    let url = n.url();
    Router::start_with(move |c| c.cluster = Some(ClusterConfig::new(vec![url], "state"))).await
}

fn set(address: &str, v: i64) -> Message {
    Message::Set(Set {
        address: address.into(),
        value: Value::Int(v),
        ..Default::default()
    })
}

fn event(address: &str, v: i64) -> Message {
    Message::Publish(Publish {
        address: address.into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(Value::Int(v)),
        ..Default::default()
    })
}

#[tokio::test]
async fn bundles_reach_other_routers_whole() {
    let Some(n) = Nats::start() else { return };
    let (a, b, c) = (router(&n).await, router(&n).await, router(&n).await);
    let (ca, cb, cc) = (client(&a).await, client(&b).await, client(&c).await);
    let mut seen = cb.subscribe("/scene/**").await.unwrap();
    // B's interest in the events is on NATS before anything is sent.
    within("B's interest", async {
        while b.metric("clasp_cluster_subscriptions").await < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // C writes into the scene without pause, meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let noise = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                cc.set("/scene/noise", i).await.unwrap();
                if i % 50 == 0 {
                    cc.set_confirmed("/scene/noise", i).await.unwrap();
                }
            }
            i
        }
    });
    const BUNDLES: i64 = 40;
    for i in 1..=BUNDLES {
        ca.bundle(vec![
            set("/scene/a", i),
            set("/scene/b", i),
            event("/scene/go", i),
            set("/scene/c", i),
        ])
        .await
        .unwrap();
    }
    // A bundle of signals alone.
    ca.bundle(vec![event("/scene/cue", 1), event("/scene/cue", 2)])
        .await
        .unwrap();

    // What B's subscriber saw, in order, until the signals-only bundle's last event.
    let mut got: Vec<(String, Value)> = Vec::new();
    within("every bundle on B", async {
        while let Some(u) = seen.next().await {
            let last = &*u.address == "/scene/cue" && u.value == Value::Int(2);
            got.push((u.address.to_string(), u.value));
            if last {
                return;
            }
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let noise_writes = noise.await.unwrap();
    assert!(noise_writes > 50, "C wrote {noise_writes} times only");

    // Each bundle's four members arrive next to each other, SETs in their order, once.
    for i in 1..=BUNDLES {
        let at: Vec<usize> = got
            .iter()
            .enumerate()
            .filter(|(_, (a, v))| *v == Value::Int(i) && a != "/scene/noise" && a != "/scene/cue")
            .map(|(k, _)| k)
            .collect();
        assert_eq!(at.len(), 4, "bundle {i}: {at:?}");
        assert_eq!(
            at[3] - at[0],
            3,
            "bundle {i} was interleaved: {:?}",
            &got[at[0]..=at[3]]
        );
        let order: Vec<&str> = at.iter().map(|k| got[*k].0.as_str()).collect();
        assert_eq!(
            order,
            ["/scene/a", "/scene/b", "/scene/c", "/scene/go"],
            "bundle {i}"
        );
    }
    let cues: Vec<usize> = got
        .iter()
        .enumerate()
        .filter(|(_, (a, _))| a == "/scene/cue")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(cues.len(), 2);
    assert_eq!(
        cues[1] - cues[0],
        1,
        "the signals-only bundle was interleaved"
    );
    assert_eq!(
        b.metric("clasp_cluster_bundles_total").await,
        BUNDLES as u64
    );
    assert_eq!(b.metric("clasp_cluster_bundles_partial_total").await, 0);
    // The state everywhere is the last bundle's.
    for cl in [&ca, &cb] {
        assert_eq!(cl.get("/scene/c").await.unwrap(), Value::Int(BUNDLES));
    }
}

#[tokio::test]
async fn a_ttl_expires_on_every_router_and_in_the_bucket() {
    let Some(n) = Nats::start() else { return };
    let (a, b) = (router(&n).await, router(&n).await);
    let (ca, cb) = (client(&a).await, client(&b).await);
    let ttl = SetOptions {
        ttl: Some(1),
        ..SetOptions::default()
    };
    ca.set_with("/tmp/blink", 1, ttl.clone()).await.unwrap();
    ca.set_confirmed("/tmp/stays", 2).await.unwrap();
    // Written again with a TTL, then without one: the last write decides, so it stays.
    ca.set_with("/tmp/kept", 3, ttl).await.unwrap();
    ca.set_confirmed("/tmp/kept", 4).await.unwrap();
    within("the TTL param on B", async {
        while cb.get("/tmp/blink").await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The writing router goes away before the param expires: B expires it on its own, from
    // the expiry stored with the record, and deletes it from the bucket.
    within("/tmp/kept rewritten on B", async {
        while cb.get("/tmp/kept").await.ok() != Some(Value::Int(4)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(ca);
    a.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(
        cb.get("/tmp/blink").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(cb.get("/tmp/stays").await.unwrap(), Value::Int(2));
    assert_eq!(cb.get("/tmp/kept").await.unwrap(), Value::Int(4));
    within("the expired param deleted from the bucket", async {
        while b.metric("clasp_cluster_expired_total").await < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A router that joins now does not bring it back.
    let c = router(&n).await;
    let cc = client(&c).await;
    assert!(matches!(
        cc.get("/tmp/blink").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(cc.get("/tmp/stays").await.unwrap(), Value::Int(2));
}
