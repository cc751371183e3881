//! Mirroring another app's OSCQuery tree into params: the bridge reads the app's `HOST_INFO`
//! and tree, writes every readable value under its namespace (with the app's RANGE, TYPE,
//! DESCRIPTION… kept for its own OSCQuery tree), follows changes with WebSocket `LISTEN` when
//! the app offers it (re-reading a subtree on `PATH_ADDED`/`PATH_CHANGED`) or by polling when
//! it does not, and sends changes made in the router to the app's OSC port with the types the
//! app declared. Reconnects with back-off when the app goes away. The app is given by URL, or
//! by (part of) its mDNS instance name, looked up again on every connection (its address and
//! port may change between runs, as VRChat's do).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::RwLock;
use rosc::{OscMessage, OscPacket};
use serde_json::{Map, Value as Json, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use super::tree::Tree;
use super::types::args_from_json;
use crate::osc::bridge::Source;
use crate::stats::BridgeStats;

/// Largest tree document read.
const MAX_BODY: usize = 16 << 20;
/// Deepest node nesting read.
const MAX_DEPTH: usize = 64;
/// Most methods mirrored from one app.
const MAX_METHODS: usize = 100_000;
/// Longest wait for one HTTP answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why one mirroring session ended.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// An HTTP request failed or answered an error status.
    #[error("GET {url}: {why}")]
    Http {
        /// The URL asked.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The answer was not the JSON OSCQuery describes.
    #[error("GET {url}: not an OSCQuery answer: {why}")]
    Document {
        /// The URL asked.
        url: String,
        /// What was wrong.
        why: String,
    },
    /// The WebSocket closed or failed.
    #[error("OSCQuery WebSocket {0}")]
    WebSocket(String),
    /// The app could not be found over mDNS.
    #[error("mDNS: {0}")]
    Mdns(String),
    /// The bridge stopped taking input.
    #[error("the bridge stopped")]
    Stopped,
}

/// Where the mirrored app receives OSC, once known (`None`: not known, or not over UDP).
pub type MirrorTarget = Arc<RwLock<Option<SocketAddr>>>;

/// Which OSCQuery app to mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorSource {
    /// Its base URL, `http://host:port`.
    Url(reqwest::Url),
    /// The first `_oscjson._tcp` instance whose name contains this.
    Mdns(String),
}

impl MirrorSource {
    /// `http://host:port` or `mdns:NAME`.
    pub fn parse(s: &str) -> Result<MirrorSource, String> {
        let bad = |why: &str| format!("OSCQuery mirror `{s}`: {why}");
        if let Some(name) = s.strip_prefix("mdns:") {
            if name.is_empty() {
                return Err(bad("give a name after mdns:"));
            }
            return Ok(MirrorSource::Mdns(name.to_owned()));
        }
        let u = reqwest::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        if u.scheme() != "http" {
            return Err(bad("give http://host:port or mdns:NAME"));
        }
        if u.host_str().is_none() {
            return Err(bad("no host"));
        }
        Ok(MirrorSource::Url(u))
    }
}

/// How long a lookup by mDNS name waits for the app.
const MDNS_WAIT: Duration = Duration::from_secs(5);

/// The OSCQuery apps advertised over mDNS within `wait`, with their HOST_INFO when it could be
/// read: `(instance, url, host info)`.
pub async fn browse(wait: Duration) -> Result<Vec<(String, String, Option<Json>)>, String> {
    let found = clasp_discovery::browse_services(super::advertise::OSCJSON_SERVICE, wait, None)
        .await
        .map_err(|e| e.to_string())?;
    let http = crate::http::webhook::client("OSCQuery browse").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for f in found {
        let Some(url) = service_url(&f) else { continue };
        let mut ask = url.clone();
        ask.set_path("/");
        ask.set_query(Some("HOST_INFO"));
        let info = async {
            let r = http.get(ask).timeout(HTTP_TIMEOUT).send().await.ok()?;
            r.json::<Json>().await.ok()
        }
        .await;
        out.push((f.instance, url.to_string(), info));
    }
    Ok(out)
}

