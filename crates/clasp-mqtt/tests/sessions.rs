//! Persistent MQTT sessions (3.1.1 clean session 0, MQTT 5 session expiry): subscriptions and
//! queued messages kept while the client is away, redelivery with DUP, takeover, expiry, the
//! offline queue's bound, and MQTT 5 will delays. Driven byte for byte by raw clients (packets coded by rumqttc's
//! mqttbytes) and by the real `mosquitto_sub -c`, against a real router and CLASP client.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use clasp_mqtt::MqttConfig;
use clasp_proto::Value;
use common::raw::{Raw, Raw5, text};
use common::{Env, Setup, WAIT};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

async fn env_with(config: MqttConfig, auth: bool) -> Env {
    Env::start(Setup {
        config,
        auth,
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn clean_session_0_keeps_subscriptions_and_queues_while_away() {
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    let (mut a, present) = Raw::connect(&env, "keeper", false, None).await;
    assert!(!present, "nothing to resume the first time");
    a.subscribe("away/#", rumqttc::mqttbytes::QoS::AtLeastOnce)
        .await;
    a.disconnect().await;
    env.parked(1).await;

    // While the client is away: an event, and three SETs of one param.
    clasp.emit("/away/bell", Value::Int(1)).await.unwrap();
    for n in 1..=3 {
        clasp.set("/away/level", Value::Int(n)).await.unwrap();
    }
    assert_eq!(clasp.get("/away/level").await.unwrap(), Value::Int(3));

    // Back with clean session 0: session present, and without subscribing again the event
    // and the param's latest value only.
    let (mut a, present) = Raw::connect(&env, "keeper", false, None).await;
    assert!(present);
    let first = a.publish().await;
    assert_eq!(
        (first.topic.as_str(), text(&first).as_str()),
        ("away/bell", "1")
    );
    assert_eq!(first.qos, rumqttc::mqttbytes::QoS::AtLeastOnce);
    a.send(v4::Packet::PubAck(v4::PubAck::new(first.pkid)))
        .await;
    let second = a.publish().await;
    assert_eq!(
        (second.topic.as_str(), text(&second).as_str()),
        ("away/level", "3")
    );
    a.send(v4::Packet::PubAck(v4::PubAck::new(second.pkid)))
        .await;
    assert!(a.try_next(Duration::from_millis(300)).await.is_none());
    // The subscription still works live.
    clasp.set("/away/level", Value::Int(4)).await.unwrap();
    let live = a.publish().await;
    assert_eq!(text(&live), "4");
    assert!(!live.dup);
    assert_eq!(env.stats.snapshot().resumed, 1);
    assert_eq!(env.stats.snapshot().parked, 0);
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn unacknowledged_qos1_is_sent_again_with_dup_and_its_packet_id() {
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    let (mut a, _) = Raw::connect(&env, "flaky", false, None).await;
    a.subscribe("dup/#", rumqttc::mqttbytes::QoS::AtLeastOnce)
        .await;
    clasp.emit("/dup/x", Value::from("once")).await.unwrap();
    let p = a.publish().await;
    assert!(!p.dup);
    // The link drops before the PUBACK (no DISCONNECT).
    drop(a);
    env.parked(1).await;
    let (mut a, present) = Raw::connect(&env, "flaky", false, None).await;
    assert!(present);
    let again = a.publish().await;
    assert!(again.dup, "a redelivery carries DUP");
    assert_eq!((again.pkid, again.topic.as_str()), (p.pkid, "dup/x"));
    assert_eq!(text(&again), "once");
    a.send(v4::Packet::PubAck(v4::PubAck::new(again.pkid)))
        .await;
    clasp.emit("/dup/y", Value::from("new")).await.unwrap();
    let next = a.publish().await;
    assert_eq!((next.topic.as_str(), next.dup), ("dup/y", false));
    a.send(v4::Packet::PubAck(v4::PubAck::new(next.pkid))).await;
    // Acknowledged now: a further return sends nothing again.
    a.disconnect().await;
    env.parked(1).await;
    let (mut a, present) = Raw::connect(&env, "flaky", false, None).await;
    assert!(present);
    assert!(a.try_next(Duration::from_millis(300)).await.is_none());
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn clean_session_1_and_other_credentials_end_the_kept_session() {
    let env = env_with(MqttConfig::default(), true).await;
    let (t1, t2) = (env.full.clone(), env.readonly.clone());
    let clasp = env.clasp().await;

    // Clean session 1 ends what was kept: nothing is delivered, nothing resumes later.
    let (mut a, _) = Raw::connect(&env, "c1", false, Some(&t1)).await;
    a.subscribe("gone/#", rumqttc::mqttbytes::QoS::AtLeastOnce)
        .await;
    a.disconnect().await;
    env.parked(1).await;
    let (mut b, present) = Raw::connect(&env, "c1", true, Some(&t1)).await;
    assert!(!present);
    env.parked(0).await;
    clasp.emit("/gone/x", Value::Int(1)).await.unwrap();
    assert!(b.try_next(Duration::from_millis(300)).await.is_none());
    b.disconnect().await;
    let (_c, present) = Raw::connect(&env, "c1", false, Some(&t1)).await;
    assert!(!present, "a clean session is not kept");

    // Another token does not get the session opened with the first one.
    let (mut a, _) = Raw::connect(&env, "c2", false, Some(&t1)).await;
    a.subscribe("mine/#", rumqttc::mqttbytes::QoS::AtLeastOnce)
        .await;
    a.disconnect().await;
    env.parked(1).await;
    clasp.emit("/mine/secret", Value::Int(1)).await.unwrap();
    let (mut b, present) = Raw::connect(&env, "c2", false, Some(&t2)).await;
    assert!(!present, "other credentials start a fresh session");
    assert!(b.try_next(Duration::from_millis(300)).await.is_none());
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn a_takeover_hands_the_session_to_the_new_connection() {
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    let (mut a, _) = Raw::connect(&env, "moving", false, None).await;
    a.subscribe("move/#", rumqttc::mqttbytes::QoS::AtMostOnce)
        .await;
    // A second connection while the first is still up: the first is closed, and the second
    // has its session.
    let (mut b, present) = Raw::connect(&env, "moving", false, None).await;
    assert!(present);
    a.closed().await;
    clasp.emit("/move/here", Value::Int(5)).await.unwrap();
    let p = b.publish().await;
    assert_eq!((p.topic.as_str(), text(&p).as_str()), ("move/here", "5"));
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn the_offline_queue_is_bounded_and_keeps_the_latest_state() {
    let env = env_with(
        MqttConfig {
            max_offline_messages: 3,
            ..MqttConfig::default()
        },
        false,
    )
    .await;
    let clasp = env.clasp().await;
    let (mut a, _) = Raw::connect(&env, "slowpoke", false, None).await;
    a.subscribe("q/#", rumqttc::mqttbytes::QoS::AtLeastOnce)
        .await;
    a.disconnect().await;
    env.parked(1).await;
    for n in 1..=4 {
        clasp
            .emit(&format!("/q/e{n}"), Value::Int(n))
            .await
            .unwrap();
    }
    for n in 1..=3 {
        clasp.set("/q/level", Value::Int(n)).await.unwrap();
    }
    assert_eq!(clasp.get("/q/level").await.unwrap(), Value::Int(3));
    let (mut a, present) = Raw::connect(&env, "slowpoke", false, None).await;
    assert!(present);
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = a.publish().await;
        a.send(v4::Packet::PubAck(v4::PubAck::new(p.pkid))).await;
        got.push(format!("{}={}", p.topic, text(&p)));
    }
    // e1 and e2 went first when the queue was full; the three SETs were one entry.
    assert_eq!(got, ["q/e3=3", "q/e4=4", "q/level=3"]);
    assert!(a.try_next(Duration::from_millis(300)).await.is_none());
    assert_eq!(env.stats.snapshot().offline_dropped, 2);
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn mqtt5_session_expiry_is_honoured_and_capped() {
    let env = env_with(
        MqttConfig {
            session_expiry: Duration::from_secs(1),
            ..MqttConfig::default()
        },
        false,
    )
    .await;
    // No session expiry property: 0, the session ends with the connection.
    let (s, _, reply) = Raw5::connect(&env, "v5", false, None, None).await;
    assert_eq!(reply, None);
    s.disconnect(None).await;
    // 60 s asked, 1 s allowed: CONNACK says so, and the session is kept for that long.
    let (s, present, reply) = Raw5::connect(&env, "v5", false, Some(60), None).await;
    assert!(!present);
    assert_eq!(reply, Some(1));
    s.disconnect(None).await;
    env.parked(1).await;
    let (s, present, reply) = Raw5::connect(&env, "v5", false, Some(u32::MAX), None).await;
    assert!(present);
    assert_eq!(reply, Some(1), "the capped expiry is told to the client");
    s.disconnect(None).await;
    env.parked(1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.stats.snapshot().parked, 0, "expired");
    let (_s, present, _) = Raw5::connect(&env, "v5", false, Some(1), None).await;
    assert!(!present);
    env.stop().await;
}

fn have_mosquitto_sub(test: &str) -> bool {
    common::have(&["mosquitto_sub"], test)
}

#[tokio::test]
async fn mosquitto_sub_with_a_persistent_session_gets_what_came_while_it_was_away() {
    if !have_mosquitto_sub(
        "mosquitto_sub_with_a_persistent_session_gets_what_came_while_it_was_away",
    ) {
        return;
    }
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    for (i, (v, extra)) in [("mqttv311", &[][..]), ("5", &["-x", "60"][..])]
        .into_iter()
        .enumerate()
    {
        let kept = i as u64 + 1;
        let id = format!("mosq-{v}");
        let topic = format!("persist/{v}/#");
        let sub = |count: &str, wait: &str| {
            let mut c = common::mosquitto("mosquitto_sub", &env, v);
            c.args(["-c", "-i", &id, "-q", "1", "-t", &topic, "-F", "%t|%p"])
                .args(extra)
                .args(["-C", count, "-W", wait])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c
        };
        // First run: subscribes, gets nothing, leaves after a second (-W), session kept.
        let out = sub("1", "1").output().await.unwrap();
        assert!(out.stdout.is_empty(), "{out:?}");
        env.parked(kept).await;
        clasp
            .emit(&format!("/persist/{v}/doorbell"), Value::from("ding"))
            .await
            .unwrap();
        // Second run: the event that came while it was away.
        let text = common::output_of(
            sub("1", "20").spawn().unwrap(),
            &format!("mosquitto_sub -V {v}"),
        )
        .await;
        assert_eq!(text.trim(), format!("persist/{v}/doorbell|ding"), "-V {v}");
        env.parked(kept).await;
    }
    clasp.close().await;
    env.stop().await;
}

/// A client that stopped reading, with its socket full, and a CLASP client filling it: 11 MB,
/// more than the socket buffers take, less than the 16 MiB a session's queue may hold before
/// the router cuts it off as too slow.
async fn stuck_client(env: &Env, clasp: &clasp_client::Client, id: &str) -> Raw {
    let (mut a, _) = Raw::connect(env, id, false, None).await;
    a.subscribe("big/#", rumqttc::mqttbytes::QoS::AtMostOnce)
        .await;
    let big = Value::String("z".repeat(16_000).into());
    for _ in 0..700 {
        clasp.emit("/big/t", big.clone()).await.unwrap();
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_a_client_that_stopped_reading_hands_its_session_over_at_once() {
    // Writes to the stuck client would give up only after 20 s, well past the 5 s a newer
    // connection waits for the handover.
    let env = env_with(
        MqttConfig {
            write_timeout: Duration::from_secs(20),
            ..MqttConfig::default()
        },
        false,
    )
    .await;
    let clasp = env.clasp().await;

    // Clean session 1 over a stuck one: the old session ends, and is not kept later either.
    let a = stuck_client(&env, &clasp, "stuck1").await;
    let (b, present) = Raw::connect(&env, "stuck1", true, None).await;
    assert!(!present);
    b.disconnect().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.stats.snapshot().connected > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            env.stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.stats.snapshot().parked, 0, "no stale session kept");
    drop(a);

    // Clean session 0 over a stuck one: the session (and its subscription) is handed over.
    let a = stuck_client(&env, &clasp, "stuck2").await;
    let (mut b, present) = Raw::connect(&env, "stuck2", false, None).await;
    assert!(present, "handed over despite the full socket");
    drop(a);
    b.subscribe("new/#", rumqttc::mqttbytes::QoS::AtLeastOnce)
        .await;
    b.disconnect().await;
    env.parked(1).await;
    clasp.emit("/new/x", Value::Int(1)).await.unwrap();
    let (mut c, present) = Raw::connect(&env, "stuck2", false, None).await;
    assert!(present);
    // Whatever of the flood is still queued may come first; the QoS 1 event is there.
    loop {
        let p = c.publish().await;
        if p.topic == "new/x" {
            break;
        }
    }
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn mqtt5_disconnect_with_expiry_0_ends_the_session() {
    let env = Env::plain().await;
    let (s, _, _) = Raw5::connect(&env, "bye", false, Some(600), None).await;
    s.disconnect(Some(0)).await;
    let (s, present, _) = Raw5::connect(&env, "bye", false, Some(600), None).await;
    assert!(
        !present,
        "DISCONNECT with session expiry 0 ended the session"
    );
    // Without the property the CONNECT's expiry holds.
    s.disconnect(None).await;
    env.parked(1).await;
    let (_s, present, _) = Raw5::connect(&env, "bye", false, Some(600), None).await;
    assert!(present);
    env.stop().await;
}

#[tokio::test]
async fn mqtt5_redelivery_respects_the_new_receive_maximum() {
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    let (mut a, _, _) = Raw5::connect(&env, "window", false, Some(600), Some(10)).await;
    a.subscribe("w/#").await;
    for n in 0..5 {
        clasp.emit(&format!("/w/{n}"), Value::Int(n)).await.unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(a.publish().await.pkid);
    }
    // Gone without acknowledging any; back with room for two at a time.
    drop(a);
    env.parked(1).await;
    let (mut a, present, _) = Raw5::connect(&env, "window", false, Some(600), Some(2)).await;
    assert!(present);
    let mut again = Vec::new();
    for _ in 0..2 {
        let p = a.publish().await;
        assert!(p.dup);
        again.push(p.pkid);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a.read())
            .await
            .is_err(),
        "more in flight than the receive maximum allows"
    );
    // Each PUBACK lets the next one through, with its original packet id.
    while again.len() < 5 {
        let acked = again[again.len() - 2];
        a.send(v5::Packet::PubAck(v5::PubAck::new(acked, None)))
            .await;
        let p = a.publish().await;
        assert!(p.dup);
        again.push(p.pkid);
    }
    assert_eq!(again, ids, "the same packet ids, in their first order");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn the_offline_queue_is_bounded_in_bytes_too() {
    // Room for about two of the messages below (each costs its topic, payload and 32).
    let env = env_with(
        MqttConfig {
            max_offline_bytes: 300,
            ..MqttConfig::default()
        },
        false,
    )
    .await;
    let clasp = env.clasp().await;
    let (mut a, _) = Raw::connect(&env, "bytes", false, None).await;
    a.subscribe("b/#", rumqttc::mqttbytes::QoS::AtLeastOnce)
        .await;
    a.disconnect().await;
    env.parked(1).await;
    let payload = "x".repeat(100);
    for n in 1..=4 {
        let address = format!("/b/{n}");
        clasp
            .emit(&address, Value::from(payload.as_str()))
            .await
            .unwrap();
    }
    // A round trip: the router has handled the events.
    clasp.set("/other", Value::Int(1)).await.unwrap();
    assert_eq!(clasp.get("/other").await.unwrap(), Value::Int(1));
    let (mut a, present) = Raw::connect(&env, "bytes", false, None).await;
    assert!(present);
    let mut topics = Vec::new();
    for _ in 0..2 {
        let p = a.publish().await;
        a.send(v4::Packet::PubAck(v4::PubAck::new(p.pkid))).await;
        topics.push(p.topic);
    }
    assert_eq!(topics, ["b/3", "b/4"]);
    assert!(a.try_next(Duration::from_millis(300)).await.is_none());
    assert_eq!(env.stats.snapshot().offline_dropped, 2);
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn kept_sessions_survive_a_clean_restart() {
    use rumqttc::mqttbytes::QoS;
    let dir = tempfile::tempdir().unwrap();
    let setup = || Setup {
        data_dir: Some(dir.path().to_owned()),
        ..Setup::default()
    };
    let env = Env::start(setup()).await;
    let clasp = env.clasp().await;
    // One client away (its session kept), with an event waiting for it.
    let (mut away, _) = Raw::connect(&env, "away", false, None).await;
    away.subscribe("r/away/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    env.parked(1).await;
    clasp.emit("/r/away/before", Value::Int(1)).await.unwrap();
    // One still connected at the shutdown, with a publish it has not acknowledged.
    let (mut here, _) = Raw::connect(&env, "here", false, None).await;
    here.subscribe("r/here/#", QoS::AtLeastOnce).await;
    clasp.emit("/r/here/unacked", Value::Int(2)).await.unwrap();
    let unacked = here.publish().await;
    clasp.close().await;
    env.stop().await;
    here.closed().await;

    // After the restart both are kept again, before any client is back.
    let env = Env::start(setup()).await;
    env.parked(2).await;
    let clasp = env.clasp().await;
    clasp.emit("/r/away/after", Value::Int(3)).await.unwrap();
    let (mut away, present) = Raw::connect(&env, "away", false, None).await;
    assert!(present, "the session came back with the router");
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = away.publish().await;
        away.send(v4::Packet::PubAck(v4::PubAck::new(p.pkid))).await;
        got.push(format!("{}={}", p.topic, text(&p)));
    }
    assert_eq!(got, ["r/away/before=1", "r/away/after=3"]);
    let (mut here, present) = Raw::connect(&env, "here", false, None).await;
    assert!(present);
    let again = here.publish().await;
    assert!(again.dup);
    assert_eq!(
        (again.pkid, again.topic.as_str()),
        (unacked.pkid, "r/here/unacked")
    );
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn a_restart_with_sessions_turned_off_restores_none() {
    use rumqttc::mqttbytes::QoS;
    let dir = tempfile::tempdir().unwrap();
    let setup = |expiry: u64| Setup {
        data_dir: Some(dir.path().to_owned()),
        config: MqttConfig {
            session_expiry: Duration::from_secs(expiry),
            ..MqttConfig::default()
        },
        ..Setup::default()
    };
    let env = Env::start(setup(3600)).await;
    let (mut a, _) = Raw::connect(&env, "gone", false, None).await;
    a.subscribe("g/#", QoS::AtLeastOnce).await;
    a.disconnect().await;
    env.parked(1).await;
    env.stop().await;
    // `session_expiry` 0 now: no session is kept, saved ones included.
    let env = Env::start(setup(0)).await;
    let (_a, present) = Raw::connect(&env, "gone", false, None).await;
    assert!(!present);
    env.stop().await;
}

/// Connects `id` over MQTT 5 (clean start `clean`, session expiry `expiry`) with a QoS 1 will
/// "gone" to will/ID whose delay is `delay` seconds.
async fn with_will(env: &Env, id: &str, clean: bool, expiry: u32, delay: u32) -> (Raw5, bool) {
    let props = v5::LastWillProperties {
        delay_interval: Some(delay),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    };
    let will = v5::LastWill::new(
        format!("will/{id}"),
        "gone",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        Some(props),
    );
    let (raw, present, _) =
        Raw5::connect_will(env, id, clean, Some(expiry), None, None, Some(will)).await;
    (raw, present)
}

/// The next will published under /will, and when, within `wait`.
async fn next_will(
    wills: &mut clasp_client::Subscription,
    wait: Duration,
) -> Option<(String, tokio::time::Instant)> {
    use futures_util::StreamExt;
    let u = tokio::time::timeout(wait, wills.next()).await.ok()??;
    assert_eq!(u.value, Value::String("gone".into()));
    Some((u.address.to_string(), tokio::time::Instant::now()))
}

#[tokio::test]
async fn mqtt5_will_waits_for_its_delay() {
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    let mut wills = clasp.subscribe("/will/**").await.unwrap();
    // Will delay 2 s, session expiry 10 s: the session is kept, and the will waits.
    let (w, _) = with_will(&env, "late", true, 10, 2).await;
    drop(w);
    let dropped = tokio::time::Instant::now();
    assert!(
        next_will(&mut wills, Duration::from_secs(1))
            .await
            .is_none(),
        "not before 1 s"
    );
    let (address, at) = next_will(&mut wills, Duration::from_secs(4))
        .await
        .expect("the will by 5 s");
    assert_eq!(address, "/will/late");
    assert!(at - dropped >= Duration::from_secs(1));
    // The session is still kept after its will.
    assert_eq!(env.stats.snapshot().parked, 1);

    // Will delay 60 s, session expiry 2 s: the session ends first, and its will goes then.
    let (w, _) = with_will(&env, "expiring", true, 2, 60).await;
    drop(w);
    assert!(
        next_will(&mut wills, Duration::from_secs(1))
            .await
            .is_none()
    );
    let (address, _) = next_will(&mut wills, Duration::from_secs(4))
        .await
        .expect("the will when the session expires, by 5 s");
    assert_eq!(address, "/will/expiring");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn mqtt5_client_back_within_the_will_delay_cancels_its_will() {
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    let mut wills = clasp.subscribe("/will/**").await.unwrap();
    let (w, _) = with_will(&env, "back", true, 30, 2).await;
    drop(w);
    env.parked(1).await;
    // Back, resuming the session (clean start 0), within the delay: no will, not later either.
    let (back, present, _) = Raw5::connect(&env, "back", false, Some(30), None).await;
    assert!(present);
    assert!(
        next_will(&mut wills, Duration::from_secs(3))
            .await
            .is_none(),
        "the will was cancelled"
    );

    // A new connection that does not resume (clean start 1) ends the session: its will goes
    // at once, not after the 30 s delay.
    back.disconnect(Some(0)).await;
    let (w, _) = with_will(&env, "fresh", true, 60, 30).await;
    drop(w);
    env.parked(1).await;
    let (_fresh, present) = with_will(&env, "fresh", true, 60, 30).await;
    assert!(!present);
    let (address, _) = next_will(&mut wills, Duration::from_secs(10))
        .await
        .expect("the will of the ended session");
    assert_eq!(address, "/will/fresh");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn mqtt5_disconnect_with_will_and_expiry_0_sends_the_will_at_once() {
    let env = Env::plain().await;
    let clasp = env.clasp().await;
    let mut wills = clasp.subscribe("/will/**").await.unwrap();
    // DISCONNECT 0x04 (with will) and session expiry 0: the session ends now, so the will
    // does not wait its 30 s.
    let (mut w, _) = with_will(&env, "now", true, 60, 30).await;
    w.send(v5::Packet::Disconnect(v5::Disconnect {
        reason_code: v5::DisconnectReasonCode::DisconnectWithWillMessage,
        properties: Some(v5::DisconnectProperties {
            session_expiry_interval: Some(0),
            reason_string: None,
            user_properties: Vec::new(),
            server_reference: None,
        }),
    }))
    .await;
    let (address, _) = next_will(&mut wills, Duration::from_secs(10))
        .await
        .expect("the will at once");
    assert_eq!(address, "/will/now");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn mqtt5_will_of_a_session_not_kept_goes_at_once() {
    // No room to keep the session: it ends with the connection, and a will waits no longer
    // than its session.
    let env = env_with(
        MqttConfig {
            max_kept_sessions: 0,
            ..MqttConfig::default()
        },
        false,
    )
    .await;
    let clasp = env.clasp().await;
    let mut wills = clasp.subscribe("/will/**").await.unwrap();
    let (w, _) = with_will(&env, "unkept", true, 60, 30).await;
    drop(w);
    let (address, _) = next_will(&mut wills, Duration::from_secs(10))
        .await
        .expect("the will at once");
    assert_eq!(address, "/will/unkept");
    assert_eq!(env.stats.snapshot().parked, 0);
    clasp.close().await;
    env.stop().await;
}
