//! Cluster mode: params decided by an outside authority shared by several routers (the
//! `clasp-cluster` crate's JetStream key-value bucket), the router's own store a replica of it.
//!
//! A SET is checked here as always (scopes, address, size, capacity, locks as known), then
//! handed to the shell as a [`ClusterWrite`] ([`Router::poll_cluster_write`]) instead of being
//! applied. The shell's answer, [`Router::cluster_written`], applies it with the authority's
//! revision, fans it out and ACKs it, or refuses it (a revision conflict decided by the
//! authority for every router at once, or the authority unreachable). Changes made through
//! other routers arrive with [`Router::apply_remote`] and are applied and fanned out when they
//! are newer than what is held, so each change reaches a subscriber once whichever way it
//! comes first. Revisions are the authority's: a param's revisions grow, with gaps.
//!
//! Signals (events, streams, gestures, timelines) published by this router's sessions are
//! handed to the shell as they are fanned out here ([`Router::poll_cluster_publish`]), for the
//! other routers; what they publish comes back through [`Router::publish_remote`] and is
//! fanned out here only, never handed on again. The shell learns which patterns this router's
//! sessions subscribe to ([`Router::poll_interest`], counted per pattern), so it asks the
//! cluster only for traffic someone here wants.

use std::collections::VecDeque;

use super::*;

/// How long this router counts a lock its own session just took, until the lock bucket's
/// watch reports it with its lease.
const LOCAL_LOCK_HOLD_US: u64 = 10_000_000;

/// A SET for the authority to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterWrite {
    /// Given back with the outcome.
    pub id: u64,
    /// The param.
    pub address: Arc<str>,
    /// The new value.
    pub value: clasp_proto::Value,
    /// The writing session.
    pub writer: Arc<str>,
    /// Wall-clock µs of the write.
    pub timestamp: u64,
    /// The revision the writer expects the param to be at (0: it must not exist).
    pub expected: Option<u64>,
    /// Take the param's lock for the writer first.
    pub lock: bool,
    /// Release the writer's lock once written.
    pub unlock: bool,
    /// When the param expires (wall-clock µs), if the SET (or the router's default) gives
    /// it a TTL.
    pub expires_at: Option<u64>,
    /// The bundle the SET came in, if any: stored with the write for the other routers.
    pub bundle: Option<Arc<BundleMark>>,
}

/// Which bundle a write belongs to, stored with each of its SETs so every router can apply
/// the bundle's SETs together, with its signals (see `cluster_bundles.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMark {
    /// The bundle's id, unique across the cluster (its upper 32 bits name the router).
    pub id: u64,
    /// How many SETs the bundle holds.
    pub sets: u32,
    /// The bundle's signals: PUBLISH frames, fanned out with the SETs.
    pub signals: Vec<Bytes>,
}

/// What the authority decided about a [`ClusterWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOutcome {
    /// Written at this revision.
    Written(u64),
    /// The expected revision was not the current one.
    Conflict,
    /// Another session (named) holds the param's lock.
    LockHeld(String),
    /// Not written: the authority could not be reached or refused it, for this reason.
    Failed(String),
}

/// A change made through another router (or this one), as the authority reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteChange {
    /// The param.
    pub address: String,
    /// Its revision.
    pub revision: u64,
    /// The new value; `None`: the param was removed.
    pub value: Option<clasp_proto::Value>,
    /// The writing session.
    pub writer: String,
    /// Wall-clock µs of the write.
    pub timestamp: u64,
    /// When the param expires (wall-clock µs), if it has a TTL.
    pub expires_at: Option<u64>,
    /// The bundle it was written in, if any (only for changes seen live, not in the replay
    /// of the state before serving).
    pub bundle: Option<Arc<BundleMark>>,
}

pub(super) struct Pending {
    pub(super) conn: ConnId,
    pub(super) qos: Qos,
    pub(super) ack_address: Str,
    pub(super) expected: Option<u64>,
    pub(super) write: ClusterWrite,
}

/// Signals published here, for the other routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalOut {
    /// One signal: its address and PUBLISH frame.
    One(Arc<str>, Bytes),
    /// The signals of a bundle without SETs, to be delivered together.
    Bundle(Vec<(Arc<str>, Bytes)>),
}

