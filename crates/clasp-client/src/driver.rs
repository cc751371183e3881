//! The connection task: owns the WebSocket, writes queued frames in batches, routes what the
//! router sends (answers to waiting calls, subscription updates, clock samples), and reconnects.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clasp_proto::pattern::Pattern;
use clasp_proto::{
    Ack, ClockSync, ErrorCode, Features, FrameOptions, Hello, Message, ParamValue, PublishPayload,
    Qos, SignalDef, SignalType, Str, Subscribe, Unsubscribe, Value, Welcome, decode_frame_bytes,
    encode, encode_with,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, wall_micros};
use crate::error::{Error, Result};
use crate::subscription::{SubscribeOptions, Update};
use crate::transport::{Conn, Inbound, Tx};
use crate::{ConnectionEvent, ReconnectPolicy};

/// Connection settings, fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) features: Features,
    pub(crate) token: Option<String>,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) sync_interval: Duration,
    pub(crate) on_event: Option<EventHook>,
    pub(crate) tls: TlsSettings,
    /// Built from `tls` once, when a `wss://` client connects (reconnects reuse it).
    pub(crate) tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Built from `tls` once, when a `quic://` client connects.
    pub(crate) quic_config: Option<quinn::ClientConfig>,
}

/// How `wss://` and `quic://` routers are verified.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    /// Trust the usual public certificate authorities (Mozilla's list).
    pub(crate) public_roots: bool,
    /// Further trusted certificates (PEM), e.g. a router's self-signed certificate.
    pub(crate) extra_roots_pem: Vec<Vec<u8>>,
    /// Further trusted certificates (DER).
    pub(crate) extra_roots_der: Vec<Vec<u8>>,
    /// Accept any certificate (development only).
    pub(crate) skip_verify: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            public_roots: true,
            extra_roots_pem: Vec::new(),
            extra_roots_der: Vec::new(),
            skip_verify: false,
        }
    }
}

