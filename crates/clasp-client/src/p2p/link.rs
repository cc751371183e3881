//! One WebRTC connection to one peer: a str0m [`Rtc`] (Sans-IO) driven by a task that owns its
//! UDP sockets, timers and input.
//!
//! Host candidates come from the sockets we bind ourselves, one per local address, loopback
//! included, so two peers on a host whose only interface is `lo` still meet. Sends do not go
//! through the task: the caller writes to the channel and transmits the resulting datagrams
//! itself (the `Rtc` sits behind a mutex held only for that), so a direct send costs no task
//! switch.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::stun;
use super::turn::{self, Relay, TurnServer};

/// Label of the unordered, no-retransmit channel (Fire traffic).
pub(crate) const UNRELIABLE: &str = "clasp";
/// Label of the ordered, reliable channel.
pub(crate) const RELIABLE: &str = "clasp-reliable";
/// A channel's buffered bytes below which a blocked sender is woken.
const LOW_WATER: usize = 8 * 1024;
/// A channel's buffered bytes above which senders wait: the SCTP stack slows down with long
/// queues of small messages, so they are kept short.
const HIGH_WATER: usize = 16 * 1024;
/// Sends closer together than this to the last flush are flushed together by the link task.
const COALESCE: Duration = Duration::from_micros(50);
/// Largest message accepted on a channel (a CLASP frame's limit).
pub(crate) const MAX_MESSAGE: usize = 65_535;

/// Where a link reports (called from the link task or a sender's task; must not block).
pub(crate) type Notes = Arc<dyn Fn(LinkNote) + Send + Sync>;

/// What a link tells its owner.
#[derive(Debug)]
pub(crate) enum LinkNote {
    /// Both channels are open.
    Open,
    /// Data arrived.
    Data { data: Bytes, reliable: bool },
    /// The connection ended (ICE lost, DTLS or SCTP closed, or an internal error).
    Ended { reason: String },
}

/// Why a link could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// No local address could be bound for a host candidate.
    #[error("no local address to offer as an ICE candidate ({0})")]
    NoCandidates(String),
    /// The SDP was not acceptable.
    #[error("bad SDP: {0}")]
    Sdp(String),
    /// The WebRTC stack refused the operation.
    #[error("WebRTC: {0}")]
    Rtc(String),
}

struct Core {
    rtc: Rtc,
    notes: Notes,
    /// Signalled when a channel's send buffer drains below [`LOW_WATER`].
    space: Arc<Notify>,
    sockets: Vec<Arc<UdpSocket>>,
    locals: Vec<SocketAddr>,
    relays: Vec<Relay>,
    pending: Option<SdpPendingOffer>,
    reliable: Option<ChannelId>,
    unreliable: Option<ChannelId>,
    open: bool,
    ended: bool,
    next_timeout: Instant,
    /// A send left its packets for the link task to flush (see [`Link::send`]).
    flush_due: bool,
    /// When sends were last flushed to the network.
    last_flush: Instant,
}

