//! UDP broadcast discovery: [`BroadcastResponder`] answers HELLO datagrams; [`scan`] and
//! [`broadcast_scan`] send HELLO and collect the answers.
//!
//! Answer = WELCOME (stable `session` = router id; what the reference scanner reads) followed
//! by an ANNOUNCE carrying the router record (`ws` port and the rest), which the reference
//! scanner ignores. See the crate docs.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clasp_proto::rate::{Rate, TokenBucket};
use clasp_proto::{
    Announce, Features, Hello, Message, SignalDef, SignalMeta, SignalType, Str, Value, Welcome,
    decode_frame, encode,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::device::{Device, RouterInfo, Source, insert_merged, sort_devices};
use crate::{ANNOUNCE_NAMESPACE, DEFAULT_WS_PORT, PROTOCOL_VERSION, Result};

/// Largest datagram read; longer ones are truncated and then fail to decode.
const MAX_DATAGRAM: usize = 2048;
/// Most record entries taken from one ANNOUNCE.
const MAX_RECORD_ENTRIES: usize = 64;
/// Most distinct responders one scan keeps.
const MAX_RESPONDERS: usize = 1024;
/// Per-source answer bucket: burst and refill per second.
const SOURCE_BURST: f64 = 8.0;
const SOURCE_RATE: f64 = 4.0;
/// Whole-responder answer bucket: burst and refill per second.
const GLOBAL_BURST: f64 = 200.0;
const GLOBAL_RATE: f64 = 100.0;
/// Most sources the limiter tracks at once.
const MAX_TRACKED_SOURCES: usize = 4096;

/// Name the scanner's HELLO carries.
const SCANNER_NAME: &str = "CLASP Discovery";

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A UDP socket with `SO_REUSEADDR` and `SO_BROADCAST`, bound to `addr`.
fn udp_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into())?)
}

/// Answer rate limits, per source address and for the whole responder, so a responder cannot
/// be used to flood a (possibly spoofed) address.
#[derive(Debug)]
struct RateLimiter {
    sources: HashMap<IpAddr, TokenBucket>,
    global: TokenBucket,
    /// The limiter's time origin (buckets count time since it).
    origin: Instant,
}

const SOURCE: Rate = Rate {
    per_sec: SOURCE_RATE,
    burst: SOURCE_BURST,
};
const GLOBAL: Rate = Rate {
    per_sec: GLOBAL_RATE,
    burst: GLOBAL_BURST,
};

impl RateLimiter {
    fn new(now: Instant) -> RateLimiter {
        RateLimiter {
            sources: HashMap::new(),
            global: TokenBucket::full(GLOBAL, Duration::ZERO),
            origin: now,
        }
    }

    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let now = now.saturating_duration_since(self.origin);
        self.global.refill(GLOBAL, now);
        if self.global.tokens() < 1.0 {
            return false;
        }
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_TRACKED_SOURCES {
            // Forget sources whose bucket has refilled: they are idle.
            self.sources.retain(|_, b| {
                b.refill(SOURCE, now);
                !b.is_full(SOURCE)
            });
            if self.sources.len() >= MAX_TRACKED_SOURCES {
                return false;
            }
        }
        let bucket = self
            .sources
            .entry(ip)
            .or_insert_with(|| TokenBucket::full(SOURCE, now));
        bucket.take(1.0, SOURCE, now) && self.global.take(1.0, GLOBAL, now)
    }
}

/// The ANNOUNCE datagram carrying `record`.
fn announce_frame(record: &[(String, String)]) -> Result<Bytes> {
    let signals = record
        .iter()
        .map(|(k, v)| SignalDef {
            address: Str::from(format!("{ANNOUNCE_NAMESPACE}/{k}")),
            signal: SignalType::Param,
            datatype: Some(Str::from_static("string")),
            access: Some(Str::from_static("r")),
            meta: Some(SignalMeta {
                default: Some(Value::String(Str::from(v.as_str()))),
                ..SignalMeta::default()
            }),
        })
        .collect();
    Ok(encode(&Message::Announce(Announce {
        namespace: Str::from_static(ANNOUNCE_NAMESPACE),
        signals,
    }))?)
}

/// The router record carried by an ANNOUNCE of [`ANNOUNCE_NAMESPACE`], or `None` for any
/// other ANNOUNCE.
pub fn record_from_announce(a: &Announce) -> Option<BTreeMap<String, String>> {
    if &*a.namespace != ANNOUNCE_NAMESPACE {
        return None;
    }
    let prefix = format!("{ANNOUNCE_NAMESPACE}/");
    let record = a
        .signals
        .iter()
        .filter_map(|s| {
            let key = s.address.strip_prefix(prefix.as_str())?;
            let value = match s.meta.as_ref()?.default.as_ref()? {
                Value::String(v) => v.to_string(),
                Value::Int(i) => i.to_string(),
                _ => return None,
            };
            (!key.is_empty()).then(|| (key.to_ascii_lowercase(), value))
        })
        .take(MAX_RECORD_ENTRIES)
        .collect();
    Some(record)
}

