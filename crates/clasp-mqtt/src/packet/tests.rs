#![allow(clippy::unwrap_used)]
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::{self as m5, v5};

use super::*;

pub(super) fn connect_bytes(version: Version) -> BytesMut {
    let mut b = BytesMut::new();
    match version {
        Version::V4 => {
            let mut c = v4::Connect::new("dev1");
            c.set_login("u", "tok");
            v4::Packet::Connect(c).write(&mut b, 1 << 20).unwrap();
        }
        Version::V5 => {
            let c = v5::Connect {
                keep_alive: 30,
                client_id: "dev1".into(),
                clean_start: true,
                properties: None,
            };
            v5::Packet::Connect(c, None, Some(v5::Login::new("u", "tok")))
                .write(&mut b, None)
                .unwrap();
        }
    }
    b
}

#[test]
fn frames_and_decodes_connect_of_both_versions() {
    for (v, level) in [(Version::V4, 4), (Version::V5, 5)] {
        let mut buf = connect_bytes(v);
        buf.extend_from_slice(&[0xC0, 0x00]); // PINGREQ behind it
        let f = frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(connect_level(&f), Some(level));
        let c = decode_connect(v, f).unwrap();
        assert_eq!(c.client_id, "dev1");
        assert_eq!(c.password.as_deref(), Some("tok"));
        let ping = frame(&mut buf, 1024).unwrap().unwrap();
        assert!(matches!(decode(v, ping).unwrap(), Inbound::PingReq));
        assert!(buf.is_empty());
    }
}

#[test]
fn will_properties_are_decoded() {
    let will = v5::LastWill {
        topic: Bytes::from_static(b"w/t"),
        message: Bytes::from_static(b"bye"),
        qos: m5::QoS::AtLeastOnce,
        retain: true,
        properties: Some(v5::LastWillProperties {
            delay_interval: Some(30),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(b"c")),
            user_properties: vec![("k".into(), "v".into())],
        }),
    };
    let c = v5::Connect {
        keep_alive: 30,
        client_id: "dev1".into(),
        clean_start: true,
        properties: None,
    };
    let mut b = BytesMut::new();
    v5::Packet::Connect(c, Some(will), None)
        .write(&mut b, None)
        .unwrap();
    let w = decode_connect(Version::V5, b).unwrap().will.unwrap();
    assert_eq!((w.topic.as_str(), w.qos, w.retain), ("w/t", 1, true));
    assert_eq!(w.delay, Some(30));
    let p = w.props.unwrap();
    assert_eq!(p.payload_format, Some(1));
    assert_eq!(p.message_expiry, Some(60));
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.response_topic.as_deref(), Some("r"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"c"[..]));
    assert_eq!(p.user, [("k".to_owned(), "v".to_owned())]);
}

#[test]
fn oversized_and_bad_lengths_are_errors() {
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(frame(&mut buf, 1024), Err(FrameError::TooLarge(2_097_151)));
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..]);
    assert!(matches!(
        frame(&mut buf, 1024),
        Err(FrameError::Malformed(_))
    ));
    let mut buf = BytesMut::from(&[0x30][..]);
    assert_eq!(frame(&mut buf, 1024), Ok(None));
}

fn dec(v: Version, bytes: &[u8]) -> Result<Inbound, PacketError> {
    decode_with(
        v,
        BytesMut::from(bytes),
        Limits {
            topic_alias_max: 10,
        },
    )
}

fn is_malformed(r: Result<Inbound, PacketError>) -> bool {
    matches!(r, Err(PacketError::Malformed(_)))
}

fn is_protocol(r: Result<Inbound, PacketError>) -> bool {
    matches!(r, Err(PacketError::Protocol(_)))
}