/// `http://address:port` of a found service (IPv4 first).
fn service_url(f: &clasp_discovery::FoundService) -> Option<reqwest::Url> {
    let addr = f.addresses.first()?;
    reqwest::Url::parse(&format!("http://{}", SocketAddr::new(*addr, f.port))).ok()
}

/// One mirrored OSCQuery server.
#[derive(Debug)]
pub(crate) struct Mirror {
    pub(crate) source: MirrorSource,
    /// The server's base URL, `http://host:port` (for `Mdns`, the last one found).
    pub(crate) url: reqwest::Url,
    pub(crate) tree: Tree,
    /// OSC packets for the bridge to write (like its UDP input).
    pub(crate) input: mpsc::Sender<(Vec<u8>, Source)>,
    pub(crate) target: MirrorTarget,
    /// How often to read the tree again when the server has no `LISTEN`.
    pub(crate) poll: Duration,
    pub(crate) stats: Arc<BridgeStats>,
    pub(crate) http: reqwest::Client,
}

/// The methods seen and their last VALUE.
type Seen = HashMap<String, Json>;

impl Mirror {
    /// Mirrors until `stop`, reconnecting with back-off.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        let mut first = true;
        loop {
            let started = Instant::now();
            let r = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.session() => r,
            };
            let e = match r {
                Err(MirrorError::Stopped) => return,
                Err(e) => e,
            };
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            if first {
                tracing::warn!(source = ?self.source, error = %e, "OSCQuery mirror: will keep trying");
            } else {
                tracing::info!(source = ?self.source, error = %e, "OSCQuery mirror lost; reconnecting");
            }
            first = false;
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_millis(250);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One connection: reads everything, then follows changes until something fails.
    async fn session(&mut self) -> Result<std::convert::Infallible, MirrorError> {
        if let MirrorSource::Mdns(name) = &self.source {
            let found = clasp_discovery::browse_services(
                super::advertise::OSCJSON_SERVICE,
                MDNS_WAIT,
                Some(name),
            )
            .await
            .map_err(|e| MirrorError::Mdns(e.to_string()))?;
            let service = found
                .iter()
                .find(|f| f.instance.contains(name.as_str()))
                .ok_or_else(|| {
                    let seen: Vec<&str> = found.iter().map(|f| f.instance.as_str()).collect();
                    MirrorError::Mdns(format!(
                        "no OSCQuery app named like `{name}` (found: {seen:?})"
                    ))
                })?;
            self.url = service_url(service).ok_or_else(|| {
                MirrorError::Mdns(format!("`{}` has no address", service.instance))
            })?;
        }
        let info = self.get("/", Some("HOST_INFO")).await?;
        let target = self.osc_target(&info).await;
        *self.target.write() = target;
        let mut seen = Seen::new();
        let root = self.get("/", None).await?;
        if info["EXTENSIONS"]["LISTEN"].as_bool() == Some(true) {
            // LISTEN first, values after: a change made in between is not missed.
            let methods: Vec<String> = methods(&root)
                .take(MAX_METHODS)
                .map(|(p, _)| p.to_owned())
                .collect();
            tracing::info!(url = %self.url, methods = methods.len(), osc = ?target, "OSCQuery mirror connected (LISTEN)");
            self.listen(&info, methods, &mut seen).await
        } else {
            let methods = self.absorb(&root, &mut seen).await?;
            tracing::info!(url = %self.url, methods = methods.len(), osc = ?target, "OSCQuery mirror connected (polling)");
            self.poll(self.poll, &mut seen).await
        }
    }

