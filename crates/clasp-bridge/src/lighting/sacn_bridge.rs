//! The sACN (E1.31) bridge: universes joined to the router under `/sacn`, both ways. Data from
//! the network — multicast groups `239.255.{hi}.{lo}` joined per universe, and unicast — is
//! checked against E1.31's out-of-order rule per source and universe, merged (the highest
//! priority's sources, HTP among them; a source that says it stopped leaves at once, a silent
//! one after 2.5 s) and written at most once per refresh period, like the Art-Net bridge.
//! Changes made in the router by anyone else go out paced (only changed universes, a keep-alive
//! every second) to the universe's multicast group and/or unicast targets, with the bridge's
//! CID, name and priority; universe discovery every 10 s (and at once when a universe starts);
//! three stream-terminated packets per universe when the bridge stops. Synchronization packets are not acted on: data is applied
//! when it arrives, as E1.31 allows a receiver that does not synchronize.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clasp_mapping::echo::Echoes;
use clasp_proto::SignalType;
use futures_util::FutureExt;
use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

pub use super::common::{Direction, InputWrites};
use super::common::{Inputs, Sink, apply_update, next, sleep_until};
use super::merge::Merger;
use super::pace::{Pacer, Sequence};
use super::sacn::{self, DataHeader, Packet};
use crate::link::{BridgeError, LinkSubscription, RouterLink};
use crate::stats::BridgeStats;

/// How often universe discovery is sent.
const DISCOVERY_EVERY: Duration = Duration::from_secs(10);

/// One sACN bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SacnConfig {
    /// The UDP address to bind (default `0.0.0.0:5568`).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Send to and join the universes' multicast groups (default on).
    #[serde(default = "yes")]
    pub multicast: bool,
    /// The interface (its IPv4 address) for multicast; default: the system's choice.
    #[serde(default)]
    pub interface: Option<Ipv4Addr>,
    /// Receivers data is also unicast to.
    #[serde(default)]
    pub targets: Vec<SocketAddr>,
    /// The universes (1–63999) handled.
    pub universes: Vec<u16>,
    /// The prefix (default `/sacn`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The priority sent (0–200, default 100).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// The source name sent (up to 63 bytes).
    #[serde(default = "default_name")]
    pub source_name: String,
    /// The CID sent, as a UUID; default: one derived from this host's name and the
    /// namespace, the same at every start (receivers tell sources apart by it).
    #[serde(default)]
    pub cid: Option<String>,
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
}

fn default_bind() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), sacn::PORT)
}

fn yes() -> bool {
    true
}

fn default_namespace() -> String {
    "/sacn".into()
}

fn default_priority() -> u8 {
    100
}

fn default_name() -> String {
    "CLASP".into()
}

fn default_refresh() -> f64 {
    44.0
}

fn default_keepalive() -> u64 {
    1000
}

impl SacnConfig {
    /// A bridge of `universes` with every other setting at its default.
    pub fn new(universes: Vec<u16>) -> SacnConfig {
        SacnConfig {
            bind: default_bind(),
            multicast: true,
            interface: None,
            targets: Vec::new(),
            universes,
            namespace: default_namespace(),
            priority: default_priority(),
            source_name: default_name(),
            cid: None,
            refresh_hz: default_refresh(),
            keepalive_ms: default_keepalive(),
            input: InputWrites::default(),
            direction: Direction::default(),
        }
    }

