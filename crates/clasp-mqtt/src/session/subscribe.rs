//! SUBSCRIBE and UNSUBSCRIBE: each MQTT filter is one or two CLASP subscriptions (see
//! `crate::topic`), submitted through the door; the router tags what it delivers with their
//! ids, which lead back to the MQTT subscription without matching patterns again.

use clasp_proto::{ErrorCode, Message, SignalTypes, Subscribe, Unsubscribe};
use clasp_router::core::Refusal;

use super::Session;
use crate::door::Door;
use crate::packet::{Outbound, SubAckReason, SubRequest, UnsubAckReason};
use crate::topic::Filter;

/// Most filters of one SUBSCRIBE packet that are installed; the rest are refused.
const MAX_FILTERS_PER_SUBSCRIBE: usize = 64;

/// What a delivery needs of the MQTT subscription a CLASP subscription id belongs to: a copy
/// per id, found with one integer lookup (see [`Session::sub_of`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SubView {
    pub(crate) qos: u8,
    pub(crate) rap: bool,
    pub(crate) no_local: bool,
    /// The filter starts with a wildcard: it does not match `$` topics.
    pub(crate) wildcard_first: bool,
    /// MQTT 5 subscription identifier.
    pub(crate) id: Option<u32>,
    /// See [`Sub::snapshot`].
    pub(crate) snapshot: Option<u64>,
}

impl Sub {
    fn view(&self) -> SubView {
        SubView {
            qos: self.qos,
            rap: self.rap,
            no_local: self.no_local,
            wildcard_first: self.matcher.wildcard_first,
            id: self.id,
            snapshot: self.snapshot,
        }
    }
}

/// One MQTT subscription and the CLASP subscriptions behind it.
#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) filter: String,
    pub(crate) matcher: Filter,
    /// Its CLASP subscription ids, one per pattern of `matcher`.
    pub(crate) ids: Vec<u32>,
    /// The granted QoS.
    pub(crate) qos: u8,
    /// MQTT 5 retain-as-published.
    pub(crate) rap: bool,
    /// MQTT 5 no-local.
    pub(crate) no_local: bool,
    /// MQTT 5 subscription identifier, sent with what it matches.
    pub(crate) id: Option<u32>,
    /// The SUBSCRIBE packet whose snapshot of the current state is to be sent as retained
    /// messages (per its retain handling), if any.
    pub(crate) snapshot: Option<u64>,
}

impl Session {
    pub(super) fn on_subscribe(
        &mut self,
        pkid: u16,
        filters: Vec<SubRequest>,
        id: Option<u32>,
        door: &mut impl Door,
    ) {
        self.subscribe_seq += 1;
        let mut codes = Vec::with_capacity(filters.len());
        for (i, req) in filters.into_iter().enumerate() {
            // Quota exceeded (a plain failure for MQTT 3.1.1).
            codes.push(if i < MAX_FILTERS_PER_SUBSCRIBE {
                self.subscribe_one(req, id, door)
            } else {
                SubAckReason::QuotaExceeded
            });
        }
        self.emit(Outbound::SubAck { pkid, codes });
    }