/// The rustls client configuration for `settings` (ring as the crypto provider); for QUIC,
/// TLS 1.3 only with the CLASP ALPN names.
pub(crate) fn tls_config(settings: &TlsSettings, quic: bool) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if settings.public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let mut extra = Vec::new();
    for pem in &settings.extra_roots_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Tls(format!("not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Tls("no certificate in the PEM data".into()));
        }
        extra.extend(certs);
    }
    extra.extend(
        settings
            .extra_roots_der
            .iter()
            .map(|d| CertificateDer::from(d.clone())),
    );
    for c in extra {
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("certificate refused: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone());
    let builder = if quic {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .map_err(|e| Error::Tls(e.to_string()))?;
    let mut cfg = if settings.skip_verify {
        tracing::warn!(
            "TLS certificate verification is OFF: any router, or anyone in between, is accepted (development only)"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::insecure::AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if quic {
        cfg.alpn_protocols = crate::transport::QUIC_ALPN
            .iter()
            .map(|p| p.to_vec())
            .collect();
    }
    Ok(cfg)
}

/// A listener for connection events, registered before connecting.
#[derive(Clone)]
pub(crate) struct EventHook(pub(crate) Arc<dyn Fn(&ConnectionEvent) + Send + Sync>);

impl std::fmt::Debug for EventHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHook")
    }
}

/// State the handles read and the driver writes.
#[derive(Debug, Default)]
pub(crate) struct SharedState {
    pub(crate) session: Option<String>,
    pub(crate) router_name: Option<String>,
    pub(crate) clock: Clock,
    pub(crate) cache: HashMap<Str, Value>,
    /// Patterns of unfiltered param subscriptions: a cached value under one of them is current.
    pub(crate) fresh: HashMap<u32, Pattern>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) connected: AtomicBool,
    pub(crate) state: std::sync::Mutex<SharedState>,
    pub(crate) events: broadcast::Sender<ConnectionEvent>,
    pub(crate) next_id: AtomicU32,
    on_event: Option<EventHook>,
}

impl Shared {
    pub(crate) fn new(on_event: Option<EventHook>) -> Shared {
        Shared {
            connected: AtomicBool::new(false),
            state: std::sync::Mutex::new(SharedState::default()),
            events: broadcast::channel(64).0,
            next_id: AtomicU32::new(1),
            on_event,
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn emit(&self, e: ConnectionEvent) {
        if let Some(hook) = &self.on_event {
            (hook.0)(&e);
        }
        // Nobody listening is fine.
        let _ = self.events.send(e);
    }
}

/// A call waiting for the router's answer.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// ACK for a SET (key = address), an ANNOUNCE (key = namespace) or a BUNDLE (no key).
    Ack {
        key: Option<Str>,
        tx: oneshot::Sender<Result<Ack>>,
    },
    /// SNAPSHOT entry for the address, or ERROR 201.
    Get {
        address: Str,
        tx: oneshot::Sender<Result<ParamValue>>,
    },
    /// RESULTs for a QUERY, collected until the PONG that follows them (a large answer comes
    /// in several RESULT frames).
    Query {
        pattern: Str,
        signals: Vec<SignalDef>,
        tx: oneshot::Sender<Result<Vec<SignalDef>>>,
    },
    /// PONG for a PING.
    Pong {
        sent: Instant,
        tx: oneshot::Sender<Result<Duration>>,
    },
    /// State under a pattern: collected from SNAPSHOTs until the PONG that follows them.
    Snapshot {
        pattern: Pattern,
        sub_id: u32,
        params: BTreeMap<Str, ParamValue>,
        tx: oneshot::Sender<Result<Vec<ParamValue>>>,
    },
}

impl Waiter {
    fn is_abandoned(&self) -> bool {
        match self {
            Waiter::Ack { tx, .. } => tx.is_closed(),
            Waiter::Get { tx, .. } => tx.is_closed(),
            Waiter::Query { tx, .. } => tx.is_closed(),
            Waiter::Pong { tx, .. } => tx.is_closed(),
            Waiter::Snapshot { tx, .. } => tx.is_closed(),
        }
    }

    fn fail(self, e: Error) {
        // A caller that gave up is not an error.
        match self {
            Waiter::Ack { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Get { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Query { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Pong { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Snapshot { tx, .. } => drop(tx.send(Err(e))),
        }
    }

    /// Whether an ERROR naming `address` answers this call.
    fn concerns(&self, address: &str) -> bool {
        match self {
            Waiter::Ack { key: Some(k), .. } => &**k == address,
            Waiter::Get { address: a, .. } => &**a == address,
            Waiter::Query { pattern, .. } => &**pattern == address,
            _ => false,
        }
    }
}

/// What handles ask of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Write a frame; register the waiter first so its answer cannot be missed.
    Send {
        frame: Bytes,
        wait: Option<Waiter>,
    },
    Subscribe {
        id: u32,
        pattern: Pattern,
        options: SubscribeOptions,
        tx: mpsc::Sender<Update>,
        dropped: Arc<AtomicU64>,
    },
    Unsubscribe {
        id: u32,
    },
    Snapshot {
        pattern: Pattern,
        tx: oneshot::Sender<Result<Vec<ParamValue>>>,
    },
    /// QUERY, then PING: the router answers in order, so every RESULT comes before the PONG.
    Query {
        pattern: Str,
        tx: oneshot::Sender<Result<Vec<SignalDef>>>,
    },
}

/// Queues a control command from a synchronous context (a `Drop`).
pub(crate) fn send_control(cmd: &mpsc::Sender<Command>, c: Command) {
    match cmd.try_send(c) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(c)) => {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let cmd = cmd.clone();
                rt.spawn(async move {
                    let _ = cmd.send(c).await;
                });
            }
        }
        // The driver is gone: the connection is closed already.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// A live subscription as the driver sees it.
struct Sub {
    pattern: Pattern,
    options: SubscribeOptions,
    tx: mpsc::Sender<Update>,
    dropped: Arc<AtomicU64>,
    /// Last param delivered per address (revision and value), to drop exact repeats such as
    /// the same state arriving in a connect snapshot and a subscribe snapshot.
    last: HashMap<Str, (Option<u64>, Value)>,
}

impl Sub {
    fn subscribe_frame(&self, id: u32) -> Result<Bytes> {
        let (types, options) = self.options.wire();
        Ok(encode(&Message::Subscribe(Subscribe {
            id,
            pattern: self.pattern.as_str().into(),
            types,
            options,
        }))?)
    }
}

/// Why a session ended.
enum End {
    /// Closed on purpose (close(), or every handle dropped).
    Closed,
    /// The connection was lost.
    Lost(String),
}

/// Opens the connection and runs the HELLO/WELCOME handshake within the connect timeout.
pub(crate) async fn open(cfg: &Config) -> Result<(Conn, Welcome)> {
    let attempt = async {
        let mut conn = crate::transport::connect(cfg).await?;
        let hello = encode(&Message::Hello(Hello {
            version: 1,
            features: cfg.features,
            name: cfg.name.as_str().into(),
            token: cfg.token.as_deref().map(Str::from),
        }))?;
        let lost = |reason: String| Error::Connect {
            url: cfg.url.clone(),
            reason,
        };
        conn.tx.send(hello).await.map_err(lost)?;
        loop {
            let bytes = match conn.rx.next().await {
                Some(Ok(Inbound::Frame(b))) => b,
                Some(Ok(Inbound::Closed(why))) => {
                    return Err(lost(format!("the router closed the connection {why}")));
                }
                Some(Ok(Inbound::Other)) => continue,
                Some(Err(e)) => return Err(lost(e)),
                None => return Err(lost("the connection closed during the handshake".into())),
            };
            match decode_frame_bytes(&bytes).map(|f| f.message) {
                Ok(Message::Welcome(w)) => return Ok((conn, w)),
                Ok(Message::Error(e)) => {
                    return Err(Error::Rejected {
                        code: e.code,
                        message: e.message.to_string(),
                    });
                }
                Ok(other) => {
                    tracing::debug!(message = other.name(), "ignored before WELCOME");
                }
                Err(e) => tracing::debug!(error = %e, "undecodable frame before WELCOME"),
            }
        }
    };
    tokio::time::timeout(cfg.connect_timeout, attempt)
        .await
        .map_err(|_| Error::ConnectTimeout {
            url: cfg.url.clone(),
            timeout: cfg.connect_timeout,
        })?
}

/// The connection task.
pub(crate) struct Driver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cfg: Arc<Config>,
    pub(crate) cmd_rx: mpsc::Receiver<Command>,
    pub(crate) cancel: CancellationToken,
    pub(crate) done: watch::Sender<bool>,
    subs: HashMap<u32, Sub>,
    pending: VecDeque<Waiter>,
    /// Frames produced while handling input (PONG replies), written after it.
    replies: Vec<Bytes>,
    last_error: Option<String>,
}

impl Driver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        cfg: Arc<Config>,
        cmd_rx: mpsc::Receiver<Command>,
        cancel: CancellationToken,
        done: watch::Sender<bool>,
    ) -> Driver {
        Driver {
            shared,
            cfg,
            cmd_rx,
            cancel,
            done,
            subs: HashMap::new(),
            pending: VecDeque::new(),
            replies: Vec::new(),
            last_error: None,
        }
    }

    /// Records a WELCOME: session, router name, first clock sample.
    pub(crate) fn welcomed(shared: &Shared, w: &Welcome, t1: u64, t4: u64) {
        let mut st = shared.lock();
        st.session = Some(w.session.to_string());
        st.router_name = Some(w.name.to_string());
        // WELCOME.time was taken between our HELLO and its arrival.
        st.clock = Clock::default();
        if w.time > 0 {
            st.clock.sample(t1, w.time, w.time, t4);
        }
        drop(st);
        shared.connected.store(true, Ordering::SeqCst);
    }

    /// Runs sessions until the client is closed or reconnecting gives up.
    pub(crate) async fn run(mut self, ws: Conn) {
        let mut ws = Some(ws);
        let mut resubscribe = false;
        while let Some(socket) = ws.take() {
            let end = self.session(socket, resubscribe).await;
            self.shared.connected.store(false, Ordering::SeqCst);
            for w in self.pending.drain(..) {
                w.fail(Error::Disconnected);
            }
            match end {
                End::Closed => break,
                End::Lost(reason) => {
                    tracing::info!(url = %self.cfg.url, %reason, "connection lost");
                    self.shared.emit(ConnectionEvent::Disconnected { reason });
                    if self.cfg.reconnect.enabled {
                        ws = self.reconnect().await;
                        resubscribe = true;
                    }
                }
            }
        }
        self.shared.connected.store(false, Ordering::SeqCst);
        // Dropping the subscriptions' senders ends their streams.
        self.subs.clear();
        self.cmd_rx.close();
        while let Ok(c) = self.cmd_rx.try_recv() {
            self.refuse(c, Error::Closed);
        }
        self.shared.emit(ConnectionEvent::Closed);
        let _ = self.done.send(true);
    }

    /// Answers a command that cannot be carried out now.
    fn refuse(&mut self, c: Command, e: Error) {
        match c {
            Command::Send { wait, .. } => {
                if let Some(w) = wait {
                    w.fail(e);
                }
            }
            Command::Subscribe {
                id,
                pattern,
                options,
                tx,
                dropped,
            } => {
                // Kept, and sent when the connection is back.
                self.add_sub(id, pattern, options, tx, dropped);
            }
            Command::Unsubscribe { id } => self.remove_sub(id),
            Command::Snapshot { tx, .. } => drop(tx.send(Err(e))),
            Command::Query { tx, .. } => drop(tx.send(Err(e))),
        }
    }

    fn add_sub(
        &mut self,
        id: u32,
        pattern: Pattern,
        options: SubscribeOptions,
        tx: mpsc::Sender<Update>,
        dropped: Arc<AtomicU64>,
    ) {
        let wants_params = options.types.is_empty() || options.types.contains(&SignalType::Param);
        if wants_params && options.unfiltered() {
            self.shared.lock().fresh.insert(id, pattern.clone());
        }
        self.subs.insert(
            id,
            Sub {
                pattern,
                options,
                tx,
                dropped,
                last: HashMap::new(),
            },
        );
    }

    fn remove_sub(&mut self, id: u32) {
        self.subs.remove(&id);
        self.shared.lock().fresh.remove(&id);
    }

    /// Waits (with backoff) and reconnects; `None` if closed meanwhile or out of attempts.
    async fn reconnect(&mut self) -> Option<Conn> {
        let policy = self.cfg.reconnect.clone();
        let mut attempt: u32 = 0;
        loop {
            if policy.max_attempts.is_some_and(|m| attempt >= m) {
                tracing::warn!(url = %self.cfg.url, attempts = attempt, "giving up reconnecting");
                return None;
            }
            let delay = policy.delay(attempt);
            attempt += 1;
            self.shared
                .emit(ConnectionEvent::Reconnecting { attempt, delay });
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = self.cancel.cancelled() => return None,
                    c = self.cmd_rx.recv() => match c {
                        Some(c) => self.refuse(c, Error::NotConnected),
                        None => return None,
                    },
                }
            }
            let t1 = wall_micros();
            let opened = tokio::select! {
                r = open(&self.cfg) => r,
                _ = self.cancel.cancelled() => return None,
            };
            match opened {
                Ok((ws, welcome)) => {
                    // Params deleted while we were away must not survive in the cache; the
                    // connect snapshot refills it.
                    self.shared.lock().cache.clear();
                    Self::welcomed(&self.shared, &welcome, t1, wall_micros());
                    tracing::info!(url = %self.cfg.url, session = %welcome.session, attempt, "reconnected");
                    self.shared.emit(ConnectionEvent::Reconnected {
                        session: welcome.session.to_string(),
                        attempts: attempt,
                    });
                    return Some(ws);
                }
                Err(e) => {
                    tracing::debug!(url = %self.cfg.url, error = %e, attempt, "reconnect failed")
                }
            }
        }
    }

    /// One connected session.
    async fn session(&mut self, conn: Conn, resubscribe: bool) -> End {
        let Conn {
            tx: mut sink,
            rx: mut stream,
        } = conn;
        if resubscribe {
            let mut frames = Vec::new();
            for (id, sub) in &self.subs {
                match sub.subscribe_frame(*id) {
                    Ok(f) => frames.push(f),
                    Err(e) => tracing::warn!(error = %e, "cannot resubscribe"),
                }
            }
            for f in frames {
                if let Err(e) = sink.feed(f).await {
                    return End::Lost(e);
                }
            }
            if let Err(e) = sink.flush().await {
                return End::Lost(e);
            }
        }
        let mut sync = tokio::time::interval(self.cfg.sync_interval);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(Duration::from_secs(1));
        loop {
            let result: std::result::Result<(), String> = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    sink.close().await;
                    // Give the router a moment to answer the close.
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        while let Some(Ok(_)) = stream.next().await {}
                    })
                    .await;
                    return End::Closed;
                }
                msg = stream.next() => match msg {
                    Some(Ok(Inbound::Frame(b))) => {
                        self.incoming(&b);
                        self.write_replies(&mut sink).await
                    }
                    Some(Ok(Inbound::Closed(mut why))) => {
                        if let Some(e) = self.last_error.take() {
                            why = format!("{why} (last error: {e})");
                        }
                        Err(format!("the router closed the connection {why}").trim().to_string())
                    }
                    // tungstenite answers pings itself; flush so the pong goes out.
                    Some(Ok(Inbound::Other)) => sink.flush().await,
                    Some(Err(e)) => Err(e),
                    None => Err("the connection closed".to_string()),
                },
                c = self.cmd_rx.recv() => match c {
                    Some(c) => self.commands(c, &mut sink).await,
                    // Every handle is gone.
                    None => {
                        sink.close().await;
                        return End::Closed;
                    }
                },
                _ = sync.tick() => {
                    let frame = encode(&Message::Sync(ClockSync { t1: wall_micros(), t2: None, t3: None }));
                    match frame {
                        Ok(f) => sink.send(f).await,
                        Err(_) => Ok(()),
                    }
                }
                _ = prune.tick() => {
                    self.pending.retain(|w| !w.is_abandoned());
                    Ok(())
                }
            };
            if let Err(reason) = result {
                return End::Lost(reason);
            }
        }
    }

    async fn write_replies(&mut self, sink: &mut Tx) -> std::result::Result<(), String> {
        if self.replies.is_empty() {
            return Ok(());
        }
        for f in std::mem::take(&mut self.replies) {
            sink.feed(f).await?;
        }
        sink.flush().await
    }

    /// Carries out `first` and whatever else is queued, then flushes once.
    async fn commands(&mut self, first: Command, sink: &mut Tx) -> std::result::Result<(), String> {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(c) = next.take() {
            if let Some(frame) = self.command(c) {
                sink.feed(frame).await?;
            }
            for f in std::mem::take(&mut self.replies) {
                sink.feed(f).await?;
            }
            n += 1;
            if n < 256 {
                next = self.cmd_rx.try_recv().ok();
            }
        }
        sink.flush().await
    }

    /// Registers what a command waits for; returns the frame to write.
    fn command(&mut self, c: Command) -> Option<Bytes> {
        match c {
            Command::Send { frame, wait } => {
                if let Some(w) = wait {
                    self.pending.push_back(w);
                }
                Some(frame)
            }
            Command::Subscribe {
                id,
                pattern,
                options,
                tx,
                dropped,
            } => {
                self.add_sub(id, pattern, options, tx, dropped);
                match self.subs.get(&id).map(|s| s.subscribe_frame(id)) {
                    Some(Ok(f)) => Some(f),
                    _ => None,
                }
            }
            Command::Unsubscribe { id } => {
                self.remove_sub(id);
                encode(&Message::Unsubscribe(Unsubscribe { id })).ok()
            }
            Command::Snapshot { pattern, tx } => {
                let sub_id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
                let sub = encode(&Message::Subscribe(Subscribe {
                    id: sub_id,
                    pattern: pattern.as_str().into(),
                    types: clasp_proto::SignalTypes::of(&[SignalType::Param]),
                    options: Default::default(),
                }));
                let (Ok(sub), Ok(ping)) = (sub, encode(&Message::Ping)) else {
                    return None;
                };
                // The router answers in order: the subscription's snapshot, then the PONG.
                self.replies.push(ping);
                self.pending.push_back(Waiter::Snapshot {
                    pattern,
                    sub_id,
                    params: BTreeMap::new(),
                    tx,
                });
                Some(sub)
            }
            Command::Query { pattern, tx } => {
                let query = encode(&Message::Query(clasp_proto::Query {
                    pattern: pattern.clone(),
                }));
                let (Ok(query), Ok(ping)) = (query, encode(&Message::Ping)) else {
                    return None;
                };
                self.replies.push(ping);
                self.pending.push_back(Waiter::Query {
                    pattern,
                    signals: Vec::new(),
                    tx,
                });
                Some(query)
            }
        }
    }

    fn incoming(&mut self, bytes: &Bytes) {
        match decode_frame_bytes(bytes) {
            Ok(f) => self.handle(f.message),
            Err(e) => tracing::warn!(error = %e, "undecodable frame from the router skipped"),
        }
    }

    fn handle(&mut self, msg: Message) {
        match msg {
            Message::Set(s) => {
                self.cache(&s.address, &s.value);
                self.dispatch(Update {
                    address: s.address,
                    value: s.value,
                    kind: SignalType::Param,
                    revision: s.revision,
                    writer: None,
                    timestamp: None,
                    gesture_id: None,
                    phase: None,
                });
            }
            Message::Snapshot(snap) => {
                for p in snap.params {
                    self.cache(&p.address, &p.value);
                    self.answer_get(&p);
                    self.dispatch(Update {
                        address: p.address,
                        value: p.value,
                        kind: SignalType::Param,
                        revision: Some(p.revision),
                        writer: p.writer,
                        timestamp: p.timestamp,
                        gesture_id: None,
                        phase: None,
                    });
                }
            }
            Message::Publish(p) => {
                let value = match p.payload {
                    PublishPayload::Value(v) => v,
                    PublishPayload::Samples(s) => {
                        Value::Array(s.into_iter().map(Value::Float).collect())
                    }
                    PublishPayload::None => Value::Null,
                };
                let gesture = p.signal == SignalType::Gesture;
                self.dispatch(Update {
                    address: p.address,
                    value,
                    kind: p.signal,
                    revision: None,
                    writer: None,
                    timestamp: p.timestamp,
                    gesture_id: p.id,
                    phase: gesture.then_some(p.phase),
                });
            }
            Message::Ack(a) => {
                let at = self
                    .pending
                    .iter()
                    .position(|w| matches!(w, Waiter::Ack { key, .. } if *key == a.address));
                if let Some(Waiter::Ack { tx, .. }) = at.and_then(|i| self.pending.remove(i)) {
                    let _ = tx.send(Ok(a));
                }
            }
            Message::Error(e) => self.router_error(e),
            Message::Sync(s) => {
                if let (Some(t2), Some(t3)) = (s.t2, s.t3) {
                    self.shared.lock().clock.sample(s.t1, t2, t3, wall_micros());
                }
            }
            Message::Result(r) => {
                let query = self
                    .pending
                    .iter_mut()
                    .find(|w| matches!(w, Waiter::Query { .. }));
                if let Some(Waiter::Query { signals, .. }) = query {
                    signals.extend(r.signals);
                }
            }
            Message::Pong => {
                let at = self.pending.iter().position(|w| {
                    matches!(
                        w,
                        Waiter::Pong { .. } | Waiter::Snapshot { .. } | Waiter::Query { .. }
                    )
                });
                match at.and_then(|i| self.pending.remove(i)) {
                    Some(Waiter::Pong { sent, tx }) => drop(tx.send(Ok(sent.elapsed()))),
                    Some(Waiter::Snapshot {
                        sub_id, params, tx, ..
                    }) => {
                        let _ = tx.send(Ok(params.into_values().collect()));
                        if let Ok(f) = encode(&Message::Unsubscribe(Unsubscribe { id: sub_id })) {
                            self.replies.push(f);
                        }
                    }
                    Some(Waiter::Query { signals, tx, .. }) => drop(tx.send(Ok(signals))),
                    _ => {}
                }
            }
            Message::Ping => {
                if let Ok(f) = encode(&Message::Pong) {
                    self.replies.push(f);
                }
            }
            Message::Bundle(b) => {
                for m in b.messages {
                    self.handle(m);
                }
            }
            Message::Announce(_)
            | Message::Hello(_)
            | Message::Welcome(_)
            | Message::Subscribe(_)
            | Message::Unsubscribe(_)
            | Message::Get(_)
            | Message::Query(_) => {}
        }
    }

    fn cache(&self, address: &Str, value: &Value) {
        self.shared
            .lock()
            .cache
            .insert(address.clone(), value.clone());
    }

    fn answer_get(&mut self, p: &ParamValue) {
        let mut i = 0;
        while i < self.pending.len() {
            match &mut self.pending[i] {
                Waiter::Get { address, .. } if *address == p.address => {
                    if let Some(Waiter::Get { tx, .. }) = self.pending.remove(i) {
                        let _ = tx.send(Ok(p.clone()));
                    }
                    continue;
                }
                Waiter::Snapshot {
                    pattern, params, ..
                } if pattern.matches(&p.address) => {
                    params.insert(p.address.clone(), p.clone());
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn router_error(&mut self, e: clasp_proto::ErrorMessage) {
        let address = e.address.as_deref();
        let mut answered = false;
        if let Some(a) = address {
            if e.code == ErrorCode::AddressNotFound {
                let mut i = 0;
                while i < self.pending.len() {
                    if matches!(&self.pending[i], Waiter::Get { address, .. } if &**address == a) {
                        if let Some(w) = self.pending.remove(i) {
                            w.fail(Error::from_router(&e));
                            answered = true;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            if !answered
                && let Some(i) = self.pending.iter().position(|w| w.concerns(a))
                && let Some(w) = self.pending.remove(i)
            {
                w.fail(Error::from_router(&e));
                answered = true;
            }
        }
        // A rejected bundle names the inner write that failed.
        if !answered
            && let Some(i) = self
                .pending
                .iter()
                .position(|w| matches!(w, Waiter::Ack { key: None, .. }))
            && let Some(w) = self.pending.remove(i)
        {
            w.fail(Error::from_router(&e));
            answered = true;
        }
        if !answered {
            tracing::warn!(code = %e.code, message = %e.message, address = ?e.address, "router error");
            self.last_error = Some(format!("{} {}", e.code, e.message));
            self.shared.emit(ConnectionEvent::RouterError {
                code: e.code,
                message: e.message.to_string(),
                address: e.address.map(|a| a.to_string()),
            });
        }
    }

    fn dispatch(&mut self, u: Update) {
        for sub in self.subs.values_mut() {
            if !sub.options.types.is_empty() && !sub.options.types.contains(&u.kind) {
                continue;
            }
            if !sub.pattern.matches(&u.address) {
                continue;
            }
            if u.kind == SignalType::Param {
                let seen = (u.revision, u.value.clone());
                if sub.last.get(&u.address) == Some(&seen) {
                    continue;
                }
                sub.last.insert(u.address.clone(), seen);
            }
            match sub.tx.try_send(u.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // The handle is being dropped; its UNSUBSCRIBE is on the way.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// Encodes a message with an explicit QoS.
pub(crate) fn encode_qos(msg: &Message, qos: Qos) -> Result<Bytes> {
    Ok(encode_with(msg, FrameOptions::with_qos(qos))?)
}
