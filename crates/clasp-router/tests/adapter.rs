//! The typed door on a running server: an adapter session beside real WebSocket clients.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use clasp_proto::*;
use clasp_router::core::CloseReason;
use clasp_router::core::adapter::Delivery;
use clasp_router::server::inbox::Inbox;
use clasp_router::server::{Server, ServerConfig};
use support::WsClient;

/// Waits for the next deliveries (or a close request) in `inbox`.
async fn next(inbox: &Inbox) -> (Vec<Delivery>, Option<CloseReason>) {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let close = inbox.drain(&mut got);
            if !got.is_empty() || close.is_some() {
                return close;
            }
            inbox.ready().await;
        }
    })
    .await
    .map(|close| (got, close))
    .unwrap()
}

#[tokio::test]
async fn an_adapter_session_and_a_websocket_client_see_each_other() {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });

    let inbox = handle.inbox();
    let conn = handle.open_adapter(&inbox, None).unwrap();
    let sub = Message::Subscribe(Subscribe {
        id: 42,
        pattern: "/door/**".into(),
        ..Default::default()
    });
    assert!(handle.submit(conn, sub, Qos::Confirm).is_ok());

    let url = format!("ws://{addr}/clasp");
    let (mut ws, _) = WsClient::connect(&url).await;
    ws.send(Message::Subscribe(Subscribe {
        id: 1,
        pattern: "/door/**".into(),
        ..Default::default()
    }))
    .await;
    // The PONG says the SUBSCRIBE before it was handled.
    ws.send(Message::Ping).await;
    assert!(matches!(ws.recv().await, Message::Pong));

    // Adapter → WebSocket client: answered in place with the revision.
    let set = Message::Set(Set {
        address: "/door/a".into(),
        value: Value::Int(7),
        ..Default::default()
    });
    let answer = handle.submit(conn, set, Qos::Confirm).unwrap();
    assert_eq!(answer.revision, Some(1));
    let got = ws.recv().await;
    let Message::Set(s) = got else {
        panic!("{got:?}")
    };
    assert_eq!(
        (&*s.address, s.value.clone(), s.revision),
        ("/door/a", Value::Int(7), Some(1))
    );
    let (got, _) = next(&inbox).await;
    let [Delivery::Update(u)] = &got[..] else {
        panic!("{got:?}")
    };
    assert!(u.own, "its own SET comes back marked");

    // WebSocket client → adapter: a typed update tagged with the adapter's subscription id.
    ws.send(Message::Publish(Publish {
        address: "/door/e".into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(Value::from("hi")),
        ..Default::default()
    }))
    .await;
    let (got, _) = next(&inbox).await;
    let [Delivery::Update(u)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((u.sub, u.own), (42, false));
    assert!(matches!(&*u.message, Message::Publish(p) if p.value() == Some(&Value::from("hi"))));

    // Refused in place.
    let bad = Message::Set(Set {
        address: "no-slash".into(),
        value: Value::Int(1),
        ..Default::default()
    });
    assert!(handle.submit(conn, bad, Qos::Confirm).is_err());

    handle.close(conn);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