/// A handle on one peer connection. Dropping it stops the connection.
pub(crate) struct Link {
    core: Arc<Mutex<Core>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The local addresses to bind host candidates on: every interface address (loopback
/// included), IPv4 and routable IPv6, or `only` when given.
pub(crate) fn local_addresses(only: &[IpAddr]) -> Vec<IpAddr> {
    if !only.is_empty() {
        return only.to_vec();
    }
    let mut out: Vec<IpAddr> = match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| match ip {
                IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
                // Link-local IPv6 needs a scope id, which an SDP candidate cannot carry.
                IpAddr::V6(v6) => !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if out.is_empty() {
        out.push(IpAddr::from([127, 0, 0, 1]));
    }
    out.sort();
    out.dedup();
    out
}

/// The addresses of the `a=candidate` lines in an SDP.
fn sdp_candidate_ips(sdp: &str) -> Vec<IpAddr> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .filter_map(|l| Candidate::from_sdp_string(l).ok())
        .map(|c| c.addr().ip())
        .collect()
}

impl Core {
    /// Opens every relay to the peer's candidate addresses.
    fn permit(&mut self, ips: &[IpAddr]) {
        let now = Instant::now();
        let Core {
            relays, sockets, ..
        } = self;
        for r in relays.iter_mut() {
            if let Some(s) = sockets.get(r.socket) {
                for ip in ips {
                    r.permit(s, *ip, now);
                }
            }
        }
    }

    fn lock(m: &Mutex<Core>) -> MutexGuard<'_, Core> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands what the channels queued to the network now (str0m sends queued SCTP data when
    /// it handles time).
    fn flush(&mut self, now: Instant) {
        self.flush_due = false;
        self.last_flush = now;
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drive();
    }

    /// Runs the `Rtc` until it only waits for time: sends what it wants sent, reports what
    /// happened. Must follow every change to the `Rtc`.
    fn drive(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    if let Some(r) = self.relays.iter_mut().find(|r| r.relayed == t.source) {
                        if let Some(s) = self.sockets.get(r.socket) {
                            r.send(s, t.destination, &t.contents, Instant::now());
                        }
                        continue;
                    }
                    let socket = self
                        .locals
                        .iter()
                        .position(|a| *a == t.source)
                        .and_then(|i| self.sockets.get(i))
                        .or_else(|| self.sockets.first());
                    if let Some(s) = socket {
                        // UDP: a full socket buffer drops the datagram, as the network could;
                        // SCTP retransmits what the reliable channel needs.
                        let _ = s.try_send_to(&t.contents, t.destination);
                    }
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    self.end(format!("WebRTC error: {e}"));
                    self.next_timeout = Instant::now() + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::ChannelOpen(id, label) => {
                if let Some(mut ch) = self.rtc.channel(id) {
                    ch.set_buffered_amount_low_threshold(LOW_WATER);
                }
                if label == RELIABLE {
                    self.reliable = Some(id);
                } else if label == UNRELIABLE {
                    self.unreliable = Some(id);
                }
                if !self.open && self.reliable.is_some() && self.unreliable.is_some() {
                    self.open = true;
                    (self.notes)(LinkNote::Open);
                }
            }
            Event::ChannelData(d) => {
                let reliable = Some(d.id) == self.reliable;
                (self.notes)(LinkNote::Data {
                    data: Bytes::from(d.data),
                    reliable,
                });
            }
            Event::ChannelBufferedAmountLow(_) => self.space.notify_waiters(),
            Event::ChannelClose(id) if Some(id) == self.reliable || Some(id) == self.unreliable => {
                self.end("the peer closed the data channel".into());
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end("ICE connection lost".into());
            }
            Event::Closed => self.end("the peer closed the connection".into()),
            _ => {}
        }
    }

    fn end(&mut self, reason: String) {
        if !self.ended {
            self.ended = true;
            (self.notes)(LinkNote::Ended { reason });
        }
    }
}

/// Settings of a new link.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    /// Local addresses for host candidates (see [`local_addresses`]).
    pub(crate) addresses: Vec<IpAddr>,
    /// STUN servers (`host:port`) to ask for server-reflexive candidates.
    pub(crate) stun_servers: Vec<String>,
    /// TURN servers to allocate relayed candidates on.
    pub(crate) turn_servers: Vec<TurnServer>,
    /// Offer relayed candidates only (no host or server-reflexive ones).
    pub(crate) relay_only: bool,
}

