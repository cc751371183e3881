//! Subscriptions and reads: SUBSCRIBE, GET, QUERY and SNAPSHOT building.

use super::*;

impl<H: Clone> Router<H> {
    pub(super) fn on_subscribe(&mut self, conn: ConnId, s: Subscribe) {
        let pattern = match Pattern::compile(&s.pattern) {
            Ok(p) => p,
            Err(e) => {
                self.refuse(conn, e.into(), Some(s.pattern));
                return;
            }
        };
        if !self.permits_pattern(conn, Action::Read, &pattern) {
            let r = Refusal::Scope(Operation::Subscription);
            self.refuse(conn, r, Some(s.pattern));
            return;
        }
        if let Some(opt) = unsupported_option(&s.options) {
            self.refuse(conn, Refusal::UnsupportedOption(opt), Some(s.pattern));
            return;
        }
        let history = s.options.history.filter(|n| *n > 0);
        if history.is_some() && !self.journal_on() && !self.journal.ring.enabled() {
            self.refuse(conn, Refusal::NoHistory, Some(s.pattern));
            return;
        }
        if history.is_some() && self.journal.waiting(conn) >= journal::MAX_HISTORIES {
            let r = Refusal::Histories(journal::MAX_HISTORIES);
            self.refuse(conn, r, Some(s.pattern));
            return;
        }
        let max = self.config.max_subscriptions;
        let max_bytes = self.config.max_subscription_bytes;
        let cost = sub_cost(&s.pattern);
        let Some(sess) = self.session_mut(conn) else {
            return;
        };
        let replaced = sess.subs.get(&s.id).map(|sub| sub.cost);
        let bytes = sess.held.sub_bytes - replaced.unwrap_or(0) + cost;
        let refusal = if replaced.is_none() && sess.subs.len() >= max {
            Some(Refusal::Subscriptions { max })
        } else if bytes > max_bytes {
            Some(Refusal::SubscriptionBytes {
                bytes,
                max: max_bytes,
            })
        } else {
            None
        };
        if let Some(r) = refusal {
            self.refuse(conn, r, Some(s.pattern));
            return;
        }
        if let Some(old) = sess.subs.remove(&s.id) {
            sess.held.release_sub(&old);
        }
        sess.held.sub_bytes += cost;
        let interval_us = s
            .options
            .max_rate
            .filter(|r| *r > 0)
            .map(|r| 1_000_000 / u64::from(r));
        sess.subs.insert(
            s.id,
            Sub {
                cost,
                types: s.types,
                interval_us,
                epsilon: s.options.epsilon.filter(|e| *e > 0.0),
                filters: HashMap::new(),
                group: None,
            },
        );
        let wants_params = s.types.accepts(SignalType::Param);
        self.index_insert((conn, s.id), pattern.clone());
        if let Some(count) = history {
            self.start_history(conn, &pattern, s.types, count);
        }
        if pattern.matches(P2P_ANNOUNCE)
            && (!self.p2p_announces.is_empty() || self.cluster.has_remote_peers())
        {
            // Peers that announced before this subscription (the reference never replays, so
            // its clients only learn of peers that arrive after them), here and, in a
            // cluster, on the other routers.
            let frames: Vec<Bytes> = self
                .p2p_announces
                .iter()
                .filter(|(c, _)| **c != conn)
                .map(|(_, f)| f.clone())
                .chain(self.cluster.remote_announces())
                .collect();
            for f in frames {
                self.send(conn, Outgoing::Event(f), crate::metrics::OUT_PUBLISH);
            }
        }
        if wants_params {
            let may = |a: &str| {
                self.session(conn)
                    .is_some_and(|sess| sess.may(Action::Read, a))
            };
            if self.is_adapter(conn) {
                let params = self.retained(|a| pattern.matches(a) && may(a));
                self.send_adapter_snapshot(conn, s.id, params);
            } else {
                let frames = if pattern.is_exact() {
                    self.snapshot_frames(|a| a == pattern.as_str() && may(a), false)
                } else {
                    self.snapshot_frames(|a| pattern.matches(a) && may(a), false)
                };
                self.send_snapshot(conn, frames, false);
            }
        }
    }

    pub(super) fn on_get(&mut self, conn: ConnId, address: Str) {
        let wall = self.last_now.wall;
        self.store.touch(&address, wall);
        match self.store.get(&address) {
            Some(p) => {
                let snap = Snapshot {
                    params: vec![param_value(&address, p)],
                };
                self.reply(conn, &Message::Snapshot(snap));
            }
            None => {
                let r = Refusal::NoParam(address.to_string());
                self.refuse(conn, r, Some(address));
            }
        }
    }

    /// SNAPSHOT frames of the params whose address passes `filter`.
    pub(super) fn snapshot_frames(
        &self,
        filter: impl Fn(&str) -> bool,
        always: bool,
    ) -> Vec<Bytes> {
        let mut w = SnapshotWriter::new(self.config.max_payload);
        for (addr, p) in self.store.iter() {
            if filter(addr) {
                // A param that cannot fit a frame is refused when written, so this cannot fail
                // for stored params; if it ever did, the error is counted, not hidden.
                if w.push(&param_value(addr, p)).is_err() {
                    debug_assert!(false, "stored param too large for a snapshot: {addr}");
                }
            }
        }
        w.finish(always)
    }
}

pub(super) fn unsupported_option(o: &SubscribeOptions) -> Option<&'static str> {
    o.window.is_some().then_some("window")
}
