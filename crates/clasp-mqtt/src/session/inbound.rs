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

    /// Submits the publish to the router; the reason to acknowledge it with.
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
        let msg = if p.retain {
            Message::Set(Set {
                address: address.as_str().into(),
                value: value.clone(),
                ..Set::default()
            })
        } else {
            Message::Publish(ClaspPublish {
                address: address.as_str().into(),
                signal: SignalType::Event,
                payload: PublishPayload::Value(value.clone()),
                ..ClaspPublish::default()
            })
        };
        match door.submit(self.conn, msg, None) {
            Ok(_) => {
                if !p.retain {
                    // CLASP does not send an event back to its sender, MQTT does (unless
                    // no-local).
                    self.deliver_own_event(&address, payload::to_payload(&value));
                }
                PubAckReason::Success
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

    /// Publishes the will through the session's CLASP session (so its scopes apply).
    pub(crate) fn publish_will(&mut self, will: Will, door: &mut impl Door) {
        self.on_publish(
            Publish {
                topic: will.topic,
                payload: will.payload,
                qos: 0,
                retain: will.retain,
                dup: false,
                pkid: 0,
                topic_alias: None,
                props: None,
            },
            door,
        );
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