/// A change in what this router's sessions subscribe to, for the shell's cluster
/// subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterestChange {
    /// The first subscription with this pattern.
    Add(Arc<str>),
    /// The last subscription with this pattern ended.
    Remove(Arc<str>),
}

/// P2P signalling for the other routers (protocol.md §11 across a cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum P2pOut {
    /// A session here announced itself (its id and the announce frame): the other routers
    /// tell their subscribers and route signals for it here.
    Announce(Arc<str>, Bytes),
    /// A signal (the PUBLISH frame) for a session on another router.
    Signal(Arc<str>, Bytes),
    /// An announced session here has ended.
    Leave(Arc<str>),
}

/// P2P signalling from another router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum P2pIn {
    /// A session of router `router` announced itself (session, router, announce frame).
    Announce(Arc<str>, Arc<str>, Bytes),
    /// A signal for a session here.
    Signal(Arc<str>, Bytes),
    /// An announced session there has ended.
    Leave(Arc<str>),
    /// A router has gone silent (died, or lost NATS): its sessions have left as far as this
    /// router can tell.
    RouterGone(Arc<str>),
}

/// Cluster-mode state.
#[derive(Default)]
pub(super) struct Cluster {
    pub(super) on: bool,
    next: u64,
    pub(super) out: VecDeque<ClusterWrite>,
    pub(super) pending: FxHashMap<u64, Pending>,
    /// Signals published here, for the other routers.
    pub(super) publishes: VecDeque<SignalOut>,
    /// Bundles: this router's in flight, the other routers' being gathered.
    pub(super) bundles: crate::cluster_bundles::Bundles,
    /// Subscriptions per pattern.
    pub(super) interest: FxHashMap<Arc<str>, usize>,
    pub(super) interest_out: VecDeque<InterestChange>,
    pub(super) p2p_out: VecDeque<P2pOut>,
    /// Announces of sessions on other routers, by session id: (their router, the frame).
    pub(super) remote_peers: FxHashMap<Arc<str>, (Arc<str>, Bytes)>,
    /// Locks as the cluster's lock bucket says: address → (holder, lease end, monotonic µs).
    pub(super) locks: FxHashMap<Arc<str>, (Arc<str>, u64)>,
    /// Locks of this router's sessions to release: (address, session).
    pub(super) releases: VecDeque<(Arc<str>, Arc<str>)>,
    /// Params that expired here, to delete from the authority: (address, revision).
    pub(super) expired: VecDeque<(Arc<str>, u64)>,
}

impl Cluster {
    pub(super) fn has_remote_peers(&self) -> bool {
        !self.remote_peers.is_empty()
    }

    pub(super) fn remote_announces(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.remote_peers.values().map(|(_, f)| f.clone())
    }

    pub(super) fn knows_remote_peer(&self, session: &str) -> bool {
        self.on && self.remote_peers.contains_key(session)
    }
}

impl<H: Clone> Router<H> {
    /// Puts the router in cluster mode (see the [module docs](self)); SETs then wait for
    /// [`Router::cluster_written`]. Durable ACKs are off: the authority's acknowledgement is
    /// what a QoS Commit write waits for.
    pub fn set_clustered(&mut self, on: bool) {
        if on && !self.cluster.on {
            self.commits.durable = false;
            // Interest is counted only in cluster mode: count what is held now.
            let mut interest: FxHashMap<Arc<str>, usize> = FxHashMap::default();
            for p in self.index.patterns() {
                *interest.entry(Arc::from(p.as_str())).or_insert(0) += 1;
            }
            self.cluster
                .interest_out
                .extend(interest.keys().cloned().map(InterestChange::Add));
            self.cluster.interest = interest;
        } else if !on {
            self.cluster.interest.clear();
        }
        self.cluster.on = on;
    }

    /// The next param that expired on this router, to delete from the authority if it still
    /// has that revision: (address, revision).
    pub fn poll_cluster_expired(&mut self) -> Option<(Arc<str>, u64)> {
        self.cluster.expired.pop_front()
    }

    /// Whether the router is in cluster mode.
    pub fn is_clustered(&self) -> bool {
        self.cluster.on
    }

    /// The next write for the authority, in the order the SETs came.
    pub fn poll_cluster_write(&mut self) -> Option<ClusterWrite> {
        self.cluster.out.pop_front()
    }

