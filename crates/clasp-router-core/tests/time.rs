//! Time in the core: history (from recent values, and from a journal with the connection held
//! until it arrives), REPLAY requests and answers, TTLs (sliding, absolute, the router's
//! default) and the notice subscribers get when a param expires.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use clasp_proto::*;
use clasp_router_core::auth::Scopes;
use clasp_router_core::{JournalEntry, JournalRequest, Past, ReplayEnd, RouterConfig};

#[path = "support/harness.rs"]
mod harness;
use harness::*;

fn history(n: u32) -> SubscribeOptions {
    SubscribeOptions {
        history: Some(n),
        ..Default::default()
    }
}

/// (address, value) of SETs and PUBLISHes, in order.
fn values(msgs: &[Message]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for m in msgs {
        match m {
            Message::Set(s) => out.push((s.address.to_string(), s.value.clone())),
            Message::Publish(p) => out.push((
                p.address.to_string(),
                p.value().cloned().unwrap_or(Value::Null),
            )),
            Message::Snapshot(s) => {
                for p in &s.params {
                    out.push((format!("snapshot {}", p.address), p.value.clone()));
                }
            }
            _ => {}
        }
    }
    out
}

fn v(a: &str, x: i64) -> (String, Value) {
    (a.to_owned(), Value::Int(x))
}

#[test]
fn history_from_recent_values_comes_before_the_snapshot_without_the_current_value() {
    let mut h = Harness::new();
    let w = h.client();
    for i in 1..=5 {
        h.set(&w, "/s/a", Value::Int(i));
        h.send(&w, event("/s/e", Value::Int(10 + i)));
        h.set(&w, "/s/b", Value::Int(100 + i));
    }
    h.set(&w, "/other", Value::Int(0));
    let r = h.client();
    h.sub_with(&r, 1, "/s/**", history(6));
    let got = values(&r.msgs());
    // The newest six broadcasts before the current values: /s/a=5 and /s/b=105 are current
    // (in the snapshot), so the history reaches back past them.
    assert_eq!(
        got[..6],
        [
            v("/s/e", 13),
            v("/s/b", 103),
            v("/s/a", 4),
            v("/s/e", 14),
            v("/s/b", 104),
            v("/s/e", 15),
        ]
    );
    let mut snap: Vec<_> = got[6..].to_vec();
    snap.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(snap, [v("snapshot /s/a", 5), v("snapshot /s/b", 105)]);
    // Live updates follow, once each.
    h.set(&w, "/s/a", Value::Int(6));
    assert_eq!(values(&r.msgs()), [v("/s/a", 6)]);
}

#[test]
fn history_honours_types_and_read_scopes_and_depth() {
    let mut h = Harness::with(RouterConfig {
        history_depth: 3,
        ..RouterConfig::default()
    });
    let w = h.client();
    for i in 1..=6 {
        h.set(&w, "/p/x", Value::Int(i));
        h.send(&w, event("/p/ev", Value::Int(i)));
    }
    // Events only: the last three kept of /p/ev.
    let r = h.client();
    h.send(
        &r,
        Message::Subscribe(Subscribe {
            id: 1,
            pattern: "/p/**".into(),
            types: SignalTypes::of(&[SignalType::Event]),
            options: history(10),
        }),
    );
    assert_eq!(
        values(&r.msgs()),
        [v("/p/ev", 4), v("/p/ev", 5), v("/p/ev", 6)]
    );
    // Params: three kept, the newest is current (snapshot).
    let r2 = h.client();
    h.send(
        &r2,
        Message::Subscribe(Subscribe {
            id: 1,
            pattern: "/p/x".into(),
            types: SignalTypes::of(&[SignalType::Param]),
            options: history(10),
        }),
    );
    assert_eq!(
        values(&r2.msgs()),
        [v("/p/x", 4), v("/p/x", 5), v("snapshot /p/x", 6)]
    );
    // The picker leaves out what a token may not read.
    let scopes = Scopes::parse("read:/p/x").unwrap();
    let mut picker = clasp_router_core::HistoryPicker::new(
        clasp_proto::pattern::Pattern::compile("/p/**").unwrap(),
        SignalTypes::ALL,
        10,
        Some(scopes),
    );
    for (s, a) in [
        (SignalType::Event, "/p/ev"),
        (SignalType::Param, "/p/x"),
        (SignalType::Param, "/p/x"),
    ] {
        let _ = picker.offer(s, a, || Bytes::from_static(b"f"));
    }
    assert_eq!(
        picker.finish().len(),
        1,
        "one older /p/x; the event is not readable"
    );
}