/// Answers HELLO datagrams on a UDP port with WELCOME + ANNOUNCE (see the module docs).
#[derive(Debug)]
pub struct BroadcastResponder {
    socket: UdpSocket,
    info: RouterInfo,
    announce: Bytes,
    limiter: RateLimiter,
}

impl BroadcastResponder {
    /// The usual bind address, `0.0.0.0:7331`.
    pub fn default_addr() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, crate::DEFAULT_DISCOVERY_PORT))
    }

    /// Binds `addr` (normally `0.0.0.0:7331`, [`crate::DEFAULT_DISCOVERY_PORT`]; address reuse
    /// is on, so several routers on one host may share the port) and prepares the answers for
    /// `info`.
    pub async fn bind(addr: SocketAddr, info: RouterInfo) -> Result<BroadcastResponder> {
        let record = info.record()?;
        let announce = announce_frame(&record)?;
        let socket = udp_socket(addr)?;
        Ok(BroadcastResponder {
            socket,
            info,
            announce,
            limiter: RateLimiter::new(Instant::now()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    /// What is announced.
    pub fn info(&self) -> &RouterInfo {
        &self.info
    }

    /// The answer datagrams to `datagram`: WELCOME then ANNOUNCE for a decodable HELLO,
    /// nothing for anything else. Rate limits are not applied here.
    pub fn answer(&self, datagram: &[u8]) -> Option<[Bytes; 2]> {
        match decode_frame(datagram).ok()?.message {
            Message::Hello(_) => {}
            _ => return None,
        }
        let welcome = encode(&Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            features: self.info.features,
            time: now_micros(),
            session: Str::from(self.info.id.as_str()),
            name: Str::from(self.info.name.as_str()),
            token: None,
        }))
        .ok()?;
        Some([welcome, self.announce.clone()])
    }

    /// Serves until the socket fails.
    pub async fn run(mut self) -> Result<()> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                // ICMP errors of earlier sends surface here on some systems; keep serving.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(answer) = self.answer(&buf[..n]) else {
                continue;
            };
            if !self.limiter.allow(from.ip(), Instant::now()) {
                tracing::debug!(%from, "broadcast discovery: answer rate-limited");
                continue;
            }
            for frame in answer {
                if let Err(e) = self.socket.send_to(&frame, from).await {
                    tracing::debug!(%from, error = %e, "broadcast discovery: answer not sent");
                }
            }
        }
    }

    /// Runs the responder on the current tokio runtime until the returned task is dropped.
    pub fn spawn(self) -> Result<ResponderTask> {
        let local_addr = self.local_addr()?;
        let handle = tokio::spawn(async move {
            if let Err(e) = self.run().await {
                tracing::warn!(error = %e, "broadcast discovery responder stopped");
            }
        });
        Ok(ResponderTask { handle, local_addr })
    }
}

/// A spawned [`BroadcastResponder`]; dropping it stops the responder.
#[derive(Debug)]
pub struct ResponderTask {
    handle: JoinHandle<()>,
    local_addr: SocketAddr,
}

impl ResponderTask {
    /// The responder's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for ResponderTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// What a scan sends where.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOptions {
    /// Local address of the scanning socket (`0.0.0.0:0` for broadcasts).
    pub bind: SocketAddr,
    /// Where HELLO is sent (broadcast, directed broadcast or unicast addresses).
    pub targets: Vec<SocketAddr>,
    /// How long answers are collected.
    pub timeout: Duration,
    /// How many times HELLO is sent (spread over the first half of `timeout`), against loss.
    pub attempts: u32,
}