    /// Writes waiting for the authority's answer.
    pub fn cluster_writes_pending(&self) -> usize {
        self.cluster.pending.len()
    }

    /// A SET in cluster mode: checked, then queued for the authority. `Ok(None)`: the
    /// revision is not known yet.
    pub(super) fn cluster_set(
        &mut self,
        conn: ConnId,
        qos: Qos,
        req: &SetReq<'_>,
        now: Now,
    ) -> Result<Option<u64>, Refusal> {
        let set = &req.set;
        let writer = self.writer_id(conn).ok_or(Refusal::NoSession)?;
        if !self.permits(conn, Action::Write, set.address) {
            return Err(Refusal::Scope(Operation::Write));
        }
        check_address(set.address)?;
        // Capacity, budget and locks as this replica knows them; the revision is the
        // authority's to check.
        let ttl = set.ttl.or(self
            .config
            .param_ttl
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)));
        let expires_at = state::ttl_expiry(now.wall, ttl);
        let write = Write {
            value: set.value,
            expected: None,
            lock: false,
            unlock: false,
            ttl: None,
        };
        self.store.check(set.address, &writer, &write)?;
        self.check_snapshot_fit(set.address, set.value, &writer)?;
        // Locks as the lock bucket says (a lock taken on another router a moment ago may not
        // be known yet: the lock bucket's compare-and-set still stops a second holder).
        if let Some((holder, until)) = self.cluster.locks.get(set.address)
            && *until > now.mono
            && **holder != *writer
        {
            return Err(Refusal::Store(WriteError::LockHeld {
                holder: holder.clone(),
            }));
        }
        let id = self.cluster.next;
        self.cluster.next += 1;
        // As on one router, an expected revision does not stop a write that creates the
        // param; here that write must still create it (0: "must not exist"), so two routers
        // creating one param at once cannot both win.
        let expected = set.revision.map(|r| {
            if self.store.get(set.address).is_some() {
                r
            } else {
                0
            }
        });
        let w = ClusterWrite {
            id,
            address: Arc::from(set.address),
            value: set.value.clone(),
            writer,
            timestamp: now.wall,
            expected,
            lock: set.lock,
            unlock: set.unlock,
            expires_at,
            bundle: self.cluster.bundles.marking.clone(),
        };
        self.cluster.out.push_back(w.clone());
        self.cluster.pending.insert(
            id,
            Pending {
                conn,
                qos,
                ack_address: req.address_str(),
                expected: set.revision,
                write: w,
            },
        );
        Ok(None)
    }

    /// The authority's answer to write `id`: applied, fanned out and ACKed, or refused.
    pub fn cluster_written(&mut self, id: u64, outcome: ClusterOutcome, now: Now) {
        self.last_now = now;
        let Some(p) = self.cluster.pending.remove(&id) else {
            return;
        };
        // The writer may have left meanwhile: its write still stands.
        let present = self.session(p.conn).is_some();
        if p.write.bundle.is_some() {
            self.bundle_member_decided(p, outcome, now);
            self.flush();
            return;
        }
        match outcome {
            ClusterOutcome::Written(revision) => {
                self.apply_written(&p, revision, present, now);
                let w = &p.write;
                if present && p.qos.wants_ack() {
                    let ack = Ack {
                        address: Some(p.ack_address),
                        revision: Some(revision),
                        locked: (w.lock || w.unlock).then_some(w.lock),
                        holder: w.lock.then(|| Str::from(&*w.writer)),
                        correlation_id: None,
                    };
                    self.ack_write(p.conn, p.qos, ack, now);
                }
            }
            refused if present => {
                let r = self.outcome_refusal(&p, refused);
                self.refuse(p.conn, r, Some(p.ack_address));
            }
            ClusterOutcome::Conflict | ClusterOutcome::LockHeld(_) | ClusterOutcome::Failed(_) => {}
        }
        self.flush();
    }

    /// Why a write the authority did not make is refused.
    pub(super) fn outcome_refusal(&self, p: &Pending, outcome: ClusterOutcome) -> Refusal {
        match outcome {
            ClusterOutcome::Written(_) | ClusterOutcome::Conflict => {
                let actual = self.store.get(&p.write.address).map_or(0, |x| x.revision);
                Refusal::Store(WriteError::RevisionConflict {
                    expected: p.expected.unwrap_or(0),
                    actual,
                })
            }
            ClusterOutcome::LockHeld(holder) => Refusal::Store(WriteError::LockHeld {
                holder: Arc::from(holder.as_str()),
            }),
            ClusterOutcome::Failed(why) => Refusal::ClusterUnavailable(why),
        }
    }

    /// Applies a write the authority made at `revision`, and the lock it took or released.
    pub(super) fn apply_written(&mut self, p: &Pending, revision: u64, present: bool, now: Now) {
        let w = &p.write;
        self.apply_authoritative(
            &w.address,
            &w.value,
            revision,
            &w.writer,
            w.timestamp,
            w.expires_at,
            if present {
                Sender::Included(p.conn)
            } else {
                Sender::Router
            },
            now,
        );
        let (address, writer) = (w.address.clone(), w.writer.clone());
        if w.lock {
            if present && let Some(sess) = self.session_mut(p.conn) {
                sess.locks.push(address.clone());
            }
            let until = now.mono + LOCAL_LOCK_HOLD_US;
            let e = self
                .cluster
                .locks
                .entry(address)
                .or_insert((writer.clone(), until));
            e.0 = writer;
            e.1 = e.1.max(until);
        } else if w.unlock {
            if let Some(sess) = self.session_mut(p.conn) {
                sess.locks.retain(|a| *a != address);
            }
            self.cluster.locks.remove(&address);
            self.cluster.releases.push_back((address, writer));
        }
    }

    /// A change the authority reports (made through any router): applied and fanned out if
    /// newer than what is held.
    pub fn apply_remote(&mut self, change: RemoteChange, now: Now) {
        self.last_now = now;
        if let Some(change) = self.gather_remote(change, now) {
            self.apply_remote_change(&change, now);
        }
        self.flush();
    }

    /// Applies one change from the authority (no flush).
    pub(super) fn apply_remote_change(&mut self, change: &RemoteChange, now: Now) {
        let expired = change.expires_at.is_some_and(|at| at <= now.wall);
        match &change.value {
            // Expired already (this router joined, or read it, late): gone here too, and
            // deleted from the authority if no router has yet.
            Some(_) if expired => {
                self.cluster
                    .bundles
                    .note_removed(&change.address, change.revision);
                self.store.remove_at(&change.address, change.revision);
                self.cluster
                    .expired
                    .push_back((Arc::from(change.address.as_str()), change.revision));
            }
            Some(value) => {
                let writer: Arc<str> = Arc::from(change.writer.as_str());
                self.apply_authoritative(
                    &change.address,
                    value,
                    change.revision,
                    &writer,
                    change.timestamp,
                    change.expires_at,
                    Sender::Router,
                    now,
                );
            }
            None => {
                self.cluster
                    .bundles
                    .note_removed(&change.address, change.revision);
                self.store.remove_at(&change.address, change.revision);
            }
        }
    }

    /// Applies a decided write and fans it out, unless something newer is held already.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_authoritative(
        &mut self,
        address: &str,
        value: &clasp_proto::Value,
        revision: u64,
        writer: &Arc<str>,
        timestamp: u64,
        expires_at: Option<u64>,
        sender: Sender,
        now: Now,
    ) {
        let Some(key) = self
            .store
            .apply_at(address, value, revision, writer, timestamp, expires_at)
        else {
            return;
        };
        let broadcast = SetRef {
            address,
            value,
            revision: Some(revision),
            lock: false,
            unlock: false,
            ttl: None,
        };
        if matches!(sender, Sender::Router) {
            self.metrics.cluster_applied += 1;
        }
        let Ok(frame) = encode_set(&broadcast, FrameOptions::default()) else {
            self.metrics.cluster_undeliverable += 1;
            return;
        };
        let numeric = value.as_f64();
        self.fan_out_typed(
            &key,
            SignalType::Param,
            sender,
            numeric,
            now,
            || Outgoing::Param(frame.clone()),
            || {
                Some(Message::Set(clasp_proto::Set {
                    address: Str::from(&*key),
                    value: value.clone(),
                    revision: Some(revision),
                    lock: false,
                    unlock: false,
                    ttl: None,
                }))
            },
        );
    }
}
