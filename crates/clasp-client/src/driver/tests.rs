//! The connection's state machine driven deterministically against the router core (see
//! `harness.rs`): connect, requests, subscriptions, clock sync, scheduled bundles, connect
//! errors, reconnecting and closing, with time advanced by hand instead of slept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clasp_proto::{
    Bundle, ErrorCode, FrameOptions, Message, Publish, PublishPayload, Qos, SignalType, Value,
    encode_with,
};
use clasp_router_core::RouterConfig;

use super::harness::{Net, Reach, answer, config, set};
use crate::command::Waiter;
use crate::config::{ConnectionEvent, ReconnectPolicy};
use crate::error::Error;
use crate::options::SubscribeOptions;

const MS: Duration = Duration::from_millis(1);

#[test]
fn connect_opens_a_session_and_samples_the_clock() {
    let mut net = Net::new();
    // The router's clock runs 5 s ahead; the in-memory link has no delay.
    net.router_offset = 5_000_000;
    let c = net.client();
    assert!(net.connected(c));
    let session = net.peers[c].shared.lock().session.clone().unwrap();
    assert_eq!(
        net.events(c),
        [ConnectionEvent::Connected {
            session: session.clone()
        }]
    );
    // HELLO, then the first SYNC right after WELCOME.
    let wrote = net.wrote(c);
    assert!(matches!(wrote[0], Message::Hello(_)), "{wrote:?}");
    assert!(matches!(wrote[1], Message::Sync(_)), "{wrote:?}");
    let clock = net.peers[c].shared.lock().clock.status();
    // WELCOME and the first SYNC: two exact samples of the offset, no round trip.
    assert_eq!(
        (clock.offset_us, clock.rtt_us, clock.samples),
        (5_000_000, 0, 2)
    );
}

#[test]
fn clock_sync_runs_on_its_interval() {
    let mut net = Net::new();
    net.router_offset = -1_500;
    let c = net.client();
    net.wrote(c);
    net.advance(Duration::from_secs(10) - MS);
    assert!(net.wrote(c).is_empty(), "no SYNC before the interval");
    net.advance(MS);
    assert!(matches!(net.wrote(c)[..], [Message::Sync(_)]));
    net.advance(Duration::from_secs(20));
    let clock = net.peers[c].shared.lock().clock.status();
    assert_eq!((clock.offset_us, clock.samples), (-1_500, 5));
    assert!(clock.quality > 0.99, "{clock:?}");
}

#[test]
fn gets_are_answered_or_not_found_at_once() {
    let mut net = Net::new();
    let c = net.client();
    let mut missing = net.get(c, "/nothing/here");
    let e = answer(&mut missing).unwrap_err();
    assert_eq!(e, Error::NotFound("/nothing/here".into()));
    assert_eq!(
        answer(&mut net.set(c, "/x", Value::Int(1)))
            .unwrap()
            .revision,
        Some(1)
    );
    // Concurrent getters of the same address are all answered.
    let (mut a, mut b) = (net.get(c, "/x"), net.get(c, "/x"));
    assert_eq!(answer(&mut a).unwrap().value, Value::Int(1));
    assert_eq!(answer(&mut b).unwrap().value, Value::Int(1));
    assert!(net.peers[c].st.pending.is_empty());
}

#[test]
fn events_reach_other_subscribers_and_are_not_echoed() {
    let mut net = Net::new();
    let (a, b) = (net.client(), net.client());
    let (_, mut on_a) = net.subscribe(a, "/cue/**", SubscribeOptions::new());
    let (_, mut on_b) = net.subscribe(b, "/cue/**", SubscribeOptions::new());
    net.send(
        a,
        &Message::Publish(Publish {
            address: "/cue/go".into(),
            signal: SignalType::Event,
            payload: PublishPayload::Value(Value::Int(7)),
            ..Default::default()
        }),
    );
    let u = on_b.try_recv().unwrap();
    assert_eq!(
        (&*u.address, u.kind, &u.value),
        ("/cue/go", SignalType::Event, &Value::Int(7))
    );
    assert!(on_b.try_recv().is_err());
    // Everything has been handed over: nothing came back to the sender.
    assert!(on_a.try_recv().is_err());
}

#[test]
fn subscriptions_drop_exact_repeats_and_filter_types() {
    let mut net = Net::new();
    let (a, b) = (net.client(), net.client());
    answer(&mut net.set(a, "/t/p", Value::Int(1))).unwrap();
    let (_, mut params) = net.subscribe(b, "/t/**", SubscribeOptions::new());
    let events = SubscribeOptions::new().types([SignalType::Event]);
    let (_, mut only_events) = net.subscribe(b, "/t/**", events);
    assert_eq!(params.try_recv().unwrap().revision, Some(1));
    // The same state again (a second snapshot) is not delivered twice.
    net.subscribe(b, "/t/p", SubscribeOptions::new());
    assert!(params.try_recv().is_err());
    answer(&mut net.set(a, "/t/p", Value::Int(2))).unwrap();
    assert_eq!(params.try_recv().unwrap().value, Value::Int(2));
    assert!(only_events.try_recv().is_err());
}

