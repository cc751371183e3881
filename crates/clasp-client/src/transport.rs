//! The transports under a connection, chosen by URL scheme: WebSocket (`ws://`, `wss://`),
//! raw TCP (`tcp://host:port`, each frame behind a 4-byte big-endian length) and QUIC
//! (`quic://host:port`, TLS 1.3, ALPN `clasp`, one bidirectional stream of frames back to
//! back). The driver sees whole CLASP frames either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clasp_proto::FrameReader;
use clasp_proto::frame::MAX_FRAME;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::config::Config;
use crate::error::{Error, Result};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// QUIC keep-alive interval (the router's idle timeout is far longer).
const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(5);
/// A QUIC connection silent for this long is lost.
const QUIC_IDLE: Duration = Duration::from_secs(30);
/// TCP keep-alive, so a router that vanished is noticed.
const TCP_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Bytes read from a QUIC stream at a time.
const QUIC_READ: usize = 16 * 1024;

/// The transport a URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `ws://` or `wss://`.
    Ws,
    /// `tcp://`.
    Tcp,
    /// `quic://`.
    Quic,
}

/// The scheme of `url`, checked to have a host (and a port, for `tcp://` and `quic://`).
pub(crate) fn check_url(url: &str) -> Result<Scheme> {
    let bad = |reason: &str| {
        Err(Error::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        })
    };
    let scheme = match url.split_once("://").map(|(s, _)| s) {
        Some("ws" | "wss") => Scheme::Ws,
        Some("tcp") => Scheme::Tcp,
        Some("quic") => Scheme::Quic,
        _ => {
            return bad(
                "expected ws://HOST[:PORT][/PATH], wss://HOST[:PORT][/PATH], tcp://HOST:PORT or quic://HOST:PORT",
            );
        }
    };
    let Ok(uri) = url.parse::<Uri>() else {
        return bad("not a URL");
    };
    if uri.host().is_none_or(str::is_empty) {
        return bad("no host");
    }
    if scheme != Scheme::Ws && uri.port_u16().is_none() {
        return bad("no port (tcp:// and quic:// need HOST:PORT)");
    }
    Ok(scheme)
}

/// Host (without IPv6 brackets) and port of a `tcp://` or `quic://` URL.
fn host_port(url: &str) -> Result<(String, u16)> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
    Ok((host, port))
}

/// What arrived from the router.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// One whole CLASP frame.
    Frame(Bytes),
    /// The router closed the connection, saying why.
    Closed(String),
    /// Transport traffic only (a WebSocket ping); flush so the answer goes out.
    Other,
}

/// The sending half of a connection.
pub(crate) enum Tx {
    Ws(SplitSink<Ws, WsMessage>),
    Tcp(FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>),
    Quic {
        send: quinn::SendStream,
        buf: BytesMut,
        // Keeps the connection and its UDP socket up as long as the sender lives.
        _conn: quinn::Connection,
        _endpoint: quinn::Endpoint,
    },
}

/// The receiving half of a connection.
pub(crate) enum Rx {
    Ws(SplitStream<Ws>),
    Tcp(FramedRead<OwnedReadHalf, LengthDelimitedCodec>),
    Quic {
        recv: quinn::RecvStream,
        reader: FrameReader,
        buf: Box<[u8]>,
    },
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tx::Ws(_) => "Tx::Ws",
            Tx::Tcp(_) => "Tx::Tcp",
            Tx::Quic { .. } => "Tx::Quic",
        })
    }
}

impl std::fmt::Debug for Rx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rx::Ws(_) => "Rx::Ws",
            Rx::Tcp(_) => "Rx::Tcp",
            Rx::Quic { .. } => "Rx::Quic",
        })
    }
}

/// An open connection, before or after the handshake.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) tx: Tx,
    pub(crate) rx: Rx,
}

fn length_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

impl Tx {
    /// Queues a frame (written at the latest by [`Tx::flush`]).
    pub(crate) async fn feed(&mut self, frame: Bytes) -> std::result::Result<(), String> {
        match self {
            Tx::Ws(s) => s
                .feed(WsMessage::Binary(frame))
                .await
                .map_err(|e| e.to_string()),
            Tx::Tcp(s) => s.feed(frame).await.map_err(|e| e.to_string()),
            Tx::Quic { send, buf, .. } => {
                buf.extend_from_slice(&frame);
                if buf.len() >= QUIC_READ {
                    send.write_all(buf).await.map_err(|e| e.to_string())?;
                    buf.clear();
                }
                Ok(())
            }
        }
    }

    /// Writes everything queued.
    pub(crate) async fn flush(&mut self) -> std::result::Result<(), String> {
        match self {
            Tx::Ws(s) => s.flush().await.map_err(|e| e.to_string()),
            Tx::Tcp(s) => SinkExt::<Bytes>::flush(s).await.map_err(|e| e.to_string()),
            Tx::Quic { send, buf, .. } => {
                if !buf.is_empty() {
                    send.write_all(buf).await.map_err(|e| e.to_string())?;
                    buf.clear();
                }
                Ok(())
            }
        }
    }

    /// Ends the connection from our side, after what is queued (WebSocket Close, TCP FIN,
    /// QUIC stream finish); the router then closes its side.
    pub(crate) async fn close(&mut self) {
        match self {
            Tx::Ws(s) => {
                let _ = s.send(WsMessage::Close(None)).await;
            }
            Tx::Tcp(s) => {
                let _ = SinkExt::<Bytes>::flush(s).await;
                let _ = s.get_mut().shutdown().await;
            }
            Tx::Quic { send, buf, .. } => {
                if !buf.is_empty() {
                    let _ = send.write_all(buf).await;
                    buf.clear();
                }
                let _ = send.finish();
            }
        }
    }
}

