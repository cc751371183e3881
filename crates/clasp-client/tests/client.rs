//! The client against our router, over real WebSocket connections.
#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use clasp_client::proto::Set;
use clasp_client::{
    Client, ConnectionEvent, Error, ErrorCode, GesturePhase, Message, ReconnectPolicy, SignalDef,
    SignalType, SubscribeOptions, Value,
};
use futures_util::{FutureExt, StreamExt};
use support::{Router, within};

async fn client(r: &Router) -> Client {
    Client::builder(&r.url)
        .name("test")
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn confirmed_set_returns_revisions_and_get_reads_back() {
    let r = Router::start().await;
    let c = client(&r).await;
    assert_eq!(c.session_id().unwrap().len(), 36);
    assert_eq!(c.set_confirmed("/a/level", 0.5).await.unwrap(), 1);
    assert_eq!(c.set_confirmed("/a/level", 0.75).await.unwrap(), 2);
    assert_eq!(c.get("/a/level").await.unwrap(), Value::Float(0.75));
    let p = c.get_param("/a/level").await.unwrap();
    assert_eq!(p.revision, 2);
    assert_eq!(p.writer.as_deref(), c.session_id().as_deref());
    // Fire-and-forget writes arrive in order too.
    c.set("/a/name", "stage left").await.unwrap();
    assert_eq!(
        c.get("/a/name").await.unwrap(),
        Value::String("stage left".into())
    );
}

#[tokio::test]
async fn get_of_a_missing_address_is_not_found_at_once() {
    let r = Router::start().await;
    let c = client(&r).await;
    let started = std::time::Instant::now();
    let e = c.get("/nothing/here").await.unwrap_err();
    assert_eq!(e, Error::NotFound("/nothing/here".into()));
    assert_eq!(e.code(), Some(ErrorCode::AddressNotFound));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered, not timed out"
    );
    // Concurrent getters of the same address are all answered.
    c.set_confirmed("/x", 1).await.unwrap();
    let (a, b) = tokio::join!(c.get_param("/x"), c.get_param("/x"));
    assert_eq!(a.unwrap().value, Value::Int(1));
    assert_eq!(b.unwrap().value, Value::Int(1));
}

