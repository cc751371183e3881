//! What a clustered router exchanges with the other routers besides param writes: the signals
//! its sessions publish and those of the other routers ([`Router::publish_remote`]), the
//! patterns its sessions subscribe to (so the shell asks NATS for that traffic only), P2P
//! signalling across routers and the cluster's locks (see [`crate::cluster`]).

use super::cluster::{InterestChange, P2pIn, P2pOut, SignalOut};
use super::*;

impl<H: Clone> Router<H> {
    /// The next signal (or bundle of signals) published by a session of this router, for the
    /// other routers.
    pub fn poll_cluster_publish(&mut self) -> Option<SignalOut> {
        self.cluster.publishes.pop_front()
    }

    /// The next P2P message for the other routers.
    pub fn poll_cluster_p2p(&mut self) -> Option<P2pOut> {
        self.cluster.p2p_out.pop_front()
    }

    /// P2P signalling from another router: an announce (told to this router's subscribers of
    /// the announce address, and replayed to later ones), a signal for a session here
    /// (delivered to it; dropped if it has gone), a leave, or a router gone silent (each of its
    /// sessions leaves).
    pub fn p2p_remote(&mut self, msg: P2pIn, now: Now) {
        self.last_now = now;
        match msg {
            P2pIn::Announce(session, router, frame) => {
                if self.sessions.contains_key(&session) {
                    return;
                }
                self.p2p_event(P2P_ANNOUNCE, &frame, Sender::Router, now);
                self.cluster.remote_peers.insert(session, (router, frame));
            }
            P2pIn::Signal(target, frame) => {
                if let Some(&to) = self.sessions.get(&target) {
                    self.send(to, Outgoing::Event(frame), crate::metrics::OUT_PUBLISH);
                }
            }
            P2pIn::Leave(session) => {
                if self.cluster.remote_peers.remove(&session).is_some() {
                    self.p2p_leave(&session, now);
                }
            }
            P2pIn::RouterGone(router) => {
                let gone: Vec<Arc<str>> = self
                    .cluster
                    .remote_peers
                    .iter()
                    .filter(|(_, (r, _))| *r == router)
                    .map(|(s, _)| s.clone())
                    .collect();
                for session in gone {
                    self.cluster.remote_peers.remove(&session);
                    self.p2p_leave(&session, now);
                }
            }
        }
        self.flush();
    }

    /// Sessions of other routers known from their announces.
    pub fn remote_peer_count(&self) -> usize {
        self.cluster.remote_peers.len()
    }

    /// The announces of this router's P2P sessions (session id, frame), for a router that
    /// joined the cluster after they were made.
    pub fn local_p2p_announces(&self) -> Vec<(Arc<str>, Bytes)> {
        self.p2p_announces
            .iter()
            .filter_map(|(c, f)| Some((self.session(*c)?.id.clone(), f.clone())))
            .collect()
    }

    /// A lock as the cluster's lock bucket reports it: held by `holder` until `until`
    /// (monotonic µs, the lease counted from now), or released (`None`).
    pub fn apply_remote_lock(&mut self, address: &str, holder: Option<&str>, until: u64) {
        match holder {
            Some(h) => {
                self.cluster
                    .locks
                    .insert(Arc::from(address), (Arc::from(h), until));
            }
            None => {
                self.cluster.locks.remove(address);
            }
        }
    }

    /// Locks this router knows of in the cluster (its sessions' and the other routers'),
    /// lapsed ones included until the bucket reports them gone.
    pub fn cluster_lock_count(&self) -> usize {
        self.cluster.locks.len()
    }

    /// The next lock of this router's sessions to release in the cluster: (address, session).
    pub fn poll_lock_release(&mut self) -> Option<(Arc<str>, Arc<str>)> {
        self.cluster.releases.pop_front()
    }

    /// Releases the cluster locks `session` held on `addresses` (it left, or lost the scope).
    pub(super) fn cluster_release_locks(&mut self, session: &Arc<str>, addresses: &[Arc<str>]) {
        if !self.cluster.on {
            return;
        }
        for a in addresses {
            if self.cluster.locks.get(a).is_some_and(|(h, _)| h == session) {
                self.cluster.locks.remove(a);
            }
            self.cluster
                .releases
                .push_back((a.clone(), session.clone()));
        }
    }

    /// Queues P2P signalling for the other routers (cluster mode).
    pub(super) fn cluster_p2p(&mut self, out: P2pOut) {
        if self.cluster.on {
            self.cluster.p2p_out.push_back(out);
        }
    }

    /// The next change in the patterns this router's sessions subscribe to (only in cluster
    /// mode; the patterns held when it was turned on come first).
    pub fn poll_interest(&mut self) -> Option<InterestChange> {
        self.cluster.interest_out.pop_front()
    }

    /// A signal published through another router (its PUBLISH frame): fanned out to this
    /// router's subscribers. A frame that is not a PUBLISH, or that does not decode, is
    /// ignored and `false` returned.
    pub fn publish_remote(&mut self, frame: &Bytes, now: Now) -> bool {
        self.last_now = now;
        let done = self.fan_out_remote(frame, now);
        self.flush();
        done
    }

    /// Fans out a signal from another router (no flush); `false` if it is not a PUBLISH.
    pub(super) fn fan_out_remote(&mut self, frame: &Bytes, now: Now) -> bool {
        let Ok(decoded) = decode_frame_view(frame) else {
            return false;
        };
        let MessageView::Publish(p) = decoded.message else {
            return false;
        };
        if p.address.starts_with("/clasp/p2p/") {
            return false;
        }
        let req = PubReq::from_view(&p, frame.slice(..decoded.len), frame);
        let address: Arc<str> = Arc::from(req.address);
        let stream = req.signal == SignalType::Stream;
        self.fan_out_typed(
            &address,
            req.signal,
            Sender::Router,
            req.numeric,
            now,
            || {
                if stream {
                    Outgoing::Stream(req.frame.clone())
                } else {
                    Outgoing::Event(req.frame.clone())
                }
            },
            || None,
        );
        true
    }

    /// Hands a signal published here to the other routers (cluster mode).
    pub(super) fn cluster_publish(&mut self, address: &Arc<str>, frame: &Bytes) {
        if !self.cluster.on {
            return;
        }
        match &mut self.cluster.bundles.collecting {
            Some(c) => c.push((address.clone(), frame.clone())),
            None => self
                .cluster
                .publishes
                .push_back(SignalOut::One(address.clone(), frame.clone())),
        }
    }

    /// Adds a subscription to the index, counting its pattern's interest in cluster mode.
    pub(super) fn index_insert(&mut self, key: SubKey, pattern: Pattern) {
        self.index_remove(key);
        if self.cluster.on {
            let p: Arc<str> = Arc::from(pattern.as_str());
            let n = self.cluster.interest.entry(p.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.cluster.interest_out.push_back(InterestChange::Add(p));
            }
        }
        self.index.insert(key, pattern);
    }

    /// Removes a subscription from the index, counting its pattern's interest in cluster mode.
    pub(super) fn index_remove(&mut self, key: SubKey) {
        if !self.cluster.on {
            self.index.remove(key);
            return;
        }
        let Some(p) = self.index.get(key).map(|p| Arc::<str>::from(p.as_str())) else {
            return;
        };
        self.index.remove(key);
        if let Some(n) = self.cluster.interest.get_mut(&p) {
            *n -= 1;
            if *n == 0 {
                self.cluster.interest.remove(&p);
                self.cluster
                    .interest_out
                    .push_back(InterestChange::Remove(p));
            }
        }
    }
}
