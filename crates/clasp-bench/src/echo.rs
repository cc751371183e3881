//! `echo-server`: a zero-work WebSocket server that calibrates single-hop latency.
//!
//! It answers a connection's first binary message (HELLO) with a fixed WELCOME and an empty
//! SNAPSHOT, PING with PONG, ignores SUBSCRIBE, and forwards every other binary message unchanged
//! to every other connected client. It keeps no protocol state and reads nothing of a frame but
//! its message type byte, so its single-hop latency is the floor set by loopback and wake-ups.
//!
//! Each connection has one task that reads; its writer sits behind a lock and is written directly
//! by whichever task has something for it (no writer task, no queue: one wake-up per hop).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clasp_proto::frame::{FLAG_TIMESTAMP, HEADER_LEN, HEADER_LEN_WITH_TIMESTAMP};
use clasp_proto::message::code;
use clasp_proto::{Features, Message, Snapshot, Welcome, encode};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMsg;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How long the WebSocket upgrade may take.
const UPGRADE_WAIT: Duration = Duration::from_secs(10);
/// How long one write to a client may wait for its socket before the frame is skipped for it.
const SEND_WAIT: Duration = Duration::from_secs(5);

/// Options of `echo-server`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EchoOpts {
    /// Address to listen on (127.0.0.1 only), e.g. 127.0.0.1:17332.
    #[arg(long)]
    pub(crate) listen: SocketAddr,
    /// Connections served at once; more are refused.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) max_connections: usize,
    /// The server exits after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub(crate) max_secs: u64,
}

/// A client's write half.
type Sink = SplitSink<WebSocketStream<TcpStream>, WsMsg>;

/// One connected client, as the others see it.
struct Peer {
    id: u64,
    sink: Mutex<Sink>,
}

/// The connected clients. Readers take the current list (one `Arc` clone) per message; joins
/// and leaves replace it.
#[derive(Default)]
struct Hub {
    peers: RwLock<Arc<[Arc<Peer>]>>,
    next_id: AtomicU64,
    open: AtomicUsize,
}

impl Hub {
    fn list(&self) -> Arc<[Arc<Peer>]> {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn join(&self, peer: Arc<Peer>) {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        *peers = peers.iter().cloned().chain([peer]).collect();
    }

    fn leave(&self, id: u64) {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        *peers = peers.iter().filter(|p| p.id != id).cloned().collect();
    }
}

/// The fixed frames the server answers with.
struct Replies {
    welcome: Bytes,
    snapshot: Bytes,
    pong: Bytes,
}

impl Replies {
    fn new() -> anyhow::Result<Replies> {
        let welcome = Message::Welcome(Welcome {
            version: 1,
            features: Features::ROUTER,
            time: 0,
            session: "echo".into(),
            name: "clasp-bench echo-server".into(),
            token: None,
        });
        Ok(Replies {
            welcome: encode(&welcome).context("cannot encode WELCOME")?,
            snapshot: encode(&Message::Snapshot(Snapshot::default()))
                .context("cannot encode SNAPSHOT")?,
            pong: encode(&Message::Pong).context("cannot encode PONG")?,
        })
    }
}

/// The message type of a CLASP frame: the first payload byte, after the 4- or 12-byte header.
fn message_type(frame: &[u8]) -> Option<u8> {
    let flags = *frame.get(1)?;
    let header = if flags & FLAG_TIMESTAMP != 0 {
        HEADER_LEN_WITH_TIMESTAMP
    } else {
        HEADER_LEN
    };
    frame.get(header).copied()
}

/// Writes one frame to `peer`; a closed or stuck client just misses it.
async fn send_to(peer: &Peer, frame: Bytes) {
    let mut sink = peer.sink.lock().await;
    let _ = tokio::time::timeout(SEND_WAIT, sink.send(WsMsg::Binary(frame))).await;
}

/// The upgrade callback: echoes subprotocol `clasp` when the client offers it.
struct ClaspProtocol;

impl Callback for ClaspProtocol {
    fn on_request(self, req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "clasp");
        if offered {
            resp.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("clasp"));
        }
        Ok(resp)
    }
}

/// Accepts the WebSocket upgrade.
async fn upgrade(tcp: TcpStream) -> anyhow::Result<WebSocketStream<TcpStream>> {
    tokio::time::timeout(
        UPGRADE_WAIT,
        tokio_tungstenite::accept_hdr_async(tcp, ClaspProtocol),
    )
    .await
    .context("no WebSocket upgrade in time")?
    .context("WebSocket upgrade failed")
}

/// Serves one client until it closes.
async fn serve(tcp: TcpStream, hub: Arc<Hub>, replies: Arc<Replies>) {
    let Ok(ws) = upgrade(tcp).await else { return };
    let (sink, mut stream) = ws.split();
    let me = Arc::new(Peer {
        id: hub.next_id.fetch_add(1, Ordering::Relaxed),
        sink: Mutex::new(sink),
    });
    hub.join(me.clone());
    let mut greeted = false;
    while let Some(Ok(msg)) = stream.next().await {
        let WsMsg::Binary(frame) = msg else {
            if msg.is_close() {
                break;
            }
            continue;
        };
        if !greeted {
            greeted = true;
            let mut sink = me.sink.lock().await;
            let _ = sink.feed(WsMsg::Binary(replies.welcome.clone())).await;
            let _ = sink.send(WsMsg::Binary(replies.snapshot.clone())).await;
            continue;
        }
        match message_type(&frame) {
            Some(code::PING) => send_to(&me, replies.pong.clone()).await,
            Some(code::SUBSCRIBE) => {}
            _ => {
                for peer in hub.list().iter().filter(|p| p.id != me.id) {
                    send_to(peer, frame.clone()).await;
                }
            }
        }
    }
    hub.leave(me.id);
    let _ = tokio::time::timeout(Duration::from_secs(1), me.sink.lock().await.close()).await;
}

/// Runs the server until `max_secs` have passed (or the process is stopped).
pub(crate) async fn run(o: &EchoOpts) -> anyhow::Result<()> {
    if !o.listen.ip().is_loopback() {
        bail!(
            "the echo server only listens on 127.0.0.1, got {}",
            o.listen
        );
    }
    let replies = Arc::new(Replies::new()?);
    let hub = Arc::new(Hub::default());
    let listener = TcpListener::bind(o.listen)
        .await
        .with_context(|| format!("cannot listen on {}", o.listen))?;
    println!("ready");
    let accept = async {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if hub.open.load(Ordering::Relaxed) >= o.max_connections
                || tcp.set_nodelay(true).is_err()
            {
                continue;
            }
            hub.open.fetch_add(1, Ordering::Relaxed);
            let (hub, replies) = (hub.clone(), replies.clone());
            tokio::spawn(async move {
                serve(tcp, hub.clone(), replies).await;
                hub.open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(o.max_secs), accept).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clasp_proto::{FrameOptions, Set, Value, encode_with};

    #[test]
    fn reads_the_type_byte_after_either_header() {
        let ping = encode(&Message::Ping).expect("encode");
        assert_eq!(message_type(&ping), Some(code::PING));
        let set = Message::Set(Set {
            address: "/a".into(),
            value: Value::Float(1.0),
            ..Default::default()
        });
        let stamped = encode_with(
            &set,
            FrameOptions {
                qos: None,
                timestamp: Some(7),
            },
        )
        .expect("encode");
        assert_eq!(message_type(&stamped), Some(code::SET));
        assert_eq!(message_type(&[0x53]), None);
    }
}
