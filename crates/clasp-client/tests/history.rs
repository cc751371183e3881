//! History over the wire: a subscriber asking for the last values of an address while a writer
//! writes it flat out gets the history, the current value and the live updates as one run of
//! consecutive values: no gap, nothing twice. With a journal (in memory and on disk, across a
//! restart) and without one (the recent values kept per address).
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use clasp_client::{Client, SubscribeOptions, Value};
use clasp_router::server::{JournalConfig, ServerConfig};
use support::{Router, within};

async fn connect(url: &str) -> Client {
    Client::connect(url).await.unwrap()
}

/// Writes `/h/c` = from..=to, yielding now and then so the subscriber's SUBSCRIBE lands in the
/// middle; each write confirmed.
async fn write_run(url: String, from: i64, to: i64) {
    let w = connect(&url).await;
    for i in from..=to {
        w.set("/h/c", Value::Int(i)).await.unwrap();
        if i % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Everything sent has been taken once a GET is answered.
    w.get("/h/c").await.unwrap();
    w.close().await;
}

/// Subscribes with `history` while values are being written and checks the run of values it
/// receives up to `last`.
async fn check_run(url: &str, history: u32, last: i64) -> Vec<i64> {
    let r = connect(url).await;
    let mut sub = r
        .subscribe_with("/h/c", SubscribeOptions::new().history(history))
        .await
        .unwrap();
    let mut got = Vec::new();
    let run = tokio::time::timeout(support::WAIT, async {
        while let Some(u) = sub.recv().await {
            let Value::Int(i) = u.value else {
                panic!("{u:?}")
            };
            got.push(i);
            if i == last {
                break;
            }
        }
    })
    .await;
    assert!(
        run.is_ok(),
        "timed out; got {} values: {:?}…",
        got.len(),
        &got[..got.len().min(20)]
    );
    assert!(!got.is_empty());
    for pair in got.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a gap or a repeat in {got:?}");
    }
    r.close().await;
    got
}

fn journal_config(c: &mut ServerConfig) {
    c.journal = Some(JournalConfig::default());
}

#[tokio::test]
async fn history_then_live_without_gap_or_repeat_from_the_journal() {
    let router = Router::start_with(journal_config).await;
    let url = router.url.clone();
    let w = connect(&url).await;
    for i in 1..=300 {
        w.set("/h/c", Value::Int(i)).await.unwrap();
    }
    let writer = tokio::spawn(write_run(url.clone(), 301, 3000));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let got = check_run(&url, 200, 3000).await;
    writer.await.unwrap();
    // 200 earlier values, the current one, and on.
    assert!(got.len() >= 201, "{}", got.len());
    assert!(router.metric("clasp_history_sent_total").await >= 200);
    assert!(router.metric("clasp_journaled_total").await >= 3000);
    w.close().await;
    router.stop().await;
}

#[tokio::test]
async fn history_then_live_without_gap_or_repeat_from_recent_values() {
    let router = Router::start().await;
    let url = router.url.clone();
    let w = connect(&url).await;
    for i in 1..=20 {
        w.set("/h/c", Value::Int(i)).await.unwrap();
    }
    let writer = tokio::spawn(write_run(url.clone(), 21, 2000));
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Eight values are kept per address: the current one and seven before it.
    let got = check_run(&url, 7, 2000).await;
    writer.await.unwrap();
    assert!(got.len() >= 8, "{}", got.len());
    w.close().await;
    router.stop().await;
}

#[tokio::test]
async fn the_journal_on_disk_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let config = move |c: &mut ServerConfig| {
        c.data_dir = Some(path.clone());
        c.journal = Some(JournalConfig::default());
    };
    let router = Router::start_with(config.clone()).await;
    let w = connect(&router.url).await;
    for i in 1..=50 {
        w.set("/h/c", Value::Int(i)).await.unwrap();
        w.emit("/h/ev", Value::Int(i)).await.unwrap();
    }
    let _ = w.get("/h/c").await.unwrap();
    assert_eq!(router.metric("clasp_journaled_total").await, 100);
    w.close().await;
    router.stop().await;
    assert!(dir.path().join("journal.redb").exists());

    let router = Router::start_with(config).await;
    let w = connect(&router.url).await;
    w.set("/h/c", Value::Int(51)).await.unwrap();
    let got = check_run(&router.url, 30, 51).await;
    assert_eq!(got, (21..=51).collect::<Vec<_>>());
    // Events come from the journal too.
    let r = connect(&router.url).await;
    let mut sub = r
        .subscribe_with("/h/ev", SubscribeOptions::new().history(3))
        .await
        .unwrap();
    let mut events = Vec::new();
    within("three earlier events", async {
        while events.len() < 3 {
            let u = sub.recv().await.unwrap();
            events.push(u.value);
        }
    })
    .await;
    assert_eq!(events, [Value::Int(48), Value::Int(49), Value::Int(50)]);
    assert!(router.metric("clasp_journal_entries").await >= 101);
    r.close().await;
    w.close().await;
    router.stop().await;
}
