//! PUBLISH: events, streams, gestures (with move coalescing) and P2P signalling.

use super::*;

/// Direct P2P links recorded per session at most (they are self-reported).
const MAX_LINKS_PER_SESSION: usize = 64;

impl<H: Clone> Router<H> {
    /// Tells the subscribers of [`P2P_LEAVE`] that a P2P-capable session has ended, so its
    /// peers drop their connections to it at once.
    pub(super) fn p2p_leave(&mut self, session: &str, now: Now) {
        let msg = Message::Publish(Publish {
            address: P2P_LEAVE.into(),
            signal: SignalType::Event,
            payload: PublishPayload::Value(clasp_proto::Value::Map(vec![(
                "session_id".into(),
                clasp_proto::Value::String(session.into()),
            )])),
            ..Default::default()
        });
        let Ok(frame) = clasp_proto::encode(&msg) else {
            return;
        };
        self.p2p_event(P2P_LEAVE, &frame, Sender::Router, now);
        self.flush();
    }

    /// Fans out a P2P announce or leave frame to every subscriber of `address`, whatever its
    /// type filter.
    pub(super) fn p2p_event(&mut self, address: &str, frame: &Bytes, sender: Sender, now: Now) {
        let address: Arc<str> = Arc::from(address);
        self.fan_out(&address, SignalType::Event, sender, None, now, || {
            Outgoing::Event(frame.clone())
        });
    }

    /// A PUBLISH from a bundle: encoded once, then handled like one from a frame.
    pub(super) fn publish_owned(&mut self, conn: ConnId, p: &Publish, now: Now) {
        match encode(&Message::Publish(p.clone())) {
            Ok(frame) => {
                let req = PubReq::owned(p, frame);
                self.on_publish(conn, &req, now);
            }
            Err(e) => self.refuse(conn, e.into(), Some(p.address.clone())),
        }
    }

    pub(super) fn on_publish(&mut self, conn: ConnId, p: &PubReq<'_>, now: Now) {
        if let Err(r) = self.check_publish(conn, p.address, p.p2p_sender) {
            self.refuse(conn, r, Some(p.address_str()));
            return;
        }
        if let Some(target) = p.address.strip_prefix(P2P_SIGNAL_PREFIX)
            && !target.is_empty()
            && !target.contains('/')
        {
            self.p2p_signal(conn, target, p);
            return;
        }
        if p.address == P2P_ANNOUNCE {
            self.p2p_announces.insert(conn, p.frame.clone());
            if let Some(id) = self.writer_id(conn) {
                self.cluster_p2p(cluster::P2pOut::Announce(id, p.frame.clone()));
            }
            self.p2p_event(P2P_ANNOUNCE, &p.frame, Sender::Excluded(conn), now);
            return;
        }
        if let Err(r) = check_address(p.address) {
            self.refuse(conn, r, Some(p.address_str()));
            return;
        }
        if p.signal == SignalType::Gesture && self.config.gesture_interval.as_micros() > 0 {
            self.gesture(conn, p, now);
            return;
        }
        self.forward_publish(conn, p, now);
    }

    /// A PUBLISH needs write on its address; a P2P signal or announce must name its sender's
    /// own session (`from`, `session_id`), so no session can speak for another.
    pub(super) fn check_publish(
        &self,
        conn: ConnId,
        address: &str,
        p2p_sender: Option<&str>,
    ) -> Result<(), Refusal> {
        if !self.permits(conn, Action::Write, address) {
            return Err(Refusal::Scope(Operation::Publish));
        }
        if let Some(claimed) = p2p_sender {
            let own = self.session(conn).map(|s| &*s.id);
            if own != Some(claimed) {
                return Err(Refusal::P2pSpoof(clip(claimed.to_owned())));
            }
        }
        Ok(())
    }