#[test]
fn a_scheduled_bundle_runs_at_the_router_time_it_names() {
    let mut net = Net::new();
    net.router_offset = 3_000_000;
    let (a, b) = (net.client(), net.client());
    let at = net.now.wall + 3_000_000 + 200_000;
    let bundle = Message::Bundle(Bundle {
        timestamp: Some(at),
        messages: vec![set("/b/later", Value::Int(1))],
    });
    let frame = encode_with(&bundle, FrameOptions::with_qos(Qos::Commit)).unwrap();
    let mut ack = net.request(a, frame, |tx| Waiter::Ack { key: None, tx });
    net.advance(199 * MS);
    assert!(answer(&mut net.get(b, "/b/later")).is_err(), "not yet");
    // The ACK comes when the bundle has run.
    assert!(ack.try_recv().is_err());
    net.advance(MS);
    assert_eq!(answer(&mut ack).unwrap().revision, Some(1));
    assert_eq!(
        answer(&mut net.get(b, "/b/later")).unwrap().value,
        Value::Int(1)
    );
}

#[test]
fn updates_of_one_inbound_bundle_share_a_number() {
    // Our router forwards a bundle's members one by one; a router that forwards the BUNDLE
    // itself is stood in for by handing the machine one directly.
    let mut net = Net::new();
    let c = net.client();
    let (_, mut rx) = net.subscribe(c, "/u/**", SubscribeOptions::new());
    let event = Message::Publish(Publish {
        address: "/u/go".into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(Value::Int(1)),
        ..Default::default()
    });
    let bundle = |msgs| {
        Message::Bundle(Bundle {
            timestamp: None,
            messages: msgs,
        })
    };
    let now = net.now;
    let st = &mut net.peers[c].st;
    st.handle(bundle(vec![set("/u/a", Value::Int(1)), event.clone()]), now);
    st.handle(set("/u/b", Value::Int(2)), now);
    st.handle(bundle(vec![set("/u/c", Value::Int(3))]), now);
    let got: Vec<(String, Option<u64>)> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|u| (u.address.to_string(), u.bundle))
        .collect();
    let want = [
        ("/u/a", Some(1)),
        ("/u/go", Some(1)),
        ("/u/b", None),
        ("/u/c", Some(2)),
    ];
    let want: Vec<(String, Option<u64>)> = want.iter().map(|(a, b)| (a.to_string(), *b)).collect();
    assert_eq!(got, want);
}

#[test]
fn snapshot_and_query_collect_until_the_pong() {
    let mut net = Net::new();
    let c = net.client();
    for i in 0..3 {
        answer(&mut net.set(c, &format!("/s/{i}"), Value::Int(i))).unwrap();
    }
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let pattern = clasp_proto::pattern::Pattern::compile("/s/*").unwrap();
    net.command(c, crate::command::Command::Snapshot { pattern, tx });
    let snap = answer(&mut rx).unwrap();
    let addrs: Vec<&str> = snap.iter().map(|p| &*p.address).collect();
    assert_eq!(addrs, ["/s/0", "/s/1", "/s/2"]);
    // The helper subscription is gone again.
    assert!(matches!(net.wrote(c).last(), Some(Message::Unsubscribe(_))));
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    net.command(
        c,
        crate::command::Command::Query {
            pattern: "/none/**".into(),
            tx,
        },
    );
    assert!(answer(&mut rx).unwrap().is_empty());
    let rtt = answer(&mut net.ping(c)).unwrap();
    assert_eq!(rtt, Duration::ZERO);
}

#[test]
fn abandoned_calls_are_forgotten() {
    let mut net = Net::new();
    let c = net.client();
    // A call whose answer never comes (the reference router does not answer a GET of a
    // missing address) and whose caller gave up.
    let (tx, rx) = tokio::sync::oneshot::channel();
    net.peers[c].st.pending.push_back(Waiter::Get {
        address: "/never".into(),
        tx,
    });
    drop(rx);
    net.advance(Duration::from_secs(1));
    assert!(net.peers[c].st.pending.is_empty());
}

#[test]
fn a_refused_dial_fails_connect_quietly() {
    let mut net = Net::new();
    net.reach = Reach::Refused;
    let c = net.client_with(config(), 1);
    net.pump();
    assert!(matches!(
        net.peers[c].opened,
        Some(Err(Error::Connect { .. }))
    ));
    assert!(net.peers[c].done);
    // No client existed to hear of it.
    assert!(net.events(c).is_empty());
}

