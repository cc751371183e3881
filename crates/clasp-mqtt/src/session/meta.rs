//! What an MQTT publish carries beyond its CLASP value, attached to what the session submits
//! (see `clasp_router::core::adapter::Attachment`): the router carries it to the other MQTT
//! sessions the update reaches and keeps it with a retained message (a SET) until the next
//! write, so MQTT subscribers get the publish as it was sent: its exact payload bytes, its
//! QoS (delivery is at min(published, granted)), its MQTT 5 properties and its expiry. CLASP
//! clients see the value only.

use std::any::Any;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clasp_router::core::adapter::{Attached, Attachment};

use crate::packet::PublishProps;

/// An MQTT publish's own data.
#[derive(Debug)]
pub(crate) struct Meta {
    /// The QoS it was published with.
    pub(crate) qos: u8,
    /// The payload, byte for byte.
    pub(crate) payload: Bytes,
    /// Its MQTT 5 properties (without subscription identifiers, topic alias and expiry).
    pub(crate) props: Option<Box<PublishProps>>,
    /// When it expires (MQTT 5 message expiry interval), if it does.
    pub(crate) expires_at: Option<Instant>,
}

impl Attachment for Meta {
    fn size(&self) -> usize {
        let props = self.props.as_ref().map_or(0, |p| {
            p.content_type.as_ref().map_or(0, String::len)
                + p.response_topic.as_ref().map_or(0, String::len)
                + p.correlation_data.as_ref().map_or(0, Bytes::len)
                + p.user
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 16)
                    .sum::<usize>()
                + 64
        });
        64 + self.payload.len() + props
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Meta {
    /// The MQTT data attached to an update, if an MQTT session published it.
    pub(crate) fn of(attached: Option<&Attached>) -> Option<&Meta> {
        attached?.as_any().downcast_ref::<Meta>()
    }

    /// Whether it has expired at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The seconds left before `at` (at least 1 while not expired), for the message expiry
/// interval of a publish sent at `now`.
pub(crate) fn seconds_left(at: Instant, now: Instant) -> u32 {
    let left = at.saturating_duration_since(now);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

/// When a publish with message expiry interval `secs` received at `now` expires.
pub(crate) fn expiry_from(secs: u32, now: Instant) -> Option<Instant> {
    now.checked_add(Duration::from_secs(u64::from(secs)))
}
