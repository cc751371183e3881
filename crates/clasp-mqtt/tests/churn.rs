//! Property test: any sequence of MQTT 3.1.1 and 5 client actions (connects with and without
//! persistent sessions, takeovers, subscriptions, publishes at every QoS, acknowledgements with
//! made-up packet ids, garbage, dropped and closed connections) interleaved with CLASP writes
//! never panics the listener, never leaves a connection hanging, and leaves it serving.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use clasp_mqtt::MqttConfig;
use clasp_proto::Value;
use common::raw::Raw;
use common::{Env, Setup, WAIT};
use proptest::prelude::*;
use rumqttc::mqttbytes::{QoS, v4};
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

static PANICKED: AtomicBool = AtomicBool::new(false);

/// Records any panic, on any thread (a session task's panic would otherwise only end its
/// connection quietly).
fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            default(info);
        }));
    });
}

const FILTERS: [&str; 5] = ["a/#", "a/+", "a/b", "#", "+/b"];
const TOPICS: [&str; 3] = ["a/b", "a/c", "x/b"];

#[derive(Debug, Clone)]
enum Step {
    Connect {
        client: u8,
        v5: bool,
        clean: bool,
        expiry: Option<u32>,
    },
    Subscribe {
        client: u8,
        filter: usize,
        qos: u8,
        no_local: bool,
    },
    Unsubscribe {
        client: u8,
        filter: usize,
    },
    Publish {
        client: u8,
        topic: usize,
        qos: u8,
        retain: bool,
        pkid: u16,
    },
    Ack {
        client: u8,
        kind: u8,
        pkid: u16,
    },
    Ping {
        client: u8,
    },
    Garbage {
        client: u8,
        bytes: Vec<u8>,
    },
    Disconnect {
        client: u8,
    },
    Drop {
        client: u8,
    },
    Emit {
        topic: usize,
        n: i64,
    },
    Set {
        topic: usize,
        n: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let client = 0u8..3;
    prop_oneof![
        (
            client.clone(),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(0u32..5)
        )
            .prop_map(|(client, v5, clean, expiry)| Step::Connect {
                client,
                v5,
                clean,
                expiry
            }),
        (client.clone(), 0..FILTERS.len(), 0u8..3, any::<bool>()).prop_map(
            |(client, filter, qos, no_local)| Step::Subscribe {
                client,
                filter,
                qos,
                no_local
            }
        ),
        (client.clone(), 0..FILTERS.len())
            .prop_map(|(client, filter)| Step::Unsubscribe { client, filter }),
        (
            client.clone(),
            0..TOPICS.len(),
            0u8..3,
            any::<bool>(),
            0u16..6
        )
            .prop_map(|(client, topic, qos, retain, pkid)| Step::Publish {
                client,
                topic,
                qos,
                retain,
                pkid
            }),
        (client.clone(), 0u8..4, 0u16..6).prop_map(|(client, kind, pkid)| Step::Ack {
            client,
            kind,
            pkid
        }),
        client.clone().prop_map(|client| Step::Ping { client }),
        (client.clone(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(client, bytes)| Step::Garbage { client, bytes }),
        client
            .clone()
            .prop_map(|client| Step::Disconnect { client }),
        client.prop_map(|client| Step::Drop { client }),
        (0..TOPICS.len(), 0i64..100).prop_map(|(topic, n)| Step::Emit { topic, n }),
        (0..TOPICS.len(), 0i64..100).prop_map(|(topic, n)| Step::Set { topic, n }),
    ]
}

/// One client slot: its protocol version and the writing half (a task reads and discards).
struct Conn {
    v5: bool,
    w: OwnedWriteHalf,
}

fn qos4(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS as Q;
    match q {
        0 => Q::AtMostOnce,
        1 => Q::AtLeastOnce,
        _ => Q::ExactlyOnce,
    }
}

fn write4(p: v4::Packet) -> BytesMut {
    let mut b = BytesMut::new();
    p.write(&mut b, 1 << 20).unwrap();
    b
}

fn write5(p: v5::Packet) -> BytesMut {
    let mut b = BytesMut::new();
    p.write(&mut b, None).unwrap();
    b
}

/// The bytes of `step` for a client of version `v5`.
fn bytes_of(step: &Step, v5: bool) -> Option<BytesMut> {
    Some(match step.clone() {
        Step::Subscribe {
            filter,
            qos,
            no_local,
            ..
        } => {
            if v5 {
                let mut f = v5::Filter::new(FILTERS[filter], qos5(qos));
                f.nolocal = no_local;
                let mut s = v5::Subscribe::new(f, None);
                s.pkid = 1;
                write5(v5::Packet::Subscribe(s))
            } else {
                let mut s = v4::Subscribe::new(FILTERS[filter], qos4(qos));
                s.pkid = 1;
                write4(v4::Packet::Subscribe(s))
            }
        }
        Step::Unsubscribe { filter, .. } => {
            if v5 {
                let mut u = v5::Unsubscribe::new(FILTERS[filter], None);
                u.pkid = 2;
                write5(v5::Packet::Unsubscribe(u))
            } else {
                let mut u = v4::Unsubscribe::new(FILTERS[filter]);
                u.pkid = 2;
                write4(v4::Packet::Unsubscribe(u))
            }
        }
        Step::Publish {
            topic,
            qos,
            retain,
            pkid,
            ..
        } => {
            // QoS 1 and 2 need a non-zero packet id.
            let pkid = if qos == 0 { 0 } else { pkid.max(1) };
            if v5 {
                let mut p = v5::Publish::new(TOPICS[topic], qos5(qos), "7", None);
                p.retain = retain;
                p.pkid = pkid;
                write5(v5::Packet::Publish(p))
            } else {
                let mut p = v4::Publish::new(TOPICS[topic], qos4(qos), "7");
                p.retain = retain;
                p.pkid = pkid;
                write4(v4::Packet::Publish(p))
            }
        }
        Step::Ack { kind, pkid, .. } => {
            let pkid = pkid.max(1);
            if v5 {
                write5(match kind {
                    0 => v5::Packet::PubAck(v5::PubAck::new(pkid, None)),
                    1 => v5::Packet::PubRec(v5::PubRec::new(pkid, None)),
                    2 => v5::Packet::PubRel(v5::PubRel::new(pkid, None)),
                    _ => v5::Packet::PubComp(v5::PubComp::new(pkid, None)),
                })
            } else {
                write4(match kind {
                    0 => v4::Packet::PubAck(v4::PubAck::new(pkid)),
                    1 => v4::Packet::PubRec(v4::PubRec::new(pkid)),
                    2 => v4::Packet::PubRel(v4::PubRel::new(pkid)),
                    _ => v4::Packet::PubComp(v4::PubComp::new(pkid)),
                })
            }
        }
        Step::Ping { .. } => BytesMut::from(&[0xC0u8, 0x00][..]),
        Step::Garbage { bytes, .. } => BytesMut::from(&bytes[..]),
        Step::Disconnect { .. } => BytesMut::from(&[0xE0u8, 0x00][..]),
        _ => return None,
    })
}

async fn open(env: &Env, id: &str, v5: bool, clean: bool, expiry: Option<u32>) -> Conn {
    let s = TcpStream::connect(env.mqtt).await.unwrap();
    let _ = s.set_nodelay(true);
    let (mut r, mut w) = s.into_split();
    let connect = if v5 {
        write5(v5::Packet::Connect(
            v5::Connect {
                keep_alive: 60,
                client_id: id.into(),
                clean_start: clean,
                properties: Some(v5::ConnectProperties {
                    session_expiry_interval: expiry,
                    receive_maximum: Some(2),
                    ..v5::ConnectProperties::default()
                }),
            },
            None,
            None,
        ))
    } else {
        let mut c = v4::Connect::new(id);
        c.clean_session = clean;
        write4(v4::Packet::Connect(c))
    };
    let _ = w.write_all(&connect).await;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    Conn { v5, w }
}

async fn run(steps: Vec<Step>) {
    let env = Env::start(Setup {
        config: MqttConfig {
            max_offline_messages: 4,
            ..MqttConfig::default()
        },
        ..Setup::default()
    })
    .await;
    let clasp = env.clasp().await;
    let mut conns: [Option<Conn>; 3] = [None, None, None];
    for step in &steps {
        match step {
            Step::Connect {
                client,
                v5,
                clean,
                expiry,
            } => {
                let c = open(&env, &format!("c{client}"), *v5, *clean, *expiry).await;
                conns[usize::from(*client)] = Some(c);
            }
            Step::Emit { topic, n } => {
                let _ = clasp
                    .emit(&format!("/{}", TOPICS[*topic]), Value::Int(*n))
                    .await;
            }
            Step::Set { topic, n } => {
                let _ = clasp
                    .set(&format!("/{}", TOPICS[*topic]), Value::Int(*n))
                    .await;
            }
            Step::Drop { client } => conns[usize::from(*client)] = None,
            other => {
                let client = match other {
                    Step::Subscribe { client, .. }
                    | Step::Unsubscribe { client, .. }
                    | Step::Publish { client, .. }
                    | Step::Ack { client, .. }
                    | Step::Ping { client }
                    | Step::Garbage { client, .. }
                    | Step::Disconnect { client } => usize::from(*client),
                    _ => continue,
                };
                if let Some(c) = &mut conns[client]
                    && let Some(b) = bytes_of(other, c.v5)
                {
                    let _ = c.w.write_all(&b).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(conns);
    // Every connection ends (none hangs), and the listener still serves.
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.stats.snapshot().connected > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            env.stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut probe, _) = Raw::connect(&env, "probe", true, None).await;
    probe.subscribe("probe/#", QoS::AtMostOnce).await;
    clasp.emit("/probe/x", Value::Int(1)).await.unwrap();
    assert_eq!(probe.publish().await.topic, "probe/x");
    clasp.close().await;
    env.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_client_behaviour_leaves_the_listener_serving(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        watch_panics();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(steps));
        prop_assert!(!PANICKED.load(Ordering::SeqCst), "a task panicked");
    }
}
