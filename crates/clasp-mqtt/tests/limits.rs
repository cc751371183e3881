//! Regression tests for limits a hostile or unusual MQTT client must not get around: one
//! SUBSCRIBE cannot queue several copies of the state, the per-IP connection limit holds,
//! MQTT 5 retain-as-published never marks an event retained, and a message too large for the
//! client does not use up its QoS 1 window. Raw MQTT bytes over real sockets.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use clasp_client::Client;
use clasp_mqtt::MqttConfig;
use common::{Env, Setup, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn env_with(config: MqttConfig) -> Env {
    Env::start(Setup {
        config,
        ..Setup::default()
    })
    .await
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    varint(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// CONNECT (clean session, keep-alive 60 s); for MQTT 5 with the given CONNECT properties.
fn connect(client_id: &str, v5_props: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(if v5_props.is_some() { 5 } else { 4 });
    body.push(0x02);
    body.extend_from_slice(&60u16.to_be_bytes());
    if let Some(props) = v5_props {
        varint(props.len(), &mut body);
        body.extend_from_slice(props);
    }
    string(client_id, &mut body);
    packet(0x10, &body)
}

/// SUBSCRIBE `filters` (each with its options byte).
fn subscribe(pkid: u16, filters: &[(&str, u8)], v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for (f, opts) in filters {
        string(f, &mut body);
        body.push(*opts);
    }
    packet(0x82, &body)
}

/// Reads whole packets: (first byte, body).
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    /// The next packet, or `None` when the server closed the connection.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((len, hdr)) = Self::header(&self.buf)
                && self.buf.len() >= hdr + len
            {
                let first = self.buf[0];
                let body = self.buf[hdr..hdr + len].to_vec();
                self.buf.drain(..hdr + len);
                return Some((first, body));
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("no packet in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn header(buf: &[u8]) -> Option<(usize, usize)> {
        let (mut len, mut mult) = (0usize, 1usize);
        for (i, b) in buf.iter().enumerate().skip(1).take(4) {
            len += (*b as usize & 0x7f) * mult;
            if b & 0x80 == 0 {
                return Some((len, i + 1));
            }
            mult *= 128;
        }
        None
    }

    async fn until(&mut self, kind: u8) -> Vec<(u8, Vec<u8>)> {
        let mut seen = Vec::new();
        loop {
            let p = self.next().await.expect("connection closed");
            let done = p.0 >> 4 == kind;
            seen.push(p);
            if done {
                return seen;
            }
        }
    }
}

async fn open(env: &Env, connect_packet: Vec<u8>) -> Reader {
    let mut stream = TcpStream::connect(env.mqtt).await.unwrap();
    stream.write_all(&connect_packet).await.unwrap();
    let mut r = Reader {
        stream,
        buf: Vec::new(),
    };
    let (first, body) = r.next().await.expect("CONNACK");
    assert_eq!(first, 0x20);
    assert_eq!(body[1], 0, "CONNACK refused: {body:?}");
    r
}

#[tokio::test]
async fn one_subscribe_sends_each_retained_param_once_and_caps_its_filters() {
    let env = Env::plain().await;
    let clasp = Client::connect(env.ws.clone()).await.unwrap();
    for i in 0..20 {
        clasp.set_confirmed(&format!("/big/{i}"), i).await.unwrap();
    }
    let mut r = open(&env, connect("amp", None)).await;
    // 100 filters that all match the same 20 params.
    let mut filters = vec![("#", 0u8), ("big/#", 0), ("big/+", 0)];
    filters.extend(std::iter::repeat_n(("#", 0u8), 97));
    r.stream
        .write_all(&subscribe(1, &filters, false))
        .await
        .unwrap();
    // SUBACK first, as Mosquitto does, then the retained messages.
    let got = r.until(9).await;
    let [suback] = &got[..] else {
        panic!("SUBACK first: {got:?}")
    };
    let mut publishes = Vec::new();
    for _ in 0..20 {
        publishes.push(r.next().await.expect("a retained message"));
    }
    let more = tokio::time::timeout(Duration::from_millis(300), r.next()).await;
    assert!(
        more.is_err(),
        "each param once, as a retained message: {more:?}"
    );
    assert!(publishes.iter().all(|(first, _)| *first == 0x31));
    let codes = &suback.1[2..];
    assert_eq!(codes.len(), 100);
    assert!(codes[..64].iter().all(|c| *c == 0), "{codes:?}");
    assert!(codes[64..].iter().all(|c| *c == 0x80), "{codes:?}");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn connections_past_the_per_ip_limit_are_closed_and_slots_come_back() {
    let env = env_with(MqttConfig {
        max_connections_per_ip: 2,
        ..MqttConfig::default()
    })
    .await;
    let a = open(&env, connect("ip-a", None)).await;
    let _b = open(&env, connect("ip-b", None)).await;
    let mut c = TcpStream::connect(env.mqtt).await.unwrap();
    let _ = c.write_all(&connect("ip-c", None)).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, c.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed without a CONNACK");
    drop(a);
    // The slot is given back when the first connection's task ends.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut s = TcpStream::connect(env.mqtt).await.unwrap();
        let _ = s.write_all(&connect("ip-d", None)).await;
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        if n > 0 {
            assert_eq!(buf[0], 0x20);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.stop().await;
}

#[tokio::test]
async fn v5_retain_as_published_marks_sets_but_never_events() {
    let env = Env::plain().await;
    let clasp = Client::connect(env.ws.clone()).await.unwrap();
    let mut r = open(&env, connect("rap", Some(&[]))).await;
    // Options: QoS 0, retain-as-published (0x08), retain handling 2 (no retained on subscribe).
    r.stream
        .write_all(&subscribe(1, &[("ev/#", 0x08 | 0x20)], true))
        .await
        .unwrap();
    r.until(9).await;
    clasp.emit("/ev/x", "ding").await.unwrap();
    let (first, _) = r.until(3).await.pop().unwrap();
    assert_eq!(first, 0x30, "an event is not retained");
    clasp.set("/ev/y", 1).await.unwrap();
    let (first, _) = r.until(3).await.pop().unwrap();
    assert_eq!(first, 0x31, "a SET is state: retained as published");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn a_message_too_large_for_the_client_does_not_stall_its_qos1_window() {
    let env = Env::plain().await;
    let clasp = Client::connect(env.ws.clone()).await.unwrap();
    // Receive maximum 1 (0x21), maximum packet size 60 (0x27).
    let props = [0x21, 0, 1, 0x27, 0, 0, 0, 60];
    let mut r = open(&env, connect("small", Some(&props))).await;
    r.stream
        .write_all(&subscribe(1, &[("s/#", 0x01 | 0x20)], true))
        .await
        .unwrap();
    r.until(9).await;
    clasp.set("/s/big", "x".repeat(200)).await.unwrap();
    clasp.set("/s/small", 5).await.unwrap();
    let (first, body) = r.until(3).await.pop().unwrap();
    assert_eq!(first & 0xf6, 0x32, "QoS 1 PUBLISH");
    let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    assert_eq!(&body[2..2 + topic_len], b"s/small");
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn a_connection_taken_over_by_its_client_id_publishes_its_will() {
    use futures_util::StreamExt;
    let env = Env::plain().await;
    let clasp = Client::connect(env.ws.clone()).await.unwrap();
    let mut wills = clasp.subscribe("/will/**").await.unwrap();
    // CONNECT with a will (flag 0x04): topic will/a, message "gone".
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.extend_from_slice(&[4, 0x02 | 0x04]);
    body.extend_from_slice(&60u16.to_be_bytes());
    string("same-id", &mut body);
    string("will/a", &mut body);
    string("gone", &mut body);
    let _first = open(&env, packet(0x10, &body)).await;
    let _second = open(&env, connect("same-id", None)).await;
    let u = tokio::time::timeout(WAIT, wills.next())
        .await
        .expect("the will was published")
        .unwrap();
    assert_eq!(u.address, "/will/a");
    assert_eq!(u.value, clasp_proto::Value::String("gone".into()));
    clasp.close().await;
    env.stop().await;
}

#[tokio::test]
async fn a_client_that_reads_but_never_acknowledges_is_cut_off_by_bytes() {
    let env = env_with(MqttConfig {
        max_inflight: 4,
        max_backlog_bytes: 1 << 20,
        ..MqttConfig::default()
    })
    .await;
    let clasp = Client::connect(env.ws.clone()).await.unwrap();
    let mut r = open(&env, connect("no-puback", None)).await;
    r.stream
        .write_all(&subscribe(1, &[("big/#", 1)], false))
        .await
        .unwrap();
    r.until(9).await;
    // 60 KB QoS 1 events it reads and never PUBACKs: four fill its window, and the rest wait,
    // in the listener's backlog (1 MiB here) or in the router's queue for the session (16
    // MiB), until one bound is passed and the client is cut off.
    let blob = "z".repeat(60_000);
    for _ in 0..400 {
        clasp.emit("/big/e", blob.as_str()).await.unwrap();
    }
    let mut publishes = 0;
    while let Some((first, _)) = r.next().await {
        if first >> 4 == 3 {
            publishes += 1;
        }
    }
    assert!(publishes <= 5, "{publishes} publishes before the cut-off");
    clasp.close().await;
    env.stop().await;
}
