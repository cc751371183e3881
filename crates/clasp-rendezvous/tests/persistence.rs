#![allow(clippy::unwrap_used)]
//! Registrations persist in a real redb file (clasp-store) across restarts.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clasp_rendezvous::{ManualClock, RendezvousService};
use clasp_store::{RecordTable, RedbStore, Store};
use support::{
    T0, TestServer, config, discover, http, post_register, refresh, register, registration,
    unregister_owned,
};

fn names(devices: &[serde_json::Value]) -> Vec<String> {
    let mut n: Vec<String> = devices
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn registrations_survive_a_restart_and_expire_by_wall_clock_age() {
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let (a_id, a_secret) = {
        let store = RedbStore::open(dir.path()).unwrap();
        let table = store.records("rendezvous").unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let server = TestServer::start_with(config(), clock.clone(), Some(table)).await;
        let a = register(
            &http,
            &server,
            serde_json::json!({"name": "a", "endpoints": {"ws": "ws://a:7330"}, "tags": ["t"],
                "metadata": {"k": "v"}, "publicKey": "pk"}),
        )
        .await;
        let b = register(&http, &server, registration("b")).await;
        register(&http, &server, registration("c")).await;
        let r = unregister_owned(&http, &server, &b).await;
        assert_eq!(r.status(), 204);
        clock.advance(Duration::from_secs(100));
        let r = refresh(&http, &server, a["id"].as_str().unwrap()).await;
        assert_eq!(r.status(), 200);
        // Stopping flushes the refresh and releases the database.
        server.stop().await;
        (
            a["id"].as_str().unwrap().to_owned(),
            a["secret"].as_str().unwrap().to_owned(),
        )
    };

    // Restart 50 s later: a and c are back, b stays gone, everything as it was.
    {
        let store = RedbStore::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::new(T0 + 150_000_000));
        let table = store.records("rendezvous").unwrap();
        let server = TestServer::start_with(config(), clock.clone(), Some(table)).await;
        let devices = discover(&http, &server, "").await;
        assert_eq!(names(&devices), ["a", "c"]);
        let a = devices.iter().find(|d| d["name"] == "a").unwrap();
        assert_eq!(a["id"], a_id.as_str());
        assert_eq!(a["registeredAt"], T0);
        assert_eq!(a["lastSeen"], T0 + 100_000_000);
        assert_eq!(a["publicKey"], "pk");
        assert_eq!(a["tags"], serde_json::json!(["t"]));
        assert_eq!(a["metadata"]["k"], "v");
        // The owner secret survived too.
        let r = http
            .post(server.url(&format!("/api/v1/refresh/{a_id}")))
            .header("x-clasp-secret", "wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // The remaining TTL is the wall-clock remainder: c (seen at T0) has 150 s left.
        clock.advance(Duration::from_secs(149));
        assert_eq!(names(&discover(&http, &server, "").await), ["a", "c"]);
        clock.advance(Duration::from_secs(1));
        assert_eq!(names(&discover(&http, &server, "").await), ["a"]);
        server.stop().await;
    }

    // Restart after a has expired too (last seen T0+100 s, TTL 300 s): nothing comes back, and
    // the stale records are deleted from the table.
    let store = RedbStore::open(dir.path()).unwrap();
    let table = store.records("rendezvous").unwrap();
    assert_eq!(
        table.load_all().unwrap().len(),
        2,
        "a and c are still stored"
    );
    let clock = Arc::new(ManualClock::new(T0 + 400_000_000));
    let service = RendezvousService::open(config(), clock, Some(table.clone())).unwrap();
    assert!(service.is_empty());
    service.flush().await.unwrap();
    assert!(table.load_all().unwrap().is_empty());
    drop(service);
    let _ = a_secret;
}

#[tokio::test]
async fn writes_reach_the_table_in_order_and_sweep_deletes() {
    let table: Arc<dyn RecordTable> = Arc::new(clasp_store::MemoryRecordTable::new());
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_with(config(), clock.clone(), Some(table.clone())).await;
    let http = http();
    // Register is stored before it is answered.
    let a = register(&http, &server, registration("a")).await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let stored = table.load_all().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, a_id);
    let record: serde_json::Value = serde_json::from_slice(&stored[0].1).unwrap();
    assert_eq!(record["device"]["lastSeen"], T0);
    // A refresh is written lazily (at the persist interval or on flush).
    clock.advance(Duration::from_secs(10));
    let r = refresh(&http, &server, &a_id).await;
    assert_eq!(r.status(), 200);
    server.service.flush().await.unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&table.load_all().unwrap()[0].1).unwrap();
    assert_eq!(record["device"]["lastSeen"], T0 + 10_000_000);
    // Many registrations and unregistrations in flight end up exactly as in memory.
    let mut keep = Vec::new();
    for i in 0..40 {
        let r = register(&http, &server, registration(&format!("d{i}"))).await;
        let id = r["id"].as_str().unwrap().to_owned();
        if i % 2 == 0 {
            let resp = unregister_owned(&http, &server, &r).await;
            assert_eq!(resp.status(), 204);
        } else {
            keep.push(id);
        }
    }
    server.service.flush().await.unwrap();
    let mut stored: Vec<String> = table
        .load_all()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keep.push(a_id);
    keep.sort();
    stored.sort();
    assert_eq!(stored, keep);
    // The sweep removes expired devices from the table as well.
    clock.advance(Duration::from_secs(301));
    assert_eq!(server.service.sweep(), 21);
    server.service.flush().await.unwrap();
    assert!(table.load_all().unwrap().is_empty());
    // After close, a registration that cannot be stored is refused (503), not silently kept.
    server.service.close().await.unwrap();
    let r = post_register(&http, &server, &registration("late")).await;
    assert!(support::error(r, 503).await.contains("closed"));
    assert!(server.service.is_empty());
    assert!(discover(&http, &server, "").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn unreadable_records_are_dropped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let table = store.records("rendezvous").unwrap();
    table.put("junk", b"\xff not json").unwrap();
    table.put("mismatch", br#"{"device":{"id":"other","name":"x","registeredAt":1,"lastSeen":1},"source":"127.0.0.1","secret":"s"}"#).unwrap();
    let service = RendezvousService::open(
        config(),
        Arc::new(ManualClock::new(T0)),
        Some(table.clone()),
    )
    .unwrap();
    assert!(service.is_empty());
    service.flush().await.unwrap();
    assert!(table.load_all().unwrap().is_empty());
    drop(service);
    assert!(store.load().unwrap().is_empty());
}
