//! The WebSocket JSON bridge. As a server (`mode = "server"`, the default) it accepts peers on
//! `listen`; as a client (`mode = "client"`) it connects to `url` and reconnects with back-off.
//! What peers send is written under the namespace (see [`super::json`]); changes under the
//! namespace made by anyone else go to every peer, each through its own bounded queue (a slow
//! peer loses its oldest frames, counted, and holds nobody up). The echo of the bridge's own
//! writes is never sent back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clasp_mapping::Write;
use clasp_mapping::echo::Echoes;
use clasp_osc::map::{clasp_to_osc, normalize_namespace};
use futures_util::{FutureExt, SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use super::json::{self, Incoming};
use crate::link::{BridgeError, LinkSubscription, RouterLink};

/// Frames queued per peer before its oldest are dropped.
const PEER_QUEUE: usize = 1024;
/// Peers at once (server mode); more are refused.
const MAX_PEERS: usize = 256;
/// Largest frame accepted from a peer.
const MAX_FRAME: usize = 64 * 1024;

/// Server or client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsMode {
    /// Accept peers on `listen`.
    #[default]
    Server,
    /// Connect to `url`.
    Client,
}

/// One WebSocket bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsBridgeConfig {
    /// Server or client.
    #[serde(default)]
    pub mode: WsMode,
    /// Server mode: the TCP address to accept on.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Client mode: the `ws://` or `wss://` URL to connect to.
    #[serde(default)]
    pub url: Option<String>,
    /// The prefix (default `/ws`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "/ws".into()
}

impl WsBridgeConfig {
    /// The namespace, checked, and that the mode has its address.
    pub fn check(&self) -> Result<String, BridgeError> {
        let prefix = normalize_namespace(&self.namespace)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                BridgeError::Config(format!(
                    "WebSocket namespace `{}` must be an address such as /ws",
                    self.namespace
                ))
            })?;
        match self.mode {
            WsMode::Server if self.listen.is_none() => Err(BridgeError::Config(
                "a WebSocket server needs `listen` (HOST:PORT)".into(),
            )),
            WsMode::Client
                if !self
                    .url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("ws://") || u.starts_with("wss://")) =>
            {
                Err(BridgeError::Config(
                    "a WebSocket client needs `url` (ws:// or wss://)".into(),
                ))
            }
            _ => Ok(prefix),
        }
    }
}

/// Counters of a running WebSocket bridge.
pub type WsStats = crate::stats::BridgeStats;

/// Peers' outgoing queues.
type Peers = Arc<Mutex<Vec<(u64, mpsc::Sender<String>)>>>;

/// A WebSocket bridge bound (server) and subscribed, ready to [`WsBridge::run`].
#[derive(Debug)]
pub struct WsBridge {
    link: RouterLink,
    cfg: WsBridgeConfig,
    prefix: String,
    listener: Option<TcpListener>,
    sub: LinkSubscription,
}

impl WsBridge {
    /// Binds (server mode) and subscribes to the namespace; the state found now is not sent.
    pub async fn start(link: RouterLink, cfg: WsBridgeConfig) -> Result<WsBridge, BridgeError> {
        let prefix = cfg.check()?;
        let listener = match (cfg.mode, cfg.listen) {
            (WsMode::Server, Some(addr)) => Some(TcpListener::bind(addr).await.map_err(|e| {
                BridgeError::Device(format!("cannot listen for WebSocket peers on {addr}: {e}"))
            })?),
            _ => None,
        };
        let mut sub = link.subscribe(&format!("{prefix}/**")).await?;
        link.sync().await?;
        while let Some(Some(_)) = sub.next().now_or_never() {}
        Ok(WsBridge {
            link,
            cfg,
            prefix,
            listener,
            sub,
        })
    }

