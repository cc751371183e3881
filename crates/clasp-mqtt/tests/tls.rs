//! MQTT over TLS (`mqtts://`): the real mosquitto clients in both protocol versions verifying
//! the listener's certificate, a raw rustls client byte for byte, and clients that never
//! finish the handshake or speak plain MQTT to the TLS port.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use clasp_mqtt::MqttConfig;
use clasp_proto::Value;
use common::{Env, Setup, WAIT};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

async fn tls_env(config: MqttConfig) -> Env {
    Env::start(Setup {
        config,
        tls: true,
        ..Setup::default()
    })
    .await
}

/// A rustls client that trusts only the test certificate.
async fn tls_connect(env: &Env) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(env.cert.clone().unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(env.mqtt).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap()
}

/// A 3.1.1 CONNECT with client id `id`.
fn connect_v4(id: &str) -> BytesMut {
    let mut b = BytesMut::new();
    rumqttc::mqttbytes::v4::Packet::Connect(rumqttc::mqttbytes::v4::Connect::new(id))
        .write(&mut b, 1 << 20)
        .unwrap();
    b
}

/// Reads until EOF or an error (a TLS peer may end without close_notify).
async fn read_to_end<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 512];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("connection not closed");
    all
}

fn have_mosquitto(test: &str) -> bool {
    common::have(&["mosquitto_pub", "mosquitto_sub"], test)
}

#[tokio::test]
async fn mosquitto_clients_publish_and_subscribe_over_tls_in_both_versions() {
    if !have_mosquitto("mosquitto_clients_publish_and_subscribe_over_tls_in_both_versions") {
        return;
    }
    let env = tls_env(MqttConfig::default()).await;
    let clasp = env.clasp().await;
    for (i, v) in ["mqttv311", "5"].into_iter().enumerate() {
        // A retained publish over TLS is a param the CLASP client reads.
        let out = common::mosquitto("mosquitto_pub", &env, v)
            .args([
                "-t",
                &format!("tls/{i}/level"),
                "-m",
                "0.25",
                "-r",
                "-q",
                "1",
            ])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "mosquitto_pub -V {v} over TLS failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = format!("/tls/{i}/level");
        assert_eq!(clasp.get(&address).await.unwrap(), Value::Float(0.25));
        // A late subscriber gets it as a retained message, then a live CLASP SET.
        let mut sub = common::mosquitto("mosquitto_sub", &env, v);
        sub.args([
            "-t",
            &format!("tls/{i}/+"),
            "-q",
            "1",
            "-C",
            "2",
            "-W",
            "30",
        ])
        .args(["-F", "%r|%t|%p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let sub = sub.spawn().unwrap();
        // Live SETs until the subscriber has its two messages: however late its SUBSCRIBE
        // lands, it gets the level (retained) and a `live` value (retained or live).
        let setter = {
            let clasp = env.clasp().await;
            let address = format!("/tls/{i}/live");
            tokio::spawn(async move {
                for n in 0.. {
                    let _ = clasp.set(&address, Value::Int(n)).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let text = common::output_of(sub, &format!("mosquitto_sub -V {v} over TLS")).await;
        setter.abort();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_by_key(|l| l.contains("/live|"));
        assert_eq!(lines.len(), 2, "-V {v}: {text}");
        assert_eq!(lines[0], format!("1|tls/{i}/level|0.25"), "-V {v}");
        let live = format!("tls/{i}/live|");
        assert!(lines[1][2..].starts_with(&live), "-V {v}: {text}");
        assert!(
            lines[1][live.len() + 2..].parse::<i64>().is_ok(),
            "-V {v}: {text}"
        );
    }
    // A client that does not trust the certificate is refused by its own check.
    let out = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &env.mqtt.port().to_string()])
        .args(["--capath", "/nonexistent", "-t", "x", "-m", "1"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn raw_tls_client_gets_connack_and_plain_or_silent_clients_are_closed() {
    let env = tls_env(MqttConfig {
        connect_timeout: Duration::from_secs(1),
        ..MqttConfig::default()
    })
    .await;
    // Plain MQTT on the TLS port: no CONNACK (at most a TLS alert), then closed.
    let mut plain = TcpStream::connect(env.mqtt).await.unwrap();
    plain.write_all(&connect_v4("plain")).await.unwrap();
    let got = read_to_end(&mut plain).await;
    assert!(
        got.first() != Some(&0x20),
        "plain CONNACK on the TLS port: {got:?}"
    );
    // A TCP connection that never starts the handshake, and one that finishes it but never
    // sends CONNECT: both closed after the connect timeout.
    let mut silent_tcp = TcpStream::connect(env.mqtt).await.unwrap();
    let mut silent_tls = tls_connect(&env).await;
    // Meanwhile a real client is served at once.
    let mut s = tls_connect(&env).await;
    s.write_all(&connect_v4("raw-tls")).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut connack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    // PINGREQ, PINGRESP.
    s.write_all(&[0xC0, 0x00]).await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pong, [0xD0, 0x00]);
    assert!(read_to_end(&mut silent_tcp).await.is_empty());
    assert!(read_to_end(&mut silent_tls).await.is_empty());
    // DISCONNECT: the listener ends the TLS stream.
    s.write_all(&[0xE0, 0x00]).await.unwrap();
    assert!(read_to_end(&mut s).await.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn a_session_left_on_the_plain_port_resumes_over_tls() {
    use rumqttc::mqttbytes::{QoS, v4};
    if !have_mosquitto("a_session_left_on_the_plain_port_resumes_over_tls") {
        return;
    }
    let env = Env::start(Setup {
        also_tls: true,
        ..Setup::default()
    })
    .await;
    // Plain MQTT 3.1.1, clean session 0: subscribe, leave.
    let mut s = TcpStream::connect(env.mqtt).await.unwrap();
    let mut c = v4::Connect::new("roamer");
    c.clean_session = false;
    let mut b = BytesMut::new();
    v4::Packet::Connect(c).write(&mut b, 1 << 20).unwrap();
    let mut sub = v4::Subscribe::new("roam/#", QoS::AtLeastOnce);
    sub.pkid = 1;
    v4::Packet::Subscribe(sub).write(&mut b, 1 << 20).unwrap();
    v4::Packet::Disconnect.write(&mut b, 1 << 20).unwrap();
    s.write_all(&b).await.unwrap();
    let got = read_to_end(&mut s).await;
    assert_eq!(
        &got[..4],
        &[0x20, 0x02, 0x00, 0x00],
        "CONNACK, no session yet"
    );
    assert_eq!(got[4], 0x90, "SUBACK");
    env.parked(1).await;
    let clasp = env.clasp().await;
    clasp
        .emit("/roam/news", Value::from("over tls"))
        .await
        .unwrap();
    // Back over TLS with the same client id: the event that came meanwhile.
    let mut sub = common::mosquitto_over_tls("mosquitto_sub", &env, "mqttv311");
    sub.args([
        "-c", "-i", "roamer", "-q", "1", "-t", "roam/#", "-C", "1", "-W", "20",
    ])
    .args(["-F", "%t|%p"])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let text = common::output_of(sub.spawn().unwrap(), "mosquitto_sub over TLS").await;
    assert_eq!(text.trim(), "roam/news|over tls");
    assert_eq!(env.stats.snapshot().resumed, 1);
    clasp.close().await;
    env.stop().await;
}