async fn bind(addresses: &[IpAddr]) -> Result<(Vec<Arc<UdpSocket>>, Vec<SocketAddr>), LinkError> {
    let mut sockets = Vec::new();
    let mut locals = Vec::new();
    let mut errors = Vec::new();
    for ip in addresses {
        match UdpSocket::bind(SocketAddr::new(*ip, 0)).await {
            Ok(s) => match s.local_addr() {
                Ok(a) => {
                    locals.push(a);
                    sockets.push(Arc::new(s));
                }
                Err(e) => errors.push(format!("{ip}: {e}")),
            },
            Err(e) => errors.push(format!("{ip}: {e}")),
        }
    }
    if sockets.is_empty() {
        let why = if errors.is_empty() {
            "no addresses".to_owned()
        } else {
            errors.join("; ")
        };
        return Err(LinkError::NoCandidates(why));
    }
    Ok((sockets, locals))
}

fn new_rtc(now: Instant) -> Rtc {
    let mut cfg = Rtc::builder();
    // Fail a dead path within a few seconds instead of the defaults' ~30.
    cfg.set_initial_stun_rto(Duration::from_millis(200));
    cfg.set_max_stun_rto(Duration::from_millis(1000));
    cfg.set_max_stun_retransmits(5);
    cfg.build(now)
}

impl Link {
    /// Starts a connection as the offerer; returns it with the offer SDP (local candidates
    /// included) and the candidate lines, for peers that expect them trickled.
    pub(crate) async fn offer(
        cfg: &LinkConfig,
        notes: Notes,
    ) -> Result<(Link, String, Vec<String>), LinkError> {
        let (mut core, candidates) = Link::prepare(cfg, notes).await?;
        let mut api = core.rtc.sdp_api();
        api.add_channel_with_config(ChannelConfig {
            label: UNRELIABLE.into(),
            ordered: false,
            reliability: Reliability::MaxRetransmits { retransmits: 0 },
            ..Default::default()
        });
        api.add_channel_with_config(ChannelConfig {
            label: RELIABLE.into(),
            ordered: true,
            reliability: Reliability::Reliable,
            ..Default::default()
        });
        let Some((offer, pending)) = api.apply() else {
            return Err(LinkError::Rtc("no offer was produced".into()));
        };
        core.pending = Some(pending);
        let sdp = offer.to_sdp_string();
        Ok((Link::start(core), sdp, candidates))
    }