    /// GET `path` (`?attr`) as JSON, bounded in size and time.
    async fn get(&self, path: &str, attr: Option<&str>) -> Result<Json, MirrorError> {
        let mut url = self.url.clone();
        url.set_path(path);
        url.set_query(attr);
        let err = |why: String| MirrorError::Http {
            url: url.to_string(),
            why,
        };
        let mut resp = self
            .http
            .get(url.clone())
            .timeout(HTTP_TIMEOUT)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(resp.status().to_string()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(err(format!("answer larger than {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| MirrorError::Document {
            url: url.to_string(),
            why: e.to_string(),
        })
    }

    /// The app's OSC input from HOST_INFO (its IP defaults to the HTTP server's host).
    async fn osc_target(&self, info: &Json) -> Option<SocketAddr> {
        let transport = info["OSC_TRANSPORT"].as_str().unwrap_or("UDP");
        if !transport.eq_ignore_ascii_case("UDP") {
            tracing::warn!(url = %self.url, transport, "OSCQuery mirror: the app takes OSC over {transport} only; changes are not sent to it");
            return None;
        }
        let port = info["OSC_PORT"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .or_else(|| self.url.port_or_known_default())?;
        let ip = info["OSC_IP"]
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .filter(|ip| !ip.is_unspecified());
        match ip {
            Some(ip) => Some(SocketAddr::new(ip, port)),
            None => {
                let host = self.url.host_str()?.trim_matches(['[', ']']).to_owned();
                tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .ok()?
                    .next()
            }
        }
    }

    /// Takes in a node and its subtree: attributes into the tree, new or changed values to
    /// the bridge. Returns the paths of the methods found.
    async fn absorb(&self, node: &Json, seen: &mut Seen) -> Result<Vec<String>, MirrorError> {
        let mut found = Vec::new();
        for (path, obj) in methods(node) {
            let Some(types) = obj.get("TYPE").and_then(Json::as_str) else {
                continue;
            };
            if !seen.contains_key(path) && seen.len() >= MAX_METHODS {
                continue;
            }
            let attrs: Map<String, Json> = obj
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "FULL_PATH" | "CONTENTS" | "VALUE"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            self.tree.set_attrs(path, attrs);
            found.push(path.to_owned());
            // ACCESS 0 (no value) and 2 (write-only) have no value to read.
            let readable = !matches!(obj.get("ACCESS").and_then(Json::as_u64), Some(0 | 2));
            let value = obj.get("VALUE").filter(|_| readable).cloned();
            let changed = seen.get(path) != value.as_ref();
            seen.insert(path.to_owned(), value.clone().unwrap_or(Json::Null));
            if let Some(value) = value.filter(|_| changed) {
                self.send_value(path, types, &value).await?;
            }
        }
        Ok(found)
    }

    async fn send_value(&self, path: &str, types: &str, value: &Json) -> Result<(), MirrorError> {
        let Some(args) = args_from_json(types, value) else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let msg = OscPacket::Message(OscMessage {
            addr: path.to_owned(),
            args,
        });
        let Ok(bytes) = rosc::encoder::encode(&msg) else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        self.input
            .send((bytes, Source::Mirror))
            .await
            .map_err(|_| MirrorError::Stopped)
    }

    /// Follows the app by reading its tree again every `every`.
    async fn poll(
        &self,
        every: Duration,
        seen: &mut Seen,
    ) -> Result<std::convert::Infallible, MirrorError> {
        loop {
            tokio::time::sleep(every).await;
            self.reread(seen).await?;
        }
    }

    /// Reads the whole tree again; what changed is written.
    async fn reread(&self, seen: &mut Seen) -> Result<Vec<String>, MirrorError> {
        let root = self.get("/", None).await?;
        self.absorb(&root, seen).await
    }

    /// Follows the app over its WebSocket: LISTEN to every method, values as OSC packets,
    /// subtrees read again when the app says its structure changed. LISTEN has no answer, so
    /// the tree is read once more after asking (a change made meanwhile is not missed) and
    /// again now and then (an app that does not stream everything is caught up with).
    async fn listen(
        &self,
        info: &Json,
        methods: Vec<String>,
        seen: &mut Seen,
    ) -> Result<std::convert::Infallible, MirrorError> {
        let host = info["WS_IP"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| self.url.host_str().map(str::to_owned))
            .unwrap_or_default();
        let port = info["WS_PORT"]
            .as_u64()
            .or_else(|| self.url.port_or_known_default().map(u64::from))
            .unwrap_or(80);
        let ws_url = format!("ws://{host}:{port}/");
        let (mut ws, _) = tokio::time::timeout(
            HTTP_TIMEOUT,
            // Small frames (LISTEN, one OSC message) must not wait for Nagle.
            tokio_tungstenite::connect_async_with_config(ws_url.as_str(), None, true),
        )
        .await
        .map_err(|_| MirrorError::WebSocket(format!("{ws_url}: timed out")))?
        .map_err(|e| MirrorError::WebSocket(format!("{ws_url}: {e}")))?;
        let ws_err = |e: tokio_tungstenite::tungstenite::Error| {
            MirrorError::WebSocket(format!("{ws_url}: {e}"))
        };
        let mut listened: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut catch_up =
            tokio::time::interval(self.poll.saturating_mul(5).max(Duration::from_secs(1)));
        catch_up.reset();
        let mut pending = methods;
        let mut asked = false;
        loop {
            let mut asking = false;
            for m in pending.drain(..) {
                if listened.insert(m.clone()) {
                    let cmd = json!({"COMMAND": "LISTEN", "DATA": m}).to_string();
                    ws.feed(WsMessage::Text(cmd.into())).await.map_err(ws_err)?;
                    asking = true;
                }
            }
            if asking {
                ws.flush().await.map_err(ws_err)?;
            }
            if !asked {
                asked = true;
                pending = self.reread(seen).await?;
                continue;
            }
            let msg = tokio::select! {
                m = ws.next() => m,
                _ = catch_up.tick() => {
                    pending = self.reread(seen).await?;
                    continue;
                }
            };
            let Some(msg) = msg else {
                return Err(MirrorError::WebSocket(format!("{ws_url}: closed")));
            };
            match msg.map_err(ws_err)? {
                WsMessage::Binary(b) => {
                    self.input
                        .send((b.to_vec(), Source::Mirror))
                        .await
                        .map_err(|_| MirrorError::Stopped)?;
                }
                WsMessage::Text(t) => {
                    let Ok(cmd) = serde_json::from_str::<Json>(t.as_str()) else {
                        continue;
                    };
                    let path = match (cmd["COMMAND"].as_str(), &cmd["DATA"]) {
                        (Some("PATH_ADDED" | "PATH_CHANGED"), Json::String(p)) => p.clone(),
                        (Some("PATH_RENAMED"), d) => match d["NEW"].as_str() {
                            Some(p) => p.to_owned(),
                            None => continue,
                        },
                        _ => continue,
                    };
                    // A node that is gone again by now is not an error.
                    let Ok(node) = self.get(&path, None).await else {
                        continue;
                    };
                    pending = self.absorb(&node, seen).await?;
                }
                WsMessage::Close(_) => {
                    return Err(MirrorError::WebSocket(format!("{ws_url}: closed")));
                }
                _ => {}
            }
        }
    }
}

/// The methods (nodes with a `TYPE`) in a node's subtree, by full path, depth-bounded.
fn methods(node: &Json) -> impl Iterator<Item = (&str, &Map<String, Json>)> {
    let mut stack = vec![(node, 0usize)];
    std::iter::from_fn(move || {
        while let Some((n, depth)) = stack.pop() {
            let Some(obj) = n.as_object() else { continue };
            if let Some(Json::Object(children)) = obj.get("CONTENTS")
                && depth < MAX_DEPTH
            {
                stack.extend(children.values().map(|c| (c, depth + 1)));
            }
            let (Some(Json::String(path)), Some(Json::String(_))) =
                (obj.get("FULL_PATH"), obj.get("TYPE"))
            else {
                continue;
            };
            if path.starts_with('/') && path.len() >= 2 {
                return Some((path.as_str(), obj));
            }
        }
        None
    })
}
