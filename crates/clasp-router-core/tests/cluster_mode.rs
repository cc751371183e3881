//! Cluster mode driven by hand. Bundles: the writing router applies a bundle only once the
//! authority has answered every SET of it, and another router applies a bundle's SETs (and
//! the signals their marks carry) together once all have arrived, or what came after the
//! gathering time. TTLs: a param's expiry travels with its writes, it expires on every router,
//! and the authority is asked to delete it (at the revision that expired).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use clasp_proto::*;
use clasp_router_core::{BundleMark, ClusterOutcome, ClusterWrite, RemoteChange, SignalOut};

#[path = "support/harness.rs"]
mod harness;
use harness::*;

fn clustered() -> Harness {
    let mut h = Harness::new();
    h.core(|r, _| r.set_clustered(true));
    h
}

fn bundle(messages: Vec<Message>) -> Message {
    Message::Bundle(Bundle {
        timestamp: None,
        messages,
    })
}

fn writes(h: &mut Harness) -> Vec<ClusterWrite> {
    h.core(|r, _| std::iter::from_fn(|| r.poll_cluster_write()).collect())
}

fn answer(h: &mut Harness, id: u64, outcome: ClusterOutcome) {
    h.core(|r, now| r.cluster_written(id, outcome, now));
}

/// A writer and a reader of `/s/**`; the writer sends a bundle of SETs `/s/a` and `/s/b` and
/// the event `/s/go`: the writes it queued for the authority.
fn scene(h: &mut Harness, qos: Option<Qos>) -> (Client, Client, Vec<ClusterWrite>) {
    let (w, reader) = (h.client(), h.client());
    h.sub(&reader, 1, "/s/**");
    let b = bundle(vec![
        set("/s/a", Value::Int(1)),
        set("/s/b", Value::Int(2)),
        event("/s/go", Value::Null),
    ]);
    h.send_qos(&w, b, qos);
    let ws = writes(h);
    (w, reader, ws)
}

