//! What an MQTT publish carries beyond its CLASP value, attached to what the session submits
//! (see `clasp_router::core::adapter::Attachment`): the router carries it to the other MQTT
//! sessions the update reaches and keeps it with a retained message (a SET) until the next
//! write, so MQTT subscribers get the publish as it was sent: its exact payload bytes, its
//! QoS (delivery is at min(published, granted)), its MQTT 5 properties and its expiry. CLASP
//! clients see the value only.

use std::any::Any;
use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use clasp_router::core::adapter::{Attached, Attachment, Persisted};

use crate::packet::{self, Inbound, Outbound, PublishProps, Version};

/// The name of MQTT's attachments on disk.
const KIND: &str = "mqtt";
/// The version byte of the stored form.
const STORED_VERSION: u8 = 1;

/// An MQTT publish's own data.
#[derive(Debug, Clone, PartialEq)]
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

    fn persist(&self) -> Option<Persisted> {
        Some(Persisted {
            kind: KIND.into(),
            bytes: self.stored(Instant::now(), wall_micros())?,
        })
    }
}

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Meta {
    /// The MQTT data attached to an update, if an MQTT session published it (before this
    /// router started, too: then it comes from disk, decoded here).
    pub(crate) fn of(attached: Option<&Attached>) -> Option<Cow<'_, Meta>> {
        let attached = attached?;
        if let Some(m) = attached.as_any().downcast_ref::<Meta>() {
            return Some(Cow::Borrowed(m));
        }
        let stored = Persisted::of(attached, KIND)?;
        // Its expiry was kept as wall-clock time: the clocks are read at this boundary only.
        match Meta::from_stored(&stored.bytes, Instant::now(), wall_micros()) {
            Some(m) => Some(Cow::Owned(m)),
            None => {
                tracing::warn!("an MQTT message kept on disk cannot be read; sent as its value");
                None
            }
        }
    }

    /// The stored form at (`now`, `wall` µs): the version byte, the expiry (a flag, then
    /// wall-clock µs when set), then the publish as an MQTT 5 PUBLISH packet (topic `-`), so
    /// the payload and properties go through the same strict codec as the wire.
    fn stored(&self, now: Instant, wall: u64) -> Option<Bytes> {
        let mut b = BytesMut::new();
        b.put_u8(STORED_VERSION);
        match self.expires_at {
            Some(at) => {
                let left = at.saturating_duration_since(now).as_micros() as u64;
                b.put_u8(1);
                b.put_u64(wall.saturating_add(left));
            }
            None => b.put_u8(0),
        }
        let publish = Outbound::Publish {
            topic: "-".into(),
            payload: self.payload.clone(),
            qos: self.qos,
            retain: false,
            pkid: u16::from(self.qos > 0),
            dup: false,
            props: self.props.clone(),
        };
        packet::encode(Version::V5, publish, &mut b, usize::MAX).then(|| b.freeze())
    }

    /// Reads [`Meta::stored`]'s form at (`now`, `wall`); `None` if it is not one.
    fn from_stored(bytes: &[u8], now: Instant, wall: u64) -> Option<Meta> {
        let (&version, rest) = bytes.split_first()?;
        if version != STORED_VERSION {
            return None;
        }
        let (expires_at, rest) = match rest.split_first()? {
            (0, rest) => (None, rest),
            (1, rest) => {
                let (at, rest) = rest.split_first_chunk::<8>()?;
                let left = u64::from_be_bytes(*at).saturating_sub(wall);
                (now.checked_add(Duration::from_micros(left)), rest)
            }
            _ => return None,
        };
        let mut frame = BytesMut::from(rest);
        let packet = packet::frame(&mut frame, usize::MAX).ok()??;
        if !frame.is_empty() {
            return None;
        }
        match packet::decode(Version::V5, packet).ok()? {
            Inbound::Publish(p) => Some(Meta {
                qos: p.qos,
                payload: p.payload,
                props: p.props,
                expires_at,
            }),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn sample(expires_at: Option<Instant>) -> Meta {
        Meta {
            qos: 2,
            payload: Bytes::from_static(b"\xff\x00bytes"),
            props: Some(Box::new(PublishProps {
                payload_format: Some(1),
                content_type: Some("text/plain".into()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user: vec![("k".into(), "v".into())],
                ..PublishProps::default()
            })),
            expires_at,
        }
    }

    #[test]
    fn the_stored_form_comes_back_whole() {
        let now = Instant::now();
        for m in [
            sample(None),
            sample(now.checked_add(Duration::from_secs(90))),
        ] {
            let stored = m.stored(now, 1_000_000_000).unwrap();
            assert_eq!(Meta::from_stored(&stored, now, 1_000_000_000), Some(m));
        }
        let bare = Meta {
            qos: 0,
            payload: Bytes::new(),
            props: None,
            expires_at: None,
        };
        let stored = bare.stored(now, 0).unwrap();
        assert_eq!(Meta::from_stored(&stored, now, 0), Some(bare));
    }

    #[test]
    fn the_expiry_keeps_counting_while_the_router_is_down() {
        let before = Instant::now();
        let m = sample(before.checked_add(Duration::from_secs(90)));
        let stored = m.stored(before, 5_000_000).unwrap();
        // Read back 30 s later (wall clock), by a process whose monotonic clock is elsewhere.
        let after = before + Duration::from_secs(1000);
        let back = Meta::from_stored(&stored, after, 35_000_000).unwrap();
        assert_eq!(back.expires_at, Some(after + Duration::from_secs(60)));
        // Read after it expired: expired at once.
        let back = Meta::from_stored(&stored, after, 500_000_000).unwrap();
        assert!(back.expired(after));
    }

    #[test]
    fn a_damaged_stored_form_is_refused() {
        let now = Instant::now();
        let stored = sample(None).stored(now, 0).unwrap();
        for n in 0..stored.len() {
            assert_eq!(Meta::from_stored(&stored[..n], now, 0), None, "prefix {n}");
        }
        let mut longer = stored.to_vec();
        longer.push(0);
        assert_eq!(Meta::from_stored(&longer, now, 0), None);
        let mut v = stored.to_vec();
        v[0] = 9;
        assert_eq!(Meta::from_stored(&v, now, 0), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Meta::from_stored(&bytes, Instant::now(), 0);
        }
    }
}
