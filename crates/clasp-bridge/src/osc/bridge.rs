//! The OSC bridge: listens on a UDP port and writes what arrives under its namespace
//! (`/osc/1/fader1` for the OSC address `/1/fader1`); sends changes under the namespace made by
//! anyone else to its targets. Bundles keep their time tags (a future one is scheduled by the
//! router); an incoming address pattern (`/mixer/*/mute`) sets every known param it matches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clasp_mapping::echo::Echoes;
use clasp_mapping::{Write, WriteKind};
use clasp_osc::map::{
    ArgOptions, args_to_value, check_shape, clasp_to_osc, normalize_namespace, to_args,
};
use clasp_osc::time::{Due, plan};
use clasp_proto::{SignalType, Value};
use futures_util::{FutureExt, StreamExt};
use rosc::{OscMessage, OscPacket};
use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::query::mirror::{Mirror, MirrorSource, MirrorTarget};
use super::query::types::coerce;
use super::query::{Describe, Tree};
use crate::link::{BridgeError, LinkSubscription, RouterLink, Update};

/// Deepest bundle nesting accepted (the decoder recurses per level).
const MAX_BUNDLE_DEPTH: usize = 8;
/// Deepest array-argument nesting accepted.
const MAX_ARRAY_DEPTH: usize = 8;
/// Furthest ahead a bundle may be scheduled.
const MAX_AHEAD: Duration = Duration::from_secs(3600);

/// One OSC bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OscBridgeConfig {
    /// The UDP address to receive on, e.g. `0.0.0.0:9000`.
    pub listen: SocketAddr,
    /// Where changes are sent (the apps' OSC input ports).
    #[serde(default)]
    pub targets: Vec<SocketAddr>,
    /// The prefix (default `/osc`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Send floats as 64-bit doubles (`d`) instead of `f` (most apps want `f`).
    #[serde(default)]
    pub float64: bool,
    /// Serve OSCQuery (HTTP and WebSocket LISTEN) on this TCP address.
    #[serde(default)]
    pub oscquery: Option<SocketAddr>,
    /// The name OSCQuery and mDNS show (default `CLASP OSC bridge`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Advertise the OSCQuery server and the OSC port over mDNS (`_oscjson._tcp`,
    /// `_osc._udp`) when OSCQuery is served on an address other apps can reach (default on;
    /// never for loopback).
    #[serde(default = "yes")]
    pub advertise: bool,
    /// OSCQuery attributes (ranges, descriptions, units) of params by pattern.
    #[serde(default)]
    pub describe: Vec<Describe>,
    /// Mirror this app's OSCQuery tree into params under the namespace, and send it changes
    /// made in the router: `http://host:port`, or `mdns:NAME` for the app advertising
    /// `_oscjson._tcp` under a name containing NAME.
    #[serde(default)]
    pub mirror: Option<String>,
    /// How often a mirrored app without WebSocket `LISTEN` is read again, in ms (default 1000).
    #[serde(default = "default_poll")]
    pub mirror_poll_ms: u64,
}

fn default_namespace() -> String {
    "/osc".into()
}

fn default_name() -> String {
    "CLASP OSC bridge".into()
}

fn yes() -> bool {
    true
}

fn default_poll() -> u64 {
    1000
}

impl OscBridgeConfig {
    /// A bridge listening on `listen` with every other setting at its default.
    pub fn new(listen: SocketAddr) -> OscBridgeConfig {
        OscBridgeConfig {
            listen,
            targets: Vec::new(),
            namespace: default_namespace(),
            float64: false,
            oscquery: None,
            name: default_name(),
            advertise: true,
            describe: Vec::new(),
            mirror: None,
            mirror_poll_ms: default_poll(),
        }
    }

    /// The namespace, checked (`""` for the root).
    pub fn prefix(&self) -> Result<String, BridgeError> {
        normalize_namespace(&self.namespace).ok_or_else(|| {
            BridgeError::Config(format!(
                "OSC namespace `{}` must be an address such as /osc",
                self.namespace
            ))
        })
    }
}

/// Counters of a running OSC bridge.
pub type OscStats = crate::stats::BridgeStats;

