//! Timers: coalesced gesture moves, rate-limited deliveries, scheduled bundles, token
//! expiry and periodic sweeps.

use super::*;

impl<H: Clone> Router<H> {
    /// When [`Router::tick`] should next run (monotonic µs).
    pub fn poll_timeout(&self) -> Option<u64> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let expiry = self.store.next_expiry().map(|at| {
            let now = self.last_now;
            now.mono + at.saturating_sub(now.wall)
        });
        match (timer, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs every timer due at `now`: coalesced gesture moves, rate-limited deliveries,
    /// scheduled bundles, param expiry and periodic sweeps.
    pub fn tick(&mut self, now: Now) {
        self.last_now = now;
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now.mono {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Filter(conn, sub, address) => self.flush_filter(conn, sub, &address, now),
                Timer::Gesture(conn, address, id) => self.flush_gesture(conn, address, id, now),
                Timer::Bundle(id) => {
                    if let Some(b) = self.bundles.remove(&id) {
                        if let Some(sess) = self.session_mut(b.conn) {
                            sess.scheduled = sess.scheduled.saturating_sub(1);
                            sess.held.scheduled_bytes =
                                sess.held.scheduled_bytes.saturating_sub(b.cost);
                        }
                        self.run_bundle(b.conn, b.qos, b.bundle, now);
                    }
                }
                Timer::Grant(conn) => self.revalidate_one(conn, now),
                Timer::ClusterBundle(id) => self.gather_timeout(id, now),
                Timer::Query => self.query_step(now),
                Timer::History(conn, id) => self.history_deadline(conn, id),
                Timer::Sweep => {
                    self.sweep(now);
                    self.timers
                        .push(Reverse((now.mono + SWEEP_INTERVAL_US, Timer::Sweep)));
                }
            }
        }
        let expired = self.store.expire(now.wall);
        self.metrics.params_expired += expired.len() as u64;
        for (address, revision) in &expired {
            self.expiry_notice(address, *revision, now);
        }
        if self.cluster.on {
            // The authority still holds them: the first router to see one expire deletes it
            // there (a compare-and-set on its revision, so a newer write is kept).
            for (address, revision) in &expired {
                self.cluster.bundles.note_removed(address, *revision);
            }
            self.cluster.expired.extend(expired);
        }
        self.flush();
    }

    /// Tells the subscribers of an expired param that it is gone: a SET of null at the next
    /// revision (what a cleared MQTT retained message is too), to wire sessions.
    fn expiry_notice(&mut self, address: &Arc<str>, revision: u64, now: Now) {
        let null = clasp_proto::Value::Null;
        let notice = SetRef {
            address,
            value: &null,
            revision: Some(revision + 1),
            lock: false,
            unlock: false,
            ttl: None,
        };
        let Ok(frame) = encode_set(&notice, FrameOptions::default()) else {
            return;
        };
        self.wire_only = true;
        self.fan_out(
            address,
            SignalType::Param,
            Sender::Router,
            None,
            now,
            || Outgoing::Param(frame.clone()),
        );
        self.wire_only = false;
    }

    pub(super) fn flush_filter(&mut self, conn: ConnId, sub_id: u32, address: &Arc<str>, now: Now) {
        let Some(sess) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) else {
            return;
        };
        let Some(f) = sess
            .subs
            .get_mut(&sub_id)
            .and_then(|s| s.filters.get_mut(address))
        else {
            return;
        };
        f.armed = false;
        if let Some((out, value)) = f.pending.take() {
            sess.held.filter_bytes -= out.frame().len();
            f.last_sent = Some(now.mono);
            if value.is_some() {
                f.last_value = value;
            }
            let code = match out {
                Outgoing::Param(_) => metrics::OUT_SET,
                _ => metrics::OUT_PUBLISH,
            };
            self.send_update(conn, sub_id, out, code);
        }
    }

    pub(super) fn flush_gesture(&mut self, conn: ConnId, address: Arc<str>, id: u32, now: Now) {
        let key = (conn, address, id);
        let Some(g) = self.gestures.get_mut(&key) else {
            return;
        };
        g.armed = false;
        if let Some(frame) = g.buffered.take() {
            g.last_forward = now.mono;
            self.adjust_gesture_bytes(conn, -(frame.len() as isize));
            self.forward_frame(conn, &key.1, SignalType::Gesture, frame, None, now);
        }
    }

    pub(super) fn sweep(&mut self, now: Now) {
        self.auth.sweep(now.wall);
        if self.auth.required() {
            self.revalidate(now);
        }
        let ttl = self.config.signal_ttl.as_micros() as u64;
        self.signals.expire(now.mono, ttl);
        self.expire_commits(now);
        let stale: Vec<GestureKey> = self
            .gestures
            .iter()
            .filter(|(_, g)| now.mono.saturating_sub(g.started) >= GESTURE_MAX_AGE_US)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(g) = self.gestures.remove(&key) {
                self.gesture_released(key.0, &key.1, &g);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    Filter(ConnId, u32, Arc<str>),
    Gesture(ConnId, Arc<str>, u32),
    Bundle(u64),
    /// A session's token expires.
    Grant(ConnId),
    /// The time to gather another router's bundle ran out.
    ClusterBundle(u64),
    /// The next slice of the QUERYs in progress.
    Query,
    /// A connection held for a history (its hold's id) has waited long enough.
    History(ConnId, u64),
    Sweep,
}