    pub(super) fn forward_publish(&mut self, conn: ConnId, p: &PubReq<'_>, now: Now) {
        let address: Arc<str> = Arc::from(p.address);
        self.cluster_publish(&address, &p.frame);
        let stream = p.signal == SignalType::Stream;
        self.fan_out_typed(
            &address,
            p.signal,
            Sender::Excluded(conn),
            p.numeric,
            now,
            || {
                if stream {
                    Outgoing::Stream(p.frame.clone())
                } else {
                    Outgoing::Event(p.frame.clone())
                }
            },
            || p.typed.map(|t| Message::Publish(t.clone())),
        );
    }

    pub(super) fn forward_frame(
        &mut self,
        conn: ConnId,
        address: &str,
        signal: SignalType,
        frame: Bytes,
        numeric: Option<f64>,
        now: Now,
    ) {
        let address: Arc<str> = Arc::from(address);
        self.cluster_publish(&address, &frame);
        let stream = signal == SignalType::Stream;
        self.fan_out(
            &address,
            signal,
            Sender::Excluded(conn),
            numeric,
            now,
            || {
                if stream {
                    Outgoing::Stream(frame.clone())
                } else {
                    Outgoing::Event(frame.clone())
                }
            },
        );
    }

    pub(super) fn p2p_signal(&mut self, conn: ConnId, target: &str, p: &PubReq<'_>) {
        self.note_p2p_link(conn, target, p);
        let Some(&to) = self.sessions.get(target) else {
            // A peer on another router of the cluster.
            if self.cluster.knows_remote_peer(target) {
                let out = cluster::P2pOut::Signal(Arc::from(target), p.frame.clone());
                self.cluster_p2p(out);
                return;
            }
            let r = Refusal::TargetNotFound(target.to_owned());
            self.refuse(conn, r, Some(p.address_str()));
            return;
        };
        self.send(
            to,
            Outgoing::Event(p.frame.clone()),
            crate::metrics::OUT_PUBLISH,
        );
    }

    /// Keeps the list of direct P2P links from the peers' `connected` and `disconnected`
    /// signals (protocol.md §11), for operators; nothing else in a signal is looked at.
    fn note_p2p_link(&mut self, conn: ConnId, target: &str, p: &PubReq<'_>) {
        // `connected` and `disconnected` signals are small; offers, answers and relayed data
        // are not looked at. Only links to a session that exists (here or on another router).
        if p.frame.len() > 512
            || !(self.sessions.contains_key(target) || self.cluster.knows_remote_peer(target))
        {
            return;
        }
        let Some(from) = self.writer_id(conn) else {
            return;
        };
        let kind = match clasp_proto::decode_frame(&p.frame).map(|d| d.message) {
            Ok(Message::Publish(m)) => match m.payload {
                PublishPayload::Value(v) => v
                    .get("type")
                    .and_then(clasp_proto::Value::as_str)
                    .map(str::to_owned),
                _ => None,
            },
            _ => None,
        };
        let target: Arc<str> = Arc::from(target);
        let held = self
            .p2p_links
            .keys()
            .filter(|(a, b)| *a == from || *b == from)
            .count();
        let key = if from <= target {
            (from, target)
        } else {
            (target, from)
        };
        match kind.as_deref() {
            Some("connected") if self.p2p_links.len() < 65_536 && held < MAX_LINKS_PER_SESSION => {
                let now = self.last_now.wall;
                self.p2p_links.entry(key).or_insert(now);
            }
            Some("disconnected") => {
                self.p2p_links.remove(&key);
            }
            _ => {}
        }
    }

    /// Direct P2P links the peers reported (session ids, and since when in wall µs).
    pub fn p2p_links(&self) -> Vec<(Arc<str>, Arc<str>, u64)> {
        let mut v: Vec<_> = self
            .p2p_links
            .iter()
            .map(|((a, b), t)| (a.clone(), b.clone(), *t))
            .collect();
        v.sort();
        v
    }