/// An OSC bridge bound and subscribed, ready to [`OscBridge::run`].
#[derive(Debug)]
pub struct OscBridge {
    link: RouterLink,
    cfg: OscBridgeConfig,
    prefix: String,
    socket: UdpSocket,
    sub: LinkSubscription,
    tree: Tree,
    query: Option<tokio::net::TcpListener>,
    mirror: Option<MirrorSource>,
}

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl OscBridge {
    /// Binds the UDP port and subscribes to the namespace; the params already there are
    /// remembered (for address patterns), not sent.
    pub async fn start(link: RouterLink, cfg: OscBridgeConfig) -> Result<OscBridge, BridgeError> {
        let prefix = cfg.prefix()?;
        let socket = UdpSocket::bind(cfg.listen).await.map_err(|e| {
            BridgeError::Device(format!(
                "cannot listen for OSC on udp://{}: {e}",
                cfg.listen
            ))
        })?;
        let pattern = if prefix.is_empty() {
            "/**".to_owned()
        } else {
            format!("{prefix}/**")
        };
        let tree = Tree::with_rules(&cfg.describe)
            .map_err(|e| BridgeError::Config(format!("OSC bridge: {e}")))?;
        let mirror = match &cfg.mirror {
            Some(m) => Some(MirrorSource::parse(m).map_err(BridgeError::Config)?),
            None => None,
        };
        let mut sub = link.subscribe(&pattern).await?;
        link.sync().await?;
        while let Some(Some(u)) = sub.next().now_or_never() {
            if u.kind == SignalType::Param
                && let Some(path) = clasp_to_osc(&prefix, &u.address)
            {
                tree.set(path, &u.value);
            }
        }
        let query = match cfg.oscquery {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                BridgeError::Device(format!("cannot serve OSCQuery on {addr}: {e}"))
            })?),
            None => None,
        };
        tracing::info!(listen = %socket.local_addr().map_or(cfg.listen, |a| a), %prefix, targets = cfg.targets.len(), "OSC bridge running");
        Ok(OscBridge {
            link,
            cfg,
            prefix,
            socket,
            sub,
            tree,
            query,
            mirror,
        })
    }

    /// The UDP address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The OSCQuery address actually bound, if it serves OSCQuery.
    pub fn oscquery_addr(&self) -> Option<SocketAddr> {
        self.query.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs until `stop`.
    pub async fn run(
        self,
        stats: Arc<OscStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let OscBridge {
            link,
            cfg,
            prefix,
            socket,
            mut sub,
            tree,
            query,
            mirror,
        } = self;
        let osc_addr = socket
            .local_addr()
            .map_err(|e| BridgeError::Device(e.to_string()))?;
        // OSC packets from OSCQuery WebSocket clients and a mirrored app join the UDP input.
        let (input_tx, mut input_rx) = tokio::sync::mpsc::channel::<(Vec<u8>, Source)>(256);
        // Kept until the bridge stops: dropping it sends the mDNS goodbyes.
        let mut _advertised = None;
        if let Some(l) = query {
            let query_addr = l
                .local_addr()
                .map_err(|e| BridgeError::Device(e.to_string()))?;
            let state = super::query::serve::QueryState {
                tree: tree.clone(),
                name: cfg.name.clone(),
                osc: osc_addr,
                input: input_tx.clone(),
            };
            let app = super::query::serve::router(state);
            let stop = stop.clone();
            tokio::spawn(async move {
                // LISTEN streams small frames: no Nagle delay.
                let l = axum::serve::ListenerExt::tap_io(l, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            });
            if cfg.advertise {
                _advertised = super::query::advertise::publish(&cfg.name, query_addr, osc_addr)?;
            }
        }
        let mirror_target = MirrorTarget::default();
        if let Some(source) = mirror {
            let url = match &source {
                MirrorSource::Url(u) => u.clone(),
                // Found at each connection.
                MirrorSource::Mdns(_) => reqwest::Url::parse("http://0.0.0.0/")
                    .map_err(|e| BridgeError::Config(e.to_string()))?,
            };
            let m = Mirror {
                source,
                url,
                tree: tree.clone(),
                input: input_tx.clone(),
                target: mirror_target.clone(),
                poll: Duration::from_millis(cfg.mirror_poll_ms.max(50)),
                stats: stats.clone(),
                http: crate::http::webhook::client("OSCQuery mirror")?,
            };
            tokio::spawn(m.run(stop.clone()));
        }
        drop(input_tx);
        let opts = ArgOptions {
            float64: cfg.float64,
        };
        let mut echoes = Echoes::new();
        let mut sources = Sources::default();
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                input = input_rx.recv(), if !input_rx.is_closed() => {
                    let Some((packet, from)) = input else { continue };
                    let writes = inbound(&packet, &prefix, &tree, &stats);
                    sources.note(&writes, from);
                    apply(&link, writes, &mut echoes, &stats).await;
                }
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    let writes = inbound(&buf[..n], &prefix, &tree, &stats);
                    sources.note(&writes, Source::Udp(from));
                    apply(&link, writes, &mut echoes, &stats).await;
                }
                u = sub.next() => {
                    let Some(u) = u else { return Err(BridgeError::Closed) };
                    let mut from = None;
                    if u.kind == SignalType::Param {
                        if let Some(path) = clasp_to_osc(&prefix, &u.address) {
                            tree.set(path, &u.value);
                        }
                        if echoes.is_echo(&u.address, &u.value) {
                            // Our own write coming back: the other apps still hear it.
                            from = Some(sources.of(&u.address));
                        }
                    }
                    let mut targets = Targets { fixed: &cfg.targets, mirror: *mirror_target.read(), skip: None };
                    match from {
                        None => {}
                        // The sender itself, when it sends from the port it listens on.
                        Some(Source::Udp(a)) => targets.skip = Some(a),
                        Some(Source::Mirror) => targets.mirror = None,
                        Some(Source::WebSocket) => {}
                    }
                    outbound(&socket, targets, &prefix, &tree, &u, opts, &stats).await;
                }
            }
        }
    }
}

