//! Inbound: what a datagram asks for, as [`Message`]s submitted to the peer's session in order,
//! and what the listener does with the core's answers.

use clasp_proto::{
    Bundle, ErrorCode, Publish, PublishPayload, Qos, Set, SignalType, SignalTypes, Str, Subscribe,
    SubscribeOptions, Unsubscribe,
};
use clasp_router::core::Refusal;
use rosc::OscType;

use super::control::{register, reply_error, send_cookie, unregister, verify};
use super::*;
use crate::config::InboundMode;
use crate::map::args_to_value;
use crate::time::{Due, plan as plan_time};

/// How often a peer is told that the router's rate limit refuses its messages (as the router
/// tells a client).
const RATE_TOLD_EVERY: Duration = Duration::from_secs(1);

/// One thing a datagram asks for, in order.
pub(super) enum Op {
    /// Write `msg` at `at` (`None` = now); `grouped` when it came from a bundle.
    Write {
        at: Option<u64>,
        grouped: bool,
        msg: Message,
    },
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    /// `/clasp/verify`, with the cookie if one was given.
    Verify(Option<String>),
}

/// What a submitted message was, for its answer.
enum About {
    /// A write (SET, PUBLISH or BUNDLE), with the address an error names.
    Write(Option<Str>),
    /// The SUBSCRIBE of subscription `id` to a pattern (CLASP side).
    Subscribe(u32, Str),
    /// An UNSUBSCRIBE.
    Unsubscribe,
}

/// Messages for a peer's session, submitted together and in order by [`submit`].
#[derive(Default)]
pub(super) struct Batch {
    msgs: Vec<Message>,
    about: Vec<About>,
}

impl Batch {
    /// Adds a SET, PUBLISH or BUNDLE.
    fn write(&mut self, msg: Message) {
        let address = match &msg {
            Message::Set(s) => Some(s.address.clone()),
            Message::Publish(p) => Some(p.address.clone()),
            _ => None,
        };
        self.msgs.push(msg);
        self.about.push(About::Write(address));
    }

    /// Adds the SUBSCRIBE of subscription `id` to every signal type under `pattern` (CLASP
    /// side); its deliveries are wanted from now on (they may come before `submit` returns).
    pub(super) fn subscribe(&mut self, peer: &PeerShared, id: u32, pattern: String) {
        peer.set_live(id, true);
        let pattern = Str::from(pattern);
        self.msgs.push(Message::Subscribe(Subscribe {
            id,
            pattern: pattern.clone(),
            types: SignalTypes::ALL,
            options: SubscribeOptions::default(),
        }));
        self.about.push(About::Subscribe(id, pattern));
    }

    /// Adds the UNSUBSCRIBE of subscription `id`; what is still queued for it is not sent.
    pub(super) fn unsubscribe(&mut self, peer: &PeerShared, id: u32) {
        peer.set_live(id, false);
        self.msgs.push(Message::Unsubscribe(Unsubscribe { id }));
        self.about.push(About::Unsubscribe);
    }
}

/// Flattens a packet into operations, scheduling bundles by their time tags.
pub(super) fn collect(
    ctx: &Ctx,
    packet: OscPacket,
    parent: Option<u64>,
    grouped: bool,
    wall: u64,
    ops: &mut Vec<Op>,
) {
    match packet {
        OscPacket::Message(m) => {
            if let Some(op) = message_op(ctx, m, parent, grouped) {
                ops.push(op);
            }
        }
        OscPacket::Bundle(b) => {
            inc(&ctx.stats.bundles);
            match plan_time(b.timetag, parent, wall, ctx.cfg.max_schedule_ahead) {
                Due::TooFar => {
                    inc(&ctx.stats.schedule_rejected);
                    tracing::debug!("OSC bundle scheduled too far ahead; dropped");
                }
                due => {
                    for p in b.content {
                        collect(ctx, p, due.parent(), true, wall, ops);
                    }
                }
            }
        }
    }
}

/// The operation of one OSC message, or `None` (counted) if it cannot be applied.
fn message_op(ctx: &Ctx, m: OscMessage, at: Option<u64>, grouped: bool) -> Option<Op> {
    let prefix = &ctx.cfg.control_prefix;
    if let Some(verb) = m
        .addr
        .strip_prefix(prefix.as_str())
        .and_then(|r| r.strip_prefix('/'))
    {
        let patterns: Vec<String> = m
            .args
            .into_iter()
            .filter_map(|a| match a {
                OscType::String(s) => Some(s),
                _ => None,
            })
            .collect();
        return match verb {
            "subscribe" => Some(Op::Subscribe(patterns)),
            "unsubscribe" => Some(Op::Unsubscribe(patterns)),
            "verify" => Some(Op::Verify(patterns.into_iter().next())),
            _ => {
                inc(&ctx.stats.invalid);
                tracing::debug!(address = %m.addr, "unknown OSC control message");
                None
            }
        };
    }
    let address = osc_to_clasp(&ctx.ns, &m.addr);
    if clasp_proto::address::validate_address(&address).is_err() || address.contains('*') {
        inc(&ctx.stats.invalid);
        tracing::debug!(%address, "OSC address is not a CLASP address; message ignored");
        return None;
    }
    let value = args_to_value(&m.args);
    let msg = match ctx.cfg.mode {
        InboundMode::Set => Message::Set(Set {
            address: address.into(),
            value,
            ..Set::default()
        }),
        InboundMode::Publish => Message::Publish(Publish {
            address: address.into(),
            signal: SignalType::Event,
            payload: PublishPayload::Value(value),
            ..Publish::default()
        }),
    };
    Some(Op::Write { at, grouped, msg })
}