    /// Installs one filter (or updates the options of an existing one); the SUBACK reason.
    pub(crate) fn subscribe_one(
        &mut self,
        req: SubRequest,
        id: Option<u32>,
        door: &mut impl Door,
    ) -> SubAckReason {
        let matcher = match self.ctx.topics.filter(&req.filter) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "MQTT filter refused");
                return SubAckReason::TopicFilterInvalid;
            }
        };
        let granted = req.qos.min(2);
        let existing = self.subs.contains_key(&req.filter);
        // A shared subscription gets no retained messages (MQTT 5 §4.8.2).
        let send_retained = match req.retain_handling {
            _ if matcher.share.is_some() => false,
            0 => true,
            1 => !existing,
            _ => false,
        };
        // Every session of the listener subscribing `$share/{group}/{filter}` joins the same
        // group of the router.
        let group = matcher.share.as_ref().map(|g| {
            let filter = req.filter.splitn(3, '/').nth(2).unwrap_or_default();
            format!("mqtt:{}\0{g}\0{filter}", self.ctx.topics.namespace())
        });
        let snapshot = send_retained.then_some(self.subscribe_seq);
        if let Some(sub) = self.subs.get_mut(&req.filter) {
            sub.qos = granted;
            sub.rap = req.rap;
            sub.no_local = req.no_local;
            sub.snapshot = snapshot;
            sub.id = id;
            let view = sub.view();
            for i in &sub.ids {
                self.by_id.insert(*i, view);
            }
        } else {
            let ids: Vec<u32> = (0..matcher.patterns.len())
                .map(|_| {
                    let id = self.next_sub_id;
                    self.next_sub_id = self.next_sub_id.wrapping_add(1).max(1);
                    id
                })
                .collect();
            let sub = Sub {
                filter: req.filter.clone(),
                matcher,
                ids,
                qos: granted,
                rap: req.rap,
                no_local: req.no_local,
                id,
                snapshot,
            };
            let view = sub.view();
            for i in &sub.ids {
                self.by_id.insert(*i, view);
            }
            self.subs.insert(req.filter.clone(), sub);
        }
        // One request per pattern: for `a/#` a token may allow `a/**` but not `a` itself, and
        // the filter then stands for what is allowed.
        let pairs: Vec<(u32, String)> = self.subs[&req.filter]
            .ids
            .iter()
            .zip(&self.subs[&req.filter].matcher.patterns)
            .map(|(id, p)| (*id, p.as_str().to_owned()))
            .collect();
        let mut accepted = Vec::new();
        let mut refusal: Option<Refusal> = None;
        for (i, (id, pattern)) in pairs.into_iter().enumerate() {
            let s = Subscribe {
                id,
                pattern: pattern.as_str().into(),
                types: SignalTypes::ALL,
                options: Default::default(),
            };
            let answer = match &group {
                Some(g) => door.subscribe_shared(self.conn, s, g),
                None => door.submit(self.conn, Message::Subscribe(s), None),
            };
            match answer {
                Ok(_) => accepted.push(i),
                Err(r) => {
                    tracing::debug!(filter = req.filter, code = r.code().code(), reason = %r, "router refused an MQTT subscription");
                    refusal.get_or_insert(r);
                }
            }
        }
        if accepted.is_empty() {
            if let Some(sub) = self.remove_sub(&req.filter) {
                self.unsubscribe_ids(&sub.ids, door);
            }
            return match refusal.map(|r| r.code()) {
                Some(ErrorCode::Forbidden | ErrorCode::Unauthorized) => SubAckReason::NotAuthorized,
                Some(ErrorCode::RateLimited) => SubAckReason::QuotaExceeded,
                Some(ErrorCode::InvalidPattern | ErrorCode::InvalidAddress) => {
                    SubAckReason::TopicFilterInvalid
                }
                _ => SubAckReason::UnspecifiedError,
            };
        }
        if let Some(sub) = self.subs.get_mut(&req.filter)
            && accepted.len() < sub.ids.len()
        {
            let dropped: Vec<u32> = sub
                .ids
                .iter()
                .enumerate()
                .filter(|(i, _)| !accepted.contains(i))
                .map(|(_, id)| *id)
                .collect();
            keep_indices(&mut sub.ids, &accepted);
            keep_indices(&mut sub.matcher.patterns, &accepted);
            for id in dropped {
                self.by_id.remove(&id);
            }
        }
        SubAckReason::granted(granted)
    }

    /// Forgets the MQTT subscription of `filter` (not its CLASP subscriptions).
    fn remove_sub(&mut self, filter: &str) -> Option<Sub> {
        let sub = self.subs.remove(filter)?;
        for id in &sub.ids {
            self.by_id.remove(id);
        }
        Some(sub)
    }

    fn unsubscribe_ids(&mut self, ids: &[u32], door: &mut impl Door) {
        for id in ids {
            let _ = door.submit(
                self.conn,
                Message::Unsubscribe(Unsubscribe { id: *id }),
                None,
            );
        }
    }

    pub(super) fn on_unsubscribe(&mut self, pkid: u16, filters: Vec<String>, door: &mut impl Door) {
        let mut codes = Vec::with_capacity(filters.len());
        for f in filters {
            match self.remove_sub(&f) {
                Some(sub) => {
                    self.unsubscribe_ids(&sub.ids, door);
                    codes.push(UnsubAckReason::Success);
                }
                None => codes.push(UnsubAckReason::NoSubscriptionExisted),
            }
        }
        self.emit(Outbound::UnsubAck { pkid, codes });
    }

    /// The MQTT subscriptions, for saving.
    pub(crate) fn subs(&self) -> impl Iterator<Item = &Sub> {
        self.subs.values()
    }

    /// What a delivery needs of the MQTT subscription CLASP subscription `id` belongs to.
    pub(super) fn sub_of(&self, id: u32) -> Option<&SubView> {
        self.by_id.get(&id)
    }
}

/// Keeps the elements of `v` at the positions in `keep`.
fn keep_indices<T>(v: &mut Vec<T>, keep: &[usize]) {
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        keep.contains(&(i - 1))
    });
}