/// The shell's journal, simulated: what the core journaled, and answers to its requests.
#[derive(Default)]
struct Journal {
    entries: Vec<JournalEntry>,
}

impl Journal {
    fn take(&mut self, h: &mut Harness) {
        let taken = h.core(|r, _| r.take_journal());
        self.entries.extend(taken);
    }

    /// Answers every pending request; returns how many.
    fn answer(&mut self, h: &mut Harness) -> usize {
        self.take(h);
        let mut n = 0;
        while let Some(req) = h.core(|r, _| r.poll_journal_request()) {
            n += 1;
            match req {
                JournalRequest::History {
                    conn,
                    hold,
                    upto,
                    mut picker,
                    ..
                } => {
                    for e in self.entries.iter().rev().filter(|e| e.seq <= upto) {
                        if picker
                            .offer(e.signal, &e.address, || e.frame.clone())
                            .is_break()
                        {
                            break;
                        }
                    }
                    let got = picker.finish();
                    h.core(|r, now| r.history_ready(conn, hold, got, now));
                }
                JournalRequest::Replay(r) => {
                    let limit = r.replay.limit.map_or(usize::MAX, |n| n as usize);
                    let answer: Vec<_> = self
                        .entries
                        .iter()
                        .filter(|e| e.seq <= r.upto && r.wants(e.signal, &e.address, e.time))
                        .take(limit)
                        .map(|e| Past {
                            signal: e.signal,
                            address: (*e.address).into(),
                            frame: e.frame.clone(),
                        })
                        .collect();
                    let end = ReplayEnd::Done {
                        pattern: r.replay.pattern.clone(),
                        ack: r.ack,
                    };
                    h.core(|c, now| c.replay_ready(r.conn, answer, Some(end), now));
                }
            }
        }
        n
    }
}

fn journaled() -> Harness {
    let mut h = Harness::new();
    h.core(|r, _| r.start_journal(0, 0));
    h
}

#[test]
fn with_a_journal_the_connection_is_held_until_the_history_arrives() {
    let mut h = journaled();
    let mut j = Journal::default();
    let w = h.client();
    for i in 1..=4 {
        h.set(&w, "/j/a", Value::Int(i));
    }
    j.take(&mut h);
    assert_eq!(j.entries.len(), 4);
    assert_eq!(j.entries[3].seq, 4);
    let r = h.client();
    h.sub_with(&r, 1, "/j/**", history(10));
    // Nothing yet: the snapshot waits behind the history.
    assert!(r.msgs().is_empty());
    // Live updates meanwhile are held too, after the snapshot.
    h.set(&w, "/j/a", Value::Int(5));
    h.send(&w, event("/j/e", Value::Int(1)));
    assert!(r.msgs().is_empty());
    assert_eq!(j.answer(&mut h), 1);
    assert_eq!(
        values(&r.msgs()),
        [
            v("/j/a", 1),
            v("/j/a", 2),
            v("/j/a", 3),
            v("snapshot /j/a", 4),
            v("/j/a", 5),
            v("/j/e", 1),
        ],
        "history (up to the subscription), snapshot, then live: no gap, nothing twice"
    );
    // Not held any more.
    h.set(&w, "/j/a", Value::Int(6));
    assert_eq!(values(&r.msgs()), [v("/j/a", 6)]);
    assert_eq!(h.metrics().history_sent, 3);
}

#[test]
fn a_history_that_does_not_come_is_given_up_with_an_error_and_nothing_lost() {
    let mut h = journaled();
    let w = h.client();
    h.set(&w, "/late", Value::Int(1));
    let r = h.client();
    h.sub_with(&r, 1, "/late", history(5));
    h.set(&w, "/late", Value::Int(2));
    assert!(r.msgs().is_empty());
    h.advance(Duration::from_secs(11));
    let got = r.msgs();
    assert_eq!(
        values(&got),
        [v("snapshot /late", 1), v("/late", 2)],
        "what was held comes out"
    );
    assert!(
        got.iter().any(|m| error_code(m) == Some(502)),
        "and an ERROR says the history is missing: {got:?}"
    );
    assert_eq!(h.metrics().history_late, 1);
}