/// The messages of a datagram's operations: a bare OSC message is one SET (or PUBLISH);
/// consecutive messages of bundles due at the same time form one BUNDLE (scheduled by the
/// router when the time is in the future). Sends the peer a cookie if it needs one.
pub(super) fn plan(ctx: &Ctx, peer: &mut Peer, ops: Vec<Op>, wall: u64, now: Instant) -> Batch {
    let mut batch = Batch::default();
    let mut group: Option<(Option<u64>, Vec<Message>)> = None;
    let mut cookie_due = false;
    for op in ops {
        match op {
            Op::Write { at, grouped, msg } => {
                inc(&ctx.stats.messages);
                if !grouped {
                    flush(ctx, peer, &mut group, wall, &mut batch);
                    batch.write(msg);
                    continue;
                }
                match &mut group {
                    Some((t, msgs)) if *t == at => msgs.push(msg),
                    _ => {
                        flush(ctx, peer, &mut group, wall, &mut batch);
                        group = Some((at, vec![msg]));
                    }
                }
            }
            Op::Subscribe(patterns) => {
                flush(ctx, peer, &mut group, wall, &mut batch);
                register(ctx, peer, patterns, &mut batch);
                cookie_due |= !peer.shared.guard.lock().is_verified();
            }
            Op::Unsubscribe(patterns) => {
                flush(ctx, peer, &mut group, wall, &mut batch);
                unregister(peer, patterns, &mut batch);
            }
            Op::Verify(cookie) => {
                flush(ctx, peer, &mut group, wall, &mut batch);
                cookie_due |= !verify(ctx, peer, cookie, now, &mut batch);
            }
        }
    }
    flush(ctx, peer, &mut group, wall, &mut batch);
    // A registered source whose feedback no longer fits its budget, or whose registrations
    // wait for it to verify, is told how to get it.
    let starved =
        peer.shared.registered.load(Ordering::Relaxed) && peer.shared.guard.lock().take_starved();
    // A source whose registrations wait is reminded at most once a second.
    let remind = peer.deferred
        && peer
            .reminded
            .is_none_or(|t| now.duration_since(t) >= REMIND_EVERY);
    if cookie_due || starved || remind {
        peer.reminded = Some(now);
        send_cookie(ctx, &peer.shared, now);
    }
    batch
}

/// Adds the pending group of bundle elements as one BUNDLE, unless the peer has too many
/// scheduled already.
fn flush(
    ctx: &Ctx,
    peer: &mut Peer,
    group: &mut Option<(Option<u64>, Vec<Message>)>,
    wall: u64,
    batch: &mut Batch,
) {
    let Some((at, messages)) = group.take() else {
        return;
    };
    if let Some(due) = at {
        while peer.scheduled.front().is_some_and(|&t| t <= wall) {
            peer.scheduled.pop_front();
        }
        if peer.scheduled.len() >= ctx.cfg.max_scheduled_per_peer {
            inc(&ctx.stats.schedule_rejected);
            tracing::debug!(addr = %peer.shared.addr, "too many scheduled OSC bundles; dropped");
            return;
        }
        // Kept sorted so the front is always the next to run.
        let pos = peer.scheduled.partition_point(|&t| t <= due);
        peer.scheduled.insert(pos, due);
        inc(&ctx.stats.scheduled);
    }
    batch.write(Message::Bundle(Bundle {
        timestamp: at,
        messages,
    }));
}

/// Submits `batch` to session `conn` under one lock and handles each refusal: a refused
/// SUBSCRIBE drops its registration (the peer may register the pattern again).
pub(super) fn submit(
    ctx: &Ctx,
    handle: &RouterHandle,
    conn: ConnId,
    peer: &mut Peer,
    batch: Batch,
    now: Instant,
) {
    let Batch { msgs, about } = batch;
    if msgs.is_empty() {
        return;
    }
    let answers = handle.submit_all(conn, msgs, Qos::Fire);
    for (about, answer) in about.into_iter().zip(answers) {
        let Err(r) = answer else {
            continue;
        };
        match about {
            About::Write(address) => {
                refused(ctx, peer, &r, address.as_deref().unwrap_or(""), now);
            }
            About::Subscribe(id, pattern) => {
                refused(ctx, peer, &r, &pattern, now);
                peer.shared.set_live(id, false);
                peer.subs.retain(|_, v| *v != id);
                if peer.subs.is_empty() && !peer.is_static {
                    peer.shared.registered.store(false, Ordering::Relaxed);
                }
            }
            About::Unsubscribe => refused(ctx, peer, &r, "", now),
        }
    }
}

/// Counts a refusal of the router (a session, or a message about `address`) and tells a
/// registered peer with `<prefix>/error`; a rate limit is told at most once a second.
pub(super) fn refused(ctx: &Ctx, peer: &mut Peer, r: &Refusal, address: &str, now: Instant) {
    if matches!(r, Refusal::RateLimited { .. }) {
        if peer
            .rate_told
            .is_some_and(|t| now.duration_since(t) < RATE_TOLD_EVERY)
        {
            return;
        }
        peer.rate_told = Some(now);
    }
    inc(&ctx.stats.router_errors);
    let code = r.code();
    if code == ErrorCode::TooLarge {
        inc(&ctx.stats.too_large);
    }
    tracing::debug!(peer = %peer.shared.addr, code = code.code(), error = %r, "the router refused an OSC session's message");
    if peer.shared.registered.load(Ordering::Relaxed) {
        reply_error(ctx, &peer.shared, code.code(), &r.to_string(), address);
    }
}
