//! `clasp relay` as a process: every listener of one relay sharing one router, the rendezvous
//! API on both ports, `clasp discover`, and registrations kept across a restart.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-router/tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clasp_client::Client;
use clasp_proto::Value;
use clasp_rendezvous::client::RendezvousClient;
use clasp_rendezvous::{DiscoverQuery, Registration};
use common::{Proc, free_port};

/// A running `clasp relay`, killed when dropped.
struct Relay {
    /// The process; its `url` is the WebSocket's.
    proc: Proc,
    /// Listener name (`ws`, `rendezvous`, `mqtt`, `osc`, `tcp`, `quic`) → address, from the
    /// `ready:` log lines.
    ready: BTreeMap<String, String>,
}

impl Relay {
    /// Starts `clasp relay --host 127.0.0.1 ARGS` and waits for the WebSocket's `ready:` line
    /// (the last one printed).
    fn start(args: &[&str]) -> Relay {
        Relay::spawn(relay_cmd(args))
    }

    /// Spawns `cmd` (a [`relay_cmd`]) and waits as [`Relay::start`] does.
    fn spawn(mut cmd: Command) -> Relay {
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut ready = BTreeMap::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("relay exited or stalled before it was ready");
            let Some(i) = line.find("ready: ") else {
                continue;
            };
            let mut words = line[i + "ready: ".len()..].split_whitespace();
            let first = words.next().unwrap();
            let (kind, addr) = if let Some((scheme, rest)) = first.split_once("://") {
                (scheme, rest.trim_end_matches('/').to_owned())
            } else {
                let url = words.next().unwrap();
                let addr = url.split("://").nth(1).unwrap();
                (first, addr.split('/').next().unwrap().to_owned())
            };
            ready.insert(kind.to_owned(), addr);
            if kind == "ws" {
                break;
            }
        }
        // Keep draining the log so the relay never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let url = format!("ws://{}/", ready["ws"]);
        let proc = Proc { child, url };
        Relay { proc, ready }
    }

    fn addr(&self, kind: &str) -> SocketAddr {
        self.ready
            .get(kind)
            .unwrap_or_else(|| panic!("no `ready: {kind}` line; got {:?}", self.ready))
            .parse()
            .unwrap()
    }

    fn ws_url(&self) -> String {
        self.proc.url.clone()
    }
}

/// `clasp relay --host 127.0.0.1 ARGS`.
fn relay_cmd(args: &[&str]) -> Command {
    let mut c = common::clasp(&["relay", "--host", "127.0.0.1"]);
    c.args(args);
    c
}

