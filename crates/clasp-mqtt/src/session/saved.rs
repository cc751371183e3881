//! A session in the form kept across a clean restart (`crate::persist`), and back.

use std::time::Duration;

use bytes::Bytes;

use super::Session;
use super::queue::Pending;
use crate::door::Door;
use crate::packet::{SubRequest, Version};
use crate::persist::{self, Saved, SavedMsg, SavedSub};

impl Session {
    /// The session as stored across a restart, expiring `keep` from now.
    pub(crate) fn to_saved(&self, client_id: &str, token: Option<String>, keep: Duration) -> Saved {
        let msg = |p: &Pending, pkid: Option<u16>| SavedMsg {
            topic: p.topic.clone(),
            payload: hex::encode(&p.payload),
            qos: p.qos,
            retain: p.retain,
            state: p.state,
            pkid,
            released: p.released,
        };
        let mut unacked: Vec<(&u16, &(u64, Pending))> = self.inflight.iter().collect();
        unacked.sort_by_key(|(_, (seq, _))| *seq);
        let pending = unacked
            .into_iter()
            .map(|(id, (_, p))| msg(p, Some(*id)))
            .chain(self.backlog.iter().map(|p| msg(p, p.redelivery)))
            .collect();
        let mut subs: Vec<SavedSub> = self
            .subs()
            .map(|s| SavedSub {
                filter: s.filter.clone(),
                qos: s.qos,
                rap: s.rap,
                no_local: s.no_local,
                id: s.id,
            })
            .collect();
        subs.sort_by(|a, b| a.filter.cmp(&b.filter));
        Saved {
            client_id: client_id.to_owned(),
            v5: self.version == Version::V5,
            token,
            expires_ms: persist::expires_ms(keep),
            subs,
            pending,
            qos2: self.qos2.iter().copied().collect(),
            next_pkid: self.next_pkid,
        }
    }

    /// Puts back what `saved` kept: its subscriptions (through `door`, so the router decides
    /// afresh what the token allows), the publishes waiting for the client, and the packet
    /// ids in use.
    pub(crate) fn restore_from(&mut self, saved: &Saved, door: &mut impl Door) {
        for sub in &saved.subs {
            let code = self.subscribe_one(
                SubRequest {
                    filter: sub.filter.clone(),
                    qos: sub.qos,
                    rap: sub.rap,
                    retain_handling: 2,
                    no_local: sub.no_local,
                },
                sub.id,
                door,
            );
            if code.is_error() {
                tracing::info!(
                    client_id = saved.client_id,
                    filter = sub.filter,
                    code = code.code(),
                    "subscription of a kept MQTT session not restored"
                );
            }
        }
        for m in &saved.pending {
            let Ok(payload) = hex::decode(&m.payload) else {
                continue;
            };
            let p = Pending {
                topic: m.topic.clone(),
                payload: Bytes::from(payload),
                qos: m.qos.min(2),
                retain: m.retain,
                state: m.state,
                redelivery: None,
                props: None,
                expires_at: None,
                released: m.released && m.qos == 2 && m.pkid.is_some(),
            };
            let queued = match m.pkid {
                Some(id) => self.restore_inflight(id, p),
                None => Err(p),
            };
            if let Err(p) = queued {
                self.push_back(p);
            }
        }
        self.trim_offline();
        self.qos2 = saved.qos2.iter().copied().collect();
        self.next_pkid = saved.next_pkid.max(1);
    }
}