#[test]
fn protocol_violations_are_typed_errors() {
    use Version::{V4, V5};
    for v in [V4, V5] {
        let props: &[u8] = if v == V5 { &[0] } else { &[] };
        let with = |head: &[u8], tail: &[u8]| {
            let mut b = head.to_vec();
            b.extend_from_slice(props);
            b.extend_from_slice(tail);
            b[1] = u8::try_from(b.len() - 2).unwrap();
            b
        };
        // SUBSCRIBE and UNSUBSCRIBE without a filter, with packet id 0, with bad flags.
        assert!(is_malformed(dec(v, &with(&[0x82, 0, 0, 1], &[]))), "{v:?}");
        assert!(is_malformed(dec(v, &with(&[0xA2, 0, 0, 1], &[]))), "{v:?}");
        assert!(is_malformed(dec(
            v,
            &with(&[0x82, 0, 0, 0], &[0, 1, b'a', 0])
        )));
        assert!(is_malformed(dec(
            v,
            &with(&[0x80, 0, 0, 1], &[0, 1, b'a', 0])
        )));
        assert!(is_malformed(dec(v, &with(&[0xA0, 0, 0, 1], &[0, 1, b'a']))));
        // Subscription options: QoS 3, reserved bits.
        assert!(is_malformed(dec(
            v,
            &with(&[0x82, 0, 0, 1], &[0, 1, b'a', 3])
        )));
        assert!(is_malformed(dec(
            v,
            &with(&[0x82, 0, 0, 1], &[0, 1, b'a', 0xC0])
        )));
        // An empty filter.
        assert!(is_malformed(dec(v, &with(&[0xA2, 0, 0, 1], &[0, 0]))));
        // PUBLISH: QoS 3, packet id 0, a wildcard (a protocol error, as Mosquitto answers it)
        // or NUL in the topic; DUP on QoS 0 is accepted, as Mosquitto does.
        assert!(is_malformed(dec(
            v,
            &with(&[0x36, 0, 0, 1, b'a', 0, 1], &[])
        )));
        assert!(matches!(
            dec(v, &with(&[0x38, 0, 0, 1, b'a'], &[])),
            Ok(Inbound::Publish(_))
        ));
        assert!(is_protocol(dec(
            v,
            &with(&[0x32, 0, 0, 1, b'a', 0, 0], &[])
        )));
        assert!(is_protocol(dec(v, &with(&[0x30, 0, 0, 1, b'#'], &[]))));
        assert!(is_protocol(dec(
            v,
            &with(&[0x30, 0, 0, 3, b'a', b'/', b'+'], &[])
        )));
        assert!(is_malformed(dec(v, &with(&[0x30, 0, 0, 1, 0], &[]))));
        assert!(is_malformed(dec(v, &with(&[0x30, 0, 0, 0], &[]))));
        // Acks: reserved flags, packet id 0, trailing bytes.
        assert!(is_malformed(dec(v, &[0x60, 2, 0, 1])));
        assert!(is_malformed(dec(v, &[0x41, 2, 0, 1])));
        assert!(is_protocol(dec(v, &[0x40, 2, 0, 0])));
        assert!(is_malformed(dec(v, &[0xC0, 1, 0])));
        assert!(is_protocol(dec(v, &[0xE1, 0])));
        assert!(is_malformed(dec(v, &[0x00, 0])));
    }
    assert!(is_malformed(dec(V4, &[0xF0, 0])));
    assert!(matches!(dec(V5, &[0xF0, 0]), Ok(Inbound::Unexpected(_))));
    for v in [V4, V5] {
        let mut again = connect_bytes(v);
        let f = frame(&mut again, 1024).unwrap().unwrap();
        assert!(matches!(decode(v, f), Ok(Inbound::SecondConnect)));
    }
    assert!(is_malformed(dec(V4, &[0x40, 3, 0, 1, 0])));
    // MQTT 5 properties: topic alias 0 and above the maximum, unknown, misplaced, repeated,
    // overrunning.
    let publish = |props: &[u8]| {
        let mut b = vec![0x30, 0, 0, 1, b'a', u8::try_from(props.len()).unwrap()];
        b.extend_from_slice(props);
        b[1] = u8::try_from(b.len() - 2).unwrap();
        dec(V5, &b)
    };
    assert_eq!(
        publish(&[0x23, 0, 0]).err(),
        Some(PacketError::TopicAlias(0))
    );
    assert_eq!(
        publish(&[0x23, 0, 11]).err(),
        Some(PacketError::TopicAlias(11))
    );
    assert!(matches!(
        publish(&[0x23, 0, 10]),
        Ok(Inbound::Publish(Publish {
            topic_alias: Some(10),
            ..
        }))
    ));
    assert_eq!(
        decode(
            V5,
            BytesMut::from(&[0x30, 6, 0, 1, b'a', 3, 0x23, 0, 1][..])
        )
        .err(),
        Some(PacketError::TopicAlias(1)),
        "no aliases by default"
    );
    assert!(is_malformed(publish(&[0x05, 0])));
    assert!(is_protocol(publish(&[0x11, 0, 0, 0, 0])));
    assert!(is_protocol(publish(&[0x01, 0, 0x01, 1])));
    assert!(is_protocol(publish(&[0x01, 2])));
    assert!(is_malformed(publish(&[0x02, 0, 0])));
    assert!(is_malformed(dec(V5, &[0x30, 5, 0, 1, b'a', 2, 0x01])));
    // A SUBSCRIBE's property errors are all malformed (as Mosquitto 2.0).
    assert!(is_malformed(dec(
        V5,
        &[0x82, 9, 0, 1, 2, 0x0B, 0, 0, 1, b'a', 0]
    )));
    let sub = dec(V5, &[0x82, 9, 0, 1, 2, 0x0B, 7, 0, 1, b'a', 0x2E]).unwrap();
    let Inbound::Subscribe {
        subscription_id,
        filters,
        ..
    } = sub
    else {
        panic!("{sub:?}");
    };
    assert_eq!(subscription_id, Some(7));
    let f = &filters[0];
    assert_eq!(
        (f.qos, f.no_local, f.rap, f.retain_handling),
        (2, true, true, 2)
    );
    // QoS 2 acks from the client.
    assert!(matches!(
        dec(V5, &[0x50, 3, 0, 9, 0x10]),
        Ok(Inbound::PubRec {
            pkid: 9,
            reason: PubAckReason::NoMatchingSubscribers
        })
    ));
    assert!(matches!(dec(V4, &[0x70, 2, 0, 9]), Ok(Inbound::PubComp(9))));
    assert!(is_protocol(dec(V5, &[0x70, 3, 0, 9, 0x10])));
    assert!(matches!(
        dec(V5, &[0xE0, 7, 0x04, 5, 0x11, 0, 0, 0, 5]),
        Ok(Inbound::Disconnect {
            will: true,
            session_expiry: Some(5)
        })
    ));
}