/// Makes the writes of one datagram: those due now one by one, each scheduled time's as one
/// bundle.
async fn apply(
    link: &RouterLink,
    writes: Vec<(Write, Option<u64>)>,
    echoes: &mut Echoes,
    stats: &OscStats,
) {
    for w in writes.iter().map(|(w, _)| w) {
        if w.kind == WriteKind::Set {
            echoes.sent(&w.address, &w.value);
        }
    }
    let mut i = 0;
    while i < writes.len() {
        let at = writes[i].1;
        let end = writes[i..]
            .iter()
            .position(|(_, t)| *t != at)
            .map_or(writes.len(), |n| i + n);
        let group: Vec<Write> = writes[i..end].iter().map(|(w, _)| w.clone()).collect();
        i = end;
        let r = match at {
            None => {
                let mut r = Ok(());
                for w in &group {
                    r = r.and(link.write(w).await);
                }
                r
            }
            Some(at) => link.write_at(&group, at).await,
        };
        if let Err(e) = r {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "OSC write to the router failed");
        }
    }
}

/// The router writes for one datagram, each with the wall time it is due (`None`: now).
fn inbound(buf: &[u8], prefix: &str, tree: &Tree, stats: &OscStats) -> Vec<(Write, Option<u64>)> {
    let skip = || {
        stats.skipped.fetch_add(1, Ordering::Relaxed);
        Vec::new()
    };
    if check_shape(buf, MAX_BUNDLE_DEPTH, MAX_ARRAY_DEPTH).is_err() {
        return skip();
    }
    let Ok((_, packet)) = rosc::decoder::decode_udp(buf) else {
        return skip();
    };
    let mut out = Vec::new();
    let now = wall_micros();
    collect(packet, None, now, prefix, tree, stats, &mut out);
    out
}

fn collect(
    packet: OscPacket,
    parent: Option<u64>,
    now: u64,
    prefix: &str,
    tree: &Tree,
    stats: &OscStats,
    out: &mut Vec<(Write, Option<u64>)>,
) {
    match packet {
        OscPacket::Message(m) => {
            stats.messages_in.fetch_add(1, Ordering::Relaxed);
            for w in message(m, prefix, tree) {
                out.push((w, parent));
            }
        }
        OscPacket::Bundle(b) => match plan(b.timetag, parent, now, MAX_AHEAD) {
            Due::TooFar => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
            due => {
                for p in b.content {
                    collect(p, due.parent(), now, prefix, tree, stats, out);
                }
            }
        },
    }
}

