//! Relayed candidates through a TURN server (RFC 8656) with `turn-client-proto` (Sans-IO):
//! the allocation is made from one of a link's own sockets; datagrams str0m sends from the
//! relayed address are wrapped for the server, and what the server relays back is unwrapped
//! and handed to str0m as if it had arrived at the relayed address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use turn_client_proto::api::{TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::prelude::*;
use turn_client_proto::stun::Instant as SioInstant;
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

/// A TURN server and its long-term credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// `host:port` (UDP).
    pub address: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// How long an allocation may take.
pub(crate) const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(3);

/// One allocation on a TURN server.
pub(crate) struct Relay {
    client: TurnClientUdp,
    /// Index of the link socket the allocation was made from.
    pub(crate) socket: usize,
    /// The TURN server.
    pub(crate) server: SocketAddr,
    /// Our relayed address on the server.
    pub(crate) relayed: SocketAddr,
    base: Instant,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("server", &self.server)
            .field("relayed", &self.relayed)
            .finish_non_exhaustive()
    }
}

fn sio(base: Instant, t: Instant) -> SioInstant {
    SioInstant::from_nanos(
        t.saturating_duration_since(base)
            .as_nanos()
            .min(i64::MAX as u128) as i64,
    )
}

fn flush(client: &mut TurnClientUdp, base: Instant, sock: &UdpSocket, now: Instant) {
    while let Some(t) = client.poll_transmit(sio(base, now)) {
        let _ = sock.try_send_to(&t.data, t.to);
    }
}

/// Makes an allocation on `server` from `sock` (index `index`, local address `local`).
pub(crate) async fn allocate(
    sock: &UdpSocket,
    index: usize,
    local: SocketAddr,
    server: &TurnServer,
) -> Option<Relay> {
    let server_addr = tokio::net::lookup_host(&server.address)
        .await
        .ok()?
        .find(|a| a.is_ipv4() == local.is_ipv4())?;
    let cfg = TurnConfig::new(TurnCredentials::new(&server.username, &server.password));
    let mut client = TurnClientUdp::allocate(local, server_addr, cfg);
    let base = Instant::now();
    let deadline = base + ALLOCATE_TIMEOUT;
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        flush(&mut client, base, sock, now);
        while let Some(ev) = client.poll_event() {
            match ev {
                TurnEvent::AllocationCreated(_, relayed) => {
                    return Some(Relay {
                        client,
                        socket: index,
                        server: server_addr,
                        relayed,
                        base,
                    });
                }
                TurnEvent::AllocationCreateFailed(_) => return None,
                _ => {}
            }
        }
        let wake = match client.poll(sio(base, now)) {
            TurnPollRet::WaitUntil(t) => t.to_std(base),
            TurnPollRet::Closed => return None,
            _ => now + Duration::from_millis(50),
        };
        let until = wake.min(deadline).max(now + Duration::from_millis(1));
        if let Ok(Ok((n, from))) =
            tokio::time::timeout_at(until.into(), sock.recv_from(&mut buf)).await
            && from == server_addr
            && let Some(data) = buf.get(..n)
        {
            let t = Transmit {
                data,
                transport: TransportType::Udp,
                from,
                to: local,
            };
            let _ = client.recv(t, sio(base, Instant::now()));
        }
    }
}

impl Relay {
    /// Lets `peer` send to us through the relay (a TURN server drops what comes from addresses
    /// without a permission, so this is done as soon as the peer's candidates are known).
    pub(crate) fn permit(&mut self, sock: &UdpSocket, peer: std::net::IpAddr, now: Instant) {
        if !self.client.have_permission(TransportType::Udp, peer) {
            let _ = self
                .client
                .create_permission(TransportType::Udp, peer, sio(self.base, now));
            flush(&mut self.client, self.base, sock, now);
        }
    }

    /// Sends `data` to `peer` through the relay.
    pub(crate) fn send(&mut self, sock: &UdpSocket, peer: SocketAddr, data: &[u8], now: Instant) {
        self.permit(sock, peer.ip(), now);
        let t = sio(self.base, now);
        if let Ok(Some(tb)) = self.client.send_to(TransportType::Udp, peer, data, t) {
            let to = tb.to;
            let bytes = tb.data.build();
            let _ = sock.try_send_to(&bytes, to);
        }
    }

    /// Handles a datagram from the server: `Some((peer, data))` when it carries a peer's data.
    pub(crate) fn receive(
        &mut self,
        sock: &UdpSocket,
        local: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let t = Transmit {
            data,
            transport: TransportType::Udp,
            from: self.server,
            to: local,
        };
        let out = match self.client.recv(t, sio(self.base, now)) {
            TurnRecvRet::PeerData(pd) => Some((pd.peer, pd.data().to_vec())),
            _ => None,
        };
        flush(&mut self.client, self.base, sock, now);
        out
    }

    /// Refreshes and retransmits as the client needs; returns when to come back.
    pub(crate) fn tick(&mut self, sock: &UdpSocket, now: Instant) -> Instant {
        let wake = match self.client.poll(sio(self.base, now)) {
            TurnPollRet::WaitUntil(t) => t.to_std(self.base),
            _ => now + Duration::from_secs(1),
        };
        flush(&mut self.client, self.base, sock, now);
        wake
    }
}
