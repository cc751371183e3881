//! Feedback: what the router sends a peer's session, translated to OSC and sent within the
//! peer's budget, and the echo filter that keeps a peer's own writes from coming back to it.

use super::*;

/// The peer's own recent writes, to recognise their broadcasts coming back.
#[derive(Debug, Default)]
pub(super) struct EchoFilter {
    entries: VecDeque<(Str, Value, Instant)>,
}

impl EchoFilter {
    fn record(&mut self, address: Str, value: Value, expires: Instant) {
        let now = Instant::now();
        while self.entries.front().is_some_and(|e| e.2 <= now) {
            self.entries.pop_front();
        }
        if self.entries.len() >= ECHO_CAP {
            self.entries.pop_front();
        }
        self.entries.push_back((address, value, expires));
    }

    /// Whether `(address, value)` is the echo of one of the peer's writes; forgets it and the
    /// peer's older writes to the same address (a congested queue may have coalesced them).
    fn take(&mut self, address: &str, value: &Value, now: Instant) -> bool {
        while self.entries.front().is_some_and(|e| e.2 <= now) {
            self.entries.pop_front();
        }
        let Some(pos) = self
            .entries
            .iter()
            .position(|(a, v, _)| &**a == address && v == value)
        else {
            return false;
        };
        let mut i = 0;
        self.entries.retain(|(a, _, _)| {
            let keep = i > pos || &**a != address;
            i += 1;
            keep
        });
        true
    }
}

pub(super) fn remember_own_write(
    ctx: &Ctx,
    peer: &Peer,
    msg: &Message,
    at: Option<u64>,
    wall: u64,
    now: Instant,
) {
    // No echo comes back to a peer without feedback (unregistered, or waiting to verify).
    if ctx.cfg.echo || !peer.shared.registered.load(Ordering::Relaxed) || peer.deferred {
        return;
    }
    let Message::Set(s) = msg else {
        return;
    };
    let delay = Duration::from_micros(at.map_or(0, |t| t.saturating_sub(wall)));
    peer.shared
        .echo
        .lock()
        .record(s.address.clone(), s.value.clone(), now + delay + ECHO_TTL);
}

/// Translates what the router sends a peer's session into OSC messages to the peer, until the
/// session closes or the listener cancels it.
pub(super) async fn drain(
    ctx: Arc<Ctx>,
    peer: Arc<PeerShared>,
    outbox: Outbox,
    conn: ConnId,
    cancel: CancellationToken,
    closed: mpsc::UnboundedSender<Closed>,
) {
    let mut frames = Vec::new();
    let mut out = Vec::new();
    loop {
        tokio::select! {
            () = outbox.ready() => {}
            () = outbox.closed() => {}
            () = cancel.cancelled() => return,
        }
        let close = outbox.drain_with(|f| frames.push(f));
        for f in frames.drain(..) {
            translate(&ctx, &peer, &f, &mut out);
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
    }
}

/// The OSC messages for one frame the router sent a peer's session.
pub(super) fn translate(ctx: &Ctx, peer: &PeerShared, frame: &Bytes, out: &mut Vec<OscMessage>) {
    let message = match clasp_proto::decode_frame_bytes(frame) {
        Ok(d) => d.message,
        Err(e) => {
            tracing::debug!(error = %e, "undecodable frame from the router");
            return;
        }
    };
    let mut push = |address: &str, value: &Value| {
        if let Some(osc) = clasp_to_osc(&ctx.ns, address) {
            out.push(OscMessage {
                addr: osc.to_owned(),
                args: to_args(value, ctx.args),
            });
        }
    };
    match message {
        Message::Set(s) => {
            if !ctx.cfg.echo && peer.echo.lock().take(&s.address, &s.value, Instant::now()) {
                inc(&ctx.stats.echo_suppressed);
                return;
            }
            push(&s.address, &s.value);
        }
        Message::Publish(p) => {
            if let Some(v) = p.value() {
                push(&p.address, v);
            }
        }
        Message::Snapshot(snap) if peer.welcomed.load(Ordering::Relaxed) => {
            for pv in &snap.params {
                let left = peer.snapshot_budget.load(Ordering::Relaxed);
                if left == 0 {
                    break;
                }
                peer.snapshot_budget.store(left - 1, Ordering::Relaxed);
                push(&pv.address, &pv.value);
            }
        }
        Message::Pong => peer.welcomed.store(true, Ordering::Relaxed),
        Message::Error(e) => {
            inc(&ctx.stats.router_errors);
            tracing::debug!(peer = %peer.addr, code = e.code.code(), message = %e.message, "router error for an OSC session");
            if peer.registered.load(Ordering::Relaxed) {
                let address = e.address.as_deref().unwrap_or("");
                out.push(error_message(ctx, e.code.code(), &e.message, address));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_filter_matches_own_writes_and_forgets_coalesced_ones() {
        let now = Instant::now();
        let later = now + ECHO_TTL;
        let mut f = EchoFilter::default();
        f.record("/a".into(), Value::Int(1), later);
        f.record("/a".into(), Value::Int(2), later);
        f.record("/b".into(), Value::Int(1), later);
        // Someone else's value passes.
        assert!(!f.take("/a", &Value::Int(9), now));
        // The latest own write came back (the first was coalesced away): both are forgotten.
        assert!(f.take("/a", &Value::Int(2), now));
        assert!(!f.take("/a", &Value::Int(1), now));
        assert!(f.take("/b", &Value::Int(1), now));
        // Expired entries are not matched.
        f.record("/c".into(), Value::Int(1), now);
        assert!(!f.take("/c", &Value::Int(1), now));
    }
}