#[test]
fn replay_needs_a_journal_and_read_scope_and_answers_oldest_first_with_an_ack() {
    let mut h = Harness::new();
    let c = h.client();
    let replay = |pattern: &str| {
        Message::Replay(Replay {
            pattern: pattern.into(),
            ..Default::default()
        })
    };
    h.send(&c, replay("/**"));
    assert_eq!(error_code(&c.msgs()[0]), Some(501));

    let mut h = journaled();
    let mut j = Journal::default();
    let w = h.client();
    let t0 = h.now.wall;
    for i in 1..=5 {
        h.set(&w, "/r/a", Value::Int(i));
        h.send(&w, event("/r/e", Value::Int(i)));
        h.advance(Duration::from_millis(10));
    }
    let c = h.client();
    h.send_qos(
        &c,
        Message::Replay(Replay {
            pattern: "/r/**".into(),
            from: Some(t0 + 10_000),
            to: Some(t0 + 30_000),
            limit: Some(5),
            types: SignalTypes::ALL,
        }),
        Some(Qos::Confirm),
    );
    assert_eq!(j.answer(&mut h), 1);
    let got = c.msgs();
    assert_eq!(
        values(&got),
        [
            v("/r/a", 2),
            v("/r/e", 2),
            v("/r/a", 3),
            v("/r/e", 3),
            v("/r/a", 4)
        ]
    );
    let Message::Set(s) = &got[0] else { panic!() };
    assert_eq!(s.revision, Some(2), "a SET as broadcast, with its revision");
    let Message::Ack(a) = got.last().unwrap() else {
        panic!("{got:?}")
    };
    assert_eq!(a.address.as_deref(), Some("/r/**"));
    // Events only, no limit.
    h.send(
        &c,
        Message::Replay(Replay {
            pattern: "/r/e".into(),
            types: SignalTypes::of(&[SignalType::Event]),
            ..Default::default()
        }),
    );
    j.answer(&mut h);
    assert_eq!(values(&c.msgs()).len(), 5);
}

#[test]
fn replay_outside_the_read_scope_is_refused() {
    let mut h = journaled();
    let token = "cpsk_0123456789abcdef0123456789abcdef";
    let tokens = std::collections::HashMap::from([(
        token.to_owned(),
        clasp_router_core::auth::CpskToken {
            subject: None,
            scopes: Scopes::parse("read:/mine/**").unwrap(),
            expires_at: None,
        },
    )]);
    h.core(|r, _| r.auth_mut().set_cpsk(tokens));
    let c = h.open();
    h.send(
        &c,
        Message::Hello(Hello {
            token: Some(token.into()),
            ..Default::default()
        }),
    );
    c.msgs();
    h.send(
        &c,
        Message::Replay(Replay {
            pattern: "/**".into(),
            ..Default::default()
        }),
    );
    assert_eq!(error_code(&c.msgs()[0]), Some(301));
    let mut j = Journal::default();
    assert_eq!(j.answer(&mut h), 0);
}

fn set_ttl(address: &str, value: i64, ttl: u32) -> Message {
    Message::Set(Set {
        address: address.into(),
        value: Value::Int(value),
        ttl: Some(ttl),
        ..Default::default()
    })
}

