//! The client's PUBLISH: to the router through the door, and its acknowledgement.
//!
//! A retained publish becomes a SET (an empty retained payload clears: a null value), any
//! other an event PUBLISH. The router's answer is the PUBACK's (or PUBREC's) reason. As in
//! MQTT, a client's publish comes back to its own matching subscriptions: the router sends a
//! SET back to its writer (marked as its own), but not an event, so the session delivers its
//! own events itself; MQTT 5 no-local subscriptions skip both.

use clasp_proto::{
    ErrorCode, Message, Publish as ClaspPublish, PublishPayload, Set, SignalType, Value,
};
use clasp_router::core::Refusal;
use std::sync::Arc;
use std::time::Instant;

use super::meta::{Meta, expiry_from};
use super::{End, Session};
use crate::door::Door;
use crate::packet::{DisconnectReason, Outbound, PubAckReason, Publish, Will};
use crate::payload;
use crate::topic::TopicError;

impl Session {
    pub(super) fn on_publish(&mut self, p: Publish, door: &mut impl Door) {
        let Some(p) = self.resolve_alias(p) else {
            return;
        };
        if p.qos == 2 && self.qos2.contains(&p.pkid) {
            // A resend before PUBREL: already applied once.
            self.emit(Outbound::PubRec {
                pkid: p.pkid,
                reason: PubAckReason::Success,
            });
            return;
        }
        let reason = match self.ctx.topics.address(&p.topic) {
            Err(TopicError::WildcardInName(_) | TopicError::Empty) => {
                self.close(DisconnectReason::TopicNameInvalid, End::Violation);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "MQTT publish refused");
                PubAckReason::TopicNameInvalid
            }
            Ok(address) => self.submit_publish(&p, address, door),
        };
        self.ack_publish(&p, reason);
    }

    /// Submits the publish to the router, with its MQTT data attached (see [`Meta`]); the
    /// reason to acknowledge it with.
    fn submit_publish(
        &mut self,
        p: &Publish,
        address: String,
        door: &mut impl Door,
    ) -> PubAckReason {
        let value = if p.retain && p.payload.is_empty() {
            Value::Null
        } else {
            payload::to_value(&p.payload)
        };
        let expiry = p.props.as_ref().and_then(|pp| pp.message_expiry);
        let props = p.props.as_ref().map(|pp| {
            let mut pp = pp.clone();
            pp.message_expiry = None;
            pp.subscription_ids.clear();
            pp
        });
        let meta = Arc::new(Meta {
            qos: p.qos,
            payload: p.payload.clone(),
            props: props.filter(|pp| !pp.is_empty()),
            expires_at: expiry.and_then(|secs| expiry_from(secs, self.now)),
        });
        let msg = if p.retain {
            Message::Set(Set {
                address: address.as_str().into(),
                value,
                // A retained message that expires is removed from the router when it does.
                ttl: expiry.map(|secs| secs.max(1)),
                ..Set::default()
            })
        } else {
            Message::Publish(ClaspPublish {
                address: address.as_str().into(),
                signal: SignalType::Event,
                payload: PublishPayload::Value(value),
                ..ClaspPublish::default()
            })
        };
        match door.submit(self.conn, msg, Some(meta.clone())) {
            Ok(accepted) => {
                // CLASP does not send an event back to its sender, MQTT does (unless
                // no-local).
                let own = !p.retain && self.deliver_own_event(&address, &meta);
                if accepted.matched == 0 && !own {
                    PubAckReason::NoMatchingSubscribers
                } else {
                    PubAckReason::Success
                }
            }
            Err(r) => {
                tracing::debug!(code = r.code().code(), reason = %r, "router refused an MQTT publish");
                refusal_reason(&r)
            }
        }
    }

    /// Answers a QoS 1 or 2 publish with `reason`.
    fn ack_publish(&mut self, p: &Publish, reason: PubAckReason) {
        match p.qos {
            0 => {}
            1 => self.emit(Outbound::PubAck {
                pkid: p.pkid,
                reason,
            }),
            _ => {
                if !reason.is_error() {
                    self.qos2.insert(p.pkid);
                }
                self.emit(Outbound::PubRec {
                    pkid: p.pkid,
                    reason,
                });
            }
        }
    }

    /// Publishes the will through the session's CLASP session (so its scopes apply), with
    /// its QoS and properties; nothing is acknowledged.
    pub(crate) fn publish_will(&mut self, will: Will, door: &mut impl Door, now: Instant) {
        self.now = now;
        let p = Publish {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            dup: false,
            pkid: 0,
            topic_alias: None,
            props: will.props,
        };
        match self.ctx.topics.address(&p.topic) {
            Ok(address) => {
                let reason = self.submit_publish(&p, address, door);
                tracing::debug!(reason = reason.code(), "MQTT will published");
            }
            Err(e) => tracing::debug!(error = %e, "MQTT will not published"),
        }
    }
}

/// The MQTT 5 PUBACK/PUBREC reason for a refusal of the router.
fn refusal_reason(r: &Refusal) -> PubAckReason {
    match r.code() {
        ErrorCode::Forbidden | ErrorCode::Unauthorized | ErrorCode::TokenExpired => {
            PubAckReason::NotAuthorized
        }
        ErrorCode::InvalidAddress => PubAckReason::TopicNameInvalid,
        ErrorCode::RateLimited | ErrorCode::TooLarge | ErrorCode::StateRejected => {
            PubAckReason::QuotaExceeded
        }
        ErrorCode::InvalidValue => PubAckReason::PayloadFormatInvalid,
        _ => PubAckReason::UnspecifiedError,
    }
}
