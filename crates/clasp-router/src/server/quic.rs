//! CLASP over QUIC (quinn, TLS 1.3 with rustls and ring): ALPN `clasp` (or `clasp/2`, the
//! reference's value), one bidirectional stream per connection carrying CLASP frames back to
//! back, reassembled with [`clasp_proto::FrameReader`].
//!
//! The QUIC handshake and the wait for the client's stream run in the connection's own task,
//! each within the handshake timeout, so a client that connects and never opens a stream holds
//! up nobody else. Keep-alives and the idle timeout are QUIC's own (quinn `TransportConfig`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clasp_proto::stream::StreamError;
use clasp_proto::{ErrorCode, FrameReader};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, SendStream, VarInt};
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listen::{IpTable, TlsConfig, TlsError};
use super::stream::{self, CLOSE_GRACE, Framing, FramingError, StreamEnd};
use super::{ServerError, Shared};
use crate::core::CloseReason;

/// ALPN protocol names accepted, preferred first (`clasp/2` is what the reference sends).
pub const ALPN: [&[u8]; 2] = clasp_proto::QUIC_ALPN;

/// Where and with which certificate to serve QUIC.
#[derive(Debug, Clone)]
pub struct QuicListen {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// The certificate chain and key (QUIC always runs TLS 1.3).
    pub tls: TlsConfig,
}

/// The QUIC application close code for `reason` (the WebSocket close codes, for one
/// vocabulary across transports).
fn close_code(reason: CloseReason) -> (u32, &'static [u8]) {
    match reason {
        CloseReason::Handshake => (1008, b"handshake failed"),
        CloseReason::Full => (1013, b"router full"),
        CloseReason::Shutdown => (1001, b"router closing the connection"),
    }
}

/// Binds the QUIC endpoint.
pub(crate) fn bind(
    cfg: &QuicListen,
    idle_timeout: Duration,
    keep_alive: Duration,
) -> Result<Endpoint, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::from)?
        .with_no_client_auth()
        .with_single_cert(cfg.tls.cert_chain.clone(), cfg.tls.key.clone_key())
        .map_err(TlsError::from)?;
    tls.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Generate(format!("TLS configuration unusable for QUIC: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok())
        .keep_alive_interval(Some(keep_alive))
        // One bidirectional stream is all CLASP uses; nothing else may be opened.
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None);
    server.transport_config(Arc::new(transport));
    Endpoint::server(server, cfg.listen).map_err(|source| ServerError::Bind {
        addr: cfg.listen,
        source,
    })
}

/// Accepts QUIC connections until `stop` is cancelled, then closes the endpoint.
pub(crate) async fn accept_loop(
    endpoint: Endpoint,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    table: Arc<IpTable>,
    stop: CancellationToken,
) {
    let per_ip = shared.config.max_connections_per_ip;
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
            () = stop.cancelled() => return,
        };
        let peer = incoming.remote_address();
        let accepted = std::time::Instant::now();
        let Some(slot) = table.admit(peer, per_ip, &shared.refused_per_ip, "quic") else {
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let limit = shared.config.handshake_timeout;
            let setup = async {
                let conn = incoming.accept()?.await?;
                let (send, recv) = conn.accept_bi().await?;
                Ok::<_, quinn::ConnectionError>((conn, send, recv))
            };
            let ready = tokio::select! {
                r = tokio::time::timeout(limit, setup) => r,
                () = stop.cancelled() => return,
            };
            match ready {
                Ok(Ok((conn, send, recv))) => {
                    let writer = QuicWriter { send, conn };
                    let framing = QuicFraming::new(shared.config.router.max_payload);
                    stream::serve(shared, recv, writer, framing, peer, "quic", accepted).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "QUIC connection failed"),
                Err(_) => tracing::debug!(%peer, "QUIC handshake or first stream timed out"),
            }
        });
    }
}

/// Closes the endpoint (connections still open get `reason`) and waits a little for the
/// close to reach them.
pub(crate) async fn close(endpoint: Endpoint) {
    let (code, reason) = close_code(CloseReason::Shutdown);
    endpoint.close(VarInt::from_u32(code), reason);
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// The sending half of the connection's stream; ending it closes the connection.
struct QuicWriter {
    send: SendStream,
    conn: Connection,
}

impl AsyncWrite for QuicWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}

impl StreamEnd for QuicWriter {
    async fn end(mut self, reason: CloseReason) {
        // Closing the connection at once would abandon frames still in flight: finish the
        // stream and wait (bounded) until the peer has them all.
        if self.send.finish().is_ok() {
            let _ = tokio::time::timeout(CLOSE_GRACE, self.send.stopped()).await;
        }
        let (code, text) = close_code(reason);
        self.conn.close(VarInt::from_u32(code), text);
    }
}

/// CLASP frames back to back, as [`FrameReader`] splits them.
#[derive(Debug)]
pub(crate) struct QuicFraming {
    reader: FrameReader,
}

impl QuicFraming {
    /// Frames with payloads over `max_payload` bytes are skipped (and reported).
    pub(crate) fn new(max_payload: usize) -> Self {
        QuicFraming {
            reader: FrameReader::with_max_payload(max_payload),
        }
    }
}

impl Framing for QuicFraming {
    fn push(&mut self, data: &[u8]) {
        self.reader.push(data);
    }

    fn next_frame(&mut self) -> Option<Result<Bytes, FramingError>> {
        Some(match self.reader.next_frame()? {
            Ok(raw) => Ok(raw.to_bytes()),
            Err(e @ StreamError::Oversize { .. }) => Err(FramingError {
                code: ErrorCode::TooLarge,
                message: e.to_string(),
            }),
            Err(e @ StreamError::BadMagic { .. }) => Err(FramingError {
                code: ErrorCode::InvalidFrame,
                message: e.to_string(),
            }),
        })
    }

    fn encode(frame: &[u8], out: &mut BytesMut) {
        out.extend_from_slice(frame);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clasp_proto::{FrameOptions, Message, Set, encode, encode_with};
    use proptest::prelude::*;

    fn frames() -> Vec<Bytes> {
        vec![
            encode(&Message::Ping).unwrap(),
            encode_with(
                &Message::Set(Set {
                    address: "/a/b".into(),
                    value: 1.5.into(),
                    ..Default::default()
                }),
                FrameOptions {
                    qos: None,
                    timestamp: Some(123_456),
                },
            )
            .unwrap(),
        ]
    }

    proptest! {
        /// Frames cut anywhere come out whole and byte-identical.
        #[test]
        fn frames_survive_any_chunking(cuts in proptest::collection::vec(any::<usize>(), 0..20),
                                       junk in proptest::collection::vec(1u8..0x53, 0..5)) {
            let fs = frames();
            let mut data: Vec<u8> = junk.clone();
            for f in &fs { data.extend_from_slice(f); }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            points.sort_unstable();
            points.push(data.len());
            let mut r = QuicFraming::new(clasp_proto::frame::MAX_PAYLOAD);
            let (mut got, mut errors, mut at) = (Vec::new(), 0, 0);
            for p in points {
                r.push(&data[at..p.max(at)]);
                at = p.max(at);
                while let Some(item) = r.next_frame() {
                    match item { Ok(f) => got.push(f), Err(_) => errors += 1 }
                }
            }
            prop_assert_eq!(got, fs);
            prop_assert_eq!(errors > 0, !junk.is_empty());
        }
    }
}
