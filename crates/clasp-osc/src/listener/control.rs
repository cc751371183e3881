//! Control messages (`<prefix>/subscribe`, `/unsubscribe`, `/verify`) and what the receive loop
//! sends back, always through the peer's [`SendGuard`](crate::guard::SendGuard).

use std::sync::atomic::Ordering;
use std::time::Instant;

use clasp_proto::pattern::Pattern;
use rosc::{OscMessage, OscPacket, OscType};

use super::inbound::Batch;
use super::{Ctx, Peer, PeerShared, STATIC_SUB};
use crate::guard::Refusal;
use crate::map::osc_to_clasp;
use crate::stats::inc;

/// Handles `/clasp/verify`; `false` if the sender should get a (new) cookie.
pub(super) fn verify(
    ctx: &Ctx,
    peer: &mut Peer,
    cookie: Option<String>,
    now: Instant,
    batch: &mut Batch,
) -> bool {
    let addr = peer.shared.addr;
    let Some(cookie) = cookie else {
        return false;
    };
    if !ctx.cookies.check(addr, &cookie, now) {
        inc(&ctx.stats.verify_failed);
        tracing::debug!(%addr, "wrong or expired OSC cookie");
        return false;
    }
    let Some(missed) = peer.shared.guard.lock().verify() else {
        return true;
    };
    inc(&ctx.stats.verifications);
    ctx.stats.verified_peers.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%addr, "OSC source verified");
    if std::mem::take(&mut peer.deferred) {
        // Its registrations waited for this: the router subscribes now.
        for (p, id) in &peer.subs {
            batch.subscribe(&peer.shared, *id, osc_to_clasp(&ctx.ns, p));
        }
    } else if missed {
        resubscribe(ctx, peer, batch);
    }
    true
}

/// Replaces each of the peer's registrations with a new subscription, so the router sends the
/// current values again (those dropped before verification).
fn resubscribe(ctx: &Ctx, peer: &mut Peer, batch: &mut Batch) {
    let subs: Vec<(String, u32)> = peer.subs.drain().collect();
    for (p, old) in subs {
        let id = peer.next_sub;
        peer.next_sub = peer.next_sub.wrapping_add(1).max(STATIC_SUB + 1);
        batch.unsubscribe(&peer.shared, old);
        batch.subscribe(&peer.shared, id, osc_to_clasp(&ctx.ns, &p));
        peer.subs.insert(p, id);
    }
}

/// Sends `<prefix>/verify ,s <cookie>` to a peer (within its budget).
pub(super) fn send_cookie(ctx: &Ctx, peer: &PeerShared, now: Instant) {
    let msg = OscMessage {
        addr: format!("{}/verify", ctx.cfg.control_prefix),
        args: vec![OscType::String(ctx.cookies.issue(peer.addr, now))],
    };
    if send_now(ctx, peer, msg) {
        inc(&ctx.stats.cookies_sent);
    }
}

/// Whether `len` more bytes may go to `peer` now; a refusal is counted.
pub(super) fn admit(ctx: &Ctx, peer: &PeerShared, len: usize) -> bool {
    match peer.guard.lock().admit(len, Instant::now()) {
        Ok(()) => true,
        Err(Refusal::Amplification) => {
            inc(&ctx.stats.amplification_dropped);
            tracing::trace!(to = %peer.addr, "OSC message over an unverified source's budget; dropped");
            false
        }
        Err(Refusal::Rate) => {
            inc(&ctx.stats.rate_limited);
            tracing::trace!(to = %peer.addr, "OSC message over the send rate; dropped");
            false
        }
    }
}

/// Sends `msg` to `peer` from the receive loop if its guard admits it (best effort, never
/// blocks); whether it went out.
fn send_now(ctx: &Ctx, peer: &PeerShared, msg: OscMessage) -> bool {
    let Ok(bytes) = rosc::encoder::encode(&OscPacket::Message(msg)) else {
        return false;
    };
    if !admit(ctx, peer, bytes.len()) {
        return false;
    }
    match ctx.socket.try_send_to(&bytes, peer.addr) {
        Ok(_) => true,
        Err(_) => {
            inc(&ctx.stats.send_errors);
            false
        }
    }
}

/// Handles `/clasp/subscribe`: a subscription of the peer's session per new pattern.
pub(super) fn register(ctx: &Ctx, peer: &mut Peer, mut patterns: Vec<String>, batch: &mut Batch) {
    if patterns.is_empty() {
        patterns.push("/**".to_owned());
    }
    for p in patterns {
        if peer.subs.contains_key(&p) {
            continue;
        }
        let clasp = osc_to_clasp(&ctx.ns, &p);
        if !p.starts_with('/') || Pattern::compile(&clasp).is_err() {
            inc(&ctx.stats.invalid);
            reply_error(
                ctx,
                &peer.shared,
                202,
                &format!("invalid pattern `{p}`"),
                &p,
            );
            continue;
        }
        if peer.subs.len() >= ctx.cfg.max_registrations_per_peer {
            inc(&ctx.stats.invalid);
            let max = ctx.cfg.max_registrations_per_peer;
            reply_error(
                ctx,
                &peer.shared,
                429,
                &format!("at most {max} registrations per peer"),
                &p,
            );
            continue;
        }
        let id = peer.next_sub;
        peer.next_sub = peer.next_sub.wrapping_add(1).max(STATIC_SUB + 1);
        peer.subs.insert(p, id);
        peer.shared.registered.store(true, Ordering::Relaxed);
        if !peer.shared.guard.lock().is_verified() {
            // Kept until the source verifies: until then the router does no work for it.
            peer.deferred = true;
            continue;
        }
        batch.subscribe(&peer.shared, id, clasp);
    }
}

/// Handles `/clasp/unsubscribe`: drops those registrations (none named: all).
pub(super) fn unregister(peer: &mut Peer, patterns: Vec<String>, batch: &mut Batch) {
    let ids: Vec<u32> = if patterns.is_empty() {
        peer.subs.drain().map(|(_, id)| id).collect()
    } else {
        patterns
            .iter()
            .filter_map(|p| peer.subs.remove(p))
            .collect()
    };
    for id in ids {
        batch.unsubscribe(&peer.shared, id);
    }
    if peer.subs.is_empty() && !peer.is_static {
        peer.shared.registered.store(false, Ordering::Relaxed);
    }
}

/// Sends `<prefix>/error` to a peer (best effort, never blocks).
pub(super) fn reply_error(ctx: &Ctx, peer: &PeerShared, code: u16, message: &str, address: &str) {
    if send_now(ctx, peer, error_message(ctx, code, message, address)) {
        inc(&ctx.stats.feedback_sent);
    }
}

/// `<prefix>/error ,iss <code> <message> <address>`.
pub(super) fn error_message(ctx: &Ctx, code: u16, message: &str, address: &str) -> OscMessage {
    OscMessage {
        addr: format!("{}/error", ctx.cfg.control_prefix),
        args: vec![
            OscType::Int(i32::from(code)),
            OscType::String(message.to_owned()),
            OscType::String(address.to_owned()),
        ],
    }
}
