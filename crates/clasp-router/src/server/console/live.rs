//! One viewer's live feed: an in-process session opened with the viewer's token, subscribed to
//! everything that token may read, its deliveries folded into batches (the latest value of
//! each param, counts and last values of signals) sent at most every 50 ms, and the session
//! list and the router's counters every second. A viewer that reads slower than the router
//! writes does not hold the router up: its session's queue is bounded like any adapter's, and
//! what did not fit is counted in the feed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use clasp_proto::pattern::Pattern;
use clasp_proto::{Message, PublishPayload, Qos, Set, SignalType, Subscribe};

use super::protocol::{BridgeRow, FromPage, ParamRow, SessionRow, SignalRow, ToPage};
use crate::core::adapter::Delivery;
use crate::core::auth::Action;
use crate::core::{ConnId, SessionInfo};
use crate::server::inbox::Inbox;
use crate::server::{Link, MetricsSource, Shared};

/// Largest message the page may send.
pub(crate) const MAX_CLIENT_MESSAGE: usize = 256 * 1024;
/// How often changes are sent at most (an update shows in the page within about this).
const BATCH: Duration = Duration::from_millis(50);
/// How often the session list and the counters are sent.
const SLOW: Duration = Duration::from_secs(1);
/// How long the page has to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(30);

fn ms(us: u64) -> u64 {
    us / 1000
}

/// How long one message may take to go out before the viewer is taken for gone (a page that
/// stopped reading must not hold its session open).
const SEND_WITHIN: Duration = Duration::from_secs(10);

async fn send(socket: &mut WebSocket, msg: &ToPage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => matches!(
            tokio::time::timeout(SEND_WITHIN, socket.send(WsMessage::Text(text.into()))).await,
            Ok(Ok(()))
        ),
        Err(_) => false,
    }
}