#[test]
fn acks_take_the_short_form() {
    let enc = |v, p| {
        let mut b = BytesMut::new();
        assert!(encode(v, p, &mut b, usize::MAX));
        b.to_vec()
    };
    use Version::{V4, V5};
    let ok = PubAckReason::Success;
    let no = PubAckReason::NotAuthorized;
    assert_eq!(
        enc(
            V5,
            Outbound::PubAck {
                pkid: 7,
                reason: ok
            }
        ),
        [0x40, 2, 0, 7]
    );
    assert_eq!(
        enc(
            V5,
            Outbound::PubAck {
                pkid: 7,
                reason: no
            }
        ),
        [0x40, 3, 0, 7, 0x87]
    );
    assert_eq!(
        enc(
            V4,
            Outbound::PubRec {
                pkid: 7,
                reason: no
            }
        ),
        [0x50, 2, 0, 7]
    );
    let rel = Outbound::PubRel {
        pkid: 7,
        reason: PubCompReason::Success,
    };
    assert_eq!(enc(V5, rel), [0x62, 2, 0, 7]);
    let d = |reason| Outbound::Disconnect { reason };
    assert_eq!(enc(V5, d(DisconnectReason::Normal)), [0xE0, 0]);
    assert_eq!(enc(V5, d(DisconnectReason::ProtocolError)), [0xE0, 1, 0x82]);
    assert_eq!(enc(V4, d(DisconnectReason::ProtocolError)), [0u8; 0]);
    let codes = vec![SubAckReason::GrantedQos1, SubAckReason::NotAuthorized];
    let s = |codes| Outbound::SubAck { pkid: 1, codes };
    assert_eq!(enc(V4, s(codes.clone())), [0x90, 4, 0, 1, 1, 0x80]);
    assert_eq!(enc(V5, s(codes)), [0x90, 5, 0, 1, 0, 1, 0x87]);
    let refused = |r| Outbound::ConnAck {
        refused: Some(r),
        assigned_id: None,
        session_present: true,
        session_expiry: None,
        caps: ServerCaps::current(100),
    };
    assert_eq!(enc(V4, refused(Refuse::Busy)), [0x20, 2, 0, 3]);
    assert_eq!(enc(V5, refused(Refuse::Busy)), [0x20, 3, 0, 0x89, 0]);
}

/// A publish over the client's maximum, or with a topic no MQTT string can hold, is not
/// written at all.
#[test]
fn oversized_publishes_are_not_written() {
    let p = |topic: String| Outbound::Publish {
        topic,
        payload: Bytes::from_static(b"xyz"),
        qos: 1,
        retain: false,
        pkid: 1,
        dup: false,
        props: None,
    };
    let mut b = BytesMut::from(&b"before"[..]);
    assert!(!encode(Version::V5, p("a".into()), &mut b, 10));
    assert!(!encode(
        Version::V4,
        p("a".repeat(70_000)),
        &mut b,
        usize::MAX
    ));
    assert_eq!(&b[..], b"before");
    assert!(encode(Version::V5, p("a".into()), &mut b, 11));
    assert_eq!(b.len(), 6 + 11);
}