    /// Answers `offer_sdp`; returns the connection with the answer SDP and candidate lines.
    pub(crate) async fn answer(
        cfg: &LinkConfig,
        offer_sdp: &str,
        notes: Notes,
    ) -> Result<(Link, String, Vec<String>), LinkError> {
        let offer =
            SdpOffer::from_sdp_string(offer_sdp).map_err(|e| LinkError::Sdp(e.to_string()))?;
        let (mut core, candidates) = Link::prepare(cfg, notes).await?;
        core.permit(&sdp_candidate_ips(offer_sdp));
        let answer = core
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| LinkError::Rtc(e.to_string()))?;
        let sdp = answer.to_sdp_string();
        Ok((Link::start(core), sdp, candidates))
    }

    async fn prepare(cfg: &LinkConfig, notes: Notes) -> Result<(Core, Vec<String>), LinkError> {
        let (sockets, locals) = bind(&cfg.addresses).await?;
        let now = Instant::now();
        let mut rtc = new_rtc(now);
        let mut lines = Vec::new();
        let mut relays = Vec::new();
        for server in &cfg.turn_servers {
            // From a socket the server can be reached from: loopback for a server on loopback.
            let loopback = server
                .address
                .split(':')
                .next()
                .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
            let pick = locals
                .iter()
                .position(|a| a.ip().is_loopback() == loopback)
                .or(if locals.is_empty() { None } else { Some(0) });
            let Some(i) = pick else { continue };
            if let (Some(sock), Some(local)) = (sockets.get(i), locals.get(i))
                && let Some(relay) = turn::allocate(sock, i, *local, server).await
            {
                if let Ok(c) = Candidate::relayed(relay.relayed, *local, "udp")
                    && let Some(added) = rtc.add_local_candidate(c)
                {
                    lines.push(added.to_sdp_string());
                }
                relays.push(relay);
            }
        }
        for a in locals.iter().filter(|_| !cfg.relay_only) {
            let c = Candidate::host(*a, "udp").map_err(|e| LinkError::Rtc(e.to_string()))?;
            if let Some(added) = rtc.add_local_candidate(c) {
                lines.push(added.to_sdp_string());
            }
        }
        for server in cfg.stun_servers.iter().filter(|_| !cfg.relay_only) {
            for (s, base) in sockets.iter().zip(&locals) {
                if base.ip().is_loopback() {
                    continue;
                }
                let Some(mapped) = stun::mapped_address(s, server, stun::STUN_TIMEOUT).await else {
                    continue;
                };
                if mapped == *base {
                    continue;
                }
                if let Ok(c) = Candidate::server_reflexive(mapped, *base, "udp")
                    && let Some(added) = rtc.add_local_candidate(c)
                {
                    lines.push(added.to_sdp_string());
                }
            }
        }
        if lines.is_empty() {
            let why = if cfg.relay_only {
                "relay only, and no TURN allocation was made"
            } else {
                "the WebRTC stack accepted none of the local addresses"
            };
            return Err(LinkError::NoCandidates(why.into()));
        }
        Ok((
            Core {
                rtc,
                notes,
                space: Arc::new(Notify::new()),
                sockets,
                locals,
                relays,
                pending: None,
                reliable: None,
                unreliable: None,
                open: false,
                ended: false,
                next_timeout: now,
                flush_due: false,
                last_flush: now,
            },
            lines,
        ))
    }

    fn start(core: Core) -> Link {
        let core = Arc::new(Mutex::new(core));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run(core.clone(), wake.clone()));
        Link { core, wake, task }
    }

    /// Applies the peer's answer (offerer side).
    pub(crate) fn accept_answer(&self, sdp: &str) -> Result<(), LinkError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| LinkError::Sdp(e.to_string()))?;
        let mut core = Core::lock(&self.core);
        core.permit(&sdp_candidate_ips(sdp));
        let Some(pending) = core.pending.take() else {
            return Err(LinkError::Rtc("no offer is waiting for an answer".into()));
        };
        core.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| LinkError::Rtc(e.to_string()))?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    /// Adds a candidate the peer trickled (an SDP candidate line).
    pub(crate) fn add_remote_candidate(&self, line: &str) -> Result<(), LinkError> {
        let c = Candidate::from_sdp_string(line).map_err(|e| LinkError::Sdp(e.to_string()))?;
        let mut core = Core::lock(&self.core);
        core.permit(&[c.addr().ip()]);
        core.rtc.add_remote_candidate(c);
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    /// Signalled when a full send buffer has drained.
    pub(crate) fn space(&self) -> Arc<Notify> {
        Core::lock(&self.core).space.clone()
    }

    /// Whether both channels are open and the connection has not ended.
    pub(crate) fn is_open(&self) -> bool {
        let core = Core::lock(&self.core);
        core.open && !core.ended
    }

    /// Sends `data` on one channel, from the caller's task. `Ok(false)`: not open, or the
    /// channel's buffer is full.
    pub(crate) fn send(&self, data: &[u8], reliable: bool) -> Result<bool, LinkError> {
        let mut core = Core::lock(&self.core);
        if !core.open || core.ended {
            return Ok(false);
        }
        let id = if reliable {
            core.reliable
        } else {
            core.unreliable
        };
        let Some(mut ch) = id.and_then(|id| core.rtc.channel(id)) else {
            return Ok(false);
        };
        if ch.buffered_amount() > HIGH_WATER {
            return Ok(false);
        }
        let written = ch
            .write(true, data)
            .map_err(|e| LinkError::Rtc(e.to_string()))?;
        // A send after a pause goes out at once. Sends in a burst (within COALESCE of the last
        // flush) are left for the link task to flush together, so the SCTP stack puts several
        // messages in one packet (chunk bundling) instead of one datagram each.
        let now = Instant::now();
        if core.flush_due {
            return Ok(written);
        }
        if now.duration_since(core.last_flush) < COALESCE {
            core.flush_due = true;
            drop(core);
            self.wake.notify_one();
            return Ok(written);
        }
        let before = core.next_timeout;
        core.flush(now);
        let sooner = core.next_timeout < before;
        drop(core);
        if sooner {
            self.wake.notify_one();
        }
        Ok(written)
    }

    /// Closes the connection politely (DTLS close_notify), then stops.
    pub(crate) fn close(self) {
        let mut core = Core::lock(&self.core);
        // Sends of a burst not flushed yet go out before the close.
        if core.flush_due {
            core.flush(Instant::now());
        }
        core.ended = true;
        let _ = core.rtc.close();
        core.drive();
    }
}

