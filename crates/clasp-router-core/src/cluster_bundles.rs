//! Bundles in cluster mode, atomic for readers on every router.
//!
//! The authority (a JetStream key-value bucket, see [`crate::cluster`]) decides each SET on
//! its own: it has no multi-param transaction. So a bundle is made atomic for readers this way:
//!
//! - **Writing router.** The bundle is checked here as on one router (scopes, revisions and
//!   locks as this replica knows them; nothing is sent if one SET fails). Its SETs go to the
//!   authority one after another, each carrying the same [`BundleMark`] (an id unique across
//!   the cluster, the number of SETs, and the bundle's signals as PUBLISH frames). Nothing is
//!   applied here until every SET has its answer (what the bucket's watch brings of them
//!   meanwhile is held too); then the written ones are applied and fanned out together with the
//!   signals, in one flush, and the bundle is ACKed. If the authority refused some SETs while
//!   others were written (a revision that changed on another router in between, the cluster
//!   unreachable), the written ones stand and the writer is told how many
//!   (`BUNDLE partly applied`); that is counted.
//! - **Other routers.** A change carrying a mark is held until all the bundle's SETs have
//!   arrived, then they are applied and fanned out together with the signals the mark
//!   carries. A bundle whose SETs do not all arrive within [`GATHER_US`] (one was
//!   overwritten before this router read it, or its writer refused or died mid-way) is
//!   applied as far as it came, and counted. A SET of a bundle applied already (a resumed
//!   watch brings it again) is applied alone, without the signals.
//! - A param removed (deleted, expired) while an older write of it is held is not brought back
//!   when the held write is applied.
//! - **Bundles of signals only** go to the other routers as one message (see
//!   [`SignalOut::Bundle`]), fanned out there in one go ([`Router::publish_remote_bundle`]).
//!
//! The signals travel with every SET of the bundle, so they are bounded ([`MAX_MARK_SIGNALS`],
//! [`MAX_MARK_BYTES`]); a larger bundle is refused before anything is written.

use std::collections::VecDeque;

use rustc_hash::FxHashSet;

use super::cluster::{BundleMark, ClusterOutcome, Pending, RemoteChange, SignalOut};
use super::*;

/// How long another router's bundle is gathered before what arrived of it is applied.
pub(crate) const GATHER_US: u64 = 1_000_000;
/// Signals a bundle with SETs may carry in a cluster (the record's own limit).
pub const MAX_MARK_SIGNALS: usize = 4096;
/// Bytes of signals (frames and their lengths) a bundle with SETs may carry in a cluster.
pub const MAX_MARK_BYTES: usize = 128 * 1024;
/// Other routers' bundles remembered once applied.
const FINISHED_KEPT: usize = 4096;

/// Bundles in cluster mode: this router's waiting for the authority, the other routers' being
/// gathered.
#[derive(Default)]
pub(super) struct Bundles {
    /// Upper 32 bits of this router's bundle ids (random), and the count below them.
    base: u64,
    next: u32,
    /// The mark of the bundle whose SETs are being queued (read by `cluster_set`).
    pub(super) marking: Option<Arc<BundleMark>>,
    /// While set, signals published here are collected rather than handed to the other
    /// routers one by one.
    pub(super) collecting: Option<Vec<(Arc<str>, Bytes)>>,
    own: FxHashMap<u64, Own>,
    gathering: FxHashMap<u64, Gathering>,
    /// Other routers' bundles applied lately (ids, oldest first).
    finished: VecDeque<u64>,
    finished_set: FxHashSet<u64>,
    /// While bundles are held: the latest revision at which each param was removed.
    removed: FxHashMap<Arc<str>, u64>,
}

/// A bundle of this router waiting for the authority's answers.
struct Own {
    conn: ConnId,
    qos: Qos,
    waiting: usize,
    total: usize,
    written: Vec<(Pending, u64)>,
    refused: Option<(Str, Refusal)>,
    publishes: Vec<Publish>,
    /// Its SETs as the bucket's watch brought them before the answers.
    echoes: Vec<RemoteChange>,
}

/// Another router's bundle being gathered.
struct Gathering {
    mark: Arc<BundleMark>,
    changes: Vec<RemoteChange>,
}

impl Bundles {
    fn new_id(&mut self) -> u64 {
        if self.base == 0 {
            use std::hash::BuildHasher;
            let h = std::collections::hash_map::RandomState::new().hash_one(0u8);
            self.base = (h | 1) << 32;
        }
        self.next = self.next.wrapping_add(1);
        self.base | u64::from(self.next)
    }

    fn is_own(&self, id: u64) -> bool {
        self.base != 0 && id >> 32 == self.base >> 32
    }