#[test]
fn a_silent_router_times_the_connect_out_exactly() {
    let mut net = Net::new();
    net.reach = Reach::Silent;
    let mut cfg = config();
    cfg.connect_timeout = Duration::from_millis(300);
    let c = net.client_with(cfg, 1);
    net.pump();
    net.advance(299 * MS);
    assert!(net.peers[c].opened.is_none());
    net.advance(MS);
    assert!(
        matches!(net.peers[c].opened, Some(Err(Error::ConnectTimeout { timeout, .. })) if timeout == 300 * MS),
        "{:?}",
        net.peers[c].opened
    );
    assert!(net.peers[c].done);
}

#[test]
fn a_full_router_rejects_with_its_code() {
    let mut net = Net::with(RouterConfig {
        max_sessions: 1,
        ..RouterConfig::default()
    });
    net.client();
    let c = net.client_with(config(), 9);
    net.pump();
    assert!(
        matches!(
            net.peers[c].opened,
            Some(Err(Error::Rejected {
                code: ErrorCode::Overloaded,
                ..
            }))
        ),
        "{:?}",
        net.peers[c].opened
    );
}

/// A client that reconnects after 100 ms (±20%), doubling to 400 ms.
fn reconnecting(net: &mut Net, seed: u64, max_attempts: Option<u32>) -> usize {
    let mut cfg = config();
    cfg.reconnect = ReconnectPolicy {
        initial_delay: 100 * MS,
        max_delay: 400 * MS,
        max_attempts,
        ..ReconnectPolicy::default()
    };
    let c = net.client_with(cfg, seed);
    net.pump();
    assert!(matches!(net.peers[c].opened, Some(Ok(()))));
    c
}

#[test]
fn reconnect_backs_off_resubscribes_first_and_resyncs() {
    let mut net = Net::new();
    let c = reconnecting(&mut net, 7, None);
    let (_, mut sub) = net.subscribe(c, "/r/**", SubscribeOptions::new());
    answer(&mut net.set(c, "/r/a", Value::Int(1))).unwrap();
    assert_eq!(sub.try_recv().unwrap().value, Value::Int(1));
    let first = net.peers[c].shared.lock().session.clone();
    net.events(c);

    // A call in flight when the router goes: it fails before listeners hear of the loss.
    // (taken by the machine, not yet handed to the router)
    let (tx, mut in_flight) = tokio::sync::oneshot::channel();
    net.peers[c].st.on_command(crate::command::Command::Send {
        frame: clasp_proto::encode(&Message::Ping).unwrap(),
        wait: Some(Waiter::Pong {
            sent: net.now.at,
            tx,
        }),
    });
    net.router_down();
    assert_eq!(answer(&mut in_flight).unwrap_err(), Error::Disconnected);
    let events = net.events(c);
    assert!(
        matches!(events[0], ConnectionEvent::Disconnected { .. }),
        "{events:?}"
    );
    let ConnectionEvent::Reconnecting { attempt: 1, delay } = events[1] else {
        panic!("{events:?}")
    };
    assert!(delay >= 80 * MS && delay <= 120 * MS, "{delay:?}");
    assert!(!net.connected(c));
    // Commands meanwhile: refused, except subscriptions, which wait for the connection.
    let mut refused = net.set(c, "/r/a", Value::Int(2));
    assert_eq!(answer(&mut refused).unwrap_err(), Error::NotConnected);
    let (_, mut late) = net.subscribe(c, "/late/**", SubscribeOptions::new());

    // Down for a while: the attempts back off, doubling within the jitter.
    net.advance(delay);
    let events = net.events(c);
    let ConnectionEvent::Reconnecting {
        attempt: 2,
        delay: d2,
    } = events[0]
    else {
        panic!("{events:?}")
    };
    assert!(d2 >= 160 * MS && d2 <= 240 * MS, "{d2:?}");

    // Back, with state the client has not seen.
    net.router_up();
    let other = net.client();
    answer(&mut net.set(other, "/r/b", Value::Int(5))).unwrap();
    net.wrote(c);
    net.advance(d2 - MS);
    assert!(!net.connected(c), "not before the delay");
    net.advance(MS);
    assert!(net.connected(c));
    let events = net.events(c);
    assert!(
        matches!(
            events[..],
            [ConnectionEvent::Reconnected { attempts: 2, .. }]
        ),
        "{events:?}"
    );
    assert_ne!(net.peers[c].shared.lock().session, first);
    // HELLO, both subscriptions (in id order), then the SYNC: before any command.
    let wrote: Vec<&'static str> = net.wrote(c).iter().map(Message::name).collect();
    assert_eq!(wrote, ["HELLO", "SUBSCRIBE", "SUBSCRIBE", "SYNC"]);
    // The resubscription delivers the state written while away; the cache was rebuilt.
    let u = sub.try_recv().unwrap();
    assert_eq!((&*u.address, &u.value), ("/r/b", &Value::Int(5)));
    assert!(!net.peers[c].shared.lock().cache.contains_key("/r/a"));
    // A subscription made while away works.
    answer(&mut net.set(other, "/late/x", Value::Int(1))).unwrap();
    assert_eq!(&*late.try_recv().unwrap().address, "/late/x");
}

