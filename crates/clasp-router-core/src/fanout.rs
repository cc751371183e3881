//! Fan-out: delivering one update to every matching subscription, with `maxRate` and
//! `epsilon`.

use super::*;

impl<H: Clone> Router<H> {
    /// Delivers to every session with a matching subscription that accepts `signal`, once per
    /// session, applying `maxRate` and `epsilon` for params and streams. `sender` says who sent
    /// the update and whether it gets it back (SET broadcasts include the writer, PUBLISH
    /// excludes it).
    pub(super) fn fan_out(
        &mut self,
        address: &Arc<str>,
        signal: SignalType,
        sender: Sender,
        numeric: Option<f64>,
        now: Now,
        make: impl Fn() -> Outgoing,
    ) {
        self.fan_out_typed(address, signal, sender, numeric, now, make, || None);
    }

    /// [`Router::fan_out`], with `make_typed` building what adapter sessions get (called at
    /// most once, only if one of them receives the update; `None`: decode the frame instead).
    #[allow(clippy::too_many_arguments, reason = "the fan-out's inputs, each used")]
    pub(super) fn fan_out_typed(
        &mut self,
        address: &Arc<str>,
        signal: SignalType,
        sender: Sender,
        numeric: Option<f64>,
        now: Now,
        make: impl Fn() -> Outgoing,
        make_typed: impl Fn() -> Option<Message>,
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
        if self.journal.wants(signal, address) {
            // Built once: the journal and the deliveries share the frame.
            let frame = out.insert(make()).frame().clone();
            self.journal_record(signal, address, &frame, now);
        }
        // What adapter sessions get: the frame decoded once, shared by all of them.
        let mut typed: Option<Arc<Message>> = None;
        let (origin, exclude) = match sender {
            Sender::Router => (None, None),
            Sender::Included(c) => (Some(c), None),
            Sender::Excluded(c) => (Some(c), Some(c)),
        };
        let mut shared = std::mem::take(&mut self.shared_scratch);
        for &(conn, sub_id) in &keys {
            if Some(conn) == exclude {
                continue;
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if self.wire_only && c.adapter {
                continue;
            }
            let Some(sess) = c.session.as_mut() else {
                continue;
            };
            if sess.has_groups
                && let Some(sub) = sess.subs.get(&sub_id)
                && let Some(group) = &sub.group
            {
                // One of the group gets it, chosen once every match is known.
                if sub.types.accepts(signal) {
                    shared.push((group.clone(), conn, sub_id));
                }
                continue;
            }
            if sess.served == fanout {
                // The session already has this frame through another subscription: a value
                // this one holds back for its rate limit is now older than what the client
                // has, and must not go out later (found by the core fuzzer).
                let sub = sess.subs.get_mut(&sub_id);
                let accepts = sub
                    .as_ref()
                    .is_some_and(|s| p2p_announce || s.types.accepts(signal));
                if let Some(f) = sub.and_then(|sub| sub.filters.get_mut(address))
                    && let Some((old, _)) = f.pending.take()
                {
                    sess.held.filter_bytes -= old.frame().len();
                }
                if accepts {
                    self.matched += 1;
                }
                // An adapter learns every subscription of its own that matched.
                if c.adapter
                    && accepts
                    && let Some(adapter::Delivery::Update(u)) = c.typed.last_mut()
                {
                    u.also.push(sub_id);
                }
                continue;
            }
            let Some(sub) = sess.subs.get_mut(&sub_id) else {
                continue;
            };
            if !p2p_announce && !sub.types.accepts(signal) {
                continue;
            }
            self.matched += 1;
            let deliver = if !filtered_kind || (sub.interval_us.is_none() && sub.epsilon.is_none())
            {
                true
            } else {
                let o = out.get_or_insert_with(&make).clone();
                match filter(sub, &mut sess.held, address, o, numeric, now.mono) {
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
                if !c.adapter
                    && let Some(whole) = self
                        .bundle_out
                        .as_mut()
                        .filter(|_| sess.features.0 & Features::BUNDLES != 0)
                {
                    // Sent with the rest of the bundle when it ends.
                    whole.entry(conn).or_default().push(o);
                    continue;
                }
                if c.staged.is_empty() && c.typed.is_empty() {
                    self.dirty.push(conn);
                }
                if c.adapter {
                    let message = match &typed {
                        Some(m) => m.clone(),
                        None => match make_typed() {
                            Some(m) => typed.insert(Arc::new(m)).clone(),
                            None => match clasp_proto::decode_frame(o.frame()) {
                                Ok(d) => typed.insert(Arc::new(d.message)).clone(),
                                // The core built the frame; it always decodes.
                                Err(_) => continue,
                            },
                        },
                    };
                    c.typed.push(adapter::Delivery::Update(adapter::Update {
                        sub: sub_id,
                        also: Vec::new(),
                        message,
                        size: o.frame().len(),
                        own: origin == Some(conn),
                        attached: self.attaching.clone(),
                    }));
                } else {
                    c.staged.push(o);
                }
            }
        }
        self.scratch = keys;
        if !shared.is_empty() && !self.wire_only {
            let o = match &out {
                Some(o) => o.clone(),
                None => make(),
            };
            self.deliver_shared(&mut shared, fanout, o, &mut typed, origin, out_code);
        }
        self.shared_scratch = shared;
    }
}

/// Who sent an update being fanned out, and whether it gets it back.
#[derive(Clone, Copy)]
pub(super) enum Sender {
    /// The router itself (a P2P leave notice).
    Router,
    /// A session that receives its own update too (a SET: every subscriber sees the state).
    Included(ConnId),
    /// A session that does not (a PUBLISH is not sent back to its sender).
    Excluded(ConnId),
}

pub(super) enum Decision {
    Now,
    Later,
    Skip,
}

/// Addresses a session's subscriptions may keep `maxRate`/`epsilon` state for; deliveries to
/// more addresses are not filtered (no state is kept for them).
const MAX_FILTERED_ADDRESSES: usize = 10_000;
/// Bytes of frames a session's subscriptions may hold back for `maxRate`; a frame that would
/// pass it goes out at once instead.
const MAX_FILTER_BYTES: usize = 4 << 20;

/// Applies a subscription's `maxRate`/`epsilon` to one delivery, within the session's bounds
/// on filter state (`held`).
pub(super) fn filter(
    sub: &mut Sub,
    held: &mut Held,
    address: &Arc<str>,
    out: Outgoing,
    value: Option<f64>,
    now: u64,
) -> Decision {
    if !sub.filters.contains_key(address) {
        if held.filters >= MAX_FILTERED_ADDRESSES {
            return Decision::Now;
        }
        held.filters += 1;
    }
    let f = sub.filters.entry(address.clone()).or_default();
    let waiting = f.pending.as_ref().map_or(0, |(o, _)| o.frame().len());
    // Holding `out` back replaces what waits; past the byte bound it goes now instead.
    let can_hold = held.filter_bytes - waiting + out.frame().len() <= MAX_FILTER_BYTES;
    if let (Some(eps), Some(v), Some(last)) = (sub.epsilon, value, f.last_value)
        && (v - last).abs() < eps
    {
        // A change too small to send on its own; but if an earlier one is waiting for the
        // rate limit, this one replaces it, or the subscriber would later get an older value
        // than the latest (found by the core fuzzer).
        if f.pending.is_some() && can_hold {
            held.filter_bytes = held.filter_bytes - waiting + out.frame().len();
            f.pending = Some((out, value));
            return Decision::Later;
        }
        if f.pending.is_none() {
            return Decision::Skip;
        }
    } else if let (Some(interval), Some(last)) = (sub.interval_us, f.last_sent)
        && now < last + interval
        && can_hold
    {
        held.filter_bytes = held.filter_bytes - waiting + out.frame().len();
        f.pending = Some((out, value));
        return Decision::Later;
    }
    f.last_sent = Some(now);
    f.pending = None;
    held.filter_bytes -= waiting;
    if value.is_some() {
        f.last_value = value;
    }
    Decision::Now
}
