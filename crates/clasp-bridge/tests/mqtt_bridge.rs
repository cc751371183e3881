//! The MQTT client bridge against Debian's mosquitto (started by the test on a free port of
//! 127.0.0.1), with a rumqttc client as the broker's other party: both ways as MQTT 3.1.1 and
//! as MQTT 5, retained messages as params, no echo loop, reconnecting after the broker
//! restarts; and over TLS with a private CA and a client certificate (a client without one is
//! refused). Skipped (with a message) when mosquitto is not installed.
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
    broker_with(port, "", tempfile::tempdir().unwrap()).await
}

/// mosquitto on `port` (plain), with `extra` configuration lines, its files in `dir`.
async fn broker_with(port: u16, extra: &str, dir: tempfile::TempDir) -> Broker {
    let conf = dir.path().join("mosquitto.conf");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    std::fs::write(
        &conf,
        format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\nuser {user}\nlistener {port} 127.0.0.1\n{extra}"
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn no_mosquitto() -> bool {
    let missing = !std::path::Path::new(MOSQUITTO).exists();
    if missing {
        println!("SKIPPED: {MOSQUITTO} is not installed (apt-get install mosquitto)");
    }
    missing
}

#[tokio::test]
async fn a_broker_mirrored_both_ways_as_mqtt_3_1_1() {
    if !no_mosquitto() {
        mirrored_both_ways("3.1.1").await;
    }
}

#[tokio::test]
async fn a_broker_mirrored_both_ways_as_mqtt_5() {
    if !no_mosquitto() {
        mirrored_both_ways("5").await;
    }
}

async fn mirrored_both_ways(version: &str) {
    let port = free_port();
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
    let mut cfg = MqttBridgeConfig::new(&format!("127.0.0.1:{port}"));
    cfg.version = version.into();
    cfg.client_id = Some("clasp-bridge-test".into());
    cfg.subscribe = vec!["sensors/#".into(), "lights/#".into()];
    cfg.events = vec!["sensors/door".into()];
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

/// A CA, and a certificate it signed for `names` (PEM certificate, PEM key).
struct Pki {
    ca_pem: String,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "clasp test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            ca: rcgen::Issuer::new(params, key),
        }
    }

    fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[tokio::test]
async fn a_broker_over_tls_with_a_client_certificate() {
    if no_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let ca = file("ca.pem", &pki.ca_pem);
    let (server_cert, server_key) = pki.issue(&["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = pki.issue(&["clasp-bridge"]);
    let server_cert = file("server.pem", &server_cert);
    let server_key = file("server.key", &server_key);
    let client_cert = file("client.pem", &client_cert);
    let client_key = file("client.key", &client_key);
    let (plain, tls) = (free_port(), free_port());
    let _broker = broker_with(
        plain,
        &format!(
            "listener {tls} 127.0.0.1\ncafile {ca}\ncertfile {server_cert}\nkeyfile {server_key}\nrequire_certificate true\n"
        ),
        dir,
    )
    .await;
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let mut sub = c.subscribe("/mqtt/**").await.unwrap();
    c.ping().await.unwrap();

    // Without a client certificate the broker refuses the TLS session: nothing flows.
    let mut refused = MqttBridgeConfig::new(&format!("mqtts://localhost:{tls}"));
    refused.ca_file = Some(ca.clone());
    refused.namespace = "/refused".into();
    let link = RouterLink::connect(&r.url, "mqtt-refused", None)
        .await
        .unwrap();
    let refused_stats = Arc::new(MqttStats::default());
    let stop = CancellationToken::new();
    let refused_task = tokio::spawn(
        MqttBridge::start(link, refused)
            .await
            .unwrap()
            .run(refused_stats.clone(), stop.clone()),
    );
    // With one, over mqtts:// as MQTT 5: both ways.
    let mut cfg = MqttBridgeConfig::new(&format!("mqtts://localhost:{tls}"));
    cfg.version = "5".into();
    cfg.ca_file = Some(ca);
    cfg.cert_file = Some(client_cert);
    cfg.key_file = Some(client_key);
    cfg.subscribe = vec!["sensors/#".into(), "lights/#".into()];
    let link = RouterLink::connect(&r.url, "mqtt", None).await.unwrap();
    let stats = Arc::new(MqttStats::default());
    let task = tokio::spawn(
        MqttBridge::start(link, cfg)
            .await
            .unwrap()
            .run(stats.clone(), stop.clone()),
    );
    let (party, mut heard) = party(plain, "lights/#").await;
    party
        .publish("sensors/temp", QoS::AtLeastOnce, true, "19")
        .await
        .unwrap();
    let u = within("the sensor over TLS", sub.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/mqtt/sensors/temp", &Value::Int(19))
    );
    c.set_confirmed("/mqtt/lights/2", true).await.unwrap();
    let (topic, payload, _) = within("the light over TLS", heard.recv()).await.unwrap();
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("lights/2", &b"true"[..])
    );
    // The refused bridge says so in its counters (and its log), and got nothing.
    within("the refusal counted", async {
        while refused_stats.errors.load(Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(refused_stats.messages_in.load(Relaxed), 0);
    stop.cancel();
    task.await.unwrap().unwrap();
    refused_task.await.unwrap().unwrap();
}

#[test]
fn broker_addresses_and_settings_are_checked() {
    let check = |broker: &str| MqttBridgeConfig::new(broker).check().map(|(e, _)| e);
    let e = check("mqtts://broker.example").unwrap();
    assert_eq!(
        (e.host.as_str(), e.port, e.tls.is_some()),
        ("broker.example", 8883, true)
    );
    let e = check("mqtt://[::1]").unwrap();
    assert_eq!(
        (e.host.as_str(), e.port, e.tls.is_none()),
        ("::1", 1883, true)
    );
    let e = check("10.0.0.5:1884").unwrap();
    assert_eq!((e.host.as_str(), e.port), ("10.0.0.5", 1884));
    for (broker, why) in [
        ("broker.example", "expected HOST:PORT"),
        ("http://x:1", "unknown scheme"),
        ("mqtt://x:99999", "bad port"),
        ("mqtt://:1883", "no host"),
    ] {
        let err = check(broker).unwrap_err().to_string();
        assert!(err.contains(why), "{broker}: {err}");
    }
    let mut cfg = MqttBridgeConfig::new("mqtt://x");
    cfg.ca_file = Some("/nonexistent.pem".into());
    assert!(
        cfg.check()
            .unwrap_err()
            .to_string()
            .contains("need an mqtts://")
    );
    cfg.broker = "mqtts://x".into();
    assert!(
        cfg.check()
            .unwrap_err()
            .to_string()
            .contains("cannot read the CA file")
    );
    let mut cfg = MqttBridgeConfig::new("mqtt://x");
    cfg.version = "4.0".into();
    assert!(
        cfg.check()
            .unwrap_err()
            .to_string()
            .contains("MQTT version")
    );
}

#[tokio::test]
async fn broker_credentials_are_used_and_a_refusal_is_counted() {
    if no_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["stage", "s3cret"])
        .status()
        .unwrap();
    assert!(made.success());
    let port = free_port();
    let _broker = broker_with(
        port,
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
        dir,
    )
    .await;
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let mut sub = c.subscribe("/**").await.unwrap();
    c.ping().await.unwrap();
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut stats = Vec::new();
    for (ns, password) in [("/good", "s3cret"), ("/bad", "wrong")] {
        let mut cfg = MqttBridgeConfig::new(&format!("mqtt://127.0.0.1:{port}"));
        cfg.namespace = ns.into();
        cfg.username = Some("stage".into());
        cfg.password = Some(password.into());
        cfg.version = "5".into();
        let link = RouterLink::connect(&r.url, "mqtt", None).await.unwrap();
        let s = Arc::new(MqttStats::default());
        let bridge = MqttBridge::start(link, cfg).await.unwrap();
        tasks.push(tokio::spawn(bridge.run(s.clone(), stop.clone())));
        stats.push(s);
    }
    // A party with the right password publishes a retained value: only the good bridge has it.
    let mut o = MqttOptions::new("party", "127.0.0.1", port);
    o.set_credentials("stage", "s3cret");
    let (party, mut events) = AsyncClient::new(o, 16);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    party
        .publish("sensors/t", QoS::AtLeastOnce, true, "5")
        .await
        .unwrap();
    let u = within("the value through the good bridge", sub.next())
        .await
        .unwrap();
    assert_eq!((&*u.address, &u.value), ("/good/sensors/t", &Value::Int(5)));
    within("the refusal counted", async {
        while stats[1].errors.load(Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(stats[1].messages_in.load(Relaxed), 0);
    assert_eq!(stats[0].errors.load(Relaxed), 0);
    stop.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
