//! UDP broadcast discovery on 127.0.0.1 with real sockets: responder answers, scanner collects.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use clasp_discovery::{BroadcastResponder, RouterInfo, ScanOptions, Source, scan};
use clasp_proto::{Features, Hello, Message, Set, Str, Value, Welcome, decode_frame, encode};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn info() -> RouterInfo {
    RouterInfo::new("Loop Router", Features::ROUTER, 9123)
        .with_id("router-loop-1")
        .with_extra("quic", "9124")
}

fn hello() -> bytes::Bytes {
    encode(&Message::Hello(Hello {
        version: 1,
        features: Features(0),
        name: Str::from_static("Discovery"),
        token: None,
    }))
    .unwrap()
}

async fn responder() -> (clasp_discovery::ResponderTask, SocketAddr) {
    let r = BroadcastResponder::bind("127.0.0.1:0".parse().unwrap(), info())
        .await
        .unwrap();
    let task = r.spawn().unwrap();
    let addr = task.local_addr();
    (task, addr)
}

async fn recv_message(sock: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 4096];
    let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    decode_frame(&buf[..n]).unwrap().message
}

#[tokio::test]
async fn scan_finds_responder_with_real_ws_port_and_stable_id() {
    let (_task, addr) = responder().await;
    let opts = ScanOptions::unicast(
        "127.0.0.1:0".parse().unwrap(),
        vec![addr],
        Duration::from_secs(2),
    );
    let first = scan(&opts).await.unwrap();
    let second = scan(&opts).await.unwrap();
    for found in [&first, &second] {
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!(d.id, "router-loop-1");
        assert_eq!(d.name, "Loop Router");
        assert_eq!(d.ws_port, 9123);
        assert_eq!(d.ws_url, "ws://127.0.0.1:9123/clasp");
        assert_eq!(d.features, Features::ROUTER);
        assert_eq!(d.version, 1);
        assert_eq!(d.source, Source::Broadcast);
        assert_eq!(d.txt.get("quic").map(String::as_str), Some("9124"));
        assert_eq!(
            d.addresses,
            vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
    }
    assert_eq!(first, second, "same device on every scan");
}

#[tokio::test]
async fn answer_is_a_reference_compatible_welcome_then_announce() {
    let (_task, addr) = responder().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..2 {
        sock.send_to(&hello(), addr).await.unwrap();
        let Message::Welcome(w) = recv_message(&sock).await else {
            panic!("first answer must be WELCOME")
        };
        assert_eq!(w.version, 1);
        assert_eq!(&*w.name, "Loop Router");
        assert_eq!(w.features, Features::ROUTER);
        assert!(w.time > 0);
        assert_eq!(w.token, None);
        sessions.push(w.session.to_string());
        let Message::Announce(a) = recv_message(&sock).await else {
            panic!("second answer must be ANNOUNCE")
        };
        let rec = clasp_discovery::record_from_announce(&a).unwrap();
        assert_eq!(rec.get("ws").map(String::as_str), Some("9123"));
        assert_eq!(rec.get("version").map(String::as_str), Some("1"));
        assert_eq!(rec.get("features").map(String::as_str), Some("pesgt"));
    }
    assert_eq!(
        sessions,
        vec!["router-loop-1", "router-loop-1"],
        "stable session id"
    );
}

#[tokio::test]
async fn garbage_and_other_frames_get_no_answer() {
    let (_task, addr) = responder().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let set = encode(&Message::Set(Set {
        address: Str::from_static("/a"),
        value: Value::Int(1),
        ..Set::default()
    }))
    .unwrap();
    let h = hello();
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x53],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        h[..h.len() - 1].to_vec(),    // truncated HELLO
        vec![0x53, 0x00, 0xff, 0xff], // length beyond the datagram
        set.to_vec(),
        vec![0xAB; 9000], // longer than the read buffer
    ];
    for j in &junk {
        sock.send_to(j, addr).await.unwrap();
    }
    // Loopback UDP keeps order: had any junk been answered, that answer would come first.
    sock.send_to(&h, addr).await.unwrap();
    let Message::Welcome(w) = recv_message(&sock).await else {
        panic!("the first answer must be the WELCOME to the valid HELLO")
    };
    assert_eq!(&*w.session, "router-loop-1");
}

#[tokio::test]
async fn answers_are_rate_limited_per_source() {
    let (_task, addr) = responder().await;
    let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let h = hello();
    for _ in 0..60 {
        flooder.send_to(&h, addr).await.unwrap();
    }
    let mut welcomes = 0;
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok((n, _))) = timeout(Duration::from_secs(2), flooder.recv_from(&mut buf)).await {
        if let Ok(f) = decode_frame(&buf[..n])
            && matches!(f.message, Message::Welcome(_))
        {
            welcomes += 1;
        }
    }
    assert!(welcomes >= 1, "the first HELLOs are answered");
    assert!(
        welcomes < 60,
        "a flood is not answered in full ({welcomes})"
    );
    // Another source is still served.
    let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    other.send_to(&h, addr).await.unwrap();
    assert!(matches!(recv_message(&other).await, Message::Welcome(_)));
}

#[tokio::test]
async fn bare_welcome_from_reference_responder_assumes_default_port() {
    // A stand-in for the reference responder: WELCOME only, a new session per answer.
    let fake = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = fake.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut n_answers = 0u32;
        loop {
            let (n, from) = fake.recv_from(&mut buf).await.unwrap();
            if let Ok(f) = decode_frame(&buf[..n])
                && matches!(f.message, Message::Hello(_))
            {
                n_answers += 1;
                let w = encode(&Message::Welcome(Welcome {
                    version: 1,
                    features: Features(0xE0),
                    time: 1,
                    session: Str::from(format!("random-{n_answers}")),
                    name: Str::from_static("Ref Router"),
                    token: None,
                }))
                .unwrap();
                fake.send_to(&w, from).await.unwrap();
            }
        }
    });
    let opts = ScanOptions::unicast(
        "127.0.0.1:0".parse().unwrap(),
        vec![addr],
        Duration::from_secs(2),
    );
    let found = scan(&opts).await.unwrap();
    server.abort();
    assert_eq!(
        found.len(),
        1,
        "answers of one responder are merged: {found:?}"
    );
    let d = &found[0];
    assert_eq!(d.name, "Ref Router");
    assert_eq!(d.ws_port, 7330);
    assert_eq!(d.ws_url, "ws://127.0.0.1:7330/clasp");
    assert_eq!(d.features, Features(0xE0));
    assert!(d.id.starts_with("random-"));
}