#[tokio::test]
async fn invalid_addresses_are_refused_locally() {
    let r = Router::start().await;
    let c = client(&r).await;
    assert!(matches!(
        c.set("no-slash", 1).await,
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        c.subscribe("lights/*").await,
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(c.get("").await, Err(Error::InvalidAddress { .. })));
}

#[tokio::test]
async fn subscription_streams_snapshot_then_live_updates() {
    let r = Router::start().await;
    let writer = client(&r).await;
    let reader = client(&r).await;
    writer.set_confirmed("/zone1/x", 1.0).await.unwrap();
    writer.set_confirmed("/other/x", 1.0).await.unwrap();

    let mut sub = reader.subscribe("/zone*/x").await.unwrap();
    let first = within("subscribe snapshot", sub.next()).await.unwrap();
    assert_eq!(&*first.address, "/zone1/x");
    assert_eq!(first.revision, Some(1));
    assert_eq!(first.kind, SignalType::Param);

    writer.set_confirmed("/zone2/x", 2.0).await.unwrap();
    writer.set_confirmed("/other/x", 3.0).await.unwrap();
    writer.set_confirmed("/zone1/x", 4.0).await.unwrap();
    let a = within("update", sub.next()).await.unwrap();
    let b = within("update", sub.next()).await.unwrap();
    assert_eq!((&*a.address, &a.value), ("/zone2/x", &Value::Float(2.0)));
    assert_eq!(
        (&*b.address, &b.value, b.revision),
        ("/zone1/x", &Value::Float(4.0), Some(2))
    );
    assert_eq!(sub.dropped(), 0);

    // A subscription covering the address makes get answer from the cache.
    assert_eq!(reader.get("/zone1/x").await.unwrap(), Value::Float(4.0));
}

#[tokio::test]
async fn events_streams_and_gestures_reach_subscribers_but_are_not_echoed() {
    let r = Router::start().await;
    let a = client(&r).await;
    let b = client(&r).await;
    let mut on_a = a.subscribe("/cue/**").await.unwrap();
    let mut on_b = b.subscribe("/cue/**").await.unwrap();
    // Make sure both SUBSCRIBEs are in before publishing.
    a.ping().await.unwrap();
    b.ping().await.unwrap();

    a.emit("/cue/go", Value::Map(vec![("n".into(), Value::Int(7))]))
        .await
        .unwrap();
    let u = within("event", on_b.next()).await.unwrap();
    assert_eq!(u.kind, SignalType::Event);
    assert_eq!(u.value.get("n"), Some(&Value::Int(7)));
    assert!(u.timestamp.is_some());

    a.stream("/cue/fader", 0.25).await.unwrap();
    let u = within("stream", on_b.next()).await.unwrap();
    assert_eq!((u.kind, u.value), (SignalType::Stream, Value::Float(0.25)));

    a.gesture("/cue/touch", 9, GesturePhase::Start, Value::Float(1.0))
        .await
        .unwrap();
    let u = within("gesture", on_b.next()).await.unwrap();
    assert_eq!(
        (u.kind, u.gesture_id, u.phase),
        (SignalType::Gesture, Some(9), Some(GesturePhase::Start))
    );

    // Nothing of it came back to the sender: an echo would have arrived before this PONG.
    a.ping().await.unwrap();
    assert!(on_a.next().now_or_never().is_none());
}

#[tokio::test]
async fn type_filters_select_signal_kinds() {
    let r = Router::start().await;
    let a = client(&r).await;
    let b = client(&r).await;
    let mut events_only = b
        .subscribe_with("/t/**", SubscribeOptions::new().types([SignalType::Event]))
        .await
        .unwrap();
    b.ping().await.unwrap();
    a.set_confirmed("/t/p", 1).await.unwrap();
    a.emit("/t/e", "go").await.unwrap();
    let u = within("event", events_only.next()).await.unwrap();
    assert_eq!((&*u.address, u.kind), ("/t/e", SignalType::Event));
}

#[tokio::test]
async fn revision_conflicts_and_locks_are_typed_errors() {
    let r = Router::start().await;
    let a = client(&r).await;
    let b = client(&r).await;
    let rev = a.set_confirmed("/desk/master", 0.1).await.unwrap();
    assert_eq!(
        a.set_if_revision("/desk/master", 0.2, rev).await.unwrap(),
        rev + 1
    );
    let e = a
        .set_if_revision("/desk/master", 0.3, rev)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::RevisionConflict { ref address, .. } if address == "/desk/master"),
        "{e:?}"
    );

    a.lock("/desk/master", 0.5).await.unwrap();
    let e = b.set_confirmed("/desk/master", 0.9).await.unwrap_err();
    assert!(matches!(e, Error::LockHeld { .. }), "{e:?}");
    assert_eq!(b.get("/desk/master").await.unwrap(), Value::Float(0.5));
    a.unlock("/desk/master", 0.6).await.unwrap();
    b.set_confirmed("/desk/master", 0.9).await.unwrap();
    assert_eq!(a.get("/desk/master").await.unwrap(), Value::Float(0.9));
}

fn set(address: &str, v: impl Into<Value>) -> Message {
    Message::Set(Set {
        address: address.into(),
        value: v.into(),
        ..Set::default()
    })
}

#[tokio::test]
async fn bundles_apply_atomically() {
    let r = Router::start().await;
    let a = client(&r).await;
    let b = client(&r).await;
    let last = a
        .bundle(vec![set("/b/1", 1), set("/b/2", 2)])
        .await
        .unwrap();
    assert_eq!(last, Some(1));
    assert_eq!(b.get("/b/2").await.unwrap(), Value::Int(2));

    // One write in the bundle is refused (the address is locked): nothing applies.
    b.lock("/b/locked", 0).await.unwrap();
    let e = a
        .bundle(vec![set("/b/1", 10), set("/b/locked", 10)])
        .await
        .unwrap_err();
    assert!(e.code().is_some(), "a router error: {e:?}");
    assert_eq!(a.get("/b/1").await.unwrap(), Value::Int(1));

    // A scheduled bundle runs at the router time it names.
    let at = a.server_time() + 200_000;
    // Its ACK comes once it has run (timing to the microsecond: driver/tests.rs).
    a.bundle_at(vec![set("/b/later", 1)], at).await.unwrap();
    assert_eq!(b.get("/b/later").await.unwrap(), Value::Int(1));
    assert!(a.server_time() >= at);
}

