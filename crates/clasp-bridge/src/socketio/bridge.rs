//! The Socket.IO bridge: connects to a Socket.IO server (reconnecting with back-off), writes
//! the events it receives under its namespace (`fader` → `/socketio/fader`, the event's single
//! argument as the value, several as an array), and emits changes under the namespace made by
//! anyone else as events named by their address below it (`/socketio/mixer/1` → `mixer/1`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clasp_mapping::echo::Echoes;
use clasp_mapping::{Write, WriteKind};
use clasp_osc::map::{clasp_to_osc, normalize_namespace};
use clasp_proto::Value;
use clasp_proto::json::{from_json_within, to_json};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, CONNECT, FromServer, PONG};
use crate::link::{BridgeError, LinkSubscription, RouterLink};
use crate::stats::BridgeStats;

/// Deepest JSON nesting accepted in an event's arguments.
const MAX_DEPTH: usize = 32;

/// One Socket.IO bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketIoConfig {
    /// The server, `http://host:port` (path `/socket.io` unless given).
    pub url: String,
    /// The prefix (default `/socketio`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Only these event names are written (default: every event).
    #[serde(default)]
    pub events: Vec<String>,
}

fn default_namespace() -> String {
    "/socketio".into()
}

impl SocketIoConfig {
    /// The namespace and the WebSocket URL, checked.
    pub fn check(&self) -> Result<(String, String), BridgeError> {
        let prefix = normalize_namespace(&self.namespace)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                BridgeError::Config(format!(
                    "Socket.IO namespace `{}` must be an address such as /socketio",
                    self.namespace
                ))
            })?;
        let url = protocol::ws_url(&self.url).ok_or_else(|| {
            BridgeError::Config(format!(
                "Socket.IO server `{}`: expected http://, https://, ws:// or wss://",
                self.url
            ))
        })?;
        Ok((prefix, url))
    }
}

/// A Socket.IO bridge subscribed to its namespace, ready to [`SocketIoBridge::run`].
#[derive(Debug)]
pub struct SocketIoBridge {
    link: RouterLink,
    cfg: SocketIoConfig,
    prefix: String,
    url: String,
    sub: LinkSubscription,
}

/// The address an event name is written at (`None` when a CLASP address cannot hold it).
fn address(prefix: &str, name: &str) -> Option<String> {
    let name = name.trim_matches('/');
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.contains("//")
        && !name.contains(['*', '{', '}', '[', ']', '?', '#', ' ', '\0']);
    ok.then(|| format!("{prefix}/{name}"))
}

impl SocketIoBridge {
    /// Checks the settings and subscribes to the namespace (the state found now is not sent).
    pub async fn start(
        link: RouterLink,
        cfg: SocketIoConfig,
    ) -> Result<SocketIoBridge, BridgeError> {
        let (prefix, url) = cfg.check()?;
        let mut sub = link.subscribe(&format!("{prefix}/**")).await?;
        link.sync().await?;
        while let Some(Some(_)) = sub.next().now_or_never() {}
        Ok(SocketIoBridge {
            link,
            cfg,
            prefix,
            url,
            sub,
        })
    }

    /// Runs until `stop`, connecting (and reconnecting) to the server.
    pub async fn run(
        self,
        stats: Arc<BridgeStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let SocketIoBridge {
            link,
            cfg,
            prefix,
            url,
            mut sub,
        } = self;
        let mut echoes = Echoes::new();
        let mut backoff = Duration::from_millis(250);
        let mut connected_once = false;
        loop {
            let conn = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                c = tokio_tungstenite::connect_async(url.as_str()) => c,
            };
            if let Ok((mut ws, _)) = conn {
                // OPEN, then CONNECT to the main namespace.
                let mut liveness = Duration::from_secs(45);
                let mut joined = false;
                if ws.send(WsMessage::text(CONNECT)).await.is_ok() {
                    let mut deadline = Instant::now() + liveness;
                    loop {
                        let wait = deadline.saturating_duration_since(Instant::now());
                        tokio::select! {
                            _ = stop.cancelled() => {
                                let _ = ws.close(None).await;
                                return Ok(());
                            }
                            _ = tokio::time::sleep(wait) => {
                                tracing::warn!(url = %cfg.url, "Socket.IO server stopped pinging; reconnecting");
                                break;
                            }
                            m = ws.next() => {
                                let Some(Ok(m)) = m else { break };
                                let WsMessage::Text(t) = m else { continue };
                                deadline = Instant::now() + liveness;
                                match protocol::parse(t.as_str()) {
                                    FromServer::Open { ping_interval_ms, ping_timeout_ms } => {
                                        liveness = Duration::from_millis(ping_interval_ms + ping_timeout_ms);
                                        deadline = Instant::now() + liveness;
                                    }
                                    FromServer::Ping => {
                                        if ws.send(WsMessage::text(PONG)).await.is_err() {
                                            break;
                                        }
                                    }
                                    FromServer::Connected => {
                                        joined = true;
                                        backoff = Duration::from_millis(250);
                                        if connected_once {
                                            stats.reconnects.fetch_add(1, Ordering::Relaxed);
                                        }
                                        connected_once = true;
                                        tracing::info!(url = %cfg.url, "Socket.IO bridge connected");
                                    }
                                    FromServer::ConnectError(why) => {
                                        tracing::warn!(url = %cfg.url, %why, "Socket.IO server refused the connection");
                                        break;
                                    }
                                    FromServer::Closed => break,
                                    FromServer::Event(name, args) => {
                                        stats.messages_in.fetch_add(1, Ordering::Relaxed);
                                        if !cfg.events.is_empty() && !cfg.events.contains(&name) {
                                            continue;
                                        }
                                        let value = match args.as_slice() {
                                            [] => Some(Value::Null),
                                            [one] => from_json_within(one, MAX_DEPTH),
                                            many => from_json_within(&serde_json::Value::Array(many.to_vec()), MAX_DEPTH),
                                        };
                                        let (Some(address), Some(value)) = (address(&prefix, &name), value) else {
                                            stats.skipped.fetch_add(1, Ordering::Relaxed);
                                            continue;
                                        };
                                        let w = Write { address, value, kind: WriteKind::Set, rule: 0, feedback: false };
                                        echoes.sent(&w.address, &w.value);
                                        if link.write(&w).await.is_err() {
                                            stats.errors.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                    FromServer::Other => {}
                                }
                            }
                            u = sub.next(), if joined => {
                                let Some(u) = u else { return Err(BridgeError::Closed) };
                                let param = u.kind == clasp_proto::SignalType::Param;
                                if param && echoes.is_echo(&u.address, &u.value) {
                                    continue;
                                }
                                let Some(path) = clasp_to_osc(&prefix, &u.address) else { continue };
                                let frame = protocol::event(path.trim_start_matches('/'), &to_json(&u.value));
                                if ws.send(WsMessage::text(frame)).await.is_err() {
                                    break;
                                }
                                stats.messages_out.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}
