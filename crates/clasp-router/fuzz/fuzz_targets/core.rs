//! The router core driven by arbitrary sequences of frames from several sessions, some with
//! scoped tokens, some of them adapter sessions (the typed door: messages submitted, typed
//! deliveries), with time passing. Invariants checked after every step:
//!
//! * nothing panics;
//! * per connection and address, the revisions of delivered params never go backwards, and
//!   every ACK's revision is the one now stored (or later);
//! * a session with a token never receives a param, event or snapshot entry outside its read
//!   scope (direct P2P signals excepted, they are addressed to it);
//! * every stored param has a revision of at least 1.
//!
//! Time is in too: SETs with TTLs (absolute and sliding) that expire as time passes,
//! subscriptions asking for history and REPLAYs (from the recent values kept per address, or,
//! when the first op says so, from a journal this harness keeps and answers from, as the server
//! does), sessions asking for whole bundles. History and REPLAY send earlier revisions on
//! purpose: a connection that asked for them is not held to the revision order (the scope
//! check still applies), and a param that expired starts its revisions again.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use bytes::Bytes;
use clasp_proto::*;
use clasp_router::core::auth::{Action, CpskToken, Scopes};
use clasp_router::core::adapter::Delivery;
use clasp_router::core::recorder::Recorder;
use clasp_router::core::{ConnId, JournalEntry, JournalRequest, Now, Past, ReplayEnd, Router, RouterConfig};
use libfuzzer_sys::fuzz_target;

const ADDRS: [&str; 8] = [
    "/a", "/a/b", "/a/b/c", "/b", "/b/x", "/pub/1", "/secret/k", "/clasp/p2p/announce",
];
const PATTERNS: [&str; 8] = ["/a", "/a/*", "/a/**", "/**", "/b/*", "/pub/**", "/secret/*", "/*/x"];
/// Token scopes by index; the last slot means "no token".
const SCOPES: [&str; 3] = ["admin:/**", "read:/pub/**,write:/pub/**", "read:/a/*,write:/a/**"];

#[derive(Debug, Arbitrary)]
enum Op {
    Open { token: u8 },
    Close { conn: u8 },
    Advance { ms: u16 },
    Raw { conn: u8, bytes: Vec<u8> },
    Send { conn: u8, qos: u8, msg: Msg },
}

#[derive(Debug, Arbitrary)]
enum Msg {
    Set { addr: u8, value: i16, revision: Option<u8>, lock: bool, unlock: bool, ttl: Option<u8> },
    Publish { addr: u8, stream: bool, value: i16, gesture: Option<(u8, u8)> },
    Subscribe { id: u8, pattern: u8, max_rate: Option<u8>, epsilon: Option<u8>, types: u8, history: Option<u8> },
    Replay { pattern: u8, limit: Option<u8>, types: u8, from_ms: Option<u16> },
    Unsubscribe { id: u8 },
    Get { addr: u8 },
    Bundle { sets: Vec<(u8, i16)>, future_ms: Option<u16> },
    Signal { to: u8, spoof: bool },
    Ping,
    Hello,
}

struct Conn {
    id: ConnId,
    /// An adapter session: submits messages, gets typed deliveries.
    adapter: bool,
    rec: Recorder,
    scopes: Option<Scopes>,
    /// Last revision delivered per address.
    seen: HashMap<String, u64>,
    session: Option<String>,
    /// Asked for history or a REPLAY: earlier revisions come on purpose.
    time_travel: bool,
}

