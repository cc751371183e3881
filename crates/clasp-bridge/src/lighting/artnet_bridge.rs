//! The Art-Net bridge: universes (Port-Addresses) joined to the router under `/artnet`, both
//! ways. ArtDmx from the network is merged per universe (two sources, HTP or LTP) and written
//! at most once per refresh period — the whole frame at `/artnet/{u}` and the channels that
//! changed at `/artnet/{u}/{ch}` — so a console at full rate does not flood the router and the
//! latest frame always wins. Changes made in the router by anyone else go out as ArtDmx, paced
//! (only changed universes, at most once per period, a keep-alive every second), unicast to
//! the targets and/or to a directed broadcast, optionally followed by ArtSync. ArtPoll is
//! answered (one ArtPollReply per universe); [`discover`] polls for nodes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clasp_mapping::echo::Echoes;
use clasp_proto::SignalType;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::artnet::{self, Packet, PollReply};
pub use super::common::{Direction, InputWrites};
use super::common::{Inputs, Sink, apply_update, next, sleep_until};
use super::merge::{MergeMode, Merger, SourceId};
use super::pace::{Pacer, Sequence};
use crate::link::{BridgeError, LinkSubscription, RouterLink};
use crate::stats::BridgeStats;

/// One Art-Net bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtNetConfig {
    /// The UDP address to bind (default `0.0.0.0:6454`).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Nodes ArtDmx is unicast to.
    #[serde(default)]
    pub targets: Vec<SocketAddr>,
    /// A directed broadcast address (`2.255.255.255:6454`) ArtDmx and ArtSync also go to.
    #[serde(default)]
    pub broadcast: Option<SocketAddr>,
    /// The Port-Addresses (0–32767) handled.
    pub universes: Vec<u16>,
    /// The prefix (default `/artnet`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// How two sources of one universe merge (default HTP).
    #[serde(default)]
    pub merge: MergeMode,
    /// Frames per second at most, per universe, both ways (default 44).
    #[serde(default = "default_refresh")]
    pub refresh_hz: f64,
    /// An unchanged universe is sent again after this many ms (default 1000).
    #[serde(default = "default_keepalive")]
    pub keepalive_ms: u64,
    /// What input writes.
    #[serde(default)]
    pub input: InputWrites,
    /// Which way DMX flows.
    #[serde(default)]
    pub direction: Direction,
    /// Send an ArtSync after each round of frames.
    #[serde(default)]
    pub sync: bool,
    /// The name ArtPollReply gives (up to 17 bytes shown as the short name).
    #[serde(default = "default_name")]
    pub name: String,
}

fn default_bind() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), artnet::PORT)
}

fn default_namespace() -> String {
    "/artnet".into()
}

fn default_refresh() -> f64 {
    44.0
}

fn default_keepalive() -> u64 {
    1000
}

fn default_name() -> String {
    "CLASP".into()
}

impl ArtNetConfig {
    /// A bridge of `universes` with every other setting at its default.
    pub fn new(universes: Vec<u16>) -> ArtNetConfig {
        ArtNetConfig {
            bind: default_bind(),
            targets: Vec::new(),
            broadcast: None,
            universes,
            namespace: default_namespace(),
            merge: MergeMode::default(),
            refresh_hz: default_refresh(),
            keepalive_ms: default_keepalive(),
            input: InputWrites::default(),
            direction: Direction::default(),
            sync: false,
            name: default_name(),
        }
    }

    /// Checks the settings; the namespace.
    pub fn check(&self) -> Result<String, BridgeError> {
        let bad = |why: String| Err(BridgeError::Config(format!("Art-Net bridge: {why}")));
        let prefix = clasp_osc::map::normalize_namespace(&self.namespace)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                BridgeError::Config(format!(
                    "Art-Net namespace `{}` must be an address such as /artnet",
                    self.namespace
                ))
            })?;
        if self.universes.is_empty() {
            return bad("no universe (give --universe N)".into());
        }
        if let Some(u) = self.universes.iter().find(|u| **u > 0x7FFF) {
            return bad(format!("universe {u}: Port-Addresses run 0–32767"));
        }
        if !(1.0..=1000.0).contains(&self.refresh_hz) {
            return bad(format!("refresh_hz {}: use 1–1000", self.refresh_hz));
        }
        if self.direction.output() && self.targets.is_empty() && self.broadcast.is_none() {
            return bad(
                "output needs a target or a broadcast address (or direction = \"input\")".into(),
            );
        }
        Ok(prefix)
    }
}

/// An Art-Net bridge bound and subscribed, ready to [`ArtNetBridge::run`].
#[derive(Debug)]
pub struct ArtNetBridge {
    link: RouterLink,
    cfg: ArtNetConfig,
    prefix: String,
    socket: UdpSocket,
    sub: Option<LinkSubscription>,
    pacer: Pacer,
}

