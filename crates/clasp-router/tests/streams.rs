//! Raw TCP and QUIC listeners, driven with real sockets and a real QUIC stack (quinn): framing
//! errors are answered and the stream stays in sync, slow or silent clients block nobody, and
//! shutdown closes every connection.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clasp_proto::*;
use clasp_router::server::{QuicListen, ServerConfig, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

#[path = "support/mod.rs"]
mod raw;
#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

struct Running {
    router: support::Router,
    tcp: SocketAddr,
    quic: SocketAddr,
    cert: rustls::pki_types::CertificateDer<'static>,
}

impl Running {
    async fn start(f: impl FnOnce(&mut ServerConfig)) -> Running {
        let (tls, _, _) =
            TlsConfig::self_signed(&["127.0.0.1".into(), "localhost".into()]).unwrap();
        let cert = tls.cert_chain[0].clone();
        let router = support::Router::start_with(|config| {
            config.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
            config.quic = Some(QuicListen {
                listen: "127.0.0.1:0".parse().unwrap(),
                tls,
            });
            config.writer_threads = 1;
            f(config);
        })
        .await;
        Running {
            tcp: router.tcp.unwrap(),
            quic: router.quic.unwrap(),
            router,
            cert,
        }
    }

    async fn stop(self) {
        self.router.stop().await;
    }
}

fn hello() -> Message {
    Message::Hello(Hello {
        version: 1,
        features: Features::CLIENT_DEFAULT,
        name: "raw".into(),
        token: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Raw TCP
// ---------------------------------------------------------------------------------------------

struct RawTcp {
    s: TcpStream,
}

impl RawTcp {
    async fn connect(addr: SocketAddr) -> RawTcp {
        RawTcp {
            s: TcpStream::connect(addr).await.unwrap(),
        }
    }

    async fn send_message(&mut self, payload: &[u8]) {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        self.s.write_all(&out).await.unwrap();
    }

    async fn send(&mut self, m: &Message) {
        self.send_message(&encode(m).unwrap()).await;
    }

    /// The next message, or `None` at end of stream.
    async fn recv(&mut self) -> Option<Message> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(WAIT, self.s.read_exact(&mut len))
            .await
            .expect("no message in time")
        {
            Ok(_) => {}
            Err(_) => return None,
        }
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut buf).await.unwrap();
        Some(decode_frame(&buf).unwrap().message)
    }

    /// The next message that is not a PING or a SNAPSHOT.
    async fn recv_reply(&mut self) -> Message {
        loop {
            match self.recv().await.expect("connection closed") {
                Message::Ping | Message::Snapshot(_) => continue,
                m => return m,
            }
        }
    }

    async fn handshake(addr: SocketAddr) -> RawTcp {
        let mut c = RawTcp::connect(addr).await;
        c.send(&hello()).await;
        assert!(matches!(c.recv_reply().await, Message::Welcome(_)));
        c
    }

    async fn ping_pong(&mut self) {
        self.send(&Message::Ping).await;
        assert_eq!(self.recv_reply().await, Message::Pong);
    }
}

fn error_code(m: &Message) -> u16 {
    match m {
        Message::Error(e) => e.code.code(),
        other => panic!("expected ERROR, got {other:?}"),
    }
}

#[tokio::test]
async fn tcp_oversize_message_is_skipped_and_the_next_one_works() {
    let r = Running::start(|_| {}).await;
    let mut c = RawTcp::handshake(r.tcp).await;
    // A length prefix over the limit, then its body in pieces, then a valid confirmed SET.
    let big = 70_000usize;
    c.s.write_all(&(big as u32).to_be_bytes()).await.unwrap();
    let body = vec![0x53u8; big];
    for chunk in body.chunks(9_999) {
        c.s.write_all(chunk).await.unwrap();
    }
    let set = encode_with(
        &Message::Set(Set {
            address: "/after/big".into(),
            value: Value::Int(7),
            ..Default::default()
        }),
        FrameOptions::with_qos(Qos::Confirm),
    )
    .unwrap();
    c.send_message(&set).await;
    assert_eq!(error_code(&c.recv_reply().await), 413);
    match c.recv_reply().await {
        Message::Ack(a) => assert_eq!(a.address.as_deref(), Some("/after/big")),
        other => panic!("expected ACK, got {other:?}"),
    }
    // Empty message and garbage inside a well-formed prefix: ERROR each, still in sync.
    c.send_message(&[]).await;
    assert_eq!(error_code(&c.recv_reply().await), 100);
    c.send_message(b"not a clasp frame").await;
    let code = error_code(&c.recv_reply().await);
    assert!((100..=101).contains(&code), "code {code}");
    c.ping_pong().await;
    // All three are counted as rejected frames, the one the framing skipped included.
    let text = raw::http_get(&r.router.addr.to_string(), "/metrics").await;
    assert_eq!(
        raw::metric(&text, "clasp_frames_rejected_total"),
        Some(3.0),
        "{text}"
    );
    r.stop().await;
}

#[tokio::test]
async fn tcp_silent_connection_does_not_block_others_and_times_out() {
    let r = Running::start(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let mut silent = TcpStream::connect(r.tcp).await.unwrap();
    let mut c = RawTcp::handshake(r.tcp).await;
    c.ping_pong().await;
    // The silent one is closed after the handshake timeout.
    let mut b = [0u8; 64];
    let n = tokio::time::timeout(WAIT, silent.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "expected end of stream");
    r.stop().await;
}

#[tokio::test]
async fn tcp_per_ip_limit_answers_429() {
    let r = Running::start(|c| c.max_connections_per_ip = 1).await;
    let mut first = RawTcp::handshake(r.tcp).await;
    let mut second = RawTcp::connect(r.tcp).await;
    assert_eq!(error_code(&second.recv().await.unwrap()), 429);
    assert!(second.recv().await.is_none());
    first.ping_pong().await;
    r.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Raw QUIC
// ---------------------------------------------------------------------------------------------

fn quic_client(cert: &rustls::pki_types::CertificateDer<'static>, alpn: &[u8]) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep
}

struct RawQuic {
    _ep: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
}

impl RawQuic {
    async fn connect(r: &Running, alpn: &[u8]) -> RawQuic {
        let ep = quic_client(&r.cert, alpn);
        let conn = ep.connect(r.quic, "127.0.0.1").unwrap().await.unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        RawQuic {
            _ep: ep,
            conn,
            send,
            recv,
            reader: FrameReader::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, m: &Message) {
        self.write(&encode(m).unwrap()).await;
    }

    async fn recv(&mut self) -> Option<Message> {
        loop {
            if let Some(f) = self.reader.next_frame() {
                return Some(f.unwrap().decode().unwrap());
            }
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(WAIT, self.recv.read(&mut buf))
                .await
                .expect("no message in time");
            match read {
                Ok(Some(n)) => self.reader.push(&buf[..n]),
                _ => return None,
            }
        }
    }

    async fn recv_reply(&mut self) -> Message {
        loop {
            match self.recv().await.expect("connection closed") {
                Message::Ping | Message::Snapshot(_) => continue,
                m => return m,
            }
        }
    }

    async fn handshake(r: &Running, alpn: &[u8]) -> RawQuic {
        let mut c = RawQuic::connect(r, alpn).await;
        c.send(&hello()).await;
        assert!(matches!(c.recv_reply().await, Message::Welcome(_)));
        c
    }
}

#[tokio::test]
async fn quic_bad_magic_and_oversize_frames_are_answered_and_the_stream_stays_in_sync() {
    let r = Running::start(|c| c.router.max_payload = 1000).await;
    let mut c = RawQuic::handshake(&r, b"clasp").await;
    // Bytes that do not start a frame ('S' = 0x53 is the magic; none here).
    c.write(b"garbage!").await;
    // A frame whose payload is over the configured limit, sent in pieces.
    let mut big = vec![0x53, 0x01];
    big.extend_from_slice(&5000u16.to_be_bytes());
    big.extend(std::iter::repeat_n(0xAA, 5000));
    for chunk in big.chunks(777) {
        c.write(chunk).await;
    }
    // Several valid frames coalesced into one write.
    let mut both = encode(&Message::Ping).unwrap().to_vec();
    both.extend_from_slice(
        &encode_with(
            &Message::Set(Set {
                address: "/q/ok".into(),
                value: Value::Float(0.5),
                ..Default::default()
            }),
            FrameOptions::with_qos(Qos::Confirm),
        )
        .unwrap(),
    );
    c.write(&both).await;
    assert_eq!(error_code(&c.recv_reply().await), 100);
    assert_eq!(error_code(&c.recv_reply().await), 413);
    assert_eq!(c.recv_reply().await, Message::Pong);
    assert!(matches!(c.recv_reply().await, Message::Ack(_)));
    let text = raw::http_get(&r.router.addr.to_string(), "/metrics").await;
    assert_eq!(
        raw::metric(&text, "clasp_frames_rejected_total"),
        Some(2.0),
        "{text}"
    );
    r.stop().await;
}

#[tokio::test]
async fn quic_accepts_the_reference_alpn() {
    let r = Running::start(|_| {}).await;
    let mut c = RawQuic::handshake(&r, b"clasp/2").await;
    c.send(&Message::Ping).await;
    assert_eq!(c.recv_reply().await, Message::Pong);
    r.stop().await;
}

#[tokio::test]
async fn quic_connection_without_a_stream_does_not_block_others_and_is_closed() {
    let r = Running::start(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    // Connects (QUIC handshake done) but never opens a stream.
    let ep = quic_client(&r.cert, b"clasp");
    let idle = ep.connect(r.quic, "127.0.0.1").unwrap().await.unwrap();
    // Others still get in at once.
    let mut c = RawQuic::handshake(&r, b"clasp").await;
    c.send(&Message::Ping).await;
    assert_eq!(c.recv_reply().await, Message::Pong);
    // The idle connection is dropped once the handshake timeout passes.
    tokio::time::timeout(WAIT, idle.closed()).await.unwrap();
    r.stop().await;
}

#[tokio::test]
async fn shutdown_closes_tcp_and_quic_connections() {
    let r = Running::start(|_| {}).await;
    let mut t = RawTcp::handshake(r.tcp).await;
    let q = RawQuic::handshake(&r, b"clasp").await;
    let RawQuic { conn, mut recv, .. } = q;
    r.stop().await;
    // TCP: end of stream (after any queued frames).
    loop {
        match t.recv().await {
            None => break,
            Some(Message::Ping | Message::Snapshot(_)) => continue,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    // QUIC: the stream finishes, then the connection closes with 1001.
    let mut buf = [0u8; 1024];
    while let Ok(Some(_)) = tokio::time::timeout(WAIT, recv.read(&mut buf))
        .await
        .unwrap()
    {}
    let reason = tokio::time::timeout(WAIT, conn.closed()).await.unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(1001))
        }
        other => panic!("unexpected close {other:?}"),
    }
}

#[tokio::test]
async fn frames_cross_between_tcp_and_quic() {
    let r = Running::start(|_| {}).await;
    let mut t = RawTcp::handshake(r.tcp).await;
    let mut q = RawQuic::handshake(&r, b"clasp").await;
    q.send(&Message::Subscribe(Subscribe {
        id: 1,
        pattern: "/x/**".into(),
        ..Default::default()
    }))
    .await;
    q.send(&Message::Ping).await;
    assert_eq!(q.recv_reply().await, Message::Pong);
    t.send(&Message::Set(Set {
        address: "/x/y".into(),
        value: Value::Bytes(Bytes::from(vec![1u8; 30_000])),
        ..Default::default()
    }))
    .await;
    match q.recv_reply().await {
        Message::Set(s) => {
            assert_eq!(&*s.address, "/x/y");
            assert_eq!(s.value, Value::Bytes(Bytes::from(vec![1u8; 30_000])));
        }
        other => panic!("expected SET, got {other:?}"),
    }
    r.stop().await;
}