/// The link task: input from the sockets and timers, until the connection ends.
async fn run(core: Arc<Mutex<Core>>, wake: Arc<Notify>) {
    let sockets = Core::lock(&core).sockets.clone();
    let locals = Core::lock(&core).locals.clone();
    let mut buf = vec![0u8; 2048];
    Core::lock(&core).drive();
    loop {
        let deadline = {
            let mut c = Core::lock(&core);
            let now = Instant::now();
            let mut d = c.next_timeout;
            let Core {
                relays, sockets, ..
            } = &mut *c;
            for r in relays.iter_mut() {
                if let Some(s) = sockets.get(r.socket) {
                    d = d.min(r.tick(s, now));
                }
            }
            d
        };
        let received = tokio::select! {
            r = recv_any(&sockets, &mut buf) => Some(r),
            () = tokio::time::sleep_until(deadline.into()) => None,
            () = wake.notified() => {
                let mut c = Core::lock(&core);
                if c.flush_due {
                    c.flush(Instant::now());
                }
                continue;
            }
        };
        let mut c = Core::lock(&core);
        let now = Instant::now();
        let input_ok = match received {
            Some(Ok((i, n, source))) => {
                let destination = locals.get(i).copied().unwrap_or(source);
                let from_relay = {
                    let Core {
                        relays, sockets, ..
                    } = &mut *c;
                    match (
                        relays
                            .iter_mut()
                            .find(|r| r.socket == i && r.server == source),
                        sockets.get(i),
                        buf.get(..n),
                    ) {
                        (Some(r), Some(s), Some(data)) => {
                            Some((r.relayed, r.receive(s, destination, data, now)))
                        }
                        _ => None,
                    }
                };
                if let Some((relayed, got)) = from_relay {
                    // What the TURN server relays arrived, for str0m, at the relayed address.
                    match got
                        .as_ref()
                        .map(|(peer, data)| Receive::new(Protocol::Udp, *peer, relayed, data))
                    {
                        Some(Ok(r)) => c.rtc.handle_input(Input::Receive(now, r)).is_ok(),
                        _ => true,
                    }
                } else {
                    match buf
                        .get(..n)
                        .map(|b| Receive::new(Protocol::Udp, source, destination, b))
                    {
                        Some(Ok(r)) => c.rtc.handle_input(Input::Receive(now, r)).is_ok(),
                        // Not a datagram WebRTC knows (stray traffic): ignore it.
                        _ => true,
                    }
                }
            }
            Some(Err(_)) => true,
            None => c.rtc.handle_input(Input::Timeout(now)).is_ok(),
        };
        if !input_ok {
            c.end("WebRTC rejected its input".into());
        }
        c.drive();
        if c.ended && !c.rtc.is_alive() {
            return;
        }
    }
}

/// The next datagram on any of `sockets`: (socket index, length, source).
async fn recv_any(
    sockets: &[Arc<UdpSocket>],
    buf: &mut [u8],
) -> std::io::Result<(usize, usize, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for (i, s) in sockets.iter().enumerate() {
            let mut rb = ReadBuf::new(buf);
            match s.poll_recv_from(cx, &mut rb) {
                Poll::Ready(Ok(from)) => return Poll::Ready(Ok((i, rb.filled().len(), from))),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}
