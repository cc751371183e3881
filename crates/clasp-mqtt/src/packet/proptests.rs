#![allow(clippy::unwrap_used)]
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rumqttc::mqttbytes::{self as m4, v4};
use rumqttc::v5::mqttbytes::{self as m5, v5};

use super::tests::connect_bytes;
use super::*;

fn text() -> impl Strategy<Value = String> {
    "[a-z/é]{0,12}"
}

fn props() -> impl Strategy<Value = Option<Box<PublishProps>>> {
    let p = (
        prop::option::of(0u8..=1),
        prop::option::of(any::<u32>()),
        prop::option::of(text()),
        prop::option::of("[a-z/]{1,8}"),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
        prop::collection::vec((text(), text()), 0..3),
        prop::collection::vec(1u32..=268_435_455, 0..3),
    )
        .prop_map(|(f, e, ct, rt, cd, user, ids)| PublishProps {
            payload_format: f,
            message_expiry: e,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd.map(Bytes::from),
            user,
            subscription_ids: ids,
        });
    prop::option::of(p.prop_map(Box::new))
}

proptest! {
    /// Any bytes either frame into packets that decode or fail cleanly: no panic, and the
    /// buffer only ever shrinks by whole packets.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        v5 in any::<bool>(),
    ) {
        let version = if v5 { Version::V5 } else { Version::V4 };
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(f)) = frame(&mut buf, 256) {
            prop_assert!(f.len() <= 256 + 5);
            let _ = connect_level(&f);
            let _ = decode_connect(version, f.clone());
            let _ = decode_with(version, f, Limits { topic_alias_max: 5 });
        }
    }

    /// Valid packets with a corrupted byte decode or fail cleanly.
    #[test]
    fn corrupted_connects_never_panic(i in 0usize..64, b in any::<u8>(), v5 in any::<bool>()) {
        let version = if v5 { Version::V5 } else { Version::V4 };
        let mut bytes = connect_bytes(version).to_vec();
        let n = bytes.len();
        bytes[i % n] = b;
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(Some(f)) = frame(&mut buf, 1024) {
            let _ = decode_connect(version, f);
        }
    }

    /// Our PUBLISH, all properties included, reads back the same with rumqttc's decoder; as a
    /// client PUBLISH (ids left out) it also reads back the same with ours.
    #[test]
    fn publishes_round_trip(
        topic in "[a-z/é]{1,12}",
        payload in prop::collection::vec(any::<u8>(), 0..300),
        qos in 0u8..=2,
        retain in any::<bool>(),
        dup in any::<bool>(),
        pkid in 1u16..,
        props in props(),
        v5 in any::<bool>(),
    ) {
        let dup = dup && qos > 0;
        let version = if v5 { Version::V5 } else { Version::V4 };
        let mut buf = BytesMut::new();
        let out = Outbound::Publish {
            topic: topic.clone(),
            payload: Bytes::from(payload.clone()),
            qos,
            retain,
            pkid,
            dup,
            props: props.clone(),
        };
        prop_assert!(encode(version, out, &mut buf, usize::MAX));
        let bytes = buf.clone();
        if v5 {
            let Ok(v5::Packet::Publish(p)) = v5::Packet::read(&mut buf, None) else {
                return Err(TestCaseError::fail("not a PUBLISH"));
            };
            prop_assert_eq!(&p.topic[..], topic.as_bytes());
            prop_assert_eq!((p.qos as u8, p.retain, p.dup), (qos, retain, dup));
            prop_assert_eq!(p.pkid, if qos > 0 { pkid } else { 0 });
            prop_assert_eq!(&p.payload[..], &payload[..]);
            let theirs = p.properties.unwrap_or_default();
            let ours = props.clone().unwrap_or_default();
            prop_assert_eq!(theirs.payload_format_indicator, ours.payload_format);
            prop_assert_eq!(theirs.message_expiry_interval, ours.message_expiry);
            prop_assert_eq!(theirs.content_type, ours.content_type);
            prop_assert_eq!(theirs.response_topic, ours.response_topic);
            prop_assert_eq!(theirs.correlation_data, ours.correlation_data);
            prop_assert_eq!(theirs.user_properties, ours.user);
            let ids: Vec<usize> = ours.subscription_ids.iter().map(|i| *i as usize).collect();
            prop_assert_eq!(theirs.subscription_identifiers, ids);
        } else {
            let Ok(v4::Packet::Publish(p)) = v4::Packet::read(&mut buf, usize::MAX) else {
                return Err(TestCaseError::fail("not a PUBLISH"));
            };
            prop_assert_eq!(&p.topic, &topic);
            prop_assert_eq!((p.qos as u8, p.retain, p.dup), (qos, retain, dup));
            prop_assert_eq!(&p.payload[..], &payload[..]);
        }
        prop_assert!(buf.is_empty());
        // Our decoder (subscription identifiers are not a client's to send: dropped).
        let mut props = props.filter(|_| v5);
        if let Some(p) = &mut props {
            p.subscription_ids.clear();
        }
        let props = props.filter(|p| !p.is_empty());
        let Ok(Inbound::Publish(p)) = decode(version, bytes) else {
            return Err(TestCaseError::fail("ours: not a PUBLISH"));
        };
        prop_assert_eq!((p.topic, p.qos, p.retain, p.dup), (topic, qos, retain, dup));
        prop_assert_eq!(p.payload.to_vec(), payload);
        prop_assert_eq!(p.props, props);
    }

    /// A CONNACK with every property reads back the same with rumqttc's decoder.
    #[test]
    fn connacks_round_trip(
        present in any::<bool>(),
        expiry in prop::option::of(any::<u32>()),
        id in prop::option::of("[a-z0-9]{1,10}"),
        max_packet in prop::option::of(1u32..),
        receive_max in prop::option::of(1u16..),
        alias_max in prop::option::of(any::<u16>()),
        flags in prop::collection::vec(prop::option::of(any::<bool>()), 4),
        max_qos in prop::option::of(0u8..=1),
        keep_alive in prop::option::of(any::<u16>()),
    ) {
        let caps = ServerCaps {
            max_packet,
            receive_max,
            topic_alias_max: alias_max,
            max_qos,
            retain: flags[0],
            wildcards: flags[1],
            subscription_ids: flags[2],
            shared: flags[3],
            keep_alive,
        };
        let mut buf = BytesMut::new();
        let out = Outbound::ConnAck {
            refused: None,
            assigned_id: id.clone(),
            session_present: present,
            session_expiry: expiry,
            caps,
        };
        prop_assert!(encode(Version::V5, out, &mut buf, usize::MAX));
        let Ok(v5::Packet::ConnAck(c)) = v5::Packet::read(&mut buf, None) else {
            return Err(TestCaseError::fail("not a CONNACK"));
        };
        prop_assert!(buf.is_empty());
        prop_assert_eq!(c.session_present, present);
        prop_assert_eq!(c.code, v5::ConnectReturnCode::Success);
        let p = c.properties.unwrap_or(v5::ConnAckProperties {
            session_expiry_interval: None,
            receive_max: None,
            max_qos: None,
            retain_available: None,
            max_packet_size: None,
            assigned_client_identifier: None,
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        });
        let byte = |b: Option<bool>| b.map(u8::from);
        prop_assert_eq!(p.session_expiry_interval, expiry);
        prop_assert_eq!(p.assigned_client_identifier, id);
        prop_assert_eq!(p.max_packet_size, max_packet);
        prop_assert_eq!(p.receive_max, receive_max);
        prop_assert_eq!(p.topic_alias_max, alias_max);
        prop_assert_eq!(p.max_qos, max_qos);
        prop_assert_eq!(p.retain_available, byte(flags[0]));
        prop_assert_eq!(p.wildcard_subscription_available, byte(flags[1]));
        prop_assert_eq!(p.subscription_identifiers_available, byte(flags[2]));
        prop_assert_eq!(p.shared_subscription_available, byte(flags[3]));
        prop_assert_eq!(p.server_keep_alive, keep_alive);
    }

    /// Acknowledgements read back the same with rumqttc's decoder.
    #[test]
    fn acks_round_trip(pkid in 1u16.., i in 0usize..9, n in 1usize..5, v5 in any::<bool>()) {
        let reasons = [0u8, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
        let reason = PubAckReason::from_code(reasons[i]).unwrap();
        let version = if v5 { Version::V5 } else { Version::V4 };
        let subs = [0u8, 1, 2, 0x80, 0x87, 0x8F, 0x97, 0x9E, 0xA1];
        let codes: Vec<SubAckReason> = (0..n)
            .map(|k| SubAckReason::from_code(subs[(i + k) % subs.len()]).unwrap())
            .collect();
        let mut buf = BytesMut::new();
        for p in [
            Outbound::PubAck { pkid, reason },
            Outbound::PubRec { pkid, reason },
            Outbound::PubRel { pkid, reason: PubCompReason::Success },
            Outbound::PubComp { pkid, reason: PubCompReason::PacketIdentifierNotFound },
            Outbound::SubAck { pkid, codes: codes.clone() },
            Outbound::UnsubAck { pkid, codes: vec![UnsubAckReason::NoSubscriptionExisted; n] },
            Outbound::PingResp,
        ] {
            prop_assert!(encode(version, p, &mut buf, usize::MAX));
        }
        if v5 {
            let mut read = || v5::Packet::read(&mut buf, None).unwrap();
            let v5::Packet::PubAck(a) = read() else { panic!() };
            prop_assert_eq!((a.pkid, a.reason as u8 == 0), (pkid, reason.code() == 0));
            let v5::Packet::PubRec(a) = read() else { panic!() };
            prop_assert_eq!(a.pkid, pkid);
            let v5::Packet::PubRel(a) = read() else { panic!() };
            prop_assert_eq!(a.pkid, pkid);
            let v5::Packet::PubComp(a) = read() else { panic!() };
            prop_assert_eq!(a.pkid, pkid);
            let v5::Packet::SubAck(a) = read() else { panic!() };
            prop_assert_eq!((a.pkid, a.return_codes.len()), (pkid, n));
            for (theirs, ours) in a.return_codes.iter().zip(&codes) {
                let granted = matches!(theirs, v5::SubscribeReasonCode::Success(_));
                prop_assert_eq!(granted, !ours.is_error());
            }
            let v5::Packet::UnsubAck(a) = read() else { panic!() };
            prop_assert_eq!((a.pkid, a.reasons.len()), (pkid, n));
            prop_assert!(matches!(read(), v5::Packet::PingResp(_)));
        } else {
            let mut read = || v4::Packet::read(&mut buf, usize::MAX).unwrap();
            prop_assert_eq!(read(), v4::Packet::PubAck(v4::PubAck::new(pkid)));
            prop_assert_eq!(read(), v4::Packet::PubRec(v4::PubRec::new(pkid)));
            prop_assert_eq!(read(), v4::Packet::PubRel(v4::PubRel::new(pkid)));
            prop_assert_eq!(read(), v4::Packet::PubComp(v4::PubComp::new(pkid)));
            let v4::Packet::SubAck(a) = read() else { panic!() };
            let granted: Vec<bool> = a
                .return_codes
                .iter()
                .map(|c| matches!(c, v4::SubscribeReasonCode::Success(_)))
                .collect();
            let ours: Vec<bool> = codes.iter().map(|c| !c.is_error()).collect();
            prop_assert_eq!(granted, ours);
            prop_assert_eq!(read(), v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)));
            prop_assert_eq!(read(), v4::Packet::PingResp);
        }
        prop_assert!(buf.is_empty());
    }

    /// SUBSCRIBE and UNSUBSCRIBE written by rumqttc read back the same with our decoder.
    #[test]
    fn subscribes_decode(
        filters in prop::collection::vec(("[a-z/+#é]{1,10}", 0u8..=2, any::<bool>(), any::<bool>(), 0u8..=2), 1..4),
        pkid in 1u16..,
        id in prop::option::of(1usize..=268_435_455),
        v5 in any::<bool>(),
    ) {
        let mut buf = BytesMut::new();
        let version = if v5 { Version::V5 } else { Version::V4 };
        let paths: Vec<String> = filters.iter().map(|f| f.0.clone()).collect();
        if v5 {
            let fs = filters.iter().map(|(path, qos, nl, rap, rh)| v5::Filter {
                path: path.clone(),
                qos: m5::qos(*qos).unwrap(),
                nolocal: *nl,
                preserve_retain: *rap,
                retain_forward_rule: match rh {
                    0 => v5::RetainForwardRule::OnEverySubscribe,
                    1 => v5::RetainForwardRule::OnNewSubscribe,
                    _ => v5::RetainForwardRule::Never,
                },
            });
            let props = id.map(|id| v5::SubscribeProperties { id: Some(id), user_properties: vec![] });
            let mut s = v5::Subscribe::new_many(fs, props);
            s.pkid = pkid;
            v5::Packet::Subscribe(s).write(&mut buf, None).unwrap();
            let mut u = v5::Unsubscribe::new("x", None);
            u.filters = paths.clone();
            u.pkid = pkid;
            v5::Packet::Unsubscribe(u).write(&mut buf, None).unwrap();
        } else {
            let fs = filters.iter().map(|f| v4::SubscribeFilter::new(f.0.clone(), m4::qos(f.1).unwrap()));
            let mut s = v4::Subscribe::new_many(fs);
            s.pkid = pkid;
            v4::Packet::Subscribe(s).write(&mut buf, usize::MAX).unwrap();
            let mut u = v4::Unsubscribe::new("x");
            u.topics = paths.clone();
            u.pkid = pkid;
            v4::Packet::Unsubscribe(u).write(&mut buf, usize::MAX).unwrap();
        }
        let f = frame(&mut buf, usize::MAX).unwrap().unwrap();
        let Ok(Inbound::Subscribe { pkid: p, filters: got, subscription_id }) = decode(version, f) else {
            return Err(TestCaseError::fail("not a SUBSCRIBE"));
        };
        prop_assert_eq!(p, pkid);
        prop_assert_eq!(subscription_id, id.filter(|_| v5).map(|i| i as u32));
        for (g, (path, qos, nl, rap, rh)) in got.iter().zip(&filters) {
            prop_assert_eq!(&g.filter, path);
            prop_assert_eq!(g.qos, *qos);
            if v5 {
                prop_assert_eq!((g.no_local, g.rap, g.retain_handling), (*nl, *rap, *rh));
            }
        }
        let f = frame(&mut buf, usize::MAX).unwrap().unwrap();
        let Ok(Inbound::Unsubscribe { pkid: p, filters: got }) = decode(version, f) else {
            return Err(TestCaseError::fail("not an UNSUBSCRIBE"));
        };
        prop_assert_eq!((p, got), (pkid, paths));
    }
}