impl Rx {
    /// The next thing from the router; `None` when the connection ended without a word.
    /// Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<std::result::Result<Inbound, String>> {
        match self {
            Rx::Ws(s) => match s.next().await? {
                Ok(WsMessage::Binary(b)) => Some(Ok(Inbound::Frame(b))),
                Ok(WsMessage::Text(t)) => Some(Ok(Inbound::Frame(Bytes::from(t)))),
                Ok(WsMessage::Close(f)) => Some(Ok(Inbound::Closed(
                    f.map(|f| f.reason.to_string()).unwrap_or_default(),
                ))),
                Ok(_) => Some(Ok(Inbound::Other)),
                Err(e) => Some(Err(e.to_string())),
            },
            Rx::Tcp(s) => match s.next().await? {
                Ok(b) => Some(Ok(Inbound::Frame(b.freeze()))),
                Err(e) => Some(Err(e.to_string())),
            },
            Rx::Quic { recv, reader, buf } => loop {
                match reader.next_frame() {
                    Some(Ok(raw)) => return Some(Ok(Inbound::Frame(raw.to_bytes()))),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "bad bytes from the router skipped");
                        continue;
                    }
                    None => {}
                }
                match recv.read(buf).await {
                    Ok(Some(n)) => reader.push(&buf[..n]),
                    Ok(None) => return None,
                    Err(quinn::ReadError::ConnectionLost(
                        quinn::ConnectionError::ApplicationClosed(c),
                    )) => {
                        return Some(Ok(Inbound::Closed(
                            String::from_utf8_lossy(&c.reason).into_owned(),
                        )));
                    }
                    Err(e) => return Some(Err(e.to_string())),
                }
            },
        }
    }
}

/// Opens the transport `cfg.url` names (no CLASP handshake yet).
pub(crate) async fn connect(cfg: &Config) -> Result<Conn> {
    let failed = |reason: String| Error::Connect {
        url: cfg.url.clone(),
        reason,
    };
    match check_url(&cfg.url)? {
        Scheme::Ws => {
            let mut req =
                cfg.url
                    .as_str()
                    .into_client_request()
                    .map_err(|e| Error::InvalidUrl {
                        url: cfg.url.clone(),
                        reason: e.to_string(),
                    })?;
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("clasp"));
            let connector = cfg
                .tls_config
                .clone()
                .map(tokio_tungstenite::Connector::Rustls);
            let (ws, _) =
                tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
            let (tx, rx) = ws.split();
            Ok(Conn {
                tx: Tx::Ws(tx),
                rx: Rx::Ws(rx),
            })
        }
        Scheme::Tcp => {
            let (host, port) = host_port(&cfg.url)?;
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| failed(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEP_ALIVE);
            if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
                tracing::debug!(error = %e, "cannot set TCP keep-alive");
            }
            let (r, w) = tcp.into_split();
            Ok(Conn {
                tx: Tx::Tcp(FramedWrite::new(w, length_codec())),
                rx: Rx::Tcp(FramedRead::new(r, length_codec())),
            })
        }
        Scheme::Quic => {
            let (host, port) = host_port(&cfg.url)?;
            let client = cfg
                .quic_config
                .clone()
                .ok_or_else(|| Error::Tls("no QUIC client configuration".into()))?;
            let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| failed(e.to_string()))?
                .next()
                .ok_or_else(|| failed(format!("{host} has no address")))?;
            let local: SocketAddr = if addr.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let endpoint = quinn::Endpoint::client(local).map_err(|e| failed(e.to_string()))?;
            let conn = endpoint
                .connect_with(client, addr, &host)
                .map_err(|e| failed(e.to_string()))?
                .await
                .map_err(|e| failed(e.to_string()))?;
            let (send, recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
            Ok(Conn {
                tx: Tx::Quic {
                    send,
                    buf: BytesMut::new(),
                    _conn: conn,
                    _endpoint: endpoint,
                },
                rx: Rx::Quic {
                    recv,
                    reader: FrameReader::new(),
                    buf: vec![0u8; QUIC_READ].into_boxed_slice(),
                },
            })
        }
    }
}

/// The quinn client configuration over `tls` (which must be TLS 1.3 with the QUIC ALPN).
pub(crate) fn quic_config(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::Tls(format!("unusable for QUIC: {e}")))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(QUIC_KEEP_ALIVE))
        .max_idle_timeout(quinn::IdleTimeout::try_from(QUIC_IDLE).ok());
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_ports() {
        assert_eq!(check_url("ws://h:1/x").unwrap(), Scheme::Ws);
        assert_eq!(check_url("wss://h/").unwrap(), Scheme::Ws);
        assert_eq!(check_url("tcp://127.0.0.1:7000").unwrap(), Scheme::Tcp);
        assert_eq!(check_url("quic://[::1]:7331").unwrap(), Scheme::Quic);
        assert!(check_url("tcp://host").is_err());
        assert!(check_url("quic://:7331").is_err());
        assert!(check_url("http://h:1").is_err());
        assert!(check_url("ws://").is_err());
        assert_eq!(
            host_port("quic://[::1]:7331").unwrap(),
            ("::1".to_owned(), 7331)
        );
    }
}
