//! Feedback: what the core delivers to a peer's session, translated to OSC and sent within the
//! peer's budget.

use super::*;

/// Translates the deliveries of a peer's session into OSC messages to the peer, until the
/// session closes or the listener cancels it.
pub(super) async fn drain(
    ctx: Arc<Ctx>,
    peer: Arc<PeerShared>,
    inbox: Inbox,
    conn: ConnId,
    cancel: CancellationToken,
    closed: mpsc::UnboundedSender<Closed>,
) {
    let mut got = Vec::new();
    let mut out = Vec::new();
    loop {
        let close = inbox.drain(&mut got);
        for d in got.drain(..) {
            translate(&ctx, &peer, d, &mut out);
        }
        for m in out.drain(..) {
            let addr = m.addr.clone();
            match rosc::encoder::encode(&OscPacket::Message(m)) {
                Ok(bytes) if !admit(&ctx, &peer, bytes.len()) => {}
                Ok(bytes) => match ctx.socket.send_to(&bytes, peer.addr).await {
                    Ok(_) => inc(&ctx.stats.feedback_sent),
                    Err(e) => {
                        inc(&ctx.stats.send_errors);
                        tracing::debug!(to = %peer.addr, %addr, error = %e, "OSC send failed");
                    }
                },
                Err(e) => {
                    inc(&ctx.stats.send_errors);
                    tracing::debug!(%addr, error = %e, "cannot encode OSC message");
                }
            }
        }
        if let Some(reason) = close {
            let _ = closed.send(Closed {
                addr: peer.addr,
                conn,
                reason,
            });
            return;
        }
        tokio::select! {
            () = inbox.ready() => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// The OSC messages for one delivery to a peer's session: updates and snapshots of the
/// subscriptions it still has (the peer's own SETs only with [`OscConfig::echo`], snapshots
/// up to [`OscConfig::max_snapshot`] values), errors for a registered peer, P2P signals.
fn translate(ctx: &Ctx, peer: &PeerShared, d: Delivery, out: &mut Vec<OscMessage>) {
    let mut push = |address: &str, value: &Value| {
        if let Some(osc) = clasp_to_osc(&ctx.ns, address) {
            out.push(OscMessage {
                addr: osc.to_owned(),
                args: to_args(value, ctx.args),
            });
        }
    };
    match d {
        Delivery::Update(u) => {
            if !peer.wants(u.subs()) {
                return;
            }
            match &*u.message {
                Message::Set(_) if u.own && !ctx.cfg.echo => inc(&ctx.stats.echo_suppressed),
                Message::Set(s) => push(&s.address, &s.value),
                Message::Publish(p) => {
                    if let Some(v) = p.value() {
                        push(&p.address, v);
                    }
                }
                _ => {}
            }
        }
        Delivery::Snapshot { sub, params } => {
            if peer.wants(std::iter::once(sub)) {
                for pv in params.iter().take(ctx.cfg.max_snapshot) {
                    push(&pv.param.address, &pv.param.value);
                }
            }
        }
        Delivery::Reply(m) => match *m {
            Message::Publish(p) => {
                if let Some(v) = p.value() {
                    push(&p.address, v);
                }
            }
            Message::Error(e) => {
                inc(&ctx.stats.router_errors);
                tracing::debug!(peer = %peer.addr, code = e.code.code(), message = %e.message, "router error for an OSC session");
                if peer.registered.load(Ordering::Relaxed) {
                    let address = e.address.as_deref().unwrap_or("");
                    out.push(error_message(ctx, e.code.code(), &e.message, address));
                }
            }
            _ => {}
        },
    }
}
