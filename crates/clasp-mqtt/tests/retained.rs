//! Retained messages across a router restart: the payload bytes, the QoS and the MQTT 5
//! properties come back as they were published, and the message expiry keeps counting down
//! (as Mosquitto does with persistence on). A raw MQTT 5 client against a real router with a
//! redb database.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use bytes::Bytes;
use common::raw::Raw5;
use common::{Env, Setup};
use rumqttc::v5::mqttbytes::{QoS, v5};

fn props() -> v5::PublishProperties {
    v5::PublishProperties {
        payload_format_indicator: Some(0),
        message_expiry_interval: Some(3600),
        topic_alias: None,
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr")),
        user_properties: vec![
            ("origin".into(), "desk".into()),
            ("origin".into(), "2".into()),
        ],
        subscription_identifiers: Vec::new(),
        content_type: Some("application/octet-stream".into()),
    }
}

#[tokio::test]
async fn a_retained_message_survives_a_restart_as_published() {
    let dir = tempfile::tempdir().unwrap();
    let setup = || Setup {
        data_dir: Some(dir.path().to_owned()),
        ..Setup::default()
    };
    // Not UTF-8, not a number: only the exact bytes can bring it back.
    let payload = Bytes::from_static(b"\xff\x00\x10raw");
    let env = Env::start(setup()).await;
    let (mut publisher, _, _) = Raw5::connect(&env, "pub", true, None, None).await;
    let mut p = v5::Publish::new("keep/me", QoS::AtLeastOnce, payload.clone(), Some(props()));
    p.retain = true;
    p.pkid = 7;
    publisher.send(v5::Packet::Publish(p)).await;
    assert!(matches!(publisher.next().await, v5::Packet::PubAck(_)));
    publisher.disconnect(None).await;
    env.stop().await;

    let env = Env::start(setup()).await;
    let (mut sub, _, _) = Raw5::connect(&env, "sub", true, None, None).await;
    sub.subscribe("keep/#").await;
    let got = sub.publish().await;
    assert_eq!(
        (got.topic.as_ref(), &got.payload),
        (&b"keep/me"[..], &payload)
    );
    assert!(got.retain);
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let mut want = props();
    let mut have = got.properties.unwrap();
    // Counting down: a little time has passed, never more than was given.
    let left = have.message_expiry_interval.take().unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    want.message_expiry_interval = None;
    assert_eq!(have, want);
    env.stop().await;
}
