//! The MQTT client bridge against Debian's mosquitto (started by the test on a free port of
//! 127.0.0.1), with a rumqttc client as the broker's other party: both ways, retained messages
//! as params, no echo loop, and reconnecting after the broker restarts. Skipped (with a
//! message) when mosquitto is not installed.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use clasp_bridge::RouterLink;
use clasp_bridge::mqtt::{MqttBridge, MqttBridgeConfig, MqttStats};
use clasp_client::{Client, ReconnectPolicy, SignalType, Value};
use futures_util::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::{Router, within};
use tokio_util::sync::CancellationToken;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A mosquitto process, and the directory of its config (removed with it).
struct Broker(
    Child,
    #[allow(dead_code, reason = "kept until the broker stops")] tempfile::TempDir,
);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn broker_on(port: u16) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser {user}\n"
        ),
    )
    .unwrap();
    let child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Ready when it accepts connections.
    within("mosquitto", async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Broker(child, dir)
}

/// A rumqttc client of the broker: publishes, and what it receives.
async fn party(
    port: u16,
    filter: &str,
) -> (
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
) {
    let mut o = MqttOptions::new("party", "127.0.0.1", port);
    o.set_clean_session(true);
    let (client, mut events) = AsyncClient::new(o, 64);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (subacked_tx, subacked) = tokio::sync::oneshot::channel();
    let mut subacked_tx = Some(subacked_tx);
    tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(t) = subacked_tx.take() {
                        let _ = t.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                _ => {}
            }
        }
    });
    within("the party's SUBACK", subacked).await.unwrap();
    (client, rx)
}

#[tokio::test]
async fn a_broker_mirrored_both_ways() {
    if !std::path::Path::new(MOSQUITTO).exists() {
        println!("SKIPPED: {MOSQUITTO} is not installed (apt-get install mosquitto)");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = broker_on(port).await;
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let mut sub = c.subscribe("/mqtt/**").await.unwrap();
    c.ping().await.unwrap();
    let link = RouterLink::connect(&r.url, "mqtt", None).await.unwrap();
    let cfg = MqttBridgeConfig {
        broker: format!("127.0.0.1:{port}"),
        client_id: Some("clasp-bridge-test".into()),
        username: None,
        password: None,
        subscribe: vec!["sensors/#".into(), "lights/#".into()],
        events: vec!["sensors/door".into()],
        qos: 1,
        namespace: "/mqtt".into(),
    };
    let bridge = MqttBridge::start(link, cfg).await.unwrap();
    let stats = Arc::new(MqttStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(stats.clone(), stop.clone()));
    let (party, mut heard) = party(port, "lights/#").await;

    // A sensor value becomes a param (retained: it reaches the bridge even if its SUBSCRIBE
    // is not in yet); a topic listed in `events` becomes an event.
    party
        .publish("sensors/temp", QoS::AtLeastOnce, true, "21.5")
        .await
        .unwrap();
    let u = within("the sensor", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value, u.kind),
        ("/mqtt/sensors/temp", &Value::Float(21.5), SignalType::Param)
    );
    party
        .publish("sensors/door", QoS::AtLeastOnce, false, r#"{"open":true}"#)
        .await
        .unwrap();
    let u = within("the door event", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, u.kind),
        ("/mqtt/sensors/door", SignalType::Event)
    );
    assert_eq!(u.value.get("open"), Some(&Value::Bool(true)));

    // A CLASP client's change is published to the broker, retained, once: the bridge's own
    // publish coming back from the broker is not written to the router again.
    c.set_confirmed("/mqtt/lights/1", 0.5).await.unwrap();
    let (topic, payload, retain) = within("the light at the broker", heard.recv())
        .await
        .unwrap();
    assert_eq!(
        (topic.as_str(), payload.as_slice(), retain),
        ("lights/1", &b"0.5"[..], false)
    );
    // (retain is false on live delivery to an existing subscriber, per MQTT; the broker keeps
    // it: a new subscriber gets it retained)
    let (_late, mut late) = party_named(port, "late", "lights/#").await;
    let (_, payload, retain) = within("the retained light", late.recv()).await.unwrap();
    assert_eq!((payload.as_slice(), retain), (&b"0.5"[..], true));
    // Our own write, then nothing more: the next thing CLASP sees is a new sensor value.
    within("our write", sub.next()).await.unwrap();
    party
        .publish("sensors/temp", QoS::AtLeastOnce, true, "22")
        .await
        .unwrap();
    let u = within("the next sensor value", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/mqtt/sensors/temp", &Value::Int(22))
    );
    assert_eq!(stats.messages_out.load(Relaxed), 1);

    // The broker restarts: the bridge reconnects and subscribes again.
    drop(broker);
    let _broker = broker_on(port).await;
    let (party2, _) = party_named(port, "party2", "nothing/#").await;
    within("the bridge back", async {
        loop {
            party2
                .publish("sensors/after", QoS::AtLeastOnce, true, "1")
                .await
                .unwrap();
            if let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await
                && &*u.address == "/mqtt/sensors/after"
            {
                return;
            }
        }
    })
    .await;
    assert!(stats.reconnects.load(Relaxed) >= 1);
    stop.cancel();
    task.await.unwrap().unwrap();
}

async fn party_named(
    port: u16,
    id: &str,
    filter: &str,
) -> (
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(true);
    let (client, mut events) = AsyncClient::new(o, 64);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
            }
        }
    });
    (client, rx)
}