fn message(m: &Msg, conns: &[Conn], me: usize) -> Message {
    let addr = |i: u8| ADDRS[usize::from(i) % ADDRS.len()];
    match m {
        Msg::Set { addr: a, value, revision, lock, unlock, ttl } => Message::Set(Set {
            address: addr(*a).into(),
            value: Value::Int(i64::from(*value)),
            revision: revision.map(u64::from),
            lock: *lock,
            unlock: *unlock,
            ttl: ttl.map(|t| u32::from(t % 4) | if t & 0x80 != 0 { 0x8000_0000 } else { 0 }),
        }),
        Msg::Publish { addr: a, stream, value, gesture } => Message::Publish(Publish {
            address: addr(*a).into(),
            signal: match (stream, gesture) {
                (_, Some(_)) => SignalType::Gesture,
                (true, None) => SignalType::Stream,
                (false, None) => SignalType::Event,
            },
            phase: GesturePhase::from_code(gesture.map_or(0, |g| g.1 % 4)),
            id: gesture.map(|g| u32::from(g.0 % 3)),
            payload: PublishPayload::Value(Value::Float(f64::from(*value))),
            ..Default::default()
        }),
        Msg::Replay { pattern, limit, types, from_ms } => Message::Replay(Replay {
            pattern: PATTERNS[usize::from(*pattern) % PATTERNS.len()].into(),
            from: from_ms.map(|ms| 1_700_000_000_000_000 + u64::from(ms) * 1000),
            to: None,
            limit: limit.map(u32::from),
            types: SignalTypes::from_mask(*types),
        }),
        Msg::Subscribe { id, pattern, max_rate, epsilon, types, history } => Message::Subscribe(Subscribe {
            id: u32::from(*id % 8),
            pattern: PATTERNS[usize::from(*pattern) % PATTERNS.len()].into(),
            types: SignalTypes::from_mask(*types),
            options: SubscribeOptions {
                max_rate: max_rate.map(|r| u32::from(r % 50) + 1),
                epsilon: epsilon.map(|e| f64::from(e) / 10.0),
                history: history.map(|h| u32::from(h % 12)),
                window: None,
            },
        }),
        Msg::Unsubscribe { id } => Message::Unsubscribe(Unsubscribe { id: u32::from(*id % 8) }),
        Msg::Get { addr: a } => Message::Get(Get { address: addr(*a).into() }),
        Msg::Bundle { sets, future_ms } => Message::Bundle(Bundle {
            timestamp: future_ms.map(|ms| 1_700_000_000_000_000 + u64::from(ms) * 1000),
            messages: sets
                .iter()
                .take(8)
                .map(|(a, v)| Message::Set(Set {
                    address: addr(*a).into(),
                    value: Value::Int(i64::from(*v)),
                    ..Default::default()
                }))
                .collect(),
        }),
        Msg::Signal { to, spoof } => {
            let target = conns
                .get(usize::from(*to) % conns.len().max(1))
                .and_then(|c| c.session.clone())
                .unwrap_or_else(|| "nobody".into());
            let from = if *spoof { target.clone() } else { conns[me].session.clone().unwrap_or_default() };
            Message::Publish(Publish {
                address: format!("/clasp/p2p/signal/{target}").into(),
                payload: PublishPayload::Value(Value::Map(vec![
                    ("type".into(), "offer".into()),
                    ("from".into(), from.into()),
                ])),
                ..Default::default()
            })
        }
        Msg::Ping => Message::Ping,
        Msg::Hello => Message::Hello(Hello { version: 1, ..Default::default() }),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut n = 0;
    let ids = Box::new(move || {
        n += 1;
        format!("session-{n}")
    });
    let mut router = Router::new(RouterConfig::default(), ids);
    let tokens: HashMap<String, CpskToken> = SCOPES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                format!("cpsk_{i:032x}"),
                CpskToken { subject: None, scopes: Scopes::parse(s).unwrap(), expires_at: None },
            )
        })
        .collect();
    let with_auth = ops.first().is_some_and(|o| matches!(o, Op::Open { token } if token % 2 == 0));
    if with_auth {
        router.auth_mut().set_cpsk(tokens);
    }
    let with_journal = ops.first().is_some_and(|o| matches!(o, Op::Open { token } if token & 0x20 != 0));
    if with_journal {
        router.start_journal(0, 0);
    }
    let mut journal: Vec<JournalEntry> = Vec::new();
    let mut now = Now { mono: 1_000_000, wall: 1_700_000_000_000_000 };
    let mut conns: Vec<Conn> = Vec::new();
    for op in ops.iter().take(200) {
        match op {
            Op::Open { token } => {
                if conns.len() >= 6 {
                    continue;
                }
                let raw = *token;
                let rec = Recorder::new();
                let t = usize::from(raw & 0x7f) % (SCOPES.len() + 1);
                let token = (t < SCOPES.len()).then(|| format!("cpsk_{t:032x}"));
                let scopes = (with_auth && t < SCOPES.len()).then(|| Scopes::parse(SCOPES[t]).unwrap());
                if raw & 0x80 != 0 {
                    // An adapter session through the typed door.
                    if let Ok(id) = router.open_adapter(rec.clone(), token.as_deref(), now) {
                        let session = router.session_id(id).map(str::to_owned);
                        conns.push(Conn { id, adapter: true, rec, scopes, seen: HashMap::new(), session, time_travel: false });
                    }
                    router.deliver_recorded();
                    check(&router, &mut conns);
                    continue;
                }
                let id = router.open(rec.clone(), now);
                let whole = if raw & 0x40 != 0 { Features::BUNDLES } else { 0 };
                let hello = Message::Hello(Hello {
                    version: 1,
                    features: Features(Features::CLIENT_DEFAULT.0 | whole),
                    name: "fuzz".into(),
                    token: token.as_deref().map(Str::from),
                });
                router.handle(id, &encode(&hello).unwrap(), now);
                conns.push(Conn { id, adapter: false, rec, scopes, seen: HashMap::new(), session: router.session_id(id).map(str::to_owned), time_travel: false });
            }
            Op::Close { conn } if !conns.is_empty() => {
                let c = conns.remove(usize::from(*conn) % conns.len());
                router.close(c.id, now);
            }
            Op::Close { .. } => {}
            Op::Advance { ms } => {
                now.mono += u64::from(*ms) * 1000;
                now.wall += u64::from(*ms) * 1000;
                router.tick(now);
            }
            Op::Raw { conn, bytes } if !conns.is_empty() => {
                let c = &conns[usize::from(*conn) % conns.len()];
                if !c.adapter {
                    router.handle(c.id, &Bytes::copy_from_slice(bytes), now);
                }
            }
            Op::Raw { .. } => {}
            Op::Send { conn, qos, msg } if !conns.is_empty() => {
                let i = usize::from(*conn) % conns.len();
                let m = message(msg, &conns, i);
                if matches!(&m, Message::Replay(_))
                    || matches!(&m, Message::Subscribe(s) if s.options.history.is_some_and(|h| h > 0))
                {
                    conns[i].time_travel = true;
                }
                let qos = match qos % 3 {
                    0 => Qos::Fire,
                    1 => Qos::Confirm,
                    _ => Qos::Commit,
                };
                if conns[i].adapter {
                    // Answered in place; the invariants are checked on what it delivers.
                    let _ = router.submit(conns[i].id, m, qos, now);
                } else if let Ok(f) = encode_with(&m, FrameOptions { qos: Some(qos), timestamp: None }) {
                    router.handle(conns[i].id, &f, now);
                }
            }
            Op::Send { .. } => {}
        }
        router.deliver_recorded();
        answer_journal(&mut router, &mut journal, now);
        check(&router, &mut conns);
    }
});

