//! Fan-out: delivering one update to every matching subscription, with `maxRate` and
//! `epsilon`.

use super::*;

impl Router {
    /// Delivers to every session with a matching subscription that accepts `signal`, once per
    /// session, applying `maxRate` and `epsilon` for params and streams. `exclude` is the sender
    /// for PUBLISH (SET broadcasts include the writer).
    pub(super) fn fan_out(
        &mut self,
        address: &Arc<str>,
        signal: SignalType,
        exclude: Option<ConnId>,
        numeric: Option<f64>,
        now: Now,
        make: impl Fn() -> Outgoing,
    ) {
        let mut keys = std::mem::take(&mut self.scratch);
        keys.clear();
        self.index.for_each_match(address, |k| keys.push(k));
        // A session is served once per fan-out however many of its subscriptions match: it is
        // marked with this fan-out's number when it gets the frame.
        self.fanouts += 1;
        let fanout = self.fanouts;
        let p2p_announce = &**address == P2P_ANNOUNCE;
        let filtered_kind = matches!(signal, SignalType::Param | SignalType::Stream);
        let out_code = if signal == SignalType::Param {
            metrics::OUT_SET
        } else {
            metrics::OUT_PUBLISH
        };
        let mut out: Option<Outgoing> = None;
        for &(conn, sub_id) in &keys {
            if Some(conn) == exclude {
                continue;
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            let Some(sess) = c.session.as_mut() else {
                continue;
            };
            if sess.served == fanout {
                // The session already has this frame through another subscription: a value
                // this one holds back for its rate limit is now older than what the client
                // has, and must not go out later (found by the core fuzzer).
                if let Some(f) = sess
                    .subs
                    .get_mut(&sub_id)
                    .and_then(|sub| sub.filters.get_mut(address))
                {
                    f.pending = None;
                }
                continue;
            }
            let Some(sub) = sess.subs.get_mut(&sub_id) else {
                continue;
            };
            if !p2p_announce && !sub.types.accepts(signal) {
                continue;
            }
            let deliver = if !filtered_kind || (sub.interval_us.is_none() && sub.epsilon.is_none())
            {
                true
            } else {
                let o = out.get_or_insert_with(&make).clone();
                match filter(sub, address, o, numeric, now.mono) {
                    Decision::Now => true,
                    Decision::Later => {
                        let f = sub.filters.get_mut(address);
                        if let Some(f) = f.filter(|f| !f.armed) {
                            f.armed = true;
                            let due =
                                f.last_sent.unwrap_or(now.mono) + sub.interval_us.unwrap_or(0);
                            self.timers
                                .push(Reverse((due, Timer::Filter(conn, sub_id, address.clone()))));
                        }
                        false
                    }
                    Decision::Skip => false,
                }
            };
            if deliver {
                sess.served = fanout;
                let o = match &out {
                    Some(o) => o.clone(),
                    None => out.insert(make()).clone(),
                };
                self.metrics.count_out(out_code, o.frame().len());
                if c.staged.is_empty() {
                    self.dirty.push(conn);
                }
                c.staged.push(o);
            }
        }
        self.scratch = keys;
    }
}

pub(super) enum Decision {
    Now,
    Later,
    Skip,
}

/// Applies a subscription's `maxRate`/`epsilon` to one delivery.
pub(super) fn filter(
    sub: &mut Sub,
    address: &Arc<str>,
    out: Outgoing,
    value: Option<f64>,
    now: u64,
) -> Decision {
    let f = sub.filters.entry(address.clone()).or_default();
    if let (Some(eps), Some(v), Some(last)) = (sub.epsilon, value, f.last_value)
        && (v - last).abs() < eps
    {
        // A change too small to send on its own; but if an earlier one is waiting for the
        // rate limit, this one replaces it, or the subscriber would later get an older value
        // than the latest (found by the core fuzzer).
        if f.pending.is_some() {
            f.pending = Some((out, value));
            return Decision::Later;
        }
        return Decision::Skip;
    }
    match (sub.interval_us, f.last_sent) {
        (Some(interval), Some(last)) if now < last + interval => {
            f.pending = Some((out, value));
            Decision::Later
        }
        _ => {
            f.last_sent = Some(now);
            f.pending = None;
            if value.is_some() {
                f.last_value = value;
            }
            Decision::Now
        }
    }
}