    fn holding(&self) -> bool {
        !self.own.is_empty() || !self.gathering.is_empty()
    }

    /// A param was removed at `revision`: remembered while writes are held.
    pub(super) fn note_removed(&mut self, address: &str, revision: u64) {
        if self.holding() {
            let r = self.removed.entry(Arc::from(address)).or_insert(0);
            *r = (*r).max(revision);
        }
    }

    /// Whether a held write at `revision` is older than a removal of its param.
    fn removed_since(&self, address: &str, revision: u64) -> bool {
        self.removed.get(address).is_some_and(|r| *r > revision)
    }

    fn finish(&mut self, id: u64) {
        if self.finished_set.insert(id) {
            self.finished.push_back(id);
            if self.finished.len() > FINISHED_KEPT
                && let Some(old) = self.finished.pop_front()
            {
                self.finished_set.remove(&old);
            }
        }
    }

    fn forget_removals_when_idle(&mut self) {
        if !self.holding() {
            self.removed.clear();
        }
    }
}

impl<H: Clone> Router<H> {
    /// Runs a checked bundle in cluster mode (see the module docs).
    pub(super) fn cluster_bundle(&mut self, conn: ConnId, qos: Qos, bundle: Bundle, now: Now) {
        let mut sets = Vec::new();
        let mut publishes = Vec::new();
        for m in bundle.messages {
            match m {
                Message::Set(s) => sets.push(s),
                // P2P signalling is routed to its target, not fanned out: not held back.
                Message::Publish(p) if p.address.starts_with("/clasp/p2p/") => {
                    self.publish_owned(conn, &p, now);
                }
                Message::Publish(p) => publishes.push(p),
                _ => {}
            }
        }
        if sets.is_empty() {
            self.cluster.bundles.collecting = Some(Vec::new());
            for p in &publishes {
                self.publish_owned(conn, p, now);
            }
            if let Some(c) = self.cluster.bundles.collecting.take()
                && !c.is_empty()
            {
                self.cluster.publishes.push_back(SignalOut::Bundle(c));
            }
            if qos.wants_ack() {
                self.ack_write(conn, qos, Ack::default(), now);
            }
            return;
        }
        let signals: Vec<Bytes> = publishes
            .iter()
            .filter_map(|p| encode(&Message::Publish(p.clone())).ok())
            .collect();
        let bytes: usize = signals.iter().map(|f| 4 + f.len()).sum();
        if signals.len() > MAX_MARK_SIGNALS || bytes > MAX_MARK_BYTES {
            let r = Refusal::ClusterBundleTooLarge {
                signals: signals.len(),
                bytes,
            };
            self.refuse(conn, r, None);
            return;
        }
        let id = self.cluster.bundles.new_id();
        let total = sets.len();
        self.cluster.bundles.marking = Some(Arc::new(BundleMark {
            id,
            sets: u32::try_from(total).unwrap_or(u32::MAX),
            signals,
        }));
        let queued = self.cluster.out.len();
        let mut refused = None;
        for s in &sets {
            if let Err(r) = self.on_set(conn, Qos::Fire, &SetReq::owned(s), now) {
                refused = Some((s.address.clone(), r));
                break;
            }
        }
        self.cluster.bundles.marking = None;
        if let Some((address, cause)) = refused {
            // Nothing has left yet: withdraw the SETs already queued.
            for w in self.cluster.out.drain(queued..) {
                self.cluster.pending.remove(&w.id);
            }
            let r = Refusal::BundleFailed {
                address: address.to_string(),
                cause: Box::new(cause),
            };
            self.refuse(conn, r, Some(address));
            return;
        }
        self.cluster.bundles.own.insert(
            id,
            Own {
                conn,
                qos,
                waiting: total,
                total,
                written: Vec::new(),
                refused: None,
                publishes,
                echoes: Vec::new(),
            },
        );
    }