/// The next message from the page: `None` when it closed or sent something unreadable.
async fn next_op(socket: &mut WebSocket) -> Option<Result<FromPage, String>> {
    loop {
        match socket.recv().await? {
            Ok(WsMessage::Text(t)) => {
                return Some(serde_json::from_str(&t).map_err(|e| e.to_string()));
            }
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// What the feed gathered since the last batch.
#[derive(Default)]
struct Pending {
    params: HashMap<String, ParamRow>,
    removed: Vec<String>,
    signals: HashMap<String, SignalRow>,
    dropped: u64,
}

fn kind_of(t: SignalType) -> &'static str {
    match t {
        SignalType::Param => "param",
        SignalType::Event => "event",
        SignalType::Stream => "stream",
        SignalType::Gesture => "gesture",
        SignalType::Timeline => "timeline",
    }
}

/// The viewer's monitor: which signals it wants, and whether it is paused.
struct Monitor {
    pattern: Option<Pattern>,
    paused: bool,
}

impl Monitor {
    fn wants(&self, address: &str) -> bool {
        !self.paused && self.pattern.as_ref().is_none_or(|p| p.matches(address))
    }
}

impl Pending {
    fn fold(&mut self, d: Delivery, monitor: &Monitor, now_ms: u64) {
        match d {
            Delivery::Update(u) => match &*u.message {
                Message::Set(s) => self.param(s, now_ms),
                Message::Publish(p) => {
                    if !monitor.wants(&p.address) {
                        return;
                    }
                    let v = match &p.payload {
                        PublishPayload::Value(v) => clasp_proto::json::to_json(v),
                        PublishPayload::Samples(s) => serde_json::json!(s.last()),
                        PublishPayload::None => serde_json::Value::Null,
                    };
                    let row = self
                        .signals
                        .entry(p.address.to_string())
                        .or_insert_with(|| SignalRow {
                            a: p.address.to_string(),
                            k: kind_of(p.signal),
                            n: 0,
                            v: serde_json::Value::Null,
                        });
                    row.n += 1;
                    row.v = v;
                }
                _ => {}
            },
            Delivery::Snapshot { params, .. } => {
                for r in params {
                    let p = &r.param;
                    self.params.insert(
                        p.address.to_string(),
                        ParamRow {
                            a: p.address.to_string(),
                            v: clasp_proto::json::to_json(&p.value),
                            r: p.revision,
                            w: p.writer.as_deref().unwrap_or("").to_owned(),
                            t: p.timestamp.map_or(now_ms, ms),
                        },
                    );
                }
            }
            Delivery::Reply(m) => {
                if let Message::Error(e) = &*m
                    && e.code.code() == 503
                {
                    // The session's queue overflowed: what it dropped is gone for this viewer.
                    self.dropped += 1;
                }
            }
        }
    }

    fn param(&mut self, s: &Set, now_ms: u64) {
        self.removed.retain(|a| *a != *s.address);
        self.params.insert(
            s.address.to_string(),
            ParamRow {
                a: s.address.to_string(),
                v: clasp_proto::json::to_json(&s.value),
                r: s.revision.unwrap_or(0),
                w: String::new(),
                t: now_ms,
            },
        );
    }
}

/// Serves one viewer until it leaves.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    sources: Arc<Vec<MetricsSource>>,
    mut socket: WebSocket,
) {
    let token = match tokio::time::timeout(HELLO_WITHIN, next_op(&mut socket)).await {
        Ok(Some(Ok(FromPage::Hello { token }))) => token,
        Ok(Some(Ok(_))) | Ok(Some(Err(_))) => {
            let error = "the console's first message must be hello".to_owned();
            send(&mut socket, &ToPage::Error { error }).await;
            return;
        }
        Ok(None) | Err(_) => return,
    };
    let inbox = Inbox::new(shared.config.outbox, shared.counters.clone());
    let opened = shared.with_core(|core, now| {
        core.open_adapter_named(
            Link::Adapter(inbox.clone()),
            token.as_deref(),
            "console",
            now,
        )
    });
    let conn = match opened {
        Ok(c) => c,
        Err(r) => {
            send(
                &mut socket,
                &ToPage::Error {
                    error: r.to_string(),
                },
            )
            .await;
            return;
        }
    };
    run(&shared, &sources, &mut socket, conn, &inbox).await;
    shared.with_core(|core, now| core.close(conn, now));
}

async fn run(
    shared: &Arc<Shared>,
    sources: &[MetricsSource],
    socket: &mut WebSocket,
    conn: ConnId,
    inbox: &Inbox,
) {
    let (session, admin, operator, patterns, auth) = shared.with_core(|core, _| {
        (
            core.session_id(conn).unwrap_or_default().to_owned(),
            core.session_allows_pattern(conn, Action::Admin, "/clasp/sessions/*"),
            core.session_allows_pattern(conn, Action::Read, "/clasp/sessions/**"),
            core.session_read_patterns(conn),
            core.auth().required(),
        )
    });
    let welcome = ToPage::Welcome {
        router: shared.config.router.name.clone(),
        session,
        auth,
        admin,
        operator,
        read_all: patterns.iter().any(|p| p == "/**"),
        version: env!("CARGO_PKG_VERSION"),
    };
    if !send(socket, &welcome).await {
        return;
    }
    let mut pending = Pending::default();
    // Everything the viewer may read: its snapshot first, then every change.
    for (i, pattern) in patterns.iter().enumerate() {
        let sub = Subscribe {
            id: i as u32 + 1,
            pattern: pattern.as_str().into(),
            ..Default::default()
        };
        let shared2 = shared.clone();
        let _ = shared2
            .with_core(|core, now| core.submit(conn, Message::Subscribe(sub), Qos::Confirm, now));
    }
    let mut monitor = Monitor {
        pattern: None,
        paused: false,
    };
    let mut full = true;
    // The params the page holds.
    let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut batch = tokio::time::interval(BATCH);
    batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slow = tokio::time::interval(SLOW);
    slow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut got = Vec::new();
    loop {
        tokio::select! {
            op = next_op(socket) => match op {
                None => return,
                Some(Err(e)) => {
                    send(socket, &ToPage::Error { error: format!("unreadable console message: {e}") }).await;
                    return;
                }
                Some(Ok(op)) => {
                    if let Some(answer) = handle(shared, conn, op, &mut monitor) && !send(socket, &answer).await {
                        return;
                    }
                }
            },
            () = inbox.ready() => {
                let close = inbox.drain(&mut got);
                let now = ms(shared.now().wall);
                for d in got.drain(..) {
                    pending.fold(d, &monitor, now);
                }
                if close.is_some() {
                    let error = "the console's session was closed by the router".to_owned();
                    send(socket, &ToPage::Error { error }).await;
                    return;
                }
            }
            _ = batch.tick() => {
                let now = ms(shared.now().wall);
                if full || !pending.params.is_empty() || !pending.removed.is_empty() {
                    let mut items: Vec<ParamRow> = pending.params.drain().map(|(_, v)| v).collect();
                    writers(shared, &mut items);
                    for r in &items {
                        known.insert(r.a.clone());
                    }
                    let msg = ToPage::Params {
                        now,
                        full,
                        items,
                        removed: std::mem::take(&mut pending.removed),
                    };
                    full = false;
                    if !send(socket, &msg).await {
                        return;
                    }
                }
                if !pending.signals.is_empty() || pending.dropped > 0 {
                    let msg = ToPage::Signals {
                        now,
                        window: BATCH.as_millis() as u64,
                        items: pending.signals.drain().map(|(_, v)| v).collect(),
                        dropped: std::mem::take(&mut pending.dropped),
                    };
                    if !send(socket, &msg).await {
                        return;
                    }
                }
            }
            _ = slow.tick() => {
                // Params the viewer has that are gone (expired): removed from its page.
                gone(shared, &mut known, &mut pending);
                let (sessions, metrics) = snapshot(shared, conn, operator);
                if !send(socket, &sessions).await || !send(socket, &metrics).await {
                    return;
                }
                if operator && let Some(bridges) = bridges(sources) && !send(socket, &bridges).await {
                    return;
                }
            }
        }
    }
}

/// Moves the params the page holds that are no longer in the store (expired) to `removed`.
fn gone(
    shared: &Arc<Shared>,
    known: &mut std::collections::HashSet<String>,
    pending: &mut Pending,
) {
    let core = shared.core.lock();
    let store = core.params();
    let before = known.len();
    known.retain(|a| {
        let here = store.get(a).is_some() || pending.params.contains_key(a);
        if !here {
            pending.removed.push(a.clone());
        }
        here
    });
    if known.len() != before {
        tracing::trace!(removed = before - known.len(), "console: params gone");
    }
}

/// Fills in who wrote each param and when, from the store (a SET as delivered does not say).
fn writers(shared: &Arc<Shared>, items: &mut [ParamRow]) {
    if items.iter().all(|r| !r.w.is_empty()) {
        return;
    }
    let core = shared.core.lock();
    for r in items.iter_mut().filter(|r| r.w.is_empty()) {
        if let Some(p) = core.params().get(&r.a)
            && p.revision == r.r
        {
            r.w = p.writer.to_string();
            r.t = ms(p.timestamp);
        }
    }
}

/// Answers one message of the page.
fn handle(
    shared: &Arc<Shared>,
    conn: ConnId,
    op: FromPage,
    monitor: &mut Monitor,
) -> Option<ToPage> {
    match op {
        FromPage::Hello { .. } => None,
        FromPage::Ping { t } => Some(ToPage::Pong { t }),
        FromPage::Monitor { pattern, paused } => {
            monitor.paused = paused;
            monitor.pattern = match pattern.trim() {
                "" | "/**" => None,
                p => match Pattern::compile(p) {
                    Ok(p) => Some(p),
                    Err(e) => return Some(refused(0, format!("monitor pattern {p}: {e}"), 400)),
                },
            };
            None
        }
        FromPage::Set { id, address, value } => {
            let Some(value) = clasp_proto::json::from_json_within(&value, 32) else {
                return Some(refused(id, "the value is nested too deeply".into(), 400));
            };
            let set = Set {
                address: address.as_str().into(),
                value,
                ..Default::default()
            };
            let r = shared
                .with_core(|core, now| core.submit(conn, Message::Set(set), Qos::Confirm, now));
            Some(match r {
                Ok(a) => ToPage::Result {
                    id,
                    ok: true,
                    revision: a.revision,
                    error: None,
                    code: None,
                },
                Err(e) => refused(id, e.to_string(), e.code().code()),
            })
        }
        FromPage::Kick { id, session } => {
            let address = format!("/clasp/sessions/{session}");
            let r = shared.with_core(|core, now| {
                if !core.session_allows(conn, Action::Admin, &address) {
                    return Err((
                        format!("ending sessions needs admin scope on {address}"),
                        301,
                    ));
                }
                let by = core.session_id(conn).unwrap_or("console").to_owned();
                if let Some(Link::Adapter(i)) = core.conn_of(&session).and_then(|c| core.handle_of(c))
                    && !matches!(i.peer(), Some(("mqtt" | "osc", _)))
                {
                    return Err((
                        format!("session {session} runs inside the router and cannot be ended from the console"),
                        403,
                    ));
                }
                if core.kick(&session, &by, now) {
                    Ok(())
                } else {
                    Err((format!("no session {session}"), 404))
                }
            });
            Some(match r {
                Ok(()) => ToPage::Result {
                    id,
                    ok: true,
                    revision: None,
                    error: None,
                    code: None,
                },
                Err((e, code)) => refused(id, e, code),
            })
        }
    }
}

fn refused(id: u64, error: String, code: u16) -> ToPage {
    ToPage::Result {
        id,
        ok: false,
        revision: None,
        error: Some(error),
        code: Some(code),
    }
}

/// The session list and the router's counters, as the page shows them.
fn snapshot(shared: &Arc<Shared>, viewer: ConnId, operator: bool) -> (ToPage, ToPage) {
    let now = shared.now().wall;
    let core = shared.core.lock();
    // Who else is connected, from where, with whose token, is for viewers that may read
    // `/clasp/sessions/**` (admins included); others see their own session only.
    let infos: Vec<SessionInfo> = core
        .sessions_info()
        .into_iter()
        .filter(|s| operator || s.conn == viewer)
        .collect();
    let items = infos
        .into_iter()
        .map(|s| {
            let (transport, peer, queued, queued_bytes) = match core.handle_of(s.conn) {
                Some(Link::Wire(o)) => {
                    let (n, b) = o.depth();
                    match o.peer() {
                        Some((t, p)) => (t.to_owned(), Some(p.to_owned()), n, b),
                        None => ("wire".to_owned(), None, n, b),
                    }
                }
                Some(Link::Adapter(i)) => match i.peer() {
                    Some((t, p)) => (t.to_owned(), p.map(str::to_owned), 0, 0),
                    None => ("adapter".to_owned(), None, 0, 0),
                },
                None => ("adapter".to_owned(), None, 0, 0),
            };
            SessionRow {
                id: s.id.to_string(),
                name: s.name.to_string(),
                transport,
                peer,
                subject: s.subject,
                subscriptions: s.subscriptions,
                locks: s.locks,
                p2p: s.p2p,
                queued,
                queued_bytes,
                since: ms(s.since),
            }
        })
        .collect();
    let links = core
        .p2p_links()
        .into_iter()
        .filter(|_| operator)
        .map(|(a, b, t)| (a.to_string(), b.to_string(), ms(t)))
        .collect();
    let m = core.metrics();
    let mut counters = serde_json::Map::new();
    let mut put = |k: &str, v: u64| {
        counters.insert(k.to_owned(), serde_json::json!(v));
    };
    put("messages_in", m.messages_in.iter().sum());
    put("messages_out", m.messages_out.iter().sum());
    put("bytes_in", m.bytes_in);
    put("bytes_out", m.bytes_out);
    put("errors_sent", m.errors_sent);
    put("refusals", m.refusals.iter().sum());
    put("sessions", core.session_count() as u64);
    put("params", core.params().len() as u64);
    put("subscriptions", core.subscription_count() as u64);
    let c = &shared.counters;
    put(
        "params_coalesced",
        c.params_coalesced.load(Ordering::Relaxed),
    );
    put("streams_dropped", c.streams_dropped.load(Ordering::Relaxed));
    put(
        "slow_disconnects",
        c.slow_disconnects.load(Ordering::Relaxed),
    );
    put("congested", c.congested.load(Ordering::Relaxed));
    drop(core);
    (
        ToPage::Sessions { items, links },
        ToPage::Metrics {
            now: ms(now),
            counters,
        },
    )
}

/// The in-process bridges' counters, read from their `/metrics` lines
/// (`clasp_bridge_NAME{bridge="LABEL"} VALUE`); `None` when there are none.
fn bridges(sources: &[MetricsSource]) -> Option<ToPage> {
    if sources.is_empty() {
        return None;
    }
    let mut text = String::new();
    for s in sources {
        s(&mut text);
    }
    let mut by: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
        std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("clasp_bridge_") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once("{bridge=\"") else {
            continue;
        };
        let Some((label, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<u64>() else {
            continue;
        };
        by.entry(label.to_owned())
            .or_default()
            .insert(name.to_owned(), serde_json::json!(v));
    }
    if by.is_empty() {
        return None;
    }
    Some(ToPage::Bridges {
        items: by
            .into_iter()
            .map(|(name, counters)| BridgeRow { name, counters })
            .collect(),
    })
}