    /// Server mode: the address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs until `stop`.
    pub async fn run(
        self,
        stats: Arc<WsStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let WsBridge {
            link,
            cfg,
            prefix,
            listener,
            mut sub,
        } = self;
        let peers: Peers = Arc::default();
        let (in_tx, mut in_rx) = mpsc::channel::<(u64, Incoming)>(1024);
        match (listener, cfg.url.clone()) {
            (Some(l), _) => {
                tokio::spawn(accept(l, peers.clone(), in_tx, stats.clone(), stop.clone()));
            }
            (None, Some(url)) => {
                tokio::spawn(connect(
                    url,
                    peers.clone(),
                    in_tx,
                    stats.clone(),
                    stop.clone(),
                ));
            }
            (None, None) => return Err(BridgeError::Config("no listen address or URL".into())),
        }
        let mut echoes = Echoes::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                i = in_rx.recv() => {
                    let Some((from, i)) = i else { return Ok(()) };
                    // The other peers hear of it at once (the router's echo of the bridge's
                    // own write is not sent on).
                    let event = i.kind == clasp_mapping::WriteKind::Event;
                    broadcast(&peers, &json::outgoing(&i.path, &i.value, event), Some(from), &stats);
                    let w = Write {
                        address: format!("{prefix}{}", i.path),
                        value: i.value,
                        kind: i.kind,
                        rule: 0,
                        feedback: false,
                    };
                    if w.kind == clasp_mapping::WriteKind::Set {
                        echoes.sent(&w.address, &w.value);
                    }
                    if let Err(e) = link.write(&w).await {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(address = %w.address, error = %e, "WebSocket write to the router failed");
                    }
                }
                u = sub.next() => {
                    let Some(u) = u else { return Err(BridgeError::Closed) };
                    let param = u.kind == clasp_proto::SignalType::Param;
                    if param && echoes.is_echo(&u.address, &u.value) {
                        continue;
                    }
                    let Some(path) = clasp_to_osc(&prefix, &u.address) else { continue };
                    broadcast(&peers, &json::outgoing(path, &u.value, !param), None, &stats);
                }
            }
        }
    }
}

/// Queues `frame` for every peer but `except`; a full queue drops it (counted).
fn broadcast(peers: &Peers, frame: &str, except: Option<u64>, stats: &WsStats) {
    for (id, tx) in peers.lock().iter() {
        if Some(*id) == except {
            continue;
        }
        match tx.try_send(frame.to_owned()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Server mode: accepts peers until `stop`.
async fn accept(
    l: TcpListener,
    peers: Peers,
    in_tx: mpsc::Sender<(u64, Incoming)>,
    stats: Arc<WsStats>,
    stop: CancellationToken,
) {
    let mut next = 0u64;
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = l.accept() => c,
        };
        let Ok((tcp, from)) = conn else { continue };
        if peers.lock().len() >= MAX_PEERS {
            tracing::warn!(%from, "WebSocket bridge full; peer refused");
            continue;
        }
        next += 1;
        let (peers, in_tx, stats, stop) =
            (peers.clone(), in_tx.clone(), stats.clone(), stop.clone());
        let id = next;
        tokio::spawn(async move {
            let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(Some(MAX_FRAME))
                .max_frame_size(Some(MAX_FRAME));
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(cfg)).await else {
                return;
            };
            peer(id, ws, &peers, &in_tx, &stats, &stop).await;
        });
    }
}

/// Client mode: connects to `url`, again with back-off whenever the connection ends.
async fn connect(
    url: String,
    peers: Peers,
    in_tx: mpsc::Sender<(u64, Incoming)>,
    stats: Arc<WsStats>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    let mut first = true;
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio_tungstenite::connect_async(url.as_str()) => r,
        };
        match r {
            Ok((ws, _)) => {
                if !first {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                first = false;
                backoff = Duration::from_millis(250);
                tracing::info!(%url, "WebSocket bridge connected");
                peer(0, ws, &peers, &in_tx, &stats, &stop).await;
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!(%url, "WebSocket bridge disconnected; reconnecting");
            }
            Err(e) => tracing::debug!(%url, error = %e, "WebSocket bridge cannot connect"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One peer: its frames in, its queue out, until either side ends.
async fn peer<S: AsyncRead + AsyncWrite + Unpin>(
    id: u64,
    ws: tokio_tungstenite::WebSocketStream<S>,
    peers: &Peers,
    in_tx: &mpsc::Sender<(u64, Incoming)>,
    stats: &WsStats,
    stop: &CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<String>(PEER_QUEUE);
    peers.lock().push((id, tx));
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = sink.send(WsMessage::Close(None)).await;
                break;
            }
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                if sink.send(WsMessage::text(frame)).await.is_err() {
                    break;
                }
                stats.messages_out.fetch_add(1, Ordering::Relaxed);
            }
            m = stream.next() => {
                let incoming = match m {
                    Some(Ok(WsMessage::Text(t))) => json::text(t.as_str()),
                    Some(Ok(WsMessage::Binary(b))) => Some(json::binary(&b)),
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {
                        // Pings are answered by the library on the next write.
                        let _ = sink.flush().await;
                        continue;
                    }
                };
                stats.messages_in.fetch_add(1, Ordering::Relaxed);
                match incoming {
                    Some(i) => {
                        if in_tx.send((id, i)).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    peers.lock().retain(|(p, _)| *p != id);
}