/// A datagram socket on `bind`, allowed to broadcast.
fn bind_udp(bind: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(bind)?;
    s.set_broadcast(true)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

impl ArtNetBridge {
    /// Binds the port and subscribes to the namespace (output); what the router holds for the
    /// universes already goes out at once (fixtures get the current look after a restart).
    pub async fn start(link: RouterLink, cfg: ArtNetConfig) -> Result<ArtNetBridge, BridgeError> {
        let prefix = cfg.check()?;
        let socket = bind_udp(cfg.bind).map_err(|e| {
            BridgeError::Device(format!("cannot bind Art-Net on udp://{}: {e}", cfg.bind))
        })?;
        let period = Duration::from_secs_f64(1.0 / cfg.refresh_hz);
        let mut pacer = Pacer::new(
            period,
            Duration::from_millis(cfg.keepalive_ms.max(100)),
            Sequence::ArtNet,
        );
        let sub = if cfg.direction.output() {
            let mut sub = link.subscribe(&format!("{prefix}/**")).await?;
            link.sync().await?;
            let now = Instant::now();
            while let Some(Some(u)) = sub.next().now_or_never() {
                apply_update(
                    &mut pacer,
                    &prefix,
                    &cfg.universes,
                    &u.address,
                    &u.value,
                    now,
                );
            }
            Some(sub)
        } else {
            None
        };
        tracing::info!(bind = %socket.local_addr().map_or(cfg.bind, |a| a), %prefix, universes = ?cfg.universes, "Art-Net bridge running");
        Ok(ArtNetBridge {
            link,
            cfg,
            prefix,
            socket,
            sub,
            pacer,
        })
    }

    /// The UDP address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Runs until `stop`.
    pub async fn run(
        self,
        stats: Arc<BridgeStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let ArtNetBridge {
            link,
            cfg,
            prefix,
            socket,
            mut sub,
            mut pacer,
        } = self;
        let socket = Arc::new(socket);
        let handled: BTreeSet<u16> = cfg.universes.iter().copied().collect();
        let mut inputs = Inputs::default();
        let mut echoes = Echoes::new();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.refresh_hz));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(600);
        loop {
            let due = pacer.next_due();
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    match artnet::decode(&buf[..n]) {
                        Ok(Packet::Dmx { physical, port_address, data, .. }) => {
                            stats.messages_in.fetch_add(1, Ordering::Relaxed);
                            if !cfg.direction.input() || !handled.contains(&port_address) {
                                continue;
                            }
                            let merge = cfg.merge;
                            inputs.input(port_address, source_id(from, physical), data, 0, || Merger::artnet(merge), &stats);
                        }
                        Ok(Packet::Poll { .. }) => {
                            stats.messages_in.fetch_add(1, Ordering::Relaxed);
                            // Within 3 s, after a random delay of up to 1 s (the standard's rule,
                            // so a hundred nodes do not answer at once).
                            let delay = Duration::from_millis(fastrand::u64(..1000));
                            let replies = poll_replies(&cfg, &inputs, from);
                            let (socket, stats) = (socket.clone(), stats.clone());
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                send_replies(&socket, &replies, from, &stats).await;
                            });
                        }
                        Ok(Packet::Address { .. }) => {
                            stats.messages_in.fetch_add(1, Ordering::Relaxed);
                            let replies = poll_replies(&cfg, &inputs, from);
                            send_replies(&socket, &replies, from, &stats).await;
                        }
                        Ok(Packet::PollReply(_) | Packet::Sync | Packet::Other(_)) => {}
                        Err(e) => {
                            stats.skipped.fetch_add(1, Ordering::Relaxed);
                            tracing::trace!(%from, error = %e, "Art-Net datagram skipped");
                        }
                    }
                }
                _ = tick.tick() => {
                    let pacer = cfg.direction.output().then_some(&mut pacer);
                    let sink = Sink { link: &link, prefix: &prefix, what: cfg.input, echoes: &mut echoes, pacer, stats: &stats };
                    inputs.flush(Instant::now(), sink).await;
                }
                u = next(&mut sub) => {
                    let Some(u) = u else { return Err(BridgeError::Closed) };
                    if u.kind != SignalType::Param || echoes.is_echo(&u.address, &u.value) {
                        continue;
                    }
                    apply_update(&mut pacer, &prefix, &cfg.universes, &u.address, &u.value, Instant::now());
                }
                _ = sleep_until(due) => {
                    let frames = pacer.poll(Instant::now());
                    for f in &frames {
                        out.clear();
                        artnet::encode_dmx(f.sequence, 0, f.universe, &f.frame, &mut out);
                        send_all(&socket, &cfg, &out, &stats).await;
                    }
                    if cfg.sync && !frames.is_empty() {
                        out.clear();
                        artnet::encode_sync(&mut out);
                        send_all(&socket, &cfg, &out, &stats).await;
                    }
                }
            }
        }
    }
}

