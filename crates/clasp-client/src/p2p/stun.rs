//! Server-reflexive candidates: a STUN binding request (RFC 8489) from a link's own socket
//! tells which public address and port that socket maps to. Messages are built and parsed
//! with `stun-types` (str0m's own STUN codec insists on ICE message integrity, which a plain
//! STUN server does not send).

use std::net::SocketAddr;
use std::time::Duration;

use stun_types::attribute::XorMappedAddress;
use stun_types::message::{BINDING, Message, MessageClass, MessageWrite, MessageWriteVec};
use tokio::net::UdpSocket;

/// How long one STUN server may take to answer.
pub(crate) const STUN_TIMEOUT: Duration = Duration::from_millis(800);

/// The address `socket` is seen from by the STUN server at `server` (`host:port`), if it
/// answers within `timeout`.
pub(crate) async fn mapped_address(
    socket: &UdpSocket,
    server: &str,
    timeout: Duration,
) -> Option<SocketAddr> {
    let local = socket.local_addr().ok()?;
    let target = tokio::net::lookup_host(server)
        .await
        .ok()?
        .find(|a| a.is_ipv4() == local.is_ipv4())?;
    let request = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let trans = Message::from_bytes(&request).ok()?.transaction_id();
    socket.send_to(&request, target).await.ok()?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let (len, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if from != target {
            continue;
        }
        let Ok(msg) = Message::from_bytes(buf.get(..len)?) else {
            continue;
        };
        if msg.transaction_id() == trans
            && msg.has_method(BINDING)
            && msg.has_class(MessageClass::Success)
            && let Ok(xor) = msg.attribute::<XorMappedAddress>()
        {
            return Some(xor.addr(trans));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_types::prelude::*;

    #[tokio::test]
    async fn a_stun_server_reports_the_mapped_address() {
        // A minimal STUN responder on loopback, answering with the source address it saw.
        let server = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let server_addr = server.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let Ok(req) = Message::from_bytes(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::builder_success(&req, MessageWriteVec::new());
                if reply
                    .add_attribute(&XorMappedAddress::new(from, req.transaction_id()))
                    .is_ok()
                {
                    let _ = server.send_to(&reply.finish(), from).await;
                }
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let me = client.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let got = mapped_address(&client, &server_addr.to_string(), STUN_TIMEOUT).await;
        assert_eq!(got, Some(me));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let silent = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = silent.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let client = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = mapped_address(&client, &addr.to_string(), Duration::from_millis(100)).await;
        assert_eq!(got, None);
    }
}