/// Waits until the param at `address` has a value other than null; returns it.
async fn param(clasp: &Client, address: &str, what: &str) -> Value {
    eventually(what, || async {
        clasp.get(address).await.ok().filter(|v| *v != Value::Null)
    })
    .await
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 20 s) until `f` returns `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn registration(name: &str, ws: &str) -> Registration {
    Registration {
        name: name.into(),
        public_key: None,
        features: vec!["param".into(), "event".into()],
        endpoints: [("ws".to_owned(), ws.to_owned())].into(),
        tags: vec!["studio".into()],
        metadata: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_relay_serves_websocket_mqtt_osc_rendezvous_and_lan_discovery() {
    let rdv_port = free_port().to_string();
    let mqtt_port = free_port().to_string();
    let osc_port = free_udp_port().to_string();
    let disc_port = free_udp_port().to_string();
    let relay = Relay::start(&[
        "--memory",
        "--ws-port",
        "0",
        "--rendezvous-port",
        &rdv_port,
        "--mqtt-port",
        &mqtt_port,
        "--osc-port",
        &osc_port,
        "--discovery-port",
        &disc_port,
        "--no-mdns",
        "--tcp-port",
        "0",
        "--quic-port",
        "0",
        "--tls-self-signed",
        "--quic-tls-only",
    ]);
    let clasp = Client::connect(relay.ws_url()).await.unwrap();
    // Raw TCP and QUIC clients share the same router.
    let tcp = Client::connect(format!("tcp://{}", relay.addr("tcp")))
        .await
        .unwrap();
    let quic = Client::builder(format!("quic://localhost:{}", relay.addr("quic").port()))
        .dangerous_skip_certificate_verification()
        .connect()
        .await
        .unwrap();
    tcp.set_confirmed("/transports/tcp", 1).await.unwrap();
    quic.set_confirmed("/transports/quic", 2).await.unwrap();
    assert_eq!(quic.get("/transports/tcp").await.unwrap(), Value::Int(1));
    assert_eq!(clasp.get("/transports/quic").await.unwrap(), Value::Int(2));

    // OSC: a message from a real OSC encoder becomes a param.
    let osc = UdpSocket::bind("127.0.0.1:0").unwrap();
    let packet = rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
        addr: "/mixer/fader1".into(),
        args: vec![rosc::OscType::Float(0.5)],
    }))
    .unwrap();
    osc.send_to(&packet, relay.addr("osc")).unwrap();
    let v = param(&clasp, "/mixer/fader1", "OSC message seen as a param").await;
    assert_eq!(v, Value::Float(0.5));
    // OSC feedback: loopback is not trusted by default, so the subscribe is answered with a
    // cookie only; once the source echoes the cookie, it gets the current value, and a 1 KB
    // change reaches it too.
    let control = |addr: &str, args: Vec<rosc::OscType>| {
        let m = rosc::OscMessage {
            addr: addr.into(),
            args,
        };
        rosc::encoder::encode(&rosc::OscPacket::Message(m)).unwrap()
    };
    let subscribe = control(
        "/clasp/subscribe",
        vec![rosc::OscType::String("/mixer/**".into())],
    );
    osc.send_to(&subscribe, relay.addr("osc")).unwrap();
    let cookie = recv_osc(&osc);
    assert_eq!(cookie.addr, "/clasp/verify");
    osc.send_to(&control("/clasp/verify", cookie.args), relay.addr("osc"))
        .unwrap();
    let m = recv_osc(&osc);
    assert_eq!(m.addr, "/mixer/fader1");
    let ws = relay.addr("ws").to_string();
    eventually("the OSC source to be verified", || async {
        let metrics = support::http_get(&ws, "/metrics").await;
        (support::metric(&metrics, "clasp_osc_verifications_total") == Some(1.0)).then_some(())
    })
    .await;
    let big = "a".repeat(1000);
    clasp.set("/mixer/fader2", big.as_str()).await.unwrap();
    let m = recv_osc(&osc);
    assert_eq!(m.addr, "/mixer/fader2");
    assert_eq!(m.args, vec![rosc::OscType::String(big)]);

    // MQTT: a retained publish becomes a param; a CLASP SET reaches an MQTT subscriber.
    let mut opts = rumqttc::MqttOptions::new("relay-test", "127.0.0.1", relay.addr("mqtt").port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (mqtt, mut events) = rumqttc::AsyncClient::new(opts, 64);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            if let rumqttc::Event::Incoming(p) = ev {
                let _ = tx.send(p);
            }
        }
    });
    mqtt.subscribe("lights/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    mqtt.publish("sensors/temp", rumqttc::QoS::AtLeastOnce, true, "21.5")
        .await
        .unwrap();
    let v = param(
        &clasp,
        "/sensors/temp",
        "MQTT retained publish seen as a param",
    )
    .await;
    assert_eq!(v, Value::Float(21.5));
    // The subscription is in place once its SUBACK is back.
    tokio::time::timeout(Duration::from_secs(20), async {
        while !matches!(rx.recv().await, Some(rumqttc::Packet::SubAck(_))) {}
    })
    .await
    .expect("SUBACK");
    clasp.set("/lights/1", 255).await.unwrap();
    let (topic, payload) = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(rumqttc::Packet::Publish(p)) = rx.recv().await {
                break (p.topic, p.payload);
            }
        }
    })
    .await
    .expect("the CLASP SET reaches the MQTT subscriber");
    assert_eq!((topic.as_str(), &payload[..]), ("lights/1", &b"255"[..]));

    // Rendezvous: one registry behind both the dedicated port and /api/v1 on the WebSocket
    // port.
    let dedicated = RendezvousClient::new(&format!("http://{}", relay.addr("rendezvous"))).unwrap();
    let on_ws_port = RendezvousClient::new(&format!("http://{}", relay.addr("ws"))).unwrap();
    on_ws_port.health().await.unwrap();
    let reg = dedicated
        .register(&registration("stage-left", &relay.ws_url()))
        .await
        .unwrap();
    let found = on_ws_port
        .discover(&DiscoverQuery {
            tag: Some("studio".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].id.as_str(), found[0].name.as_str()),
        (reg.id.as_str(), "stage-left")
    );
    assert_eq!(found[0].endpoints["ws"], relay.ws_url());

    // `clasp discover --rendezvous` prints it.
    let rdv_url = format!("http://{}", relay.addr("ws"));
    let out = common::clasp_ok(&["discover", "--json", "--rendezvous", &rdv_url]);
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed[0]["id"], reg.id.as_str());
    assert_eq!(printed[0]["source"], "rendezvous");
    assert_eq!(printed[0]["url"], relay.ws_url().as_str());

    // LAN discovery: the broadcast responder answers a scan (sent straight to it here, since
    // the relay only listens on loopback) with the real WebSocket port.
    let devices = clasp_discovery::scan(&scan_to(&disc_port)).await.unwrap();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].ws_port, relay.addr("ws").port());
    assert_eq!(devices[0].name, "CLASP Router");
    assert_eq!(
        devices[0].txt.get("tcp").map(String::as_str),
        Some(relay.addr("tcp").port().to_string().as_str())
    );
    // /metrics reports the listeners too.
    let metrics = support::http_get(&relay.addr("ws").to_string(), "/metrics").await;
    let value = |name: &str| -> f64 {
        support::metric(&metrics, name).unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert_eq!(value("clasp_rendezvous_devices"), 1.0);
    assert!(value("clasp_osc_datagrams_total") >= 1.0);
    assert_eq!(value("clasp_osc_peers"), 1.0);
    assert_eq!(value("clasp_osc_verifications_total"), 1.0);
    assert_eq!(value("clasp_osc_verified_peers"), 1.0);
    assert_eq!(value("clasp_mqtt_clients"), 1.0, "the rumqttc client");
    assert_eq!(value("clasp_mqtt_sessions_kept"), 0.0);
    assert_eq!(value("clasp_mqtt_offline_dropped_total"), 0.0);
    clasp.close().await;
    tcp.close().await;
    quic.close().await;
}

/// The next OSC message `sock` receives (blocking, 20 s at most).
fn recv_osc(sock: &UdpSocket) -> rosc::OscMessage {
    let mut buf = vec![0u8; 65_536];
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("no OSC message arrived");
    match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
        rosc::OscPacket::Message(m) => m,
        rosc::OscPacket::Bundle(b) => panic!("expected a message, got {b:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn osc_allow_lets_a_source_get_feedback_without_a_round_trip() {
    // A bad --osc-allow is refused before anything starts.
    let out = relay_cmd(&["--memory", "--osc-port", "0", "--osc-allow", "touchosc"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CIDR"));

    let relay = Relay::start(&[
        "--memory",
        "--ws-port",
        "0",
        "--rendezvous-port",
        "0",
        "--osc-port",
        "0",
        "--osc-allow",
        "10.0.0.0/8,127.0.0.2",
        "--osc-allow",
        "127.0.0.1/32",
        "--discovery-port",
        "0",
        "--no-mdns",
    ]);
    let clasp = Client::connect(relay.ws_url()).await.unwrap();
    let big = "a".repeat(1000);
    clasp.set_confirmed("/lan/x", big.as_str()).await.unwrap();
    // 127.0.0.1 is allowed: the 1 KB value comes back for a 32-byte subscribe.
    let osc = UdpSocket::bind("127.0.0.1:0").unwrap();
    let subscribe = rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
        addr: "/clasp/subscribe".into(),
        args: vec![rosc::OscType::String("/lan/**".into())],
    }))
    .unwrap();
    osc.send_to(&subscribe, relay.addr("osc")).unwrap();
    let m = recv_osc(&osc);
    assert_eq!(m.addr, "/lan/x");
    assert_eq!(m.args, vec![rosc::OscType::String(big)]);

    let metrics = support::http_get(&relay.addr("ws").to_string(), "/metrics").await;
    let value = |name: &str| -> f64 {
        support::metric(&metrics, name).unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert_eq!(value("clasp_osc_verified_peers"), 1.0);
    assert_eq!(value("clasp_osc_amplification_dropped_total"), 0.0);
    assert_eq!(value("clasp_osc_rate_limited_total"), 0.0);
    assert_eq!(value("clasp_osc_verifications_total"), 0.0);
    assert_eq!(value("clasp_osc_verify_failed_total"), 0.0);
    clasp.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rendezvous_registrations_and_the_router_id_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let disc_port = free_udp_port().to_string();
    let args = persistent(d, &disc_port);
    let mut relay = Relay::start(&args);
    let rdv = RendezvousClient::new(&format!("http://{}", relay.addr("ws"))).unwrap();
    let reg = rdv
        .register(&registration("booth", "ws://10.0.0.5:7330/"))
        .await
        .unwrap();
    let first_id = clasp_discovery::scan(&scan_to(&disc_port)).await.unwrap()[0]
        .id
        .clone();
    common::signal(&relay.proc, "-TERM");
    assert!(relay.proc.child.wait().unwrap().success());

    let relay = Relay::start(&args);
    let rdv = RendezvousClient::new(&format!("http://{}", relay.addr("ws"))).unwrap();
    let found = rdv.discover(&DiscoverQuery::default()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].id.as_str(), found[0].name.as_str()),
        (reg.id.as_str(), "booth")
    );
    assert!(rdv.refresh(&reg.id).await.unwrap());
    let second_id = clasp_discovery::scan(&scan_to(&disc_port)).await.unwrap()[0]
        .id
        .clone();
    assert_eq!(first_id, second_id, "the router keeps its discovery id");
}

/// Relay arguments with state in `dir`, the WebSocket and rendezvous ports chosen by the
/// system, LAN discovery answering on `discovery_port` and no mDNS.
fn persistent<'a>(dir: &'a str, discovery_port: &'a str) -> [&'a str; 9] {
    [
        "--data-dir",
        dir,
        "--ws-port",
        "0",
        "--rendezvous-port",
        "0",
        "--discovery-port",
        discovery_port,
        "--no-mdns",
    ]
}

/// A discovery scan sent straight to 127.0.0.1:`port` (the relay only listens on loopback).
fn scan_to(port: &str) -> clasp_discovery::ScanOptions {
    clasp_discovery::ScanOptions::unicast(
        "127.0.0.1:0".parse().unwrap(),
        vec![format!("127.0.0.1:{port}").parse().unwrap()],
        Duration::from_secs(3),
    )
}

fn token(dir: &str, scopes: &str) -> String {
    let out = common::clasp_ok(&["token", "create", "--data-dir", dir, "--scopes", scopes]);
    String::from_utf8(out).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tokens_on_rendezvous_writes_need_a_token_and_osc_needs_one_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let writer = token(d, "write:/clasp/rendezvous/**");
    let reader = token(d, "read:/**");

    let args = persistent(d, "0");
    // OSC peers cannot send a token: a router that requires tokens needs --osc-token.
    let out = relay_cmd(&args)
        .args(["--osc-port", "0"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--osc-token"), "{err}");

    let relay = Relay::start(&args);
    let base = format!("http://{}", relay.addr("ws"));
    let anonymous = RendezvousClient::new(&base).unwrap();
    let reg = registration("secured", "ws://10.0.0.9:7330/");
    let refused = anonymous.register(&reg).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let read_only = RendezvousClient::new(&base).unwrap().with_token(reader);
    let refused = read_only.register(&reg).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let registrar = RendezvousClient::new(&base).unwrap().with_token(writer);
    let ok = registrar.register(&reg).await.unwrap();
    // Discovery stays open, as in the reference.
    let found = anonymous.discover(&DiscoverQuery::default()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(!anonymous.unregister(&ok.id).await.is_ok_and(|gone| gone));
    // The secret alone is not enough while tokens are on...
    let refused = anonymous
        .unregister_with_secret(&ok.id, ok.secret.as_deref())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    // ...and neither is a token that may write: unregister needs the owner secret too.
    let refused = registrar.unregister(&ok.id).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    assert_eq!(found_ids(&anonymous).await, std::slice::from_ref(&ok.id));
    assert!(
        registrar
            .unregister_with_secret(&ok.id, ok.secret.as_deref())
            .await
            .unwrap()
    );
    assert!(found_ids(&anonymous).await.is_empty());
}

/// The ids of every device the rendezvous API lists.
async fn found_ids(rdv: &RendezvousClient) -> Vec<String> {
    rdv.discover(&DiscoverQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rendezvous_secret_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let writer = token(d, "write:/clasp/rendezvous/**");
    let args = persistent(d, "0");

    // The opt-out and the refresh requirement contradict each other.
    let out = relay_cmd(&args)
        .args([
            "--rendezvous-allow-token-unregister",
            "--rendezvous-require-secret",
        ])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--rendezvous-allow-token-unregister"), "{err}");

    // Opted out (the reference's behaviour): a token that may write unregisters any device.
    {
        let mut opted_out = args.to_vec();
        opted_out.push("--rendezvous-allow-token-unregister");
        let mut relay = Relay::start(&opted_out);
        let base = format!("http://{}", relay.addr("ws"));
        let anonymous = RendezvousClient::new(&base).unwrap();
        let registrar = RendezvousClient::new(&base)
            .unwrap()
            .with_token(writer.clone());
        let ok = registrar
            .register(&registration("opted-out", "ws://10.0.0.9:7330/"))
            .await
            .unwrap();
        let refused = anonymous.unregister(&ok.id).await.unwrap_err();
        assert!(refused.to_string().contains("401"), "{refused}");
        assert!(registrar.unregister(&ok.id).await.unwrap());
        assert!(found_ids(&anonymous).await.is_empty());
        common::signal(&relay.proc, "-TERM");
        assert!(relay.proc.child.wait().unwrap().success());
    }

    // --rendezvous-require-secret (also through its environment variable) keeps meaning what
    // it did: refresh needs the secret as well.
    let mut cmd = relay_cmd(&args);
    cmd.env("CLASP_RENDEZVOUS_REQUIRE_SECRET", "true");
    let relay = Relay::spawn(cmd);
    let base = format!("http://{}", relay.addr("ws"));
    let registrar = RendezvousClient::new(&base).unwrap().with_token(writer);
    let ok = registrar
        .register(&registration("strict", "ws://10.0.0.9:7330/"))
        .await
        .unwrap();
    let refused = registrar.refresh(&ok.id).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    assert!(
        registrar
            .refresh_with_secret(&ok.id, ok.secret.as_deref())
            .await
            .unwrap()
    );
    let refused = registrar.unregister(&ok.id).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    assert!(
        registrar
            .unregister_with_secret(&ok.id, ok.secret.as_deref())
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rendezvous_follows_tokens_added_while_the_relay_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let relay = Relay::start(&[
        "--data-dir",
        d,
        "--ws-port",
        "0",
        "--rendezvous-port",
        "0",
        "--discovery-port",
        "0",
        "--no-mdns",
    ]);
    let base = format!("http://{}", relay.addr("ws"));
    let anonymous = RendezvousClient::new(&base).unwrap();
    // Open mode: anyone may register.
    anonymous
        .register(&registration("early", "ws://10.0.0.1:7330/"))
        .await
        .unwrap();
    // The first token turns authentication on (the token file is reloaded within a second).
    let writer = token(d, "write:/**");
    let reg = registration("late", "ws://10.0.0.2:7330/");
    // Probe with an unregister of an unknown id: 404 while open, 401 once tokens are required.
    let e = eventually("unregister refused without a token", || async {
        anonymous.unregister("no-such-id").await.err()
    })
    .await;
    assert!(e.to_string().contains("401"), "{e}");
    let e = anonymous.register(&reg).await.unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    let registrar = RendezvousClient::new(&base).unwrap().with_token(writer);
    registrar.register(&reg).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtts_uses_the_relay_certificate_and_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = persistent(d, "0");
    // No certificate: a clear refusal at start.
    let out = relay_cmd(&args)
        .args(["--mqtts-port", "0"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a certificate"), "{err}");

    let have = ["mosquitto_pub"].iter().all(|p| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
    });
    if !have {
        eprintln!(
            "SKIPPED the mosquitto part: mosquitto_pub not installed (Debian: mosquitto-clients)"
        );
        return;
    }
    // The self-signed certificate serves QUIC and MQTT over TLS; the WebSocket stays ws://.
    let relay = Relay::start(
        &[
            &args[..],
            &[
                "--tls-self-signed",
                "--quic-port",
                "0",
                "--quic-tls-only",
                "--mqtts-port",
                "0",
            ],
        ]
        .concat(),
    );
    let cafile = dir.path().join("tls/self-signed.crt");
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &relay.addr("mqtts").port().to_string(),
        ])
        .arg("--cafile")
        .arg(&cafile)
        .args(["-t", "stage/fog", "-m", "0.8", "-r", "-q", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mosquitto_pub over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clasp = Client::connect(relay.ws_url()).await.unwrap();
    assert_eq!(
        param(&clasp, "/stage/fog", "the MQTTS publish as a param").await,
        Value::Float(0.8)
    );
    clasp.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kept_mqtt_sessions_survive_a_relay_restart() {
    let have = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| d.join("mosquitto_sub").is_file())
    });
    if !have {
        eprintln!(
            "SKIPPED kept_mqtt_sessions_survive_a_relay_restart: mosquitto_sub not installed (Debian: mosquitto-clients)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let port = free_port().to_string();
    let args = [&persistent(d, "0")[..], &["--mqtt-port", &port]].concat();
    let sub = |wait: &str| {
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-c",
                "-i",
                "keeper",
                "-q",
                "1",
            ])
            .args(["-t", "kept/#", "-C", "1", "-W", wait, "-F", "%t|%p"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let mut relay = Relay::start(&args);
    // Subscribes with a persistent session, gets nothing, leaves after a second.
    assert!(sub("1").stdout.is_empty());
    common::signal(&relay.proc, "-TERM");
    assert!(relay.proc.child.wait().unwrap().success());

    let relay = Relay::start(&args);
    let clasp = Client::connect(relay.ws_url()).await.unwrap();
    clasp
        .emit("/kept/news", Value::from("after restart"))
        .await
        .unwrap();
    let out = sub("20");
    assert!(
        out.status.success(),
        "mosquitto_sub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "kept/news|after restart",
        "the session, and its subscription, outlived the restart"
    );
    clasp.close().await;
}