#[tokio::test]
async fn announce_then_query() {
    let r = Router::start().await;
    let a = client(&r).await;
    let b = client(&r).await;
    let def = SignalDef {
        address: "/synth/cutoff".into(),
        signal: SignalType::Param,
        ..SignalDef::default()
    };
    a.announce("/synth", vec![def]).await.unwrap();
    let found = b.query("/synth/**").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(&*found[0].address, "/synth/cutoff");
    assert!(b.query("/none/**").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_query_answered_in_several_result_frames_returns_everything() {
    let r = Router::start().await;
    let a = client(&r).await;
    let b = client(&r).await;
    // About 400 KB of answer: several RESULT frames, over several slices of the router's scan.
    for chunk in 0..8 {
        let defs = (0..500)
            .map(|i| SignalDef {
                address: format!("/rig/{chunk}/{}-{i}", "long-name".repeat(8)).into(),
                signal: SignalType::Param,
                ..SignalDef::default()
            })
            .collect();
        a.announce("/rig", defs).await.unwrap();
    }
    let found = b.query("/rig/**").await.unwrap();
    assert_eq!(found.len(), 4000);
    // The next request is answered after the whole RESULT, not mixed into it.
    assert_eq!(b.query("/rig/3/**").await.unwrap().len(), 500);
    b.ping().await.unwrap();
}

#[tokio::test]
async fn snapshot_returns_the_state_under_a_pattern() {
    let r = Router::start().await;
    let a = client(&r).await;
    for i in 0..5 {
        a.set_confirmed(&format!("/s/{i}"), i).await.unwrap();
    }
    a.set_confirmed("/t/0", 0).await.unwrap();
    let snap = a.snapshot("/s/*").await.unwrap();
    let addrs: Vec<&str> = snap.iter().map(|p| &*p.address).collect();
    assert_eq!(addrs, ["/s/0", "/s/1", "/s/2", "/s/3", "/s/4"]);
    assert!(a.snapshot("/empty/**").await.unwrap().is_empty());
}

#[tokio::test]
async fn clock_sync_and_ping() {
    let r = Router::start().await;
    let c = client(&r).await;
    let rtt = c.ping().await.unwrap();
    assert!(rtt < Duration::from_secs(1));
    // WELCOME is a sample, and a SYNC goes out at once (its interval: driver/tests.rs).
    let s = c.clock();
    assert!(s.samples >= 1, "{s:?}");
    // Same machine, same clock: the offset is within a few milliseconds.
    assert!(s.offset_us.abs() < 50_000, "{s:?}");
    assert!(s.quality > 0.0 && s.quality <= 1.0, "{s:?}");
    let drift = c.server_time() as i64 - clasp_now() as i64;
    assert!(drift.abs() < 50_000);
}

fn clasp_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::test]
async fn close_and_drop_really_close_the_session() {
    let r = Router::start().await;
    let a = client(&r).await;
    let mut sub = a.subscribe("/**").await.unwrap();
    r.wait_sessions(1).await;
    a.close().await;
    r.wait_sessions(0).await;
    // The stream ends; further calls say the client is closed.
    assert!(within("stream end", sub.next()).await.is_none());
    assert_eq!(a.set("/a", 1).await.unwrap_err(), Error::Closed);
    assert!(!a.is_connected());

    let b = client(&r).await;
    let b2 = b.clone();
    r.wait_sessions(1).await;
    drop(b);
    // A clone keeps it open.
    b2.ping().await.unwrap();
    drop(b2);
    r.wait_sessions(0).await;
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let r = Router::start().await;
    let a = client(&r).await;
    let b = client(&r).await;
    let sub = b.subscribe("/d/**").await.unwrap();
    let mut keep = b.subscribe("/d/keep").await.unwrap();
    drop(sub);
    b.ping().await.unwrap();
    a.set_confirmed("/d/gone", 1).await.unwrap();
    a.set_confirmed("/d/keep", 1).await.unwrap();
    let u = within("kept subscription", keep.next()).await.unwrap();
    assert_eq!(&*u.address, "/d/keep");
}

#[tokio::test]
async fn callback_listeners_run_until_dropped() {
    let r = Router::start().await;
    let a = client(&r).await;
    let b = client(&r).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = b
        .on("/cb/*", SubscribeOptions::new(), move |u| {
            let _ = tx.send(u.value);
        })
        .await
        .unwrap();
    b.ping().await.unwrap();
    a.set_confirmed("/cb/x", 5).await.unwrap();
    assert_eq!(within("callback", rx.recv()).await, Some(Value::Int(5)));
    drop(listener);
    b.ping().await.unwrap();
    a.set_confirmed("/cb/x", 6).await.unwrap();
    // The callback (and its sender) is gone.
    assert_eq!(within("callback end", rx.recv()).await, None);
}

#[tokio::test]
async fn connect_errors_are_typed() {
    // Nothing listens: a connect error.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let e = Client::connect(format!("ws://{addr}")).await.unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");

    // Accepts TCP but never answers: a timeout, not a hang.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let e = Client::builder(format!("ws://{addr}"))
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ConnectTimeout { .. }), "{e:?}");

    assert!(matches!(
        Client::connect("http://x").await,
        Err(Error::InvalidUrl { .. })
    ));

    // A full router refuses with its code.
    let r = Router::start_with(|c| c.router.max_sessions = 1).await;
    let _first = client(&r).await;
    let e = Client::connect(&r.url).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Rejected {
                code: ErrorCode::Overloaded,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn reconnects_resubscribes_and_resyncs() {
    let r = Router::start().await;
    let addr = r.addr;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            ..ReconnectPolicy::default()
        })
        .on_event(move |e| record.lock().unwrap().push(e.clone()))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [ConnectionEvent::Connected {
            session: c.session_id().unwrap()
        }]
    );
    let mut events = c.events();
    let mut sub = c
        .subscribe_with("/r/**", SubscribeOptions::new().types([SignalType::Param]))
        .await
        .unwrap();
    c.set_confirmed("/r/a", 1).await.unwrap();
    let u = within("own write", sub.next()).await.unwrap();
    assert_eq!(u.value, Value::Int(1));
    let first_session = c.session_id().unwrap();

    r.stop().await;
    let e = within("disconnect event", events.recv()).await.unwrap();
    assert!(matches!(e, ConnectionEvent::Disconnected { .. }), "{e:?}");
    assert!(matches!(c.set("/r/a", 2).await, Err(Error::NotConnected)));

    // Subscribing while disconnected is allowed; it starts with the new connection.
    let mut late = c.subscribe("/late/**").await.unwrap();

    // A new router on the same port, with state the client has not seen.
    let r = Router::start_on(addr, |_| {}).await;
    let other = client(&r).await;
    other.set_confirmed("/r/b", 5).await.unwrap();

    within("reconnected event", async {
        loop {
            if let Ok(ConnectionEvent::Reconnected { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(c.is_connected());
    assert_ne!(c.session_id().unwrap(), first_session);
    // The resubscription delivers the state written while away...
    let u = within("resync", sub.next()).await.unwrap();
    assert_eq!((&*u.address, &u.value), ("/r/b", &Value::Int(5)));
    // ...and live updates flow again.
    other.set_confirmed("/r/c", 6).await.unwrap();
    let u = within("live after reconnect", sub.next()).await.unwrap();
    assert_eq!((&*u.address, &u.value), ("/r/c", &Value::Int(6)));
    c.ping().await.unwrap(); // the resubscriptions went out before this PING
    other.emit("/late/event", 1).await.unwrap();
    let u = within("subscription made while away", late.next())
        .await
        .unwrap();
    assert_eq!((&*u.address, u.kind), ("/late/event", SignalType::Event));
    // The cache was rebuilt: the param of the old router is gone.
    assert_eq!(
        c.get("/r/a").await.unwrap_err(),
        Error::NotFound("/r/a".into())
    );
    // The listener saw the whole story, in order.
    let kinds: Vec<&'static str> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            ConnectionEvent::Connected { .. } => "connected",
            ConnectionEvent::Disconnected { .. } => "disconnected",
            ConnectionEvent::Reconnecting { .. } => "reconnecting",
            ConnectionEvent::Reconnected { .. } => "reconnected",
            _ => "other",
        })
        .collect();
    let mut collapsed = kinds.clone();
    collapsed.dedup();
    assert_eq!(
        collapsed,
        ["connected", "disconnected", "reconnecting", "reconnected"],
        "{kinds:?}"
    );
}

/// `close` right after a burst of writes sends them first: nothing sent before it is lost.
#[tokio::test]
async fn close_sends_what_was_sent_before_it() {
    let router = Router::start().await;
    let w = Client::connect(&router.url).await.unwrap();
    for i in 0..500 {
        w.set(&format!("/closing/{i}"), Value::Int(i))
            .await
            .unwrap();
    }
    w.close().await;
    let r = Client::connect(&router.url).await.unwrap();
    within("the last write before close", async {
        loop {
            if r.get("/closing/499").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let all = r.snapshot("/closing/*").await.unwrap();
    assert_eq!(all.len(), 500);
    r.close().await;
    router.stop().await;
}