impl ScanOptions {
    /// Broadcast scan of `port`: HELLO to 255.255.255.255 and to the directed broadcast address
    /// of every up, non-loopback IPv4 interface.
    pub fn broadcast(port: u16, timeout: Duration) -> ScanOptions {
        let mut targets = vec![SocketAddr::from((Ipv4Addr::BROADCAST, port))];
        for b in directed_broadcasts() {
            let t = SocketAddr::from((b, port));
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        ScanOptions {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            targets,
            timeout,
            attempts: 3,
        }
    }

    /// Scan of explicit `targets` from `bind`.
    pub fn unicast(bind: SocketAddr, targets: Vec<SocketAddr>, timeout: Duration) -> ScanOptions {
        ScanOptions {
            bind,
            targets,
            timeout,
            attempts: 3,
        }
    }
}

/// Directed broadcast addresses of the up, non-loopback IPv4 interfaces.
pub fn directed_broadcasts() -> Vec<Ipv4Addr> {
    let Ok(ifs) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in ifs {
        if let if_addrs::IfAddr::V4(v4) = &i.addr
            && !v4.ip.is_loopback()
            && let Some(b) = v4.broadcast
            && !out.contains(&b)
        {
            out.push(b);
        }
    }
    out
}

/// What one responder (source address) said during a scan.
#[derive(Debug, Default)]
struct Answer {
    welcome: Option<Welcome>,
    record: Option<BTreeMap<String, String>>,
}

impl Answer {
    fn device(self, from: SocketAddr) -> Option<Device> {
        let fallback_id = self
            .welcome
            .as_ref()
            .map_or_else(|| from.to_string(), |w| w.session.to_string());
        let fallback_name = self
            .welcome
            .as_ref()
            .map_or_else(String::new, |w| w.name.to_string());
        match (self.record, self.welcome) {
            (Some(record), _) => Some(Device::from_record(
                record,
                [from.ip()],
                &fallback_id,
                &fallback_name,
                Source::Broadcast,
            )),
            (None, Some(w)) => {
                // A bare WELCOME (reference responder, or our ANNOUNCE was lost): the
                // WebSocket port is unknown and assumed to be the default.
                let mut d = Device::from_record(
                    BTreeMap::new(),
                    [from.ip()],
                    &fallback_id,
                    &fallback_name,
                    Source::Broadcast,
                );
                d.features = w.features;
                d.version = w.version;
                d.ws_port = DEFAULT_WS_PORT;
                Some(d)
            }
            (None, None) => None,
        }
    }
}

/// Sends HELLO as `options` say and returns the routers that answered, merged by identity.
/// Undecodable or unrelated datagrams are ignored.
pub async fn scan(options: &ScanOptions) -> Result<Vec<Device>> {
    let socket = udp_socket(options.bind)?;
    let hello = encode(&Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        features: Features(0),
        name: Str::from_static(SCANNER_NAME),
        token: None,
    }))?;
    let start = Instant::now();
    let deadline = start + options.timeout;
    let attempts = options.attempts.max(1);
    let spacing = options.timeout / 2 / attempts;
    let mut sent = 0u32;
    let mut answers: HashMap<SocketAddr, Answer> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        if sent < attempts {
            let next_send = start + spacing * sent;
            if Instant::now() >= next_send {
                let mut ok = 0;
                let mut last_err = None;
                for t in &options.targets {
                    match socket.send_to(&hello, t).await {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            tracing::debug!(target = %t, error = %e, "discovery HELLO not sent");
                            last_err = Some(e);
                        }
                    }
                }
                if sent == 0
                    && ok == 0
                    && let Some(e) = last_err
                {
                    return Err(e.into());
                }
                sent += 1;
                continue;
            }
        }
        let wake = if sent < attempts {
            (start + spacing * sent).min(deadline)
        } else {
            deadline
        };
        match tokio::time::timeout_at(wake, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                let Ok(frame) = decode_frame(&buf[..n]) else {
                    continue;
                };
                if !answers.contains_key(&from) && answers.len() >= MAX_RESPONDERS {
                    continue;
                }
                match frame.message {
                    Message::Welcome(w) => {
                        answers.entry(from).or_default().welcome.get_or_insert(w);
                    }
                    Message::Announce(a) => {
                        if let Some(r) = record_from_announce(&a) {
                            answers.entry(from).or_default().record.get_or_insert(r);
                        }
                    }
                    _ => {}
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "discovery receive error"),
            Err(_) if Instant::now() >= deadline => break,
            Err(_) => {}
        }
    }
    let mut devices = Vec::new();
    for (from, answer) in answers {
        if let Some(d) = answer.device(from) {
            insert_merged(&mut devices, d);
        }
    }
    sort_devices(&mut devices);
    Ok(devices)
}

/// [`scan`] with [`ScanOptions::broadcast`]`(port, timeout)`.
pub async fn broadcast_scan(port: u16, timeout: Duration) -> Result<Vec<Device>> {
    scan(&ScanOptions::broadcast(port, timeout)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_bounds_answers_per_source() {
        let now = Instant::now();
        let mut l = RateLimiter::new(now);
        let a: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let b: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
        let allowed = (0..100).filter(|_| l.allow(a, now)).count();
        assert_eq!(allowed, SOURCE_BURST as usize);
        assert!(l.allow(b, now), "another source is not affected");
        assert!(
            l.allow(a, now + Duration::from_secs(1)),
            "refills over time"
        );
    }

    #[test]
    fn announce_record_round_trip() {
        let rec = vec![
            ("ws".to_owned(), "9000".to_owned()),
            ("id".to_owned(), "abc".to_owned()),
        ];
        let frame = announce_frame(&rec).unwrap();
        let Message::Announce(a) = decode_frame(&frame).unwrap().message else {
            panic!("not an announce")
        };
        let got = record_from_announce(&a).unwrap();
        assert_eq!(got.get("ws").map(String::as_str), Some("9000"));
        assert_eq!(got.get("id").map(String::as_str), Some("abc"));
    }
}
