//! A client's own publishes: MQTT sends them back to the publisher's matching subscriptions
//! (CLASP does for SETs, not for events, so the listener does it for events), except to MQTT 5
//! no-local subscriptions. Raw MQTT clients against a real router and CLASP client.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use clasp_proto::Value;
use common::Env;
use common::raw::{Raw, Raw5, text};
use rumqttc::mqttbytes::{QoS, v4};
use rumqttc::v5::mqttbytes::v5;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn mqtt_3_1_1_publishers_get_their_own_events_and_sets_back() {
    let env = Env::plain().await;
    let (mut a, _) = Raw::connect(&env, "self", true, None).await;
    a.subscribe("loop/#", QoS::AtMostOnce).await;
    a.send(v4::Packet::Publish(v4::Publish::new(
        "loop/event",
        QoS::AtMostOnce,
        "1",
    )))
    .await;
    let p = a.publish().await;
    assert_eq!((p.topic.as_str(), text(&p).as_str()), ("loop/event", "1"));
    let mut set = v4::Publish::new("loop/state", QoS::AtMostOnce, "2");
    set.retain = true;
    a.send(v4::Packet::Publish(set)).await;
    let p = a.publish().await;
    assert_eq!((p.topic.as_str(), text(&p).as_str()), ("loop/state", "2"));
    assert!(a.try_next(QUIET).await.is_none(), "each comes back once");
    env.stop().await;
}

#[tokio::test]
async fn mqtt5_no_local_subscriptions_skip_the_clients_own_publishes_only() {
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    let (mut a, _, _) = Raw5::connect(&env, "quiet", true, None, None).await;
    let mut f = v5::Filter::new("nl/#", rumqttc::v5::mqttbytes::QoS::AtMostOnce);
    f.nolocal = true;
    a.subscribe_filter(f).await;
    // Its own event and its own SET: nothing comes back.
    a.send(v5::Packet::Publish(v5::Publish::new(
        "nl/event",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        "1",
        None,
    )))
    .await;
    let mut set = v5::Publish::new(
        "nl/state",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        "2",
        None,
    );
    set.retain = true;
    a.send(v5::Packet::Publish(set)).await;
    assert!(a.try_next(QUIET).await.is_none(), "no-local");
    assert_eq!(clasp.get("/nl/state").await.unwrap(), Value::Int(2));
    // The same addresses written by someone else do come through.
    clasp.set("/nl/state", Value::Int(3)).await.unwrap();
    let p = a.publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"nl/state"[..], &b"3"[..])
    );
    clasp.emit("/nl/event", Value::Int(4)).await.unwrap();
    let p = a.publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"nl/event"[..], &b"4"[..])
    );
    // And another client's SET of the same value it wrote is not taken for its echo.
    let mut set = v5::Publish::new(
        "nl/state",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        "5",
        None,
    );
    set.retain = true;
    a.send(v5::Packet::Publish(set)).await;
    assert!(a.try_next(QUIET).await.is_none(), "no-local");
    clasp.set("/nl/state", Value::Int(5)).await.unwrap();
    let p = a.publish().await;
    assert_eq!(&p.payload[..], &b"5"[..]);
    clasp.close().await;
    env.stop().await;
}