    /// Checks the settings: the namespace and the CID.
    pub fn check(&self) -> Result<(String, [u8; 16]), BridgeError> {
        let bad = |why: String| Err(BridgeError::Config(format!("sACN bridge: {why}")));
        let prefix = clasp_osc::map::normalize_namespace(&self.namespace)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                BridgeError::Config(format!(
                    "sACN namespace `{}` must be an address such as /sacn",
                    self.namespace
                ))
            })?;
        if self.universes.is_empty() {
            return bad("no universe (give --universe N)".into());
        }
        if let Some(u) = self.universes.iter().find(|u| !(1..=63999).contains(*u)) {
            return bad(format!("universe {u}: sACN universes run 1–63999"));
        }
        if self.priority > sacn::MAX_PRIORITY {
            return bad(format!("priority {}: use 0–200", self.priority));
        }
        if !(1.0..=1000.0).contains(&self.refresh_hz) {
            return bad(format!("refresh_hz {}: use 1–1000", self.refresh_hz));
        }
        if self.direction.output() && !self.multicast && self.targets.is_empty() {
            return bad("output needs multicast or a target (or direction = \"input\")".into());
        }
        let cid = match &self.cid {
            Some(s) => match parse_uuid(s) {
                Some(c) => c,
                None => return bad(format!("cid `{s}` is not a UUID")),
            },
            None => derived_cid(&prefix),
        };
        Ok((prefix, cid))
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A CID stable across restarts: FNV-1a over this host's name and the namespace, twice
/// (different offsets) for 128 bits, marked as a version-4-style UUID.
fn derived_cid(prefix: &str) -> [u8; 16] {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let key = format!("clasp sACN source|{}|{prefix}", host.trim());
    let fnv = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        })
    };
    let mut cid = [0u8; 16];
    cid[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    cid[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_be_bytes());
    cid[6] = (cid[6] & 0x0F) | 0x40;
    cid[8] = (cid[8] & 0x3F) | 0x80;
    cid
}

/// An sACN bridge bound, joined and subscribed, ready to [`SacnBridge::run`].
#[derive(Debug)]
pub struct SacnBridge {
    link: RouterLink,
    cfg: SacnConfig,
    prefix: String,
    cid: [u8; 16],
    socket: UdpSocket,
    sub: Option<LinkSubscription>,
    pacer: Pacer,
}

/// The bridge's socket. With multicast, the port is shared (`SO_REUSEADDR`) so that other
/// sACN receivers on the same host (a visualiser, a second bridge) get the groups too, and the
/// socket receives only the groups it joined itself (`IP_MULTICAST_ALL` off), not every group
/// some other program on the host joined.
fn bind_udp(cfg: &SacnConfig) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(cfg.bind),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if cfg.multicast {
        sock.set_reuse_address(true)?;
        if cfg.bind.is_ipv4() {
            sock.set_multicast_all_v4(false)?;
        }
    }
    sock.bind(&cfg.bind.into())?;
    let s: std::net::UdpSocket = sock.into();
    s.set_nonblocking(true)?;
    if cfg.multicast {
        s.set_multicast_loop_v4(true)?;
        if let Some(i) = cfg.interface {
            socket2::SockRef::from(&s).set_multicast_if_v4(&i)?;
        }
    }
    UdpSocket::from_std(s)
}