/// A source of ArtDmx: its IP, port and physical port.
fn source_id(from: SocketAddr, physical: u8) -> SourceId {
    let mut id = [0u8; 16];
    match from.ip() {
        IpAddr::V4(v4) => id[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => id[..12].copy_from_slice(&v6.octets()[..12]),
    }
    id[12..14].copy_from_slice(&from.port().to_be_bytes());
    id[14] = physical;
    id
}

/// ArtPollReplies for a poller at `to`: one per universe (Art-Net 4's one port per reply).
fn poll_replies(cfg: &ArtNetConfig, inputs: &Inputs, to: SocketAddr) -> Vec<PollReply> {
    let ip = local_ipv4(cfg.bind, to);
    cfg.universes
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let (net, sub_net, low) = (
                (u >> 8) as u8 & 0x7F,
                (u >> 4) as u8 & 0x0F,
                *u as u8 & 0x0F,
            );
            // An Art-Net "output" port takes ArtDmx in (our input); an "input" port sends it.
            let mut port_type = 0;
            if cfg.direction.input() {
                port_type |= 0x80;
            }
            if cfg.direction.output() {
                port_type |= 0x40;
            }
            let mut good = 0x80;
            if inputs.sources(*u) > 1 {
                good |= 0x08;
            }
            if cfg.merge == MergeMode::Ltp {
                good |= 0x02;
            }
            PollReply {
                ip,
                port: artnet::PORT,
                net,
                sub_net,
                short_name: cfg.name.clone(),
                long_name: format!("{} (CLASP Art-Net bridge, {})", cfg.name, cfg.namespace),
                report: "#0001 [0000] CLASP bridge running".into(),
                ports: 1,
                port_types: [port_type, 0, 0, 0],
                good_output: [good, 0, 0, 0],
                sw_in: [low, 0, 0, 0],
                sw_out: [low, 0, 0, 0],
                style: if cfg.direction.input() { 0 } else { 1 },
                mac: [0; 6],
                bind_index: (i + 1).min(255) as u8,
                // Web config no, DHCP no, 15-bit Port-Address yes.
                status2: 0x08,
            }
        })
        .collect()
}

/// The IPv4 address this host reaches `to` from (the bound one when it is specific).
fn local_ipv4(bind: SocketAddr, to: SocketAddr) -> Ipv4Addr {
    if let IpAddr::V4(v4) = bind.ip()
        && !v4.is_unspecified()
    {
        return v4;
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(to)?;
            s.local_addr()
        })
        .ok()
        .and_then(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED)
}

async fn send_replies(
    socket: &UdpSocket,
    replies: &[PollReply],
    to: SocketAddr,
    stats: &BridgeStats,
) {
    let mut out = Vec::with_capacity(artnet::POLL_REPLY_LEN);
    for r in replies {
        out.clear();
        artnet::encode_poll_reply(r, &mut out);
        if socket.send_to(&out, to).await.is_ok() {
            stats.messages_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn send_all(socket: &UdpSocket, cfg: &ArtNetConfig, bytes: &[u8], stats: &BridgeStats) {
    for t in cfg.targets.iter().chain(cfg.broadcast.as_ref()) {
        match socket.send_to(bytes, t).await {
            Ok(_) => stats.messages_out.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(to = %t, error = %e, "Art-Net send failed");
                stats.errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// A node that answered an ArtPoll.
#[derive(Debug, Clone)]
pub struct Found {
    /// Where the reply came from.
    pub from: SocketAddr,
    /// What it said.
    pub reply: PollReply,
}

/// Sends ArtPoll to `to` (a directed broadcast, say) from `bind` and collects the replies for
/// `wait`.
pub async fn discover(
    bind: SocketAddr,
    to: SocketAddr,
    wait: Duration,
) -> Result<Vec<Found>, BridgeError> {
    let socket = bind_udp(bind)
        .map_err(|e| BridgeError::Device(format!("cannot bind Art-Net on udp://{bind}: {e}")))?;
    let mut poll = Vec::new();
    artnet::encode_poll(&mut poll);
    socket
        .send_to(&poll, to)
        .await
        .map_err(|e| BridgeError::Device(format!("cannot send ArtPoll to {to}: {e}")))?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 1024];
    while let Ok(Ok((n, from))) =
        tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
    {
        if let Ok(Packet::PollReply(reply)) = artnet::decode(&buf[..n]) {
            found.push(Found {
                from,
                reply: *reply,
            });
        }
    }
    Ok(found)
}
