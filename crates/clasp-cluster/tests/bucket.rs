//! The param bucket against Debian's `nats-server` 2.9 with JetStream: revisions shared by the
//! bucket, compare-and-set decided by the server (three writers racing on one revision leave
//! one winner), create-only writes, deletes, a watch that replays the state and then follows
//! changes from another connection, and the data surviving a `kill -9` of the server.
#![allow(clippy::unwrap_used, missing_docs)]

mod nats_support;

use std::time::Duration;

use async_nats::jetstream;
use clasp_cluster::kv::{Change, KvError, ParamBucket};
use clasp_cluster::record::Record;
use clasp_proto::Value;
use futures_util::StreamExt;
use nats_support::Nats;

fn rec(v: i64, writer: &str) -> Record {
    Record {
        value: Value::Int(v),
        writer: writer.into(),
        timestamp: 1,
        expires_at: None,
        bundle: None,
    }
}

async fn bucket(n: &Nats) -> ParamBucket {
    let c = async_nats::connect(n.url()).await.unwrap();
    ParamBucket::open(&jetstream::new(c), "test", 65536, 1)
        .await
        .unwrap()
}

#[tokio::test]
async fn revisions_and_compare_and_set() {
    let Some(n) = Nats::start() else { return };
    let b = bucket(&n).await;
    // Revisions are the bucket's sequence: a, b, a again → 1, 2, 3.
    assert_eq!(b.write("/a", &rec(1, "s1"), None).await.unwrap(), 1);
    assert_eq!(b.write("/b.x/é", &rec(2, "s1"), None).await.unwrap(), 2);
    assert_eq!(b.write("/a", &rec(3, "s1"), Some(1)).await.unwrap(), 3);
    assert_eq!(b.get("/a").await.unwrap(), Some((rec(3, "s1"), 3)));
    assert_eq!(b.get("/b.x/é").await.unwrap(), Some((rec(2, "s1"), 2)));
    assert_eq!(b.get("/none").await.unwrap(), None);
    // A stale expectation is a conflict; 0 means "must not exist".
    assert!(matches!(
        b.write("/a", &rec(4, "s2"), Some(1)).await,
        Err(KvError::Conflict { expected: 1 })
    ));
    assert!(matches!(
        b.write("/a", &rec(4, "s2"), Some(0)).await,
        Err(KvError::Conflict { expected: 0 })
    ));
    assert_eq!(b.write("/new", &rec(5, "s2"), Some(0)).await.unwrap(), 4);

    // Three connections race on revision 3 of /a: exactly one wins.
    let racers: Vec<ParamBucket> = vec![bucket(&n).await, bucket(&n).await, bucket(&n).await];
    let results =
        futures_util::future::join_all(racers.iter().enumerate().map(|(i, r)| async move {
            r.write("/a", &rec(10 + i as i64, "racer"), Some(3)).await
        }))
        .await;
    let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(KvError::Conflict { expected: 3 })))
    );

    // Deleting with a stale revision is refused; with the right one the param is gone.
    let (_, rev) = b.get("/a").await.unwrap().unwrap();
    assert!(matches!(
        b.delete("/a", Some(rev - 1)).await,
        Err(KvError::Conflict { .. })
    ));
    b.delete("/a", Some(rev)).await.unwrap();
    assert_eq!(b.get("/a").await.unwrap(), None);
}

async fn next<S>(w: &mut S) -> Change
where
    S: futures_util::Stream<Item = clasp_cluster::kv::WatchItem> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a change from the watch")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_watch_replays_then_follows_and_state_survives_kill_9() {
    let Some(mut n) = Nats::start() else { return };
    let b = bucket(&n).await;
    b.write("/x/1", &rec(1, "s"), None).await.unwrap();
    b.write("/x/2", &rec(2, "s"), None).await.unwrap();
    b.write("/x/1", &rec(3, "s"), None).await.unwrap();

    let mut w = Box::pin(bucket(&n).await.watch().await.unwrap());
    // The replay: the latest of each key, in revision order, the last one caught up.
    let c1 = next(&mut w).await;
    let c2 = next(&mut w).await;
    assert_eq!(
        (c1.address.as_str(), c1.revision, c1.caught_up),
        ("/x/2", 2, false)
    );
    assert_eq!(
        (c2.address.as_str(), c2.revision, c2.caught_up),
        ("/x/1", 3, true)
    );
    assert_eq!(c2.record, Some(rec(3, "s")));
    // Then what another connection writes, deletes included.
    b.write("/x/3", &rec(4, "s"), None).await.unwrap();
    b.delete("/x/2", None).await.unwrap();
    let c3 = next(&mut w).await;
    let c4 = next(&mut w).await;
    assert_eq!((c3.address.as_str(), c3.revision), ("/x/3", 4));
    assert_eq!(
        (c4.address.as_str(), c4.revision, c4.record),
        ("/x/2", 5, None)
    );

    // kill -9 of the server: what was acknowledged is still there after the restart.
    drop(w);
    n.restart();
    let b = bucket(&n).await;
    assert_eq!(b.get("/x/1").await.unwrap(), Some((rec(3, "s"), 3)));
    assert_eq!(b.get("/x/3").await.unwrap(), Some((rec(4, "s"), 4)));
    assert_eq!(b.get("/x/2").await.unwrap(), None);
}