/// Plays the shell's journal: keeps what the core journaled and answers its requests.
fn answer_journal(router: &mut Router<Recorder>, journal: &mut Vec<JournalEntry>, now: Now) {
    for e in router.take_journal() {
        assert!(journal.last().is_none_or(|l| e.seq == l.seq + 1 && e.time >= l.time), "journal order");
        journal.push(e);
    }
    while let Some(req) = router.poll_journal_request() {
        match req {
            JournalRequest::History { conn, hold, upto, mut picker, .. } => {
                for e in journal.iter().rev().filter(|e| e.seq <= upto) {
                    if picker.offer(e.signal, &e.address, || e.frame.clone()).is_break() {
                        break;
                    }
                }
                router.history_ready(conn, hold, picker.finish(), now);
            }
            JournalRequest::Replay(r) => {
                let limit = r.replay.limit.map_or(usize::MAX, |n| n as usize);
                let answer: Vec<_> = journal
                    .iter()
                    .filter(|e| e.seq <= r.upto && r.wants(e.signal, &e.address, e.time))
                    .take(limit)
                    .map(|e| Past { signal: e.signal, address: (*e.address).into(), frame: e.frame.clone() })
                    .collect();
                let end = ReplayEnd::Done { pattern: r.replay.pattern.clone(), ack: r.ack };
                router.replay_ready(r.conn, answer, Some(end), now);
            }
        }
        router.deliver_recorded();
    }
}