/// The SETs for one OSC message: one at its address, or one per known param an address
/// pattern matches.
fn message(m: OscMessage, prefix: &str, tree: &Tree) -> Vec<Write> {
    let value = args_to_value(&m.args);
    let set = |address: String| Write {
        address,
        value: value.clone(),
        kind: WriteKind::Set,
        rule: 0,
        feedback: false,
    };
    if !m.addr.contains(['*', '?', '[', '{']) {
        if !m.addr.starts_with('/') || m.addr.len() < 2 {
            return Vec::new();
        }
        return vec![set(format!("{prefix}{}", m.addr))];
    }
    let Ok(matcher) = rosc::address::Matcher::new(&m.addr) else {
        return Vec::new();
    };
    tree.paths(|path| {
        rosc::address::OscAddress::new(path.to_owned()).is_ok_and(|a| matcher.match_address(&a))
    })
    .into_iter()
    .map(|path| set(format!("{prefix}{path}")))
    .collect()
}

/// Where input came from: a change it made goes back to every other app, not to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An OSC app over UDP.
    Udp(SocketAddr),
    /// An OSCQuery WebSocket client.
    WebSocket,
    /// The mirrored OSCQuery app.
    Mirror,
}

/// The source of the latest input per router address.
#[derive(Debug, Default)]
struct Sources(std::collections::HashMap<String, Source>);

/// Addresses remembered at most (then forgotten all at once).
const MAX_SOURCES: usize = 100_000;

impl Sources {
    fn note(&mut self, writes: &[(Write, Option<u64>)], from: Source) {
        for (w, _) in writes {
            if self.0.len() >= MAX_SOURCES && !self.0.contains_key(&w.address) {
                self.0.clear();
            }
            self.0.insert(w.address.clone(), from);
        }
    }

    /// Where the input that set `address` came from (an OSCQuery client if forgotten).
    fn of(&self, address: &str) -> Source {
        self.0.get(address).copied().unwrap_or(Source::WebSocket)
    }
}

/// Where changes go: the configured targets but `skip`, and a mirrored app.
#[derive(Clone, Copy)]
struct Targets<'a> {
    fixed: &'a [SocketAddr],
    mirror: Option<SocketAddr>,
    skip: Option<SocketAddr>,
}

/// Sends a change to every target: with the argument types a mirrored app declared for the
/// path, and to the mirrored app only where it accepts writes (ACCESS 2 or 3).
async fn outbound(
    socket: &UdpSocket,
    targets: Targets<'_>,
    prefix: &str,
    tree: &Tree,
    u: &Update,
    opts: ArgOptions,
    stats: &OscStats,
) {
    let Some(addr) = clasp_to_osc(prefix, &u.address) else {
        return;
    };
    let mut args = match &u.value {
        Value::Null if u.kind != SignalType::Param => Vec::new(),
        v => to_args(v, opts),
    };
    let attrs = tree.attrs(addr);
    let writable = attrs
        .as_ref()
        .and_then(|a| a.get("ACCESS"))
        .and_then(serde_json::Value::as_u64)
        .is_none_or(|a| a >= 2);
    if let Some(types) = attrs.as_ref().and_then(|a| a.get("TYPE")?.as_str()) {
        args = coerce(args, types);
    }
    let msg = OscPacket::Message(OscMessage {
        addr: addr.to_owned(),
        args,
    });
    let Ok(bytes) = rosc::encoder::encode(&msg) else {
        return;
    };
    let mirror = targets.mirror.filter(|_| writable);
    let fixed = targets.fixed.iter().filter(|t| Some(**t) != targets.skip);
    for t in fixed.chain(mirror.as_ref()) {
        if socket.send_to(&bytes, t).await.is_ok() {
            stats.messages_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts and runs the bridge for `cfg` (see [`OscBridge`]).
pub async fn run(
    link: RouterLink,
    cfg: OscBridgeConfig,
    stats: Arc<OscStats>,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    OscBridge::start(link, cfg).await?.run(stats, stop).await
}