    /// Gesture move coalescing: start, end and cancel go out at once; moves go out at most once
    /// per interval per (session, address, id), always ending with the latest one.
    pub(super) fn gesture(&mut self, conn: ConnId, p: &PubReq<'_>, now: Now) {
        let key: GestureKey = (conn, Arc::from(p.address), p.id.unwrap_or(0));
        let interval = self.config.gesture_interval.as_micros() as u64;
        match p.phase {
            GesturePhase::Start => {
                if let Some(old) = self.gestures.remove(&key) {
                    self.gesture_released(conn, &key.1, &old);
                }
                let base = gesture_cost(&key.1);
                let (max, max_bytes) = (self.config.max_gestures, self.config.max_gesture_bytes);
                let Some(sess) = self.session_mut(conn) else {
                    return;
                };
                if sess.held.gestures >= max || sess.held.gesture_bytes + base > max_bytes {
                    let r = Refusal::Gestures {
                        count: sess.held.gestures,
                        max,
                        bytes: sess.held.gesture_bytes,
                        max_bytes,
                    };
                    self.refuse(conn, r, Some(p.address_str()));
                    return;
                }
                sess.held.gestures += 1;
                sess.held.gesture_bytes += base;
                self.gestures.insert(
                    key,
                    Gesture {
                        started: now.mono,
                        last_forward: now.mono,
                        buffered: None,
                        armed: false,
                    },
                );
                self.forward_publish(conn, p, now);
            }
            GesturePhase::Move => {
                let max_bytes = self.config.max_gesture_bytes;
                let held = self.session(conn).map_or(0, |s| s.held.gesture_bytes);
                let Some(g) = self.gestures.get_mut(&key) else {
                    // A move without a start (late join): forward as is.
                    self.forward_publish(conn, p, now);
                    return;
                };
                let before = g.buffered.as_ref().map_or(0, Bytes::len);
                let fits = held - before + p.frame.len() <= max_bytes;
                if (g.buffered.is_none() && now.mono >= g.last_forward + interval) || !fits {
                    // Due, or no room to hold it back: it goes now, replacing what waited.
                    g.last_forward = now.mono;
                    g.buffered = None;
                    self.adjust_gesture_bytes(conn, -(before as isize));
                    self.forward_publish(conn, p, now);
                    return;
                }
                g.buffered = Some(p.frame.clone());
                self.metrics.gesture_moves_coalesced += 1;
                if !g.armed {
                    g.armed = true;
                    let due = g.last_forward + interval;
                    self.timers
                        .push(Reverse((due, Timer::Gesture(conn, key.1.clone(), key.2))));
                }
                self.adjust_gesture_bytes(conn, p.frame.len() as isize - before as isize);
            }
            GesturePhase::End | GesturePhase::Cancel => {
                if let Some(mut g) = self.gestures.remove(&key) {
                    self.gesture_released(conn, &key.1, &g);
                    if let Some(frame) = g.buffered.take() {
                        self.forward_frame(conn, p.address, SignalType::Gesture, frame, None, now);
                    }
                }
                self.forward_publish(conn, p, now);
            }
        }
    }

    /// A gesture of `conn` at `address` is forgotten: its bytes and its place are given back.
    pub(super) fn gesture_released(&mut self, conn: ConnId, address: &str, g: &Gesture) {
        let bytes = gesture_cost(address) + g.buffered.as_ref().map_or(0, Bytes::len);
        if let Some(sess) = self.session_mut(conn) {
            sess.held.gestures = sess.held.gestures.saturating_sub(1);
            sess.held.gesture_bytes = sess.held.gesture_bytes.saturating_sub(bytes);
        }
    }

    /// Changes the bytes of gesture state counted for `conn`.
    pub(super) fn adjust_gesture_bytes(&mut self, conn: ConnId, delta: isize) {
        if let Some(sess) = self.session_mut(conn) {
            sess.held.gesture_bytes = sess.held.gesture_bytes.saturating_add_signed(delta);
        }
    }
}
