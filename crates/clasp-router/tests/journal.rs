//! REPLAY over the wire: a journaled router answers a time range of a pattern oldest first, as
//! the SETs and PUBLISHes it broadcast, within the session's read scopes, then ACKs; a router
//! without a journal says so (501).
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/auth.rs"]
mod auth;
mod support;

use auth::*;
use clasp_proto::*;
use clasp_router::server::JournalConfig;
use support::{WsClient, http_get, metric};

fn replay(pattern: &str, from: Option<u64>, to: Option<u64>, limit: Option<u32>) -> Message {
    Message::Replay(Replay {
        pattern: pattern.into(),
        from,
        to,
        limit,
        types: SignalTypes::ALL,
    })
}

/// Everything up to the ACK that ends a REPLAY.
async fn answer(c: &mut WsClient) -> Vec<Message> {
    let mut got = Vec::new();
    loop {
        match c.recv().await {
            Message::Ack(a) if a.revision.is_none() => return got,
            Message::Error(e) => panic!("{e:?}"),
            m => got.push(m),
        }
    }
}

#[tokio::test]
async fn replay_answers_the_range_in_order_within_scopes() {
    let env = Env::start(|c| c.journal = Some(JournalConfig::default())).await;
    let (mut w, _) = WsClient::connect_token(&env.url, Some(&env.admin))
        .await
        .unwrap();
    let n = 3000;
    for i in 0..n {
        w.send_qos(set("/rp/a", Value::Int(i)), Some(Qos::Fire))
            .await;
        if i % 3 == 0 {
            w.send_qos(
                Message::Publish(Publish {
                    address: "/rp/ev".into(),
                    signal: SignalType::Event,
                    payload: PublishPayload::Value(Value::Int(i)),
                    ..Default::default()
                }),
                Some(Qos::Fire),
            )
            .await;
        }
        w.send_qos(set("/other/x", Value::Int(i)), Some(Qos::Fire))
            .await;
    }
    // A GET answered: everything before it was taken.
    w.send(Message::Get(Get {
        address: "/rp/a".into(),
    }))
    .await;
    while !matches!(w.recv().await, Message::Snapshot(_)) {}

    w.send_qos(replay("/rp/**", None, None, None), Some(Qos::Confirm))
        .await;
    let got = answer(&mut w).await;
    assert_eq!(got.len(), 3000 + 1000);
    let sets: Vec<(i64, u64)> = got
        .iter()
        .filter_map(|m| match m {
            Message::Set(s) => match s.value {
                Value::Int(i) => Some((i, s.revision.unwrap())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(sets.len(), 3000);
    for (k, (i, rev)) in sets.iter().enumerate() {
        assert_eq!(
            (*i, *rev),
            (k as i64, k as u64 + 1),
            "oldest first, as broadcast"
        );
    }

    // A limit takes the first entries; events only.
    w.send_qos(
        Message::Replay(Replay {
            pattern: "/rp/**".into(),
            limit: Some(10),
            types: SignalTypes::of(&[SignalType::Event]),
            ..Default::default()
        }),
        Some(Qos::Confirm),
    )
    .await;
    let got = answer(&mut w).await;
    let events: Vec<Value> = got
        .iter()
        .map(|m| match m {
            Message::Publish(p) => p.value().cloned().unwrap(),
            m => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(
        events,
        (0..10).map(|i| Value::Int(i * 3)).collect::<Vec<_>>()
    );

    // A time range: from a moment after the first half was written.
    let later = http_get(&env.addr, "/metrics").await;
    assert!(metric(&later, "clasp_replays_total").unwrap() >= 2.0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    w.send_qos(set("/rp/a", Value::Int(-1)), Some(Qos::Fire))
        .await;
    w.send_qos(replay("/rp/a", Some(t), None, None), Some(Qos::Confirm))
        .await;
    let got = answer(&mut w).await;
    assert_eq!(got.len(), 1, "{got:?}");

    // Outside the read scopes: refused.
    let ro = env.token(&["read:/other/**"], None).await;
    let (mut r, _) = WsClient::connect_token(&env.url, Some(&ro)).await.unwrap();
    r.send_qos(replay("/rp/**", None, None, None), Some(Qos::Confirm))
        .await;
    let Message::Error(e) = r.recv().await else {
        panic!()
    };
    assert_eq!(e.code.code(), 301);
    r.send_qos(replay("/other/*", None, None, Some(5)), Some(Qos::Confirm))
        .await;
    assert_eq!(answer(&mut r).await.len(), 5);
    env.stop().await;
}

#[tokio::test]
async fn replay_without_a_journal_is_refused_with_501() {
    let env = Env::start(|_| {}).await;
    let (mut w, _) = WsClient::connect_token(&env.url, Some(&env.admin))
        .await
        .unwrap();
    w.send_qos(replay("/**", None, None, None), Some(Qos::Confirm))
        .await;
    let Message::Error(e) = w.recv().await else {
        panic!()
    };
    assert_eq!(e.code.code(), 501);
    assert!(e.message.contains("--journal"), "{}", e.message);
    env.stop().await;
}