#[test]
fn ttls_absolute_sliding_and_never_and_subscribers_learn_of_expiry() {
    let mut h = Harness::new();
    let w = h.client();
    let s = h.client();
    h.sub(&s, 1, "/t/**");
    h.send(&w, set_ttl("/t/abs", 1, 0x8000_0000 | 2));
    h.send(&w, set_ttl("/t/slide", 1, 2));
    h.send(&w, set_ttl("/t/never", 1, 0));
    s.msgs();
    // A GET every second keeps the sliding one; the absolute one goes at 2 s.
    for _ in 0..3 {
        h.advance(Duration::from_millis(1000));
        h.send(
            &w,
            Message::Get(Get {
                address: "/t/slide".into(),
            }),
        );
        h.send(
            &w,
            Message::Get(Get {
                address: "/t/abs".into(),
            }),
        );
    }
    assert!(h.params().get("/t/abs").is_none());
    assert!(h.params().get("/t/slide").is_some());
    assert!(h.params().get("/t/never").is_some());
    let notices: Vec<_> = s
        .msgs()
        .into_iter()
        .filter_map(|m| match m {
            Message::Set(x) => Some(x),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(&*notices[0].address, "/t/abs");
    assert_eq!(notices[0].value, Value::Null);
    assert_eq!(notices[0].revision, Some(2));
    // Unread, the sliding one goes 2 s after its last GET.
    h.advance(Duration::from_millis(2100));
    assert!(h.params().get("/t/slide").is_none());
    assert!(h.params().get("/t/never").is_some());
    let got = s.msgs();
    assert!(
        got.iter().any(
            |m| matches!(m, Message::Set(x) if &*x.address == "/t/slide" && x.value == Value::Null)
        ),
        "{got:?}"
    );
    // A GET of an expired param: not found.
    h.send(
        &w,
        Message::Get(Get {
            address: "/t/abs".into(),
        }),
    );
    assert!(w.msgs().iter().any(|m| error_code(m) == Some(201)));
}

#[test]
fn the_default_ttl_counts_from_the_last_write_and_a_ttl_of_zero_overrides_it() {
    let mut h = Harness::with(RouterConfig {
        param_ttl: Some(Duration::from_secs(2)),
        ..RouterConfig::default()
    });
    let w = h.client();
    h.set(&w, "/d/plain", Value::Int(1));
    h.send(&w, set_ttl("/d/forever", 1, 0));
    for _ in 0..3 {
        h.advance(Duration::from_millis(1000));
        h.send(
            &w,
            Message::Get(Get {
                address: "/d/plain".into(),
            }),
        );
    }
    assert!(
        h.params().get("/d/plain").is_none(),
        "GETs do not extend it"
    );
    assert!(h.params().get("/d/forever").is_some());
}

#[test]
fn journal_entries_are_numbered_in_order_and_skip_p2p_signalling() {
    let mut h = journaled();
    let w = h.client();
    h.set(&w, "/n/a", Value::Int(1));
    h.send(&w, event("/clasp/p2p/announce", Value::Null));
    h.send(&w, event("/n/e", Value::Int(2)));
    let got = h.core(|r, _| r.take_journal());
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(&*got[0].address, "/n/a");
    assert_eq!(got[0].signal, SignalType::Param);
    assert_eq!(got[1].signal, SignalType::Event);
    assert!(got[0].time <= got[1].time);
    let Ok(d) = decode_frame(&got[0].frame) else {
        panic!()
    };
    assert!(matches!(d.message, Message::Set(s) if s.revision == Some(1)));
}

#[test]
fn a_session_that_asks_gets_a_bundle_whole_and_others_get_its_members() {
    let mut h = Harness::new();
    let w = h.client();
    let whole = h.open();
    h.send(
        &whole,
        Message::Hello(Hello {
            features: Features(Features::CLIENT_DEFAULT.0 | Features::BUNDLES),
            ..Default::default()
        }),
    );
    whole.msgs();
    let plain = h.client();
    h.sub(&whole, 1, "/b/**");
    h.sub(&plain, 1, "/b/**");
    whole.msgs();
    plain.msgs();
    h.send(
        &w,
        Message::Bundle(Bundle {
            timestamp: None,
            messages: vec![
                set("/b/1", Value::Int(1)),
                set("/b/2", Value::Int(2)),
                event("/b/e", Value::Int(3)),
            ],
        }),
    );
    let got = whole.msgs();
    assert_eq!(got.len(), 1, "{got:?}");
    let Message::Bundle(b) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(
        values(&b.messages),
        [v("/b/1", 1), v("/b/2", 2), v("/b/e", 3)]
    );
    let Message::Set(s) = &b.messages[0] else {
        panic!()
    };
    assert_eq!(
        s.revision,
        Some(1),
        "the SETs as broadcast, with their revisions"
    );
    assert_eq!(
        values(&plain.msgs()),
        [v("/b/1", 1), v("/b/2", 2), v("/b/e", 3)]
    );
    // A lone SET is itself.
    h.set(&w, "/b/1", Value::Int(9));
    assert!(matches!(&whole.msgs()[..], [Message::Set(_)]));
}

#[test]
fn a_late_history_for_a_given_up_hold_is_dropped_and_histories_are_bounded() {
    let mut h = journaled();
    let mut j = Journal::default();
    let w = h.client();
    for i in 1..=3 {
        h.set(&w, "/g/a", Value::Int(i));
    }
    let r = h.client();
    h.sub_with(&r, 1, "/g/a", history(5));
    j.take(&mut h);
    let stale = h.core(|c, _| c.poll_journal_request()).unwrap();
    // Given up after 10 s: what waited comes out with an ERROR.
    h.advance(Duration::from_secs(11));
    assert!(r.msgs().iter().any(|m| error_code(m) == Some(502)));
    // A new history subscription, then the stale answer arrives: it is not taken for the new one.
    h.sub_with(&r, 2, "/g/a", history(1));
    if let JournalRequest::History { conn, hold, .. } = stale {
        h.core(|c, now| c.history_ready(conn, hold, Vec::new(), now));
    }
    assert!(r.msgs().is_empty(), "still held for its own history");
    assert_eq!(j.answer(&mut h), 1);
    assert_eq!(values(&r.msgs()), [v("/g/a", 2), v("snapshot /g/a", 3)]);
    // At most four histories waited for at once.
    for id in 10..14 {
        h.sub_with(&r, id, "/g/*", history(1));
    }
    h.sub_with(&r, 20, "/g/*", history(1));
    assert_eq!(j.answer(&mut h), 4);
    let got = r.msgs();
    assert!(got.iter().any(|m| error_code(m) == Some(429)), "{got:?}");
}
