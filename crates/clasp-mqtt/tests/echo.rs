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

#[tokio::test]
async fn no_local_never_hides_another_clients_write_behind_a_refused_own_one() {
    use common::Setup;
    let env = Env::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let clasp = env.clasp().await;
    // A read-only MQTT 5 client with room for one QoS 1 message in flight.
    let (mut a, _, _) =
        Raw5::connect_with(&env, "ro", true, None, Some(1), Some(&env.readonly)).await;
    a.subscribe("q/#").await;
    let mut f = v5::Filter::new("t", rumqttc::v5::mqttbytes::QoS::AtMostOnce);
    f.nolocal = true;
    a.subscribe_filter(f).await;
    // Its window full (q/1 unacknowledged, q/2 waiting), another client's SET of t waits in
    // the router's queue for it.
    clasp.emit("/q/1", Value::Int(1)).await.unwrap();
    clasp.emit("/q/2", Value::Int(2)).await.unwrap();
    let first = a.publish().await;
    // (Time for q/2 to reach the listener's queue first; were it late, the test would only
    // check less, never fail.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    clasp.set("/t", Value::Int(7)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Its own write of the same value is refused: there is no echo to hide.
    let mut own = v5::Publish::new("t", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, "7", None);
    own.retain = true;
    own.pkid = 9;
    a.send(v5::Packet::Publish(own)).await;
    loop {
        if let v5::Packet::PubAck(ack) = a.next().await {
            assert_eq!(ack.reason, v5::PubAckReason::NotAuthorized);
            break;
        }
    }
    a.send(v5::Packet::PubAck(v5::PubAck::new(first.pkid, None)))
        .await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let p = a.publish().await;
        if p.qos != rumqttc::v5::mqttbytes::QoS::AtMostOnce {
            a.send(v5::Packet::PubAck(v5::PubAck::new(p.pkid, None)))
                .await;
        }
        got.push(format!(
            "{}={}",
            String::from_utf8_lossy(&p.topic),
            String::from_utf8_lossy(&p.payload)
        ));
    }
    assert_eq!(got, ["q/2=2", "t=7"], "the other client's SET reaches it");
    clasp.close().await;
    env.stop().await;
}