    /// The authority's answer to one SET of a bundle of this router; once all are in, the
    /// bundle is applied, fanned out and answered.
    pub(super) fn bundle_member_decided(&mut self, p: Pending, outcome: ClusterOutcome, now: Now) {
        let Some(id) = p.write.bundle.as_ref().map(|m| m.id) else {
            return;
        };
        let refusal = match &outcome {
            ClusterOutcome::Written(_) => None,
            other => Some(self.outcome_refusal(&p, other.clone())),
        };
        let Some(own) = self.cluster.bundles.own.get_mut(&id) else {
            return;
        };
        own.waiting -= 1;
        match (outcome, refusal) {
            (ClusterOutcome::Written(rev), _) => own.written.push((p, rev)),
            (_, Some(r)) => {
                own.refused.get_or_insert((p.ack_address, r));
            }
            (_, None) => {}
        }
        if own.waiting > 0 {
            return;
        }
        let Some(own) = self.cluster.bundles.own.remove(&id) else {
            return;
        };
        let present = self.session(own.conn).is_some();
        let mut last_revision = None;
        for (p, rev) in &own.written {
            if !self.cluster.bundles.removed_since(&p.write.address, *rev) {
                self.apply_written(p, *rev, present, now);
            }
            last_revision = Some(*rev);
        }
        // What the watch brought of them: applied if newer (a write whose answer was lost on
        // the way still stands).
        for c in &own.echoes {
            if !self.cluster.bundles.removed_since(&c.address, c.revision) {
                self.apply_remote_change(c, now);
            }
        }
        self.cluster.bundles.forget_removals_when_idle();
        if !own.written.is_empty() && present {
            // The other routers have the signals from the SETs' marks.
            self.cluster.bundles.collecting = Some(Vec::new());
            for s in &own.publishes {
                self.publish_owned(own.conn, s, now);
            }
            self.cluster.bundles.collecting = None;
        }
        if own.refused.is_some() && !own.written.is_empty() {
            self.metrics.cluster_bundles_partial += 1;
        }
        match own.refused {
            Some((address, cause)) if present => {
                let r = if own.written.is_empty() {
                    Refusal::BundleFailed {
                        address: address.to_string(),
                        cause: Box::new(cause),
                    }
                } else {
                    Refusal::BundlePartial {
                        address: address.to_string(),
                        cause: Box::new(cause),
                        written: own.written.len(),
                        total: own.total,
                    }
                };
                self.refuse(own.conn, r, Some(address));
            }
            Some(_) => {}
            None if present && own.qos.wants_ack() => {
                let ack = Ack {
                    revision: last_revision,
                    ..Ack::default()
                };
                self.ack_write(own.conn, own.qos, ack, now);
            }
            None => {}
        }
    }

    /// A change from the authority: `Some` to apply now, or `None` when it was held as part
    /// of another router's bundle (applied with the rest of the bundle).
    pub(super) fn gather_remote(&mut self, change: RemoteChange, now: Now) -> Option<RemoteChange> {
        let Some(mark) = change.bundle.clone() else {
            return Some(change);
        };
        let b = &mut self.cluster.bundles;
        if b.is_own(mark.id) {
            // This router's own bundle: applied with the rest when the answers are in.
            return match b.own.get_mut(&mark.id) {
                Some(own) => {
                    own.echoes.push(change);
                    None
                }
                None => Some(change),
            };
        }
        if b.finished_set.contains(&mark.id) {
            // Applied already: this SET alone (the signals went with the bundle).
            return Some(change);
        }
        let g = b.gathering.entry(mark.id).or_insert_with(|| {
            self.timers.push(Reverse((
                now.mono + GATHER_US,
                Timer::ClusterBundle(mark.id),
            )));
            Gathering {
                mark: mark.clone(),
                changes: Vec::new(),
            }
        });
        if g.changes.iter().all(|c| c.revision != change.revision) {
            g.changes.push(change);
        }
        if g.changes.len() >= g.mark.sets as usize {
            self.metrics.cluster_bundles += 1;
            self.apply_gathered(mark.id, now);
        }
        None
    }

    /// Applies what arrived of another router's bundle, with its signals, in one flush.
    /// From the gathering timer: the rest did not come in time.
    pub(super) fn apply_gathered(&mut self, id: u64, now: Now) -> bool {
        let Some(mut g) = self.cluster.bundles.gathering.remove(&id) else {
            return false;
        };
        self.cluster.bundles.finish(id);
        g.changes.sort_by_key(|c| c.revision);
        for c in &g.changes {
            if !self.cluster.bundles.removed_since(&c.address, c.revision) {
                self.apply_remote_change(c, now);
            }
        }
        self.cluster.bundles.forget_removals_when_idle();
        for f in &g.mark.signals {
            self.fan_out_remote(f, now);
        }
        self.flush();
        true
    }

    /// The gathering timer of another router's bundle ran out.
    pub(super) fn gather_timeout(&mut self, id: u64, now: Now) {
        if self.apply_gathered(id, now) {
            self.metrics.cluster_bundles_partial += 1;
        }
    }

    /// The signals of another router's bundle without SETs: fanned out together.
    pub fn publish_remote_bundle(&mut self, frames: &[Bytes], now: Now) {
        self.last_now = now;
        for f in frames {
            self.fan_out_remote(f, now);
        }
        self.flush();
    }
}
