//! Publishes to the client: the in-flight window of QoS 1 and 2 publishes awaiting their
//! acknowledgement (PUBACK; PUBREC then PUBCOMP), the backlog of those waiting for room in it,
//! and the offline queue of a parked session.

use std::time::Instant;

use bytes::Bytes;

use super::meta::seconds_left;
use super::{End, Session};
use crate::packet::{DisconnectReason, Outbound, PubAckReason, PubCompReason, PublishProps};

/// A publish to a client, not yet sent (or sent and not acknowledged).
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    /// From a SET: only its latest value matters while the client is away.
    pub(crate) state: bool,
    /// Sent before and not acknowledged: its packet id, to send it again with DUP.
    pub(crate) redelivery: Option<u16>,
    /// MQTT 5 properties to send with it (the message expiry is set when it is sent).
    pub(crate) props: Option<Box<PublishProps>>,
    /// When it expires: it is not sent after that.
    pub(crate) expires_at: Option<Instant>,
    /// QoS 2: PUBREC came and PUBREL was sent; only PUBCOMP is awaited.
    pub(crate) released: bool,
}

impl Pending {
    /// What it costs in a queue, roughly.
    pub(crate) fn size(&self) -> usize {
        self.topic.len() + self.payload.len() + 32
    }
}

impl Session {
    /// Sends `p` now if the window has room and nothing waits before it; queues it otherwise
    /// (offline: see [`Session::queue_offline`]). A client that lets the backlog pass its
    /// limits is disconnected as too slow.
    pub(super) fn queue(&mut self, p: Pending) {
        if self.offline {
            self.queue_offline(p);
            return;
        }
        if !self.backlog.is_empty() || (p.qos > 0 && self.inflight.len() >= self.window) {
            let cfg = &self.ctx.config;
            if self.backlog.len() >= cfg.max_backlog
                || self.backlog_bytes + p.size() > cfg.max_backlog_bytes
            {
                tracing::info!("MQTT client too slow to acknowledge; disconnecting");
                self.close(DisconnectReason::QuotaExceeded, End::Closed);
                return;
            }
            self.push_back(p);
            return;
        }
        self.send_publish(p, None);
    }

    pub(crate) fn push_back(&mut self, p: Pending) {
        self.backlog_bytes += p.size();
        self.backlog.push_back(p);
    }

    fn push_front(&mut self, p: Pending) {
        self.backlog_bytes += p.size();
        self.backlog.push_front(p);
    }

    fn take_backlog(&mut self, i: usize) -> Option<Pending> {
        let p = self.backlog.remove(i)?;
        self.backlog_bytes -= p.size();
        Some(p)
    }

    /// Keeps `p` for a client that is away: QoS 1 messages, and every SET (only the latest
    /// per topic, so the client gets the current state back whatever its QoS). QoS 0 events
    /// are not kept (MQTT leaves that to the server). A full queue drops its oldest message.
    fn queue_offline(&mut self, p: Pending) {
        if p.qos == 0 && !p.state {
            return;
        }
        if p.state
            && let Some(i) = self
                .backlog
                .iter()
                .position(|q| q.state && q.redelivery.is_none() && q.topic == p.topic)
        {
            self.take_backlog(i);
        }
        self.push_back(p);
        self.trim_offline();
    }

    /// Drops the oldest queued messages while the queue is over its count or byte limit.
    /// Unacknowledged publishes waiting to be sent again are kept (MQTT requires them; the
    /// in-flight window bounds them).
    pub(crate) fn trim_offline(&mut self) {
        let cfg = &self.ctx.config;
        let (max, max_bytes) = (cfg.max_offline_messages.max(1), cfg.max_offline_bytes);
        while self.backlog.len() > max || self.backlog_bytes > max_bytes {
            let Some(i) = self.backlog.iter().position(|p| p.redelivery.is_none()) else {
                break;
            };
            self.take_backlog(i);
            self.count_offline_drop();
        }
    }