#[test]
fn pending_calls_fail_before_listeners_hear_of_the_loss() {
    let mut net = Net::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = config();
    cfg.reconnect = ReconnectPolicy::disabled();
    let record = order.clone();
    let probe: Arc<Mutex<Option<tokio::sync::oneshot::Receiver<crate::Result<Duration>>>>> =
        Arc::new(Mutex::new(None));
    let seen = probe.clone();
    cfg.on_event = Some(crate::config::EventHook(Arc::new(move |e| {
        if let ConnectionEvent::Disconnected { .. } = e {
            let mut rx = seen.lock().unwrap().take().unwrap();
            record
                .lock()
                .unwrap()
                .push(rx.try_recv().map(|r| r.is_err()).ok());
        }
    })));
    let c = net.client_with(cfg, 3);
    net.pump();
    // A PING taken by the machine, not yet handed to the router.
    let (tx, rx) = tokio::sync::oneshot::channel();
    net.peers[c].st.on_command(crate::command::Command::Send {
        frame: clasp_proto::encode(&Message::Ping).unwrap(),
        wait: Some(Waiter::Pong {
            sent: net.now.at,
            tx,
        }),
    });
    *probe.lock().unwrap() = Some(rx);
    net.router_down();
    // The listener found the call already failed.
    assert_eq!(*order.lock().unwrap(), [Some(true)]);
    // Not reconnecting: closed for good.
    assert!(net.peers[c].done);
    let kinds: Vec<_> = net
        .events(c)
        .into_iter()
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(kinds.last().unwrap().starts_with("Closed"), "{kinds:?}");
}

#[test]
fn reconnecting_gives_up_after_max_attempts() {
    let mut net = Net::new();
    let c = reconnecting(&mut net, 11, Some(2));
    let (_, mut sub) = net.subscribe(c, "/x/**", SubscribeOptions::new());
    net.events(c);
    net.router_down();
    net.advance(Duration::from_secs(2));
    let names: Vec<String> = net
        .events(c)
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["Disconnected", "Reconnecting", "Reconnecting", "Closed"]
    );
    assert!(net.peers[c].done);
    // The stream ended; later commands say closed.
    assert!(matches!(
        sub.try_recv(),
        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
    ));
    assert_eq!(answer(&mut net.ping(c)).unwrap_err(), Error::Closed);
}

#[test]
fn jitter_is_seeded_and_stays_within_the_spread() {
    let delays = |seed| {
        let mut net = Net::new();
        let c = reconnecting(&mut net, seed, Some(4));
        net.router_down();
        net.advance(Duration::from_secs(5));
        net.events(c)
            .into_iter()
            .filter_map(|e| match e {
                ConnectionEvent::Reconnecting { delay, .. } => Some(delay),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let a = delays(1);
    assert_eq!(a, delays(1), "same seed, same delays");
    assert_ne!(a, delays(2));
    for (d, base) in a.iter().zip([100, 200, 400, 400]) {
        let ms = d.as_secs_f64() * 1000.0;
        assert!(ms >= base as f64 * 0.8 && ms <= base as f64 * 1.2, "{a:?}");
    }
}

#[test]
fn close_ends_the_session_cleanly() {
    let mut net = Net::new();
    let c = net.client();
    let (_, mut sub) = net.subscribe(c, "/**", SubscribeOptions::new());
    assert_eq!(net.router.session_count(), 1);
    let now = net.now;
    net.peers[c].st.on_close(now);
    net.pump();
    assert_eq!(net.router.session_count(), 0);
    assert!(net.peers[c].done);
    assert!(!net.connected(c));
    assert!(matches!(
        sub.try_recv(),
        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
    ));
    let events = net.events(c);
    assert_eq!(events.last(), Some(&ConnectionEvent::Closed));
    assert_eq!(answer(&mut net.ping(c)).unwrap_err(), Error::Closed);
}

#[test]
fn a_close_the_router_never_answers_ends_after_the_grace() {
    let mut net = Net::new();
    let c = net.client();
    // A transport that swallows the Close: the machine gives up waiting after 500 ms.
    let now = net.now;
    net.peers[c].st.on_close(now);
    assert!(matches!(
        net.peers[c].st.poll_action(),
        Some(super::state::Action::Close)
    ));
    assert!(!net.peers[c].done);
    net.advance(499 * MS);
    assert!(!net.peers[c].st.is_done());
    net.advance(MS);
    assert!(net.peers[c].st.is_done());
}