/// Addresses of the SETs and PUBLISHes among `msgs`, in order.
fn addresses(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Set(s) => Some(format!("set {}", s.address)),
            Message::Publish(p) => Some(format!("pub {}", p.address)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_writing_router_applies_a_bundle_once_every_set_is_written() {
    let mut h = clustered();
    let (w, reader, ws) = scene(&mut h, Some(Qos::Confirm));
    assert_eq!(ws.len(), 2);
    let mark = ws[0].bundle.clone().expect("a bundle mark");
    assert_eq!(ws[1].bundle, Some(mark.clone()));
    assert_eq!((mark.sets, mark.signals.len()), (2, 1));
    // The signal travels in the marks, not on its own.
    assert!(h.core(|r, _| r.poll_cluster_publish()).is_none());
    answer(&mut h, ws[0].id, ClusterOutcome::Written(10));
    assert!(reader.msgs().is_empty(), "half a bundle was delivered");
    assert!(w.msgs().is_empty(), "ACKed before the bundle was written");
    answer(&mut h, ws[1].id, ClusterOutcome::Written(11));
    assert_eq!(
        addresses(&reader.msgs()),
        ["set /s/a", "set /s/b", "pub /s/go"]
    );
    let got = w.msgs();
    assert!(
        matches!(&got[..], [Message::Ack(a)] if a.revision == Some(11)),
        "{got:?}"
    );
}

#[test]
fn a_set_the_cluster_refuses_after_others_stood_is_reported_and_counted() {
    let mut h = clustered();
    let (w, reader, ws) = scene(&mut h, Some(Qos::Confirm));
    answer(&mut h, ws[0].id, ClusterOutcome::Written(10));
    answer(&mut h, ws[1].id, ClusterOutcome::Conflict);
    // What was written is delivered with the signals, as the other routers deliver it.
    assert_eq!(addresses(&reader.msgs()), ["set /s/a", "pub /s/go"]);
    let got = w.msgs();
    let Message::Error(e) = &got[0] else {
        panic!("{got:?}")
    };
    assert!(
        e.message.contains("partly applied: 1 of 2"),
        "{}",
        e.message
    );
    assert_eq!(h.metrics().cluster_bundles_partial, 1);

    // Refused by every SET: nothing applied, nothing delivered.
    h.send_qos(
        &w,
        bundle(vec![
            set("/s/c", Value::Int(3)),
            event("/s/go", Value::Null),
        ]),
        Some(Qos::Confirm),
    );
    let ws = writes(&mut h);
    answer(
        &mut h,
        ws[0].id,
        ClusterOutcome::Failed("NATS is down".into()),
    );
    assert!(reader.msgs().is_empty());
    let got = w.msgs();
    assert!(
        matches!(&got[0], Message::Error(e) if e.message.contains("nothing was applied")),
        "{got:?}"
    );
}

#[test]
fn a_bundle_refused_here_sends_nothing_to_the_cluster() {
    let mut h = clustered();
    let w = h.client();
    // Another router's session holds /s/b's lock.
    h.core(|r, now| r.apply_remote_lock("/s/b", Some("elsewhere"), now.mono + 5_000_000));
    h.send_qos(
        &w,
        bundle(vec![set("/s/a", Value::Int(1)), set("/s/b", Value::Int(2))]),
        Some(Qos::Confirm),
    );
    assert!(writes(&mut h).is_empty());
    assert_eq!(h.cluster_writes_pending(), 0);
    let got = w.msgs();
    assert!(
        matches!(&got[0], Message::Error(e) if e.message.contains("/s/b")),
        "{got:?}"
    );
}

fn change(address: &str, revision: u64, mark: &Arc<BundleMark>) -> RemoteChange {
    RemoteChange {
        address: address.into(),
        revision,
        value: Some(Value::Int(revision as i64)),
        writer: "s-elsewhere".into(),
        timestamp: 1,
        expires_at: None,
        bundle: Some(mark.clone()),
    }
}

fn go_frame() -> bytes::Bytes {
    encode(&event("/s/go", Value::Null)).unwrap()
}

#[test]
fn another_routers_bundle_is_applied_when_all_its_sets_arrived() {
    let mut h = clustered();
    let reader = h.client();
    h.sub(&reader, 1, "/s/**");
    let mark = Arc::new(BundleMark {
        id: 7,
        sets: 2,
        signals: vec![go_frame()],
    });
    h.core(|r, now| r.apply_remote(change("/s/a", 5, &mark), now));
    assert!(reader.msgs().is_empty(), "half a bundle was delivered");
    // A change outside the bundle is not held back.
    let mut other = change("/s/x", 6, &mark);
    other.bundle = None;
    h.core(|r, now| r.apply_remote(other, now));
    assert_eq!(addresses(&reader.msgs()), ["set /s/x"]);
    // The same SET again (a resumed watch) does not complete it.
    h.core(|r, now| r.apply_remote(change("/s/a", 5, &mark), now));
    assert!(reader.msgs().is_empty());
    h.core(|r, now| r.apply_remote(change("/s/b", 7, &mark), now));
    assert_eq!(
        addresses(&reader.msgs()),
        ["set /s/a", "set /s/b", "pub /s/go"]
    );
    assert_eq!(h.metrics().cluster_bundles, 1);
    // Gone once applied: the gathering timer finds nothing.
    h.advance(Duration::from_secs(2));
    assert!(reader.msgs().is_empty());
    assert_eq!(h.metrics().cluster_bundles_partial, 0);
}

#[test]
fn a_bundle_whose_sets_do_not_all_arrive_is_applied_after_the_gathering_time() {
    let mut h = clustered();
    let reader = h.client();
    h.sub(&reader, 1, "/s/**");
    let mark = Arc::new(BundleMark {
        id: 9,
        sets: 3,
        signals: vec![go_frame()],
    });
    h.core(|r, now| r.apply_remote(change("/s/a", 5, &mark), now));
    h.core(|r, now| r.apply_remote(change("/s/b", 6, &mark), now));
    h.advance(Duration::from_millis(900));
    assert!(reader.msgs().is_empty());
    h.advance(Duration::from_millis(200));
    assert_eq!(
        addresses(&reader.msgs()),
        ["set /s/a", "set /s/b", "pub /s/go"]
    );
    assert_eq!(h.metrics().cluster_bundles_partial, 1);
}

#[test]
fn a_bundle_of_signals_goes_to_the_cluster_as_one() {
    let mut h = clustered();
    let (w, reader) = (h.client(), h.client());
    h.sub(&reader, 1, "/s/**");
    h.send_qos(
        &w,
        bundle(vec![
            event("/s/one", Value::Int(1)),
            event("/s/two", Value::Int(2)),
        ]),
        Some(Qos::Confirm),
    );
    assert_eq!(addresses(&reader.msgs()), ["pub /s/one", "pub /s/two"]);
    let Some(SignalOut::Bundle(members)) = h.core(|r, _| r.poll_cluster_publish()) else {
        panic!("not one bundle")
    };
    assert_eq!(members.len(), 2);
    assert!(h.core(|r, _| r.poll_cluster_publish()).is_none());
    // And another router fans them out together.
    let mut b = clustered();
    let rb = b.client();
    b.sub(&rb, 1, "/s/**");
    let frames: Vec<_> = members.into_iter().map(|(_, f)| f).collect();
    b.core(|r, now| r.publish_remote_bundle(&frames, now));
    assert_eq!(addresses(&rb.msgs()), ["pub /s/one", "pub /s/two"]);
}

#[test]
fn a_ttl_travels_with_the_write_and_expiry_asks_the_authority_to_delete() {
    let mut h = clustered();
    let (w, reader) = (h.client(), h.client());
    h.sub(&reader, 1, "/t/**");
    h.send(
        &w,
        Message::Set(Set {
            address: "/t/a".into(),
            value: Value::Int(1),
            ttl: Some(2),
            ..Default::default()
        }),
    );
    let ws = writes(&mut h);
    assert_eq!(ws[0].expires_at, Some(h.now.wall + 2_000_000));
    answer(&mut h, ws[0].id, ClusterOutcome::Written(4));
    assert_eq!(addresses(&reader.msgs()), ["set /t/a"]);
    // Another router's write with an expiry, and one that has expired already.
    let at = h.now.wall + 1_000_000;
    h.core(|r, now| {
        r.apply_remote(
            RemoteChange {
                address: "/t/b".into(),
                revision: 5,
                value: Some(Value::Int(2)),
                writer: "s-elsewhere".into(),
                timestamp: 1,
                expires_at: Some(at),
                bundle: None,
            },
            now,
        );
        r.apply_remote(
            RemoteChange {
                address: "/t/old".into(),
                revision: 3,
                value: Some(Value::Int(0)),
                writer: "s-elsewhere".into(),
                timestamp: 1,
                expires_at: Some(now.wall - 1),
                bundle: None,
            },
            now,
        )
    });
    assert!(h.params().get("/t/old").is_none());
    let expired = |h: &mut Harness| -> Vec<(String, u64)> {
        h.core(|r, _| {
            std::iter::from_fn(|| r.poll_cluster_expired())
                .map(|(a, rev)| (a.to_string(), rev))
                .collect()
        })
    };
    assert_eq!(expired(&mut h), [("/t/old".to_string(), 3)]);
    h.advance(Duration::from_millis(1000));
    assert!(h.params().get("/t/b").is_none());
    assert_eq!(expired(&mut h), [("/t/b".to_string(), 5)]);
    h.advance(Duration::from_millis(1000));
    assert_eq!(expired(&mut h), [("/t/a".to_string(), 4)]);
    assert!(h.params().is_empty());
}

#[test]
fn the_watch_bringing_an_own_bundle_first_does_not_split_it() {
    let mut h = clustered();
    let (_w, reader, ws) = scene(&mut h, None);
    let mark = ws[0].bundle.clone().unwrap();
    // The bucket's watch brings the first SET before the authority's answers.
    let echo = RemoteChange {
        address: "/s/a".into(),
        revision: 10,
        value: Some(Value::Int(1)),
        writer: ws[0].writer.to_string(),
        timestamp: 1,
        expires_at: None,
        bundle: Some(mark),
    };
    h.core(|r, now| r.apply_remote(echo, now));
    answer(&mut h, ws[0].id, ClusterOutcome::Written(10));
    assert!(reader.msgs().is_empty(), "half a bundle was delivered");
    answer(&mut h, ws[1].id, ClusterOutcome::Written(11));
    assert_eq!(
        addresses(&reader.msgs()),
        ["set /s/a", "set /s/b", "pub /s/go"]
    );
}

#[test]
fn a_late_set_of_an_applied_bundle_comes_alone_and_the_signals_once() {
    let mut h = clustered();
    let reader = h.client();
    h.sub(&reader, 1, "/s/**");
    let mark = Arc::new(BundleMark {
        id: 7,
        sets: 2,
        signals: vec![go_frame()],
    });
    h.core(|r, now| r.apply_remote(change("/s/a", 5, &mark), now));
    h.core(|r, now| r.apply_remote(change("/s/b", 6, &mark), now));
    assert_eq!(reader.msgs().len(), 3);
    // A resumed watch brings the bundle's SETs again, and a newer one of the same bundle id.
    h.core(|r, now| r.apply_remote(change("/s/a", 5, &mark), now));
    h.core(|r, now| r.apply_remote(change("/s/b", 8, &mark), now));
    assert_eq!(addresses(&reader.msgs()), ["set /s/b"]);
    h.advance(Duration::from_secs(2));
    assert!(reader.msgs().is_empty());
    assert_eq!(h.metrics().cluster_bundles, 1);
}

#[test]
fn a_param_removed_while_an_older_write_is_held_stays_removed() {
    let mut h = clustered();
    let reader = h.client();
    h.sub(&reader, 1, "/s/**");
    let mark = Arc::new(BundleMark {
        id: 9,
        sets: 2,
        signals: vec![],
    });
    h.core(|r, now| r.apply_remote(change("/s/a", 5, &mark), now));
    // /s/a is deleted (revision 6) while its write of revision 5 is held.
    h.core(|r, now| {
        r.apply_remote(
            RemoteChange {
                address: "/s/a".into(),
                revision: 6,
                value: None,
                writer: String::new(),
                timestamp: 0,
                expires_at: None,
                bundle: None,
            },
            now,
        )
    });
    h.core(|r, now| r.apply_remote(change("/s/b", 7, &mark), now));
    assert!(h.params().get("/s/a").is_none(), "brought back");
    assert_eq!(addresses(&reader.msgs()), ["set /s/b"]);
}

#[test]
fn a_bundle_with_too_many_signals_for_the_cluster_is_refused_whole() {
    let mut h = clustered();
    let w = h.client();
    let mut messages = vec![set("/s/a", Value::Int(1))];
    messages.extend((0..clasp_router_core::MAX_MARK_SIGNALS + 1).map(|_| event("/e", Value::Null)));
    h.send(&w, bundle(messages));
    assert!(writes(&mut h).is_empty());
    let got = w.msgs();
    assert!(
        matches!(&got[0], Message::Error(e) if e.message.contains("too large for the cluster")),
        "{got:?}"
    );
}
