//! The manager task: one per client with P2P. It handles signals and announces, connects and
//! accepts links, times them out, resolves glare, keeps candidates that arrive early, follows
//! router reconnects, and routes sends.

use super::*;

/// Subscribes to the P2P addresses, announces `own`, and starts the manager task.
pub(super) async fn start(
    inner: &Arc<Inner>,
    client: &Client,
    cfg: P2pConfig,
    own: String,
    events: mpsc::UnboundedSender<P2pEvent>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    notes: mpsc::UnboundedReceiver<Note>,
) -> Result<tokio::task::JoinHandle<()>, P2pError> {
    let conn_events = client.events();
    let subs = Subs::open(client, &own).await?;
    let manager = Manager {
        p2p: Arc::downgrade(inner),
        client: client.clone(),
        cfg,
        own,
        peers: HashMap::new(),
        early: HashMap::new(),
        events,
    };
    manager.announce().await?;
    Ok(tokio::spawn(manager.run(subs, cmds, notes, conn_events)))
}

/// The subscriptions the manager listens on.
struct Subs {
    signals: crate::Subscription,
    announces: crate::Subscription,
    leaves: crate::Subscription,
}

impl Subs {
    async fn open(client: &Client, own: &str) -> Result<Subs, P2pError> {
        Ok(Subs {
            // Relayed data arrives here too: a deep buffer, so a burst through the router is
            // not dropped while the manager catches up.
            signals: client
                .subscribe_with(
                    &signal::signal_address(own),
                    crate::SubscribeOptions::new().buffer(RELAY_BUFFER),
                )
                .await?,
            announces: client.subscribe(signal::ANNOUNCE).await?,
            leaves: client.subscribe(signal::LEAVE).await?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Offerer,
    Answerer,
}

struct Peer {
    correlation: String,
    role: Role,
    link: Arc<Link>,
    open: bool,
    deadline: Instant,
}

/// Candidates that came before their offer.
struct Early {
    since: Instant,
    lines: Vec<(String, String)>,
}

/// Most early candidates kept per peer.
const MAX_EARLY: usize = 64;

/// The task that owns every connection attempt.
struct Manager {
    p2p: std::sync::Weak<Inner>,
    client: Client,
    cfg: P2pConfig,
    own: String,
    peers: HashMap<String, Peer>,
    early: HashMap<String, Early>,
    events: mpsc::UnboundedSender<P2pEvent>,
}

impl Manager {
    async fn run(
        mut self,
        mut subs: Subs,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut notes: mpsc::UnboundedReceiver<Note>,
        mut conn: tokio::sync::broadcast::Receiver<ConnectionEvent>,
    ) {
        loop {
            let next = self
                .peers
                .values()
                .filter(|p| !p.open)
                .map(|p| p.deadline)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                u = subs.signals.recv() => match u {
                    Some(u) => self.on_signal(&u).await,
                    None => return,
                },
                u = subs.announces.recv() => match u {
                    Some(u) => self.on_announce(&u),
                    None => return,
                },
                u = subs.leaves.recv() => match u {
                    Some(u) => self.on_leave(&u).await,
                    None => return,
                },
                c = cmds.recv() => match c {
                    Some(Cmd::Connect(peer, reply)) => {
                        let r = self.connect(&peer).await;
                        let _ = reply.send(r);
                    }
                    Some(Cmd::Disconnect(peer)) => {
                        self.drop_peer(&peer, None, Some("disconnected by the application")).await;
                    }
                    None => return,
                },
                n = notes.recv() => if let Some(n) = n {
                    self.on_note(n).await;
                },
                e = conn.recv() => match e {
                    Ok(ConnectionEvent::Reconnected { session, .. }) => {
                        match self.rejoin(session).await {
                            Ok(new) => subs = new,
                            Err(e) => tracing::warn!(error = %e, "P2P could not rejoin after the reconnect"),
                        }
                    }
                    Ok(ConnectionEvent::Disconnected { .. }) => {
                        self.drop_all("the router connection was lost").await;
                    }
                    Ok(ConnectionEvent::RouterError { address: Some(a), message, .. }) => {
                        self.on_router_error(&a, &message).await;
                    }
                    Ok(ConnectionEvent::Closed) => return,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep_until(next.into()) => self.expire().await,
            }
        }
    }

    fn emit(&self, e: P2pEvent) {
        let _ = self.events.send(e);
    }

    async fn announce(&self) -> Result<(), P2pError> {
        self.client
            .emit(signal::ANNOUNCE, signal::announce_value(&self.own))
            .await?;
        Ok(())
    }

    async fn signal(&self, peer: &str, correlation: &str, s: Signal) {
        let env = Envelope {
            from: self.own.clone(),
            correlation_id: correlation.to_owned(),
            signal: s,
        };
        if let Err(e) = self
            .client
            .emit(&signal::signal_address(peer), env.to_value())
            .await
        {
            tracing::debug!(%peer, error = %e, "P2P signal not sent");
        }
    }

    fn notes_for(&self, peer: &str, correlation: &str) -> link::Notes {
        let peer = peer.to_owned();
        let correlation = correlation.to_owned();
        let events = self.events.clone();
        let tx = self.p2p.upgrade().map(|p| p.notes.clone());
        Arc::new(move |note| match note {
            // Data goes straight to the application: no hop through the manager.
            LinkNote::Data { data, reliable } => {
                let _ = events.send(P2pEvent::Data {
                    peer: peer.clone(),
                    data,
                    reliable,
                    route: Route::Direct,
                });
            }
            note => {
                if let Some(tx) = &tx {
                    let _ = tx.send(Note {
                        peer: peer.clone(),
                        correlation: correlation.clone(),
                        note,
                    });
                }
            }
        })
    }

    fn link_config(&self) -> LinkConfig {
        LinkConfig {
            addresses: link::local_addresses(&self.cfg.addresses),
            stun_servers: self.cfg.stun_servers.clone(),
            turn_servers: self.cfg.turn_servers.clone(),
            relay_only: self.cfg.relay_only,
        }
    }

    async fn connect(&mut self, peer: &str) -> Result<(), P2pError> {
        if peer == self.own {
            return Err(P2pError::OwnSession);
        }
        if self.peers.contains_key(peer) {
            return Ok(());
        }
        let correlation = format!("{}-{}-{}", self.own, peer, uuid_like());
        let cfg = self.link_config();
        let notes = self.notes_for(peer, &correlation);
        let (link, sdp, candidates) = match Link::offer(&cfg, notes).await {
            Ok(x) => x,
            Err(e) => {
                let reason = e.to_string();
                self.emit(P2pEvent::ConnectionFailed {
                    peer: peer.to_owned(),
                    reason,
                });
                return Ok(());
            }
        };
        self.peers.insert(
            peer.to_owned(),
            Peer {
                correlation: correlation.clone(),
                role: Role::Offerer,
                link: Arc::new(link),
                open: false,
                deadline: Instant::now() + self.cfg.connect_timeout,
            },
        );
        // Normally the offer goes first (its SDP carries the candidates) and the candidates
        // follow as signals for peers that expect them trickled; the test hook turns it round.
        let trickled = candidate_signals(&sdp, &candidates);
        if self.cfg.trickle_first {
            self.trickle(peer, &correlation, trickled).await;
            let offer = Signal::Offer {
                sdp: without_candidates(&sdp),
            };
            self.signal(peer, &correlation, offer).await;
        } else {
            self.signal(peer, &correlation, Signal::Offer { sdp }).await;
            self.trickle(peer, &correlation, trickled).await;
        }
        Ok(())
    }

    async fn on_signal(&mut self, u: &Update) {
        let Some(env) = Envelope::from_value(&u.value) else {
            return;
        };
        let from = env.from.clone();
        if from == self.own {
            return;
        }
        match env.signal {
            Signal::Offer { sdp } => self.on_offer(&from, &env.correlation_id, &sdp).await,
            Signal::Answer { sdp } => {
                let ok = match self.peers.get(&from) {
                    Some(p) if p.role == Role::Offerer && p.correlation == env.correlation_id => {
                        p.link.accept_answer(&sdp).map_err(|e| e.to_string())
                    }
                    _ => return,
                };
                if let Err(reason) = ok {
                    self.fail(&from, &format!("bad answer: {reason}")).await;
                }
            }
            Signal::IceCandidate { candidate } => {
                let Some(line) = signal::candidate_line(&candidate) else {
                    return;
                };
                match self.peers.get(&from) {
                    Some(p) if p.correlation == env.correlation_id => {
                        let _ = p.link.add_remote_candidate(&line);
                    }
                    _ => {
                        let e = self.early.entry(from).or_insert_with(|| Early {
                            since: Instant::now(),
                            lines: Vec::new(),
                        });
                        if e.lines.len() < MAX_EARLY {
                            e.lines.push((env.correlation_id, line));
                        }
                    }
                }
            }
            // Our own channel-open event says when we are connected; theirs adds nothing.
            Signal::Connected => {}
            Signal::Disconnected { reason } => {
                let matches = self.peers.get(&from).is_some_and(|p| {
                    env.correlation_id.is_empty() || p.correlation == env.correlation_id
                });
                if matches {
                    let reason = reason.unwrap_or_else(|| "the peer disconnected".into());
                    self.drop_peer(&from, Some(&reason), None).await;
                }
            }
            Signal::Relay { data, reliable } => self.emit(P2pEvent::Data {
                peer: from,
                data,
                reliable,
                route: Route::Router,
            }),
        }
    }

    async fn on_offer(&mut self, from: &str, correlation: &str, sdp: &str) {
        if let Some(p) = self.peers.get(from) {
            if p.correlation == correlation {
                return;
            }
            // Glare: both sides offered. The smaller session id yields and answers; the other
            // ignores the offer it got, knowing its own will be answered.
            if p.role == Role::Offerer && !p.open && self.own.as_str() > from {
                return;
            }
            let stale = self.peers.remove(from);
            self.unpublish(from);
            if let Some(old) = stale {
                if old.open {
                    self.emit(P2pEvent::Disconnected {
                        peer: from.to_owned(),
                        reason: "the peer started a new connection".into(),
                    });
                }
                close_link(old.link);
            }
        }
        let cfg = self.link_config();
        let notes = self.notes_for(from, correlation);
        let (link, answer, candidates) = match Link::answer(&cfg, sdp, notes).await {
            Ok(x) => x,
            Err(e) => {
                self.emit(P2pEvent::ConnectionFailed {
                    peer: from.to_owned(),
                    reason: e.to_string(),
                });
                self.signal(
                    from,
                    correlation,
                    Signal::Disconnected {
                        reason: Some(e.to_string()),
                    },
                )
                .await;
                return;
            }
        };
        if let Some(early) = self.early.remove(from) {
            for (c, line) in early.lines {
                if c == correlation || c.is_empty() {
                    let _ = link.add_remote_candidate(&line);
                }
            }
        }
        self.peers.insert(
            from.to_owned(),
            Peer {
                correlation: correlation.to_owned(),
                role: Role::Answerer,
                link: Arc::new(link),
                open: false,
                deadline: Instant::now() + self.cfg.connect_timeout,
            },
        );
        let trickled = candidate_signals(&answer, &candidates);
        // The test hook sends the answer without candidates too: they follow as signals.
        let sdp = if self.cfg.trickle_first {
            without_candidates(&answer)
        } else {
            answer
        };
        self.signal(from, correlation, Signal::Answer { sdp }).await;
        self.trickle(from, correlation, trickled).await;
    }

    /// Sends `peer` the `ice_candidate` signals from [`candidate_signals`].
    async fn trickle(&self, peer: &str, correlation: &str, candidates: Vec<Signal>) {
        for signal in candidates {
            self.signal(peer, correlation, signal).await;
        }
    }

    fn on_announce(&mut self, u: &Update) {
        let Some((session, features)) = signal::parse_announce(&u.value) else {
            return;
        };
        if session == self.own {
            return;
        }
        if let Some(p) = self.p2p.upgrade() {
            lock(&p.known).insert(session.clone(), features.clone());
        }
        self.emit(P2pEvent::PeerAnnounced { session, features });
    }

    async fn on_leave(&mut self, u: &Update) {
        let Some(session) = u.value.get("session_id").and_then(|v| v.as_str()) else {
            return;
        };
        let session = session.to_owned();
        if let Some(p) = self.p2p.upgrade() {
            lock(&p.known).remove(&session);
        }
        self.early.remove(&session);
        if self.peers.contains_key(&session) {
            self.drop_peer(&session, Some("the peer left the router"), None)
                .await;
        }
    }

    async fn on_router_error(&mut self, address: &str, message: &str) {
        let Some(peer) = address.strip_prefix("/clasp/p2p/signal/") else {
            return;
        };
        if self.peers.get(peer).is_some_and(|p| !p.open) {
            let peer = peer.to_owned();
            self.fail(&peer, &format!("the router refused the signal: {message}"))
                .await;
        }
    }

    async fn on_note(&mut self, n: Note) {
        let Some(p) = self.peers.get_mut(&n.peer) else {
            return;
        };
        if !n.correlation.is_empty() && p.correlation != n.correlation {
            return;
        }
        match n.note {
            LinkNote::Open => {
                if p.open {
                    return;
                }
                p.open = true;
                let link = p.link.clone();
                let correlation = p.correlation.clone();
                if let Some(inner) = self.p2p.upgrade() {
                    lock(&inner.open).insert(n.peer.clone(), link);
                }
                self.emit(P2pEvent::Connected {
                    peer: n.peer.clone(),
                });
                self.signal(&n.peer, &correlation, Signal::Connected).await;
            }
            LinkNote::Data { .. } => {}
            LinkNote::Ended { reason } => {
                let peer = n.peer;
                self.drop_peer(&peer, Some(&reason), None).await;
            }
        }
    }

    /// Ends the attempt or connection to `peer`: `Disconnected` if it was open, otherwise
    /// `ConnectionFailed`. With `tell`, the peer is sent `disconnected` with that reason.
    async fn drop_peer(&mut self, peer: &str, reason: Option<&str>, tell: Option<&str>) {
        let Some(p) = self.peers.remove(peer) else {
            return;
        };
        self.unpublish(peer);
        let reason = reason.or(tell).unwrap_or("closed").to_owned();
        if p.open {
            self.emit(P2pEvent::Disconnected {
                peer: peer.to_owned(),
                reason: reason.clone(),
            });
        } else {
            self.emit(P2pEvent::ConnectionFailed {
                peer: peer.to_owned(),
                reason: reason.clone(),
            });
        }
        if let Some(t) = tell {
            self.signal(
                peer,
                &p.correlation,
                Signal::Disconnected {
                    reason: Some(t.to_owned()),
                },
            )
            .await;
        }
        close_link(p.link);
    }

    async fn fail(&mut self, peer: &str, reason: &str) {
        self.drop_peer(peer, Some(reason), None).await;
    }

    fn unpublish(&self, peer: &str) {
        if let Some(inner) = self.p2p.upgrade() {
            lock(&inner.open).remove(peer);
        }
    }

    async fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.open && p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let secs = self.cfg.connect_timeout.as_secs_f64();
        let reason = format!("connection timed out after {secs:.1} s");
        for peer in late {
            // The peer is told too, so its side ends now rather than at its own deadline.
            self.drop_peer(&peer, None, Some(&reason)).await;
        }
        let ttl = self.cfg.connect_timeout;
        self.early.retain(|_, e| now.duration_since(e.since) < ttl);
    }

    async fn drop_all(&mut self, reason: &str) {
        let peers: Vec<String> = self.peers.keys().cloned().collect();
        for p in peers {
            self.drop_peer(&p, Some(reason), None).await;
        }
        self.early.clear();
    }

    /// After a reconnect: new session id, so new signal address, and a new announce.
    async fn rejoin(&mut self, session: String) -> Result<Subs, P2pError> {
        self.drop_all("the router session changed").await;
        self.own = session.clone();
        if let Some(inner) = self.p2p.upgrade() {
            *lock(&inner.own) = session.clone();
            lock(&inner.known).clear();
        }
        let subs = Subs::open(&self.client, &session).await?;
        self.announce().await?;
        Ok(subs)
    }
}

/// The `ice_candidate` signals for local `candidates`, each naming the data channels'
/// m-section of `local_sdp` by its real mid.
pub(super) fn candidate_signals(local_sdp: &str, candidates: &[String]) -> Vec<Signal> {
    let section = signal::data_section(local_sdp);
    candidates
        .iter()
        .map(|c| Signal::IceCandidate {
            candidate: signal::candidate_json(c, &section),
        })
        .collect()
}

/// `sdp` without its `a=candidate` lines (see [`P2pConfig::trickle_first`]).
fn without_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.trim_start().starts_with("a=candidate:"))
        .collect()
}

fn close_link(link: Arc<Link>) {
    match Arc::try_unwrap(link) {
        Ok(l) => l.close(),
        // A sender still holds it for a moment; dropping ours stops it once it lets go.
        Err(shared) => drop(shared),
    }
}

/// A random id for correlation ids (uuid-shaped, from `fastrand`).
fn uuid_like() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}
