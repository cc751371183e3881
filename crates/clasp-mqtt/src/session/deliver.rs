//! What the router delivers to the session, as PUBLISH packets for its client.
//!
//! An update names the CLASP subscriptions that matched; they lead to the MQTT subscriptions
//! (whose `$` rule, no-local, QoS and retain-as-published then apply) without matching the
//! address again. A subscription's snapshot of the current state becomes retained messages
//! when the SUBSCRIBE asked for them (retain handling).

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use clasp_proto::{ErrorCode, Message, PublishPayload, Value};
use clasp_router::core::CloseReason;
use clasp_router::core::adapter::{Delivery, Retained, Update};

use super::meta::Meta;
use super::queue::Pending;
use super::{End, Session};
use crate::packet::{DisconnectReason, PublishProps, Version};
use crate::payload;

impl Session {
    /// Handles what the router delivered, then, if `close` is set, the router's ending of the
    /// session (it says why in an ERROR before).
    pub(crate) fn on_deliveries(
        &mut self,
        deliveries: Vec<Delivery>,
        close: Option<CloseReason>,
        now: Instant,
    ) {
        self.now = now;
        for d in deliveries {
            match d {
                Delivery::Update(u) => self.on_update(&u),
                Delivery::Snapshot { sub, params } => self.on_snapshot(sub, params),
                Delivery::Reply(m) => {
                    if let Message::Error(e) = *m {
                        tracing::debug!(code = e.code.code(), reason = %e.message, "router error for an MQTT session");
                        self.last_error = Some(e.code);
                    }
                }
            }
        }
        if let Some(reason) = close {
            let (code, end) = match (reason, self.last_error) {
                (CloseReason::Shutdown, None) => {
                    (DisconnectReason::ServerShuttingDown, End::Shutdown)
                }
                (_, Some(ErrorCode::TokenExpired | ErrorCode::Unauthorized)) => {
                    (DisconnectReason::NotAuthorized, End::Closed)
                }
                _ => (DisconnectReason::ServerBusy, End::Closed),
            };
            self.close(code, end);
        }
    }

    fn on_update(&mut self, u: &Update) {
        let meta = Meta::of(u.attached.as_ref());
        let meta = meta.as_deref();
        if meta.is_some_and(|m| m.expired(self.now)) {
            return;
        }
        let (address, is_set) = match &*u.message {
            Message::Set(s) => (&s.address, true),
            Message::Publish(p) => (&p.address, false),
            _ => return,
        };
        let Some(topic) = self.ctx.topics.topic(address) else {
            return;
        };
        let dollar = topic.starts_with('$');
        // What it was published with: an MQTT publish says; anything else counts as QoS 1.
        let published = meta.map_or(1, |m| m.qos);
        let mut qos = None;
        let mut rap = false;
        let mut ids = Vec::new();
        for id in u.subs() {
            let Some(s) = self.sub_of(id) else { continue };
            if (u.own && s.no_local) || (dollar && s.wildcard_first) {
                continue;
            }
            qos = qos.max(Some(s.qos.min(published)));
            rap |= s.rap;
            if let Some(i) = s.id
                && !ids.contains(&i)
            {
                ids.push(i);
            }
        }
        let Some(qos) = qos else { return };
        // MQTT 5 retain-as-published: a SET is state, i.e. a retained message; an event was
        // not retained, so it never carries the flag (MQTT-3.3.1-13).
        let retain = is_set && rap && self.version == Version::V5;
        let pending = Pending {
            topic: topic.into_owned(),
            payload: payload_of(&u.message, meta),
            qos,
            retain,
            state: is_set,
            redelivery: None,
            props: with_ids(meta.and_then(|m| m.props.clone()), ids),
            expires_at: meta.and_then(|m| m.expires_at),
            released: false,
        };
        self.queue(pending);
    }

    /// The current state a new subscription matches: retained messages, if its SUBSCRIBE
    /// asked for them.
    fn on_snapshot(&mut self, id: u32, params: Vec<Retained>) {
        let Some(sub) = self.sub_of(id) else { return };
        let Some(seq) = sub.snapshot else { return };
        let (granted, wildcard_first, sub_id) = (sub.qos, sub.wildcard_first, sub.id);
        if self.retained_sent.0 != seq {
            self.retained_sent = (seq, Default::default());
        }
        for r in params {
            let p = r.param;
            let meta = Meta::of(r.attached.as_ref());
            let meta = meta.as_deref();
            // A null param is a cleared retained message.
            if p.value.is_null() || meta.is_some_and(|m| m.expired(self.now)) {
                continue;
            }
            let Some(topic) = self.ctx.topics.topic(&p.address) else {
                continue;
            };
            if wildcard_first && topic.starts_with('$') {
                continue;
            }
            if !self.retained_sent.1.insert(p.address.to_string()) {
                continue;
            }
            let pending = Pending {
                topic: topic.into_owned(),
                payload: meta.map_or_else(|| payload::to_payload(&p.value), |m| m.payload.clone()),
                qos: granted.min(meta.map_or(1, |m| m.qos)),
                retain: true,
                state: true,
                redelivery: None,
                props: with_ids(
                    meta.and_then(|m| m.props.clone()),
                    sub_id.into_iter().collect(),
                ),
                expires_at: meta.and_then(|m| m.expires_at),
                released: false,
            };
            self.queue(pending);
        }
    }

    /// Delivers the client's own event to its matching subscriptions (the router does not
    /// send an event back to its sender; MQTT does, except to no-local subscriptions).
    /// Whether one matched.
    pub(super) fn deliver_own_event(&mut self, address: &str, meta: &Meta) -> bool {
        let Some(topic) = self.ctx.topics.topic(address) else {
            return false;
        };
        let mut qos = None;
        let mut ids = Vec::new();
        for s in self.subs() {
            if !s.no_local && s.matcher.matches(address) {
                qos = qos.max(Some(s.qos.min(meta.qos)));
                ids.extend(s.id);
            }
        }
        let Some(qos) = qos else { return false };
        let pending = Pending {
            topic: topic.into_owned(),
            payload: meta.payload.clone(),
            qos,
            retain: false,
            state: false,
            redelivery: None,
            props: with_ids(meta.props.clone(), ids),
            expires_at: meta.expires_at,
            released: false,
        };
        self.queue(pending);
        true
    }

    /// Counts a message dropped from a full offline queue.
    pub(super) fn count_offline_drop(&mut self) {
        self.dropped += 1;
        self.ctx.offline_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The payload to send for `message`: an MQTT publisher's bytes as they were, or the value
/// as MQTT payload bytes (see [`payload`]).
fn payload_of(message: &Message, meta: Option<&Meta>) -> Bytes {
    if let Some(m) = meta {
        return m.payload.clone();
    }
    match message {
        Message::Set(s) => payload::to_payload(&s.value),
        Message::Publish(p) => match &p.payload {
            PublishPayload::Value(v) => payload::to_payload(v),
            PublishPayload::None => Bytes::new(),
            PublishPayload::Samples(s) => {
                payload::to_payload(&Value::Array(s.iter().map(|f| Value::Float(*f)).collect()))
            }
        },
        _ => Bytes::new(),
    }
}

/// `props` with the subscription identifiers `ids` of the subscriptions that matched.
fn with_ids(props: Option<Box<PublishProps>>, ids: Vec<u32>) -> Option<Box<PublishProps>> {
    if ids.is_empty() {
        return props;
    }
    let mut props = props.unwrap_or_default();
    props.subscription_ids = ids;
    Some(props)
}
