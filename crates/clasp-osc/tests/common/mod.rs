//! The test rig shared by the OSC tests: a real router, the listener on 127.0.0.1, UDP sockets
//! speaking OSC (rosc) and CLASP clients over WebSocket.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../clasp-client/tests/support/mod.rs"]
pub mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clasp_client::{Client, ReconnectPolicy, Subscription, Update, Value};
use clasp_osc::{OscConfig, OscListener, OscStats, OscStatsHandle};
use clasp_router::server::{RouterHandle, Server, ServerConfig};
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Generous: the tests must pass on a slow, loaded machine.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Rig {
    pub url: String,
    pub osc: SocketAddr,
    pub stats: OscStatsHandle,
    pub router: RouterHandle,
    pub stop: CancellationToken,
    pub server: support::Router,
    pub listener: tokio::task::JoinHandle<()>,
}

impl Rig {
    pub async fn start(osc: OscConfig) -> Rig {
        Rig::start_with(ServerConfig::default(), osc).await
    }

    pub async fn start_with(mut config: ServerConfig, osc: OscConfig) -> Rig {
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(config).await.unwrap();
        let router = server.handle();
        let listener = OscListener::bind("127.0.0.1:0".parse().unwrap(), router.clone(), osc)
            .await
            .unwrap();
        let osc = listener.local_addr().unwrap();
        let stats = listener.stats();
        let stop = CancellationToken::new();
        let server = support::Router::run(server);
        let s = stop.clone();
        let listener = tokio::spawn(async move { listener.run(s).await.unwrap() });
        Rig {
            url: format!("ws://{}/clasp", server.addr),
            osc,
            stats,
            router,
            stop,
            server,
            listener,
        }
    }

    pub async fn client(&self) -> Client {
        Client::builder(&self.url)
            .name("osc-test")
            .reconnect(ReconnectPolicy::disabled())
            .connect()
            .await
            .unwrap()
    }

    pub fn stats(&self) -> OscStats {
        self.stats.snapshot()
    }

    pub async fn wait_stats(&self, what: &str, f: impl Fn(&OscStats) -> bool) -> OscStats {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.stats();
            if f(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn sessions(&self) -> usize {
        self.router.with_core(|core, _| core.session_count())
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.listener)
            .await
            .unwrap()
            .unwrap();
        self.server.stop().await;
    }
}

pub async fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

pub fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.to_owned(),
        args,
    })
}

pub fn bundle(timetag: OscTime, content: Vec<OscPacket>) -> OscPacket {
    OscPacket::Bundle(OscBundle { timetag, content })
}

pub const NOW: OscTime = OscTime {
    seconds: 0,
    fractional: 1,
};

pub async fn send(sock: &UdpSocket, to: SocketAddr, p: &OscPacket) {
    let bytes = rosc::encoder::encode(p).unwrap();
    sock.send_to(&bytes, to).await.unwrap();
}

/// The next OSC message `sock` receives.
pub async fn recv(sock: &UdpSocket) -> OscMessage {
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("no OSC message arrived")
        .unwrap();
    match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
        OscPacket::Message(m) => m,
        OscPacket::Bundle(b) => panic!("expected a message, got {b:?}"),
    }
}

/// Asserts that the next OSC message `sock` receives is `addr` with `args`.
pub async fn expect(sock: &UdpSocket, addr: &str, args: Vec<OscType>) {
    let m = recv(sock).await;
    assert_eq!((m.addr.as_str(), m.args), (addr, args));
}

/// Sends the control message `command` (`/clasp/subscribe`, `/clasp/unsubscribe`) for `pattern`.
pub async fn control(sock: &UdpSocket, to: SocketAddr, command: &str, pattern: &str) {
    send(
        sock,
        to,
        &msg(command, vec![OscType::String(pattern.into())]),
    )
    .await;
}

/// The next update of `sub`, waiting at most [`WAIT`].
pub async fn next(sub: &mut Subscription) -> Update {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("no update arrived")
        .unwrap()
}

/// Waits until the param at `address` reads `expected`.
pub async fn wait_value(c: &Client, address: &str, expected: &Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(v) = c.get(address).await
            && &v == expected
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{address} never became {expected:?} (now {:?})",
            c.get(address).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A UDP socket that did the cookie round trip with the listener: it asks for a cookie with
/// `/clasp/verify` and sends it back.
pub async fn verified(rig: &Rig) -> UdpSocket {
    let sock = udp().await;
    let before = rig.stats().verifications;
    send(&sock, rig.osc, &msg("/clasp/verify", vec![])).await;
    let m = recv(&sock).await;
    assert_eq!(m.addr, "/clasp/verify", "{m:?}");
    send(&sock, rig.osc, &msg("/clasp/verify", m.args)).await;
    rig.wait_stats("the cookie round trip", |s| s.verifications > before)
        .await;
    sock
}

/// The datagrams `sock` has received and not yet read, without waiting (on loopback a
/// datagram is queued at the receiver by the time its send returns).
pub fn received_now(sock: &UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, _)) = sock.try_recv_from(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// Decodes a datagram that holds one OSC message.
pub fn decode(datagram: &[u8]) -> OscMessage {
    match rosc::decoder::decode_udp(datagram).unwrap().1 {
        OscPacket::Message(m) => m,
        OscPacket::Bundle(b) => panic!("expected a message, got {b:?}"),
    }
}