fn check(router: &Router<Recorder>, conns: &mut [Conn]) {
    for (addr, p) in router.params().iter() {
        assert!(p.revision >= 1, "{addr} stored with revision 0");
    }
    for c in conns.iter_mut() {
        let mut msgs: Vec<Message> = c
            .rec
            .take()
            .iter()
            .map(|out| decode_frame(out.frame()).expect("the router sent an undecodable frame").message)
            .collect();
        for d in c.rec.take_deliveries() {
            assert!(c.adapter, "typed deliveries to a wire connection");
            match d {
                Delivery::Update(u) => msgs.push((*u.message).clone()),
                Delivery::Snapshot { params, .. } => msgs.push(Message::Snapshot(Snapshot {
                    params: params.into_iter().map(|r| r.param).collect(),
                })),
                Delivery::Reply(m) => msgs.push(*m),
            }
        }
        // Bundles delivered whole: their members count one by one.
        let msgs: Vec<Message> = msgs
            .into_iter()
            .flat_map(|m| match m {
                Message::Bundle(b) => b.messages,
                m => vec![m],
            })
            .collect();
        // A param that expired starts its revisions again.
        c.seen.retain(|addr, _| router.params().get(addr).is_some());
        for msg in msgs {
            let mut params: Vec<(String, u64)> = Vec::new();
            let mut reads: Vec<String> = Vec::new();
            match &msg {
                Message::Set(s) => {
                    params.push((s.address.to_string(), s.revision.expect("a broadcast SET has a revision")));
                    reads.push(s.address.to_string());
                }
                Message::Snapshot(s) => {
                    for p in &s.params {
                        params.push((p.address.to_string(), p.revision));
                        reads.push(p.address.to_string());
                    }
                }
                Message::Publish(p) if !p.address.starts_with("/clasp/p2p/signal/") => {
                    reads.push(p.address.to_string());
                }
                Message::Ack(a) => {
                    if let (Some(addr), Some(rev)) = (&a.address, a.revision)
                        && let Some(p) = router.params().get(addr)
                    {
                        assert!(p.revision >= rev, "ACK revision {rev} ahead of the store ({}) for {addr}", p.revision);
                    }
                }
                _ => {}
            }
            for (addr, rev) in params {
                if c.time_travel {
                    continue;
                }
                let last = c.seen.entry(addr.clone()).or_insert(0);
                assert!(rev >= *last, "{addr}: revision went back from {last} to {rev}");
                *last = rev;
            }
            if let Some(scopes) = &c.scopes {
                for addr in reads {
                    assert!(scopes.allows(Action::Read, &addr), "{addr} delivered outside the read scope {scopes}");
                }
            }
        }
        // An expiry notice (null at the next revision) is the param's last: it starts again.
        c.seen.retain(|addr, _| router.params().get(addr).is_some());
    }
}