impl SacnBridge {
    /// Binds, joins the input universes' groups and subscribes (output); what the router holds
    /// for the universes already goes out at once.
    pub async fn start(link: RouterLink, cfg: SacnConfig) -> Result<SacnBridge, BridgeError> {
        let (prefix, cid) = cfg.check()?;
        let socket = bind_udp(&cfg).map_err(|e| {
            BridgeError::Device(format!("cannot bind sACN on udp://{}: {e}", cfg.bind))
        })?;
        if cfg.multicast && cfg.direction.input() {
            let iface = cfg.interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
            for u in &cfg.universes {
                if let Err(e) = socket.join_multicast_v4(*sacn::multicast(*u).ip(), iface) {
                    tracing::warn!(universe = u, error = %e, "cannot join the sACN multicast group; unicast only");
                }
            }
        }
        let mut pacer = Pacer::new(
            Duration::from_secs_f64(1.0 / cfg.refresh_hz),
            Duration::from_millis(cfg.keepalive_ms.max(100)),
            Sequence::Sacn,
        );
        let sub = if cfg.direction.output() {
            let mut sub = link.subscribe(&format!("{prefix}/**")).await?;
            link.sync().await?;
            let now = Instant::now();
            while let Some(Some(u)) = futures_util::StreamExt::next(&mut sub).now_or_never() {
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
        tracing::info!(bind = %socket.local_addr().map_or(cfg.bind, |a| a), %prefix, universes = ?cfg.universes, "sACN bridge running");
        Ok(SacnBridge {
            link,
            cfg,
            prefix,
            cid,
            socket,
            sub,
            pacer,
        })
    }

    /// The UDP address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Runs until `stop`, then says goodbye (stream terminated) for every universe it sent.
    pub async fn run(
        self,
        stats: Arc<BridgeStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let SacnBridge {
            link,
            cfg,
            prefix,
            cid,
            socket,
            mut sub,
            mut pacer,
        } = self;
        let handled: BTreeSet<u16> = cfg.universes.iter().copied().collect();
        let mut inputs = Inputs::default();
        let mut last_seq: HashMap<([u8; 16], u16), u8> = HashMap::new();
        let mut echoes = Echoes::new();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.refresh_hz));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut discovery = tokio::time::interval(DISCOVERY_EVERY);
        let mut buf = vec![0u8; 1500];
        let mut out = Vec::with_capacity(640);
        let mut sent: BTreeSet<u16> = BTreeSet::new();
        let header = |universe: u16, sequence: u8, options: u8| DataHeader {
            cid: &cid,
            source_name: &cfg.source_name,
            priority: cfg.priority,
            sequence,
            options,
            universe,
        };
        loop {
            let due = pacer.next_due();
            tokio::select! {
                _ = stop.cancelled() => break,
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    match sacn::decode(&buf[..n]) {
                        Ok(Packet::Data(d)) => {
                            stats.messages_in.fetch_add(1, Ordering::Relaxed);
                            if !cfg.direction.input() || !handled.contains(&d.universe) {
                                continue;
                            }
                            let key = (d.cid, d.universe);
                            if let Some(last) = last_seq.get(&key)
                                && !sacn::in_order(*last, d.sequence)
                            {
                                stats.skipped.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            if last_seq.len() < 4096 || last_seq.contains_key(&key) {
                                last_seq.insert(key, d.sequence);
                            }
                            if d.options & sacn::OPT_TERMINATED != 0 {
                                inputs.terminate(d.universe, d.cid);
                                last_seq.remove(&key);
                            } else if d.options & sacn::OPT_PREVIEW == 0 && d.start_code == 0 {
                                inputs.input(d.universe, d.cid, d.slots, d.priority, Merger::sacn, &stats);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            stats.skipped.fetch_add(1, Ordering::Relaxed);
                            tracing::trace!(%from, error = %e, "sACN datagram skipped");
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
                _ = discovery.tick(), if cfg.direction.output() && !sent.is_empty() => {
                    let list: Vec<u16> = sent.iter().copied().collect();
                    out.clear();
                    sacn::encode_discovery(&cid, &cfg.source_name, 0, 0, &list, &mut out);
                    let to = cfg.multicast.then(|| sacn::multicast(sacn::DISCOVERY_UNIVERSE).into());
                    send(&socket, to.into_iter().chain(cfg.targets.iter().copied()), &out, &stats).await;
                }
                _ = sleep_until(due) => {
                    for f in pacer.poll(Instant::now()) {
                        if sent.insert(f.universe) {
                            // A universe more: receivers learn it now, not in up to 10 s.
                            discovery.reset_immediately();
                        }
                        out.clear();
                        sacn::encode_data(&header(f.universe, f.sequence, 0), &f.frame, &mut out);
                        send(&socket, destinations(&cfg, f.universe), &out, &stats).await;
                    }
                }
            }
        }
        // Goodbye: three stream-terminated packets per universe sent.
        for u in sent {
            for i in 0..3u8 {
                out.clear();
                let seq = pacer.next_sequence(u).wrapping_add(i);
                sacn::encode_data(&header(u, seq, sacn::OPT_TERMINATED), &[0; 512], &mut out);
                send(&socket, destinations(&cfg, u), &out, &stats).await;
            }
        }
        Ok(())
    }
}

/// Where a universe's data goes: its multicast group and the unicast targets.
fn destinations(cfg: &SacnConfig, universe: u16) -> impl Iterator<Item = SocketAddr> + '_ {
    let group = cfg
        .multicast
        .then(|| SocketAddr::from(sacn::multicast(universe)));
    group.into_iter().chain(cfg.targets.iter().copied())
}

async fn send(
    socket: &UdpSocket,
    to: impl Iterator<Item = SocketAddr>,
    bytes: &[u8],
    stats: &BridgeStats,
) {
    for t in to {
        match socket.send_to(bytes, t).await {
            Ok(_) => stats.messages_out.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(to = %t, error = %e, "sACN send failed");
                stats.errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}
