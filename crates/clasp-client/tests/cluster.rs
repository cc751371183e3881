//! Three routers as one cluster on a real `nats-server` (Debian's 2.9, JetStream on, started
//! here on 127.0.0.1): a param set through one router reaches subscribers of the others once,
//! with the cluster's revision; compare-and-set writes racing from three routers leave one
//! winner and revisions that only grow; a router started later gets the whole state; a router
//! that cannot reach NATS at start says so and does not start.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-cluster/tests/nats_support/mod.rs"]
mod nats_support;
mod support;
#[path = "support/client.rs"]
mod support_client;

use std::time::Duration;

use clasp_client::{Error, Value};
use clasp_router::server::{ClusterConfig, Server, ServerConfig};
use futures_util::StreamExt;
use nats_support::Nats;
use support::{Router, within};
use support_client::client;

async fn router(n: &Nats, name: &str) -> Router {
    let url = n.url();
    let name = name.to_owned();
    Router::start_with(move |c| c.cluster = Some(ClusterConfig::new(vec![url], name))).await
}

#[tokio::test]
async fn a_set_on_one_router_reaches_the_others_once() {
    let Some(n) = Nats::start() else { return };
    let (a, b, c) = (
        router(&n, "show").await,
        router(&n, "show").await,
        router(&n, "show").await,
    );
    let (ca, cb, cc) = (client(&a).await, client(&b).await, client(&c).await);
    let mut sb = cb.subscribe("/mix/**").await.unwrap();
    let mut sc = cc.subscribe("/mix/**").await.unwrap();
    let rev = ca.set_confirmed("/mix/fader/1", 0.75).await.unwrap();
    for s in [&mut sb, &mut sc] {
        let u = within("the SET on another router", s.next()).await.unwrap();
        assert_eq!(
            (&*u.address, &u.value, u.revision),
            ("/mix/fader/1", &Value::Float(0.75), Some(rev))
        );
    }
    // Read back through every router, and written once: no second delivery comes.
    for cl in [&ca, &cb, &cc] {
        assert_eq!(cl.get("/mix/fader/1").await.unwrap(), Value::Float(0.75));
    }
    let rev2 = cb.set_confirmed("/mix/fader/1", 0.5).await.unwrap();
    assert!(rev2 > rev);
    let u = within("the second SET", sc.next()).await.unwrap();
    assert_eq!((u.value, u.revision), (Value::Float(0.5), Some(rev2)));
    let u = within("B's own SET", sb.next()).await.unwrap();
    assert_eq!(u.revision, Some(rev2));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sc.next())
            .await
            .is_err(),
        "a change was delivered twice"
    );
    // Another cluster on the same NATS is another space.
    let other = router(&n, "other").await;
    let co = client(&other).await;
    assert!(matches!(
        co.get("/mix/fader/1").await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn compare_and_set_across_routers_has_one_winner() {
    let Some(n) = Nats::start() else { return };
    let routers = [
        router(&n, "cas").await,
        router(&n, "cas").await,
        router(&n, "cas").await,
    ];
    let mut clients = Vec::new();
    for r in &routers {
        clients.push(client(r).await);
    }
    let mut rev = clients[0].set_confirmed("/cue", 0).await.unwrap();
    for round in 1..=10i64 {
        // Every router's client tries to move /cue from the same revision.
        let tries = futures_util::future::join_all(
            clients
                .iter()
                .enumerate()
                .map(|(i, c)| c.set_if_revision("/cue", round * 10 + i as i64, rev)),
        )
        .await;
        let won: Vec<u64> = tries
            .iter()
            .filter_map(|t| t.as_ref().ok().copied())
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {tries:?}");
        assert!(
            tries
                .iter()
                .filter(|t| t.is_err())
                .all(|t| matches!(t, Err(Error::RevisionConflict { .. })))
        );
        assert!(won[0] > rev, "revisions only grow");
        rev = won[0];
        // Every router then holds the winner's value at that revision.
        for c in &clients {
            within("the winner everywhere", async {
                loop {
                    let p = c.get_param("/cue").await.unwrap();
                    if p.revision == rev {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
        }
    }
    // Creating with an expected revision: only one of two routers creates /new.
    let (x, y) = futures_util::future::join(
        clients[1].set_if_revision("/new", 1, 5),
        clients[2].set_if_revision("/new", 2, 5),
    )
    .await;
    assert!(x.is_ok() != y.is_ok(), "{x:?} {y:?}");
}

#[tokio::test]
async fn a_late_router_gets_the_state_and_nats_down_is_a_clear_error() {
    let Some(n) = Nats::start() else { return };
    let a = router(&n, "late").await;
    let ca = client(&a).await;
    for i in 0..50 {
        ca.set(&format!("/scene/{i}"), i).await.unwrap();
    }
    let last = ca.set_confirmed("/scene/last", "done").await.unwrap();
    // Started after the writes: its first snapshot holds them all.
    let late = router(&n, "late").await;
    let cl = client(&late).await;
    let snap = cl.snapshot("/scene/**").await.unwrap();
    assert_eq!(snap.len(), 51);
    let p = cl.get_param("/scene/last").await.unwrap();
    assert_eq!((p.value, p.revision), (Value::String("done".into()), last));

    // No NATS there: the router does not start, and says why.
    let dead = format!("nats://127.0.0.1:{}", n.monitor + 1);
    let mut cfg = ClusterConfig::new(vec![dead.clone()], "late");
    cfg.connect_timeout = Duration::from_secs(1);
    let e = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cluster: Some(cfg),
        ..ServerConfig::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains(&dead), "{e}");
}

/// The NATS subjects the connections of `nats` subscribe to (its monitoring's `/connz`).
fn nats_subscriptions(n: &Nats) -> Vec<String> {
    let body = n.monitoring("/connz?subs=1").unwrap();
    let json = &body[body.find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut subs = Vec::new();
    for c in v["connections"].as_array().unwrap() {
        if let Some(list) = c["subscriptions_list"].as_array() {
            subs.extend(list.iter().filter_map(|s| s.as_str().map(str::to_owned)));
        }
    }
    subs.sort();
    subs
}

#[tokio::test]
async fn signals_cross_routers_once_and_only_where_wanted() {
    let Some(n) = Nats::start() else { return };
    let (a, b, c) = (
        router(&n, "sig").await,
        router(&n, "sig").await,
        router(&n, "sig").await,
    );
    let (ca, cb, ca2) = (client(&a).await, client(&b).await, client(&a).await);
    let _cc = client(&c).await;
    let mut events = ca.subscribe("/fx/**").await.unwrap();
    // Two sessions on A whose patterns overlap: NATS matches the message with both filters.
    let mut x1 = ca.subscribe("/x/*/c").await.unwrap();
    let mut x2 = ca2.subscribe("/x/b/*").await.unwrap();
    // A's interest is on NATS (one subscription per filter), C has none.
    let want = |f: &str| format!("clasp.sig.sig.{f}");
    within("A's interest on NATS", async {
        loop {
            let subs = nats_subscriptions(&n);
            if [want("fx.>"), want("x.*.c"), want("x.b.*")]
                .iter()
                .all(|w| subs.contains(w))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    cb.emit("/fx/strobe", 1).await.unwrap();
    cb.stream("/fx/level", 0.25).await.unwrap();
    cb.emit("/x/b/c", "both").await.unwrap();
    let e = within("the event from B", events.next()).await.unwrap();
    assert_eq!((&*e.address, e.value), ("/fx/strobe", Value::Int(1)));
    let s = within("the stream from B", events.next()).await.unwrap();
    assert_eq!((&*s.address, s.value), ("/fx/level", Value::Float(0.25)));
    for x in [&mut x1, &mut x2] {
        let u = within("the overlapping event", x.next()).await.unwrap();
        assert_eq!(u.value, Value::String("both".into()));
    }
    for s in [&mut events, &mut x1, &mut x2] {
        assert!(
            tokio::time::timeout(Duration::from_millis(300), s.next())
                .await
                .is_err(),
            "delivered twice"
        );
    }
    assert_eq!(a.metric("clasp_cluster_signal_duplicates_total").await, 1);
    assert_eq!(a.metric("clasp_cluster_signals_received_total").await, 3);
    // C's sessions want nothing: none of it reached C.
    assert_eq!(c.metric("clasp_cluster_signals_received_total").await, 0);
    assert_eq!(c.metric("clasp_cluster_subscriptions").await, 0);

    // When the last subscriber of a pattern leaves, its NATS subscription goes too.
    drop(events);
    ca.close().await;
    within("A's fx interest gone from NATS", async {
        while nats_subscriptions(&n).contains(&want("fx.>")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(nats_subscriptions(&n).contains(&want("x.b.*")));
}

/// The next P2P event `pick` accepts.
async fn p2p_event<T>(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<clasp_client::p2p::P2pEvent>,
    what: &str,
    mut pick: impl FnMut(&clasp_client::p2p::P2pEvent) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let e = events.recv().await.expect("P2P events ended");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    })
    .await
}

#[tokio::test]
async fn p2p_between_clients_of_different_routers() {
    use clasp_client::p2p::{P2p, P2pConfig, P2pEvent, Route};
    let Some(n) = Nats::start() else { return };
    let (ra, rb) = (router(&n, "p2p").await, router(&n, "p2p").await);
    let ca = client(&ra).await;
    let (pa, mut ea) = P2p::attach(&ca, P2pConfig::default()).await.unwrap();
    // B's router heard A's announce on NATS and replays it to B when B subscribes.
    let cb = client(&rb).await;
    let (pb, mut eb) = P2p::attach(&cb, P2pConfig::default()).await.unwrap();
    let (ida, idb) = (pa.session_id(), pb.session_id());
    p2p_event(&mut eb, "A announced to B", |e| {
        matches!(e, P2pEvent::PeerAnnounced { session, .. } if *session == ida).then_some(())
    })
    .await;
    // And A hears of B, who came later, live.
    p2p_event(&mut ea, "B announced to A", |e| {
        matches!(e, P2pEvent::PeerAnnounced { session, .. } if *session == idb).then_some(())
    })
    .await;
    // The offer, answer and candidates cross the two routers through NATS.
    pa.connect_to_peer(&idb).await.unwrap();
    for (events, peer) in [(&mut ea, &idb), (&mut eb, &ida)] {
        p2p_event(events, "Connected", |e| {
            matches!(e, P2pEvent::Connected { peer: p } if p == peer).then_some(())
        })
        .await;
    }
    let route = pa.send_p2p(&idb, b"across".to_vec(), true).await.unwrap();
    assert_eq!(route, Route::Direct);
    let got = p2p_event(&mut eb, "data from A", |e| match e {
        P2pEvent::Data { peer, data, .. } if *peer == ida => Some(data.to_vec()),
        _ => None,
    })
    .await;
    assert_eq!(got, b"across");
    // A leaves its router: B's router hears it through NATS and B drops the peer.
    drop(pa);
    ca.close().await;
    p2p_event(&mut eb, "A gone", |e| {
        matches!(e, P2pEvent::Disconnected { peer, .. } if *peer == ida).then_some(())
    })
    .await;
    within("A forgotten by B (the leave crossed routers)", async {
        while pb.known_peers().contains_key(&ida) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn locks_hold_across_routers() {
    let Some(n) = Nats::start() else { return };
    let (ra, rb) = (router(&n, "locks").await, router(&n, "locks").await);
    let (a, b) = (client(&ra).await, client(&rb).await);
    // Two sessions on two routers race for one lock: one gets it.
    let (x, y) =
        futures_util::future::join(a.lock("/desk/master", 1), b.lock("/desk/master", 2)).await;
    assert!(x.is_ok() != y.is_ok(), "{x:?} {y:?}");
    let (holder, other) = if x.is_ok() { (&a, &b) } else { (&b, &a) };
    // Both routers know the lock (a write in the moment before the lock reaches a router is
    // not stopped: docs/cluster.md).
    for r in [&ra, &rb] {
        within("the lock known", async {
            while r.metric("clasp_cluster_locks").await < 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
    assert!(matches!(
        other.set_confirmed("/desk/master", 3).await,
        Err(Error::LockHeld { .. })
    ));
    // The holder writes on; after unlocking, the other may write.
    holder.set_confirmed("/desk/master", 4).await.unwrap();
    holder.unlock("/desk/master", 5).await.unwrap();
    within("the lock released everywhere", async {
        while other.set_confirmed("/desk/master", 6).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A lock held by a session that leaves is released.
    a.lock("/desk/fader", 1).await.unwrap();
    within("the second lock known on B", async {
        while rb.metric("clasp_cluster_locks").await < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(matches!(
        b.set_confirmed("/desk/fader", 2).await,
        Err(Error::LockHeld { .. })
    ));
    a.close().await;
    within("the leaver's lock released", async {
        while b.set_confirmed("/desk/fader", 3).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(b.get("/desk/fader").await.unwrap(), Value::Int(3));
}

#[tokio::test]
async fn a_burst_of_unconfirmed_writes_ends_with_the_last_values_everywhere() {
    let Some(n) = Nats::start() else { return };
    let (ra, rb) = (router(&n, "burst").await, router(&n, "burst").await);
    let (a, b) = (client(&ra).await, client(&rb).await);
    // 12,000 unconfirmed SETs over 10 params as fast as the client sends them. (The release
    // benchmark, which sends faster than this debug build can, is what showed the writer
    // waiting on itself when more than async-nats's 5,000 writes were unconfirmed.)
    for i in 0..12_000i64 {
        a.set(&format!("/burst/{}", i % 10), i).await.unwrap();
    }
    let rev = a.set_confirmed("/burst/done", true).await.unwrap();
    assert!(rev > 0);
    for k in 0..10i64 {
        let want = Value::Int(11_990 + k);
        within("the last value on the other router", async {
            while b.get(&format!("/burst/{k}")).await.ok() != Some(want.clone()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}
