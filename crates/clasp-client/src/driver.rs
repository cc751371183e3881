//! The connection task: owns the WebSocket, writes queued frames in batches, routes what the
//! router sends (answers to waiting calls, subscription updates, clock samples), and reconnects.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clasp_proto::pattern::Pattern;
use clasp_proto::{
    ClockSync, ErrorCode, FrameOptions, Hello, Message, ParamValue, PublishPayload, Qos,
    SignalType, Str, Subscribe, Unsubscribe, Value, Welcome, decode_frame_bytes, encode,
    encode_with,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, wall_micros};
use crate::command::{Command, Waiter};
use crate::config::{Config, ConnectionEvent, EventHook};
use crate::error::{Error, Result};
use crate::options::{SubscribeOptions, Update};
use crate::transport::{Conn, Inbound, Tx};

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