    /// Sends `p`; `dup` is the packet id of an earlier send of it (a redelivery). An expired
    /// publish is dropped instead (and its packet id freed); a QoS 2 publish already
    /// released is sent as its PUBREL again.
    fn send_publish(&mut self, p: Pending, dup: Option<u16>) {
        let now = self.now;
        if p.released
            && let Some(pkid) = dup
        {
            self.emit(Outbound::PubRel {
                pkid,
                reason: PubCompReason::Success,
            });
            self.sent_seq += 1;
            self.inflight.insert(pkid, (self.sent_seq, p));
            return;
        }
        if p.expires_at.is_some_and(|at| at <= now) {
            if let Some(id) = dup {
                self.inflight.remove(&id);
            }
            return;
        }
        let props = match (p.expires_at, &p.props) {
            (None, props) => props.clone(),
            (Some(at), props) => {
                let mut props = props.clone().unwrap_or_default();
                props.message_expiry = Some(seconds_left(at, now));
                Some(props)
            }
        };
        let pkid = match dup {
            Some(id) => id,
            None if p.qos > 0 => {
                let mut id = self.next_pkid;
                while self.inflight.contains_key(&id) || self.reserved.contains(&id) {
                    id = id.wrapping_add(1).max(1);
                }
                self.next_pkid = id.wrapping_add(1).max(1);
                id
            }
            None => 0,
        };
        if p.qos == 0 {
            // Nothing to keep: the packet takes the topic and payload.
            self.emit(Outbound::Publish {
                topic: p.topic,
                payload: p.payload,
                qos: 0,
                retain: p.retain,
                pkid,
                dup: false,
                props,
            });
            return;
        }
        let sent = self.try_emit(Outbound::Publish {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            qos: p.qos,
            retain: p.retain,
            pkid,
            dup: dup.is_some(),
            props,
        });
        if sent {
            self.sent_seq += 1;
            self.inflight.insert(pkid, (self.sent_seq, p));
        } else {
            // Never on the wire, so never acknowledged: keeping the id would shrink the
            // in-flight window for good.
            self.inflight.remove(&pkid);
        }
    }

    /// Sends what waits in the backlog, as far as the window allows.
    pub(super) fn pump_backlog(&mut self) {
        while let Some(p) = self.backlog.front() {
            if p.qos > 0 && self.inflight.len() >= self.window {
                break;
            }
            if let Some(mut p) = self.take_backlog(0) {
                let dup = p.redelivery.take();
                if let Some(id) = dup {
                    self.reserved.remove(&id);
                }
                self.send_publish(p, dup);
            }
        }
    }

    /// After a resume: the unacknowledged QoS 1 publishes again (same packet ids, DUP set,
    /// in their first order, as many as the client's in-flight window takes; the rest wait
    /// first in the queue), then what was queued while the client was away.
    pub(crate) fn redeliver(&mut self) {
        let mut unacked: Vec<(u16, (u64, Pending))> = self.inflight.drain().collect();
        unacked.sort_by_key(|(_, (seq, _))| *seq);
        let mut later = Vec::new();
        for (i, (pkid, (_, mut p))) in unacked.into_iter().enumerate() {
            if i < self.window {
                self.send_publish(p, Some(pkid));
            } else {
                p.redelivery = Some(pkid);
                self.reserved.insert(pkid);
                later.push(p);
            }
        }
        for p in later.into_iter().rev() {
            self.push_front(p);
        }
        self.pump_backlog();
    }

    /// PUBACK (QoS 1) from the client.
    pub(super) fn on_puback(&mut self, pkid: u16) {
        if self.inflight.get(&pkid).is_some_and(|(_, p)| p.qos == 1) {
            self.inflight.remove(&pkid);
            self.pump_backlog();
        }
    }

    /// PUBREC (QoS 2) from the client: PUBREL follows, or the flow ends if it refused.
    pub(super) fn on_pubrec(&mut self, pkid: u16, reason: PubAckReason) {
        let Some((_, p)) = self.inflight.get_mut(&pkid) else {
            // Not ours (any more): MQTT 5 says so with PUBREL 0x92.
            self.emit(Outbound::PubRel {
                pkid,
                reason: PubCompReason::PacketIdentifierNotFound,
            });
            return;
        };
        if p.qos != 2 {
            return;
        }
        if reason.is_error() {
            self.inflight.remove(&pkid);
            self.pump_backlog();
            return;
        }
        p.released = true;
        self.emit(Outbound::PubRel {
            pkid,
            reason: PubCompReason::Success,
        });
    }

    /// PUBCOMP (QoS 2) from the client: the flow is complete.
    pub(super) fn on_pubcomp(&mut self, pkid: u16) {
        if self
            .inflight
            .get(&pkid)
            .is_some_and(|(_, p)| p.qos == 2 && p.released)
        {
            self.inflight.remove(&pkid);
            self.pump_backlog();
        }
    }

    /// Takes an unacknowledged publish restored from the store back in flight under `pkid`
    /// (`false`: the id is not usable, queue it instead).
    pub(crate) fn restore_inflight(&mut self, pkid: u16, p: Pending) -> Result<(), Pending> {
        if p.qos == 0 || pkid == 0 || self.inflight.contains_key(&pkid) {
            return Err(p);
        }
        self.sent_seq += 1;
        self.inflight.insert(pkid, (self.sent_seq, p));
        Ok(())
    }
}
