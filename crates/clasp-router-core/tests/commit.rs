//! QoS Commit through the core: the ACK waits until the shell says the write is on disk, the
//! broadcast does not; Confirm is unchanged; a write that never reaches the disk gets ERROR 500.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use clasp_proto::*;
use harness::*;

fn durable() -> Harness {
    let mut h = Harness::new();
    h.core(|r, _| r.set_durable_acks(true));
    h
}

#[test]
fn a_commit_ack_waits_for_the_disk_and_the_broadcast_does_not() {
    let mut h = durable();
    let writer = h.client();
    let watcher = h.client();
    h.sub(&watcher, 1, "/c/**");
    h.sub(&writer, 1, "/c/**");
    h.send_qos(&writer, set("/c/x", Value::Int(1)), Some(Qos::Commit));
    assert!(matches!(watcher.msgs()[..], [Message::Set(_)]));
    // The writer sees the broadcast, not yet the ACK.
    assert!(matches!(writer.msgs()[..], [Message::Set(_)]));
    assert!(h.commits_wake(), "the shell is asked to write now");
    assert_eq!(h.commits_waiting(), 1);
    let epoch = h.params().epoch();
    // A Confirm write meanwhile is acknowledged at once.
    h.send_qos(&writer, set("/c/y", Value::Int(2)), Some(Qos::Confirm));
    let got = writer.msgs();
    assert!(
        got.iter()
            .any(|m| matches!(m, Message::Ack(a) if a.address.as_deref() == Some("/c/y")))
    );
    // Written up to an earlier epoch: still waiting.
    h.persisted(epoch - 1);
    assert!(writer.msgs().is_empty());
    h.persisted(epoch);
    let got = writer.msgs();
    assert!(
        matches!(&got[..], [Message::Ack(a)] if a.address.as_deref() == Some("/c/x") && a.revision == Some(1)),
        "{got:?}"
    );
    assert_eq!(h.commits_waiting(), 0);
}

#[test]
fn a_commit_bundle_is_acknowledged_once_on_disk() {
    let mut h = durable();
    let writer = h.client();
    h.send_qos(
        &writer,
        Message::Bundle(Bundle {
            timestamp: None,
            messages: vec![set("/b/1", Value::Int(1)), set("/b/2", Value::Int(2))],
        }),
        Some(Qos::Commit),
    );
    assert!(writer.msgs().is_empty());
    let e = h.params().epoch();
    h.persisted(e);
    assert!(matches!(writer.msgs()[..], [Message::Ack(_)]));
}

#[test]
fn a_commit_that_never_reaches_the_disk_gets_an_error() {
    let mut h = durable();
    let writer = h.client();
    h.send_qos(&writer, set("/c/x", Value::Int(1)), Some(Qos::Commit));
    h.advance(Duration::from_secs(21));
    let got = writer.msgs();
    assert!(
        matches!(&got[..], [Message::Error(e)] if e.code == ErrorCode::Internal && e.message.contains("not on disk")),
        "{got:?}"
    );
    assert_eq!(h.commits_waiting(), 0);
}

#[test]
fn without_a_disk_commit_is_acknowledged_like_confirm() {
    let mut h = Harness::new();
    let writer = h.client();
    h.send_qos(&writer, set("/c/x", Value::Int(1)), Some(Qos::Commit));
    assert!(matches!(writer.msgs()[..], [Message::Ack(_)]));
    assert!(!h.commits_wake());
}

#[test]
fn waiting_acks_of_a_closed_connection_are_dropped() {
    let mut h = durable();
    let writer = h.client();
    h.send_qos(&writer, set("/c/x", Value::Int(1)), Some(Qos::Commit));
    h.close(&writer);
    assert_eq!(h.commits_waiting(), 0);
    let e = h.params().epoch();
    h.persisted(e);
}
