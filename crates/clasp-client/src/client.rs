//! The client handle and its builder.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clasp_proto::address::validate_address;
use clasp_proto::pattern::Pattern;
use clasp_proto::{
    Ack, Announce, Bundle, Features, GesturePhase, Message, ParamValue, Publish, PublishPayload,
    Qos, Set, SignalDef, SignalType, Str, Value, encode,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::ClockStatus;
use crate::command::{Command, Waiter};
use crate::config::{Config, ConnectionEvent, EventHook, ReconnectPolicy, tls_config};
use crate::driver::{Shared, Started, encode_qos};
use crate::error::{Error, Result};
use crate::options::{SubscribeOptions, Update};
use crate::subscription::{Listener, Subscription};
use crate::transport::{Scheme, check_url, quic_config};

/// Default updates buffered per subscription.
const SUB_BUFFER: usize = 4096;
/// Frames queued between the handles and the connection task.
const COMMAND_BUFFER: usize = 1024;

/// Extra fields of a write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetOptions {
    /// Write only if the param is at this revision.
    pub expected_revision: Option<u64>,
    /// Take the lock on the param.
    pub lock: bool,
    /// Release the lock.
    pub unlock: bool,
    /// Remove the param this many seconds after the last write.
    pub ttl: Option<u32>,
}

/// Configures and opens a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(crate) cfg: Config,
}

impl ClientBuilder {
    /// The name sent in HELLO (default `clasp-rs client`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = name.into();
        self
    }

    /// Feature names sent in HELLO (`param`, `event`, `stream`, `gesture`, `timeline`; default
    /// the first three, as the official clients). `bundles` asks this router to deliver a
    /// BUNDLE's updates as one BUNDLE (see [`crate::Update::bundle`]).
    pub fn features<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.cfg.features = Features::from_names(names);
        self
    }

    /// An authentication token sent in HELLO.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.cfg.token = Some(token.into());
        self
    }

    /// The reconnect policy (default [`ReconnectPolicy::default`]).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.cfg.reconnect = policy;
        self
    }

    /// How long opening the connection and the handshake may take (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.cfg.connect_timeout = t;
        self
    }

    /// How long a call waits for the router's answer (default 5 s).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.cfg.request_timeout = t;
        self
    }

    /// Interval between clock-sync exchanges (default 10 s; the first is sent at once).
    pub fn sync_interval(mut self, t: Duration) -> Self {
        self.cfg.sync_interval = t.max(Duration::from_millis(10));
        self
    }

    /// Calls `f` for every connection event, from [`ConnectionEvent::Connected`] on (events
    /// are also available as a channel from [`Client::events`]). `f` runs on the connection's
    /// task: keep it short.
    pub fn on_event(mut self, f: impl Fn(&ConnectionEvent) + Send + Sync + 'static) -> Self {
        self.cfg.on_event = Some(EventHook(Arc::new(f)));
        self
    }

    /// Trusts this certificate (PEM) for `wss://` and `quic://` routers, in addition to the
    /// public authorities: a router's self-signed certificate (`clasp server
    /// --tls-self-signed`) or a private CA.
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.cfg.tls.extra_roots_pem.push(pem.into());
        self
    }

    /// Trusts only the certificates given with [`ClientBuilder::add_root_certificate_pem`]
    /// or [`ClientBuilder::add_root_certificate_der`], not the public authorities.
    pub fn only_added_roots(mut self) -> Self {
        self.cfg.tls.public_roots = false;
        self
    }

    /// Trusts this certificate (DER) for `wss://` and `quic://` routers, in addition to the
    /// public authorities.
    pub fn add_root_certificate_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.cfg.tls.extra_roots_der.push(der.into());
        self
    }

    /// **Development only**: accepts any certificate from `wss://` and `quic://` routers, so
    /// anyone in between can read and change the traffic. Logs a warning when connecting.
    pub fn dangerous_skip_certificate_verification(mut self) -> Self {
        self.cfg.tls.skip_verify = true;
        self
    }

    /// Connects and completes the handshake.
    pub async fn connect(self) -> Result<Client> {
        let mut cfg = self.cfg;
        let scheme = check_url(&cfg.url)?;
        if cfg.url.starts_with("wss://") {
            cfg.tls_config = Some(Arc::new(tls_config(&cfg.tls, false)?));
        }
        if scheme == Scheme::Quic {
            cfg.quic_config = Some(quic_config(tls_config(&cfg.tls, true)?)?);
        }
        let shared = Arc::new(Shared::new(cfg.on_event.clone()));
        let cfg = Arc::new(cfg);
        let Started { cmd, cancel, done } =
            crate::driver::start(shared.clone(), cfg.clone(), COMMAND_BUFFER).await?;
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                cfg,
                cmd,
                cancel,
                done,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    cfg: Arc<Config>,
    cmd: mpsc::Sender<Command>,
    cancel: CancellationToken,
    done: watch::Receiver<bool>,
}

impl Drop for Inner {
    /// The last handle is gone: the connection task sends a Close and ends.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A connection to a CLASP router. Cheap to clone; the connection closes (with a WebSocket
/// Close) when [`Client::close`] is called or the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A builder for a router at `url`: `ws://host:port` (any path), `wss://…`,
    /// `tcp://host:port` (length-prefixed frames) or `quic://host:port` (TLS 1.3).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            cfg: Config {
                url: url.into(),
                name: "clasp-rs client".into(),
                features: Features::CLIENT_DEFAULT,
                token: None,
                reconnect: ReconnectPolicy::default(),
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(5),
                sync_interval: Duration::from_secs(10),
                on_event: None,
                tls: Default::default(),
                tls_config: None,
                quic_config: None,
            },
        }
    }

    /// Connects with the default settings.
    pub async fn connect(url: impl Into<String>) -> Result<Client> {
        Client::builder(url).connect().await
    }

    // -----------------------------------------------------------------------------------------
    // Status
    // -----------------------------------------------------------------------------------------

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.shared.connected.load(Ordering::SeqCst)
    }

    /// The session id the router gave us (changes on reconnect).
    pub fn session_id(&self) -> Option<String> {
        self.inner.shared.lock().session.clone()
    }

    /// The router's name from WELCOME.
    pub fn router_name(&self) -> Option<String> {
        self.inner.shared.lock().router_name.clone()
    }

    /// The router's clock now, in µs since the Unix epoch, by the clock-sync estimate.
    pub fn server_time(&self) -> u64 {
        self.inner.shared.lock().clock.server_time()
    }

    /// The clock-sync estimate: offset, round trip, jitter, quality.
    pub fn clock(&self) -> ClockStatus {
        self.inner.shared.lock().clock.status()
    }

    /// Connection events from now on.
    pub fn events(&self) -> broadcast::Receiver<crate::ConnectionEvent> {
        self.inner.shared.events.subscribe()
    }

    /// The last value received for `address`, if any (it may be stale unless a subscription
    /// covers the address; [`Client::get`] knows the difference).
    pub fn cached(&self, address: &str) -> Option<Value> {
        self.inner.shared.lock().cache.get(address).cloned()
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing
    // -----------------------------------------------------------------------------------------

    async fn command(&self, c: Command) -> Result<()> {
        if !self.is_connected() {
            return Err(if self.inner.cmd.is_closed() {
                Error::Closed
            } else {
                Error::NotConnected
            });
        }
        self.inner.cmd.send(c).await.map_err(|_| Error::Closed)
    }

    async fn send(&self, frame: Bytes) -> Result<()> {
        self.command(Command::Send { frame, wait: None }).await
    }

    async fn request<T>(
        &self,
        frame: Bytes,
        waiter: impl FnOnce(oneshot::Sender<Result<T>>) -> Waiter,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Send {
            frame,
            wait: Some(waiter(tx)),
        })
        .await?;
        self.answer(rx).await
    }

    async fn answer<T>(&self, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        let timeout = self.inner.cfg.request_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Disconnected),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Params
    // -----------------------------------------------------------------------------------------

    /// Writes a param, fire-and-forget (no ACK is asked for).
    pub async fn set(&self, address: &str, value: impl Into<Value>) -> Result<()> {
        let msg = set_message(address, value.into(), &SetOptions::default())?;
        self.send(encode_qos(&msg, Qos::Fire)?).await
    }

    /// Writes a param and waits for the router's ACK; returns the new revision.
    pub async fn set_confirmed(&self, address: &str, value: impl Into<Value>) -> Result<u64> {
        let ack = self.set_with(address, value, SetOptions::default()).await?;
        Ok(ack.revision.unwrap_or_default())
    }

    /// Writes a param with QoS Commit and waits for the ACK; returns the new revision. A router
    /// that keeps state on disk acknowledges it only once the write is there, so it survives a
    /// crash of the router (this project's router does; others may answer as for
    /// [`Client::set_confirmed`]).
    pub async fn set_durable(&self, address: &str, value: impl Into<Value>) -> Result<u64> {
        let msg = set_message(address, value.into(), &SetOptions::default())?;
        let key: Str = address.into();
        let ack = self
            .request(encode_qos(&msg, Qos::Commit)?, |tx| Waiter::Ack {
                key: Some(key),
                tx,
            })
            .await?;
        Ok(ack.revision.unwrap_or_default())
    }

    /// Writes a param only if it is at revision `expected`; returns the new revision, or
    /// [`Error::RevisionConflict`].
    pub async fn set_if_revision(
        &self,
        address: &str,
        value: impl Into<Value>,
        expected: u64,
    ) -> Result<u64> {
        let opts = SetOptions {
            expected_revision: Some(expected),
            ..SetOptions::default()
        };
        Ok(self
            .set_with(address, value, opts)
            .await?
            .revision
            .unwrap_or_default())
    }

    /// Takes the lock on a param while writing it; returns the new revision, or
    /// [`Error::LockHeld`] if another session holds it.
    pub async fn lock(&self, address: &str, value: impl Into<Value>) -> Result<u64> {
        let opts = SetOptions {
            lock: true,
            ..SetOptions::default()
        };
        Ok(self
            .set_with(address, value, opts)
            .await?
            .revision
            .unwrap_or_default())
    }

    /// Writes a param and releases our lock on it; returns the new revision.
    pub async fn unlock(&self, address: &str, value: impl Into<Value>) -> Result<u64> {
        let opts = SetOptions {
            unlock: true,
            ..SetOptions::default()
        };
        Ok(self
            .set_with(address, value, opts)
            .await?
            .revision
            .unwrap_or_default())
    }

    /// Writes a param with options and waits for the ACK (QoS Confirm).
    pub async fn set_with(
        &self,
        address: &str,
        value: impl Into<Value>,
        opts: SetOptions,
    ) -> Result<Ack> {
        let msg = set_message(address, value.into(), &opts)?;
        let key: Str = address.into();
        self.request(encode_qos(&msg, Qos::Confirm)?, |tx| Waiter::Ack {
            key: Some(key),
            tx,
        })
        .await
    }

    /// Reads a param: the cached value when a subscription keeps it current, otherwise a round
    /// trip. A missing address is [`Error::NotFound`] (the reference router does not answer,
    /// which ends in [`Error::Timeout`]).
    pub async fn get(&self, address: &str) -> Result<Value> {
        {
            let st = self.inner.shared.lock();
            if self.is_connected()
                && st.fresh.values().any(|p| p.matches(address))
                && let Some(c) = st.cache.get(address)
            {
                return Ok(c.clone());
            }
        }
        Ok(self.get_param(address).await?.value)
    }

    /// Reads a param from the router (always a round trip), with revision, writer and time.
    pub async fn get_param(&self, address: &str) -> Result<ParamValue> {
        check_address(address)?;
        let msg = Message::Get(clasp_proto::Get {
            address: address.into(),
        });
        let address: Str = address.into();
        self.request(encode(&msg)?, |tx| Waiter::Get { address, tx })
            .await
    }

    /// The current params under `pattern`, sorted by address.
    pub async fn snapshot(&self, pattern: &str) -> Result<Vec<ParamValue>> {
        let pattern = compile(pattern)?;
        let (tx, rx) = oneshot::channel();
        self.command(Command::Snapshot { pattern, tx }).await?;
        self.answer(rx).await
    }

    // -----------------------------------------------------------------------------------------
    // Subscriptions
    // -----------------------------------------------------------------------------------------

    /// Subscribes to every signal under `pattern` (`*` one segment, `**` any number).
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.subscribe_with(pattern, SubscribeOptions::new()).await
    }

    /// Subscribes with options (signal types, max rate, epsilon, buffer). Works while the client
    /// is reconnecting too: the subscription starts when the connection is back.
    pub async fn subscribe_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let compiled = compile(pattern)?;
        let id = self.inner.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(options.buffer.unwrap_or(SUB_BUFFER));
        let dropped = Arc::new(AtomicU64::new(0));
        // Allowed while reconnecting: the subscription is sent once the connection is back.
        self.inner
            .cmd
            .send(Command::Subscribe {
                id,
                pattern: compiled,
                options,
                tx,
                dropped: dropped.clone(),
            })
            .await
            .map_err(|_| Error::Closed)?;
        Ok(Subscription {
            id,
            pattern: pattern.to_string(),
            rx,
            dropped,
            cmd: self.inner.cmd.clone(),
        })
    }

    /// Calls `callback` for every update under `pattern` until the returned [`Listener`] is
    /// dropped. The callback runs on its own task, so a slow callback delays only itself.
    pub async fn on<F>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        mut callback: F,
    ) -> Result<Listener>
    where
        F: FnMut(Update) + Send + 'static,
    {
        let mut sub = self.subscribe_with(pattern, options).await?;
        let id = sub.id();
        let task = tokio::spawn(async move {
            while let Some(u) = sub.recv().await {
                callback(u);
            }
        });
        Ok(Listener { id, task })
    }

    // -----------------------------------------------------------------------------------------
    // Events, streams, gestures, timelines
    // -----------------------------------------------------------------------------------------

    async fn publish(&self, p: Publish, qos: Option<Qos>) -> Result<()> {
        check_address(&p.address)?;
        let msg = Message::Publish(p);
        let frame = match qos {
            Some(q) => encode_qos(&msg, q)?,
            None => encode(&msg)?,
        };
        self.send(frame).await
    }

    fn publish_base(&self, address: &str, signal: SignalType, payload: PublishPayload) -> Publish {
        Publish {
            address: address.into(),
            signal,
            payload,
            timestamp: Some(self.server_time()),
            ..Publish::default()
        }
    }

    /// Fires an event (delivered to subscribers, not stored, not echoed to us).
    pub async fn emit(&self, address: &str, payload: impl Into<Value>) -> Result<()> {
        let p = self.publish_base(
            address,
            SignalType::Event,
            PublishPayload::Value(payload.into()),
        );
        self.publish(p, None).await
    }

    /// Sends one stream sample (high rate, best effort; a slow subscriber drops the oldest).
    pub async fn stream(&self, address: &str, value: impl Into<Value>) -> Result<()> {
        let p = self.publish_base(
            address,
            SignalType::Stream,
            PublishPayload::Value(value.into()),
        );
        self.publish(p, None).await
    }

    /// Sends a block of stream samples taken at `rate` samples per second.
    pub async fn stream_samples(
        &self,
        address: &str,
        samples: Vec<f64>,
        rate: Option<u32>,
    ) -> Result<()> {
        let mut p = self.publish_base(
            address,
            SignalType::Stream,
            PublishPayload::Samples(samples),
        );
        p.rate = rate;
        self.publish(p, None).await
    }

    /// Sends one phase of gesture `id` (the router coalesces moves for slow subscribers).
    pub async fn gesture(
        &self,
        address: &str,
        id: u32,
        phase: GesturePhase,
        payload: impl Into<Value>,
    ) -> Result<()> {
        let mut p = self.publish_base(
            address,
            SignalType::Gesture,
            PublishPayload::Value(payload.into()),
        );
        p.id = Some(id);
        p.phase = phase;
        self.publish(p, None).await
    }

    /// Publishes a timeline (keyframes and timing as a map value; QoS Commit).
    pub async fn timeline(&self, address: &str, timeline: impl Into<Value>) -> Result<()> {
        let p = self.publish_base(
            address,
            SignalType::Timeline,
            PublishPayload::Value(timeline.into()),
        );
        self.publish(p, Some(Qos::Commit)).await
    }

    // -----------------------------------------------------------------------------------------
    // Bundles, discovery, liveness
    // -----------------------------------------------------------------------------------------

    /// Sends messages as one atomic bundle (all SETs apply or none) and waits for the ACK;
    /// returns the revision of the last write, if any.
    pub async fn bundle(&self, messages: Vec<Message>) -> Result<Option<u64>> {
        self.send_bundle(messages, None).await
    }

    /// Like [`Client::bundle`], executed by the router at `server_time_us` (router clock, µs;
    /// see [`Client::server_time`]).
    pub async fn bundle_at(
        &self,
        messages: Vec<Message>,
        server_time_us: u64,
    ) -> Result<Option<u64>> {
        self.send_bundle(messages, Some(server_time_us)).await
    }

    /// Sends a bundle for the router to execute at `server_time_us` without waiting for it
    /// (nothing is answered; a refusal comes as a [`crate::ConnectionEvent::RouterError`]).
    pub async fn schedule_bundle(&self, messages: Vec<Message>, server_time_us: u64) -> Result<()> {
        let msg = Message::Bundle(Bundle {
            timestamp: Some(server_time_us),
            messages,
        });
        self.send(encode_qos(&msg, Qos::Fire)?).await
    }

    /// Sends messages as one atomic bundle, executed by the router at once, without waiting
    /// for anything (QoS Fire: no ACK; a refusal comes as a
    /// [`crate::ConnectionEvent::RouterError`]). For senders that must not stall on a round
    /// trip, such as `clasp play`; [`Client::bundle`] waits for the router's answer.
    pub async fn bundle_fire(&self, messages: Vec<Message>) -> Result<()> {
        let msg = Message::Bundle(Bundle {
            timestamp: None,
            messages,
        });
        self.send(encode_qos(&msg, Qos::Fire)?).await
    }

    async fn send_bundle(
        &self,
        messages: Vec<Message>,
        timestamp: Option<u64>,
    ) -> Result<Option<u64>> {
        let msg = Message::Bundle(Bundle {
            timestamp,
            messages,
        });
        let ack = self
            .request(encode_qos(&msg, Qos::Commit)?, |tx| Waiter::Ack {
                key: None,
                tx,
            })
            .await?;
        Ok(ack.revision)
    }

    /// Announces signals under `namespace` and waits for the ACK.
    pub async fn announce(&self, namespace: &str, signals: Vec<SignalDef>) -> Result<()> {
        let msg = Message::Announce(Announce {
            namespace: namespace.into(),
            signals,
        });
        let key: Str = namespace.into();
        self.request(encode_qos(&msg, Qos::Confirm)?, |tx| Waiter::Ack {
            key: Some(key),
            tx,
        })
        .await
        .map(drop)
    }

    /// The announced signals matching `pattern`, however many RESULT frames they take.
    pub async fn query(&self, pattern: &str) -> Result<Vec<SignalDef>> {
        compile(pattern)?;
        let (tx, rx) = oneshot::channel();
        self.command(Command::Query {
            pattern: pattern.into(),
            tx,
        })
        .await?;
        self.answer(rx).await
    }

    /// Round trip to the router (PING/PONG).
    pub async fn ping(&self) -> Result<Duration> {
        let sent = std::time::Instant::now();
        self.request(encode(&Message::Ping)?, |tx| Waiter::Pong { sent, tx })
            .await
    }

    /// Closes the connection (WebSocket Close), ends every subscription stream, and waits for
    /// the connection task to finish. Other clones of this client see [`Error::Closed`].
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        let mut done = self.inner.done.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), done.wait_for(|d| *d)).await;
    }
}

fn check_address(address: &str) -> Result<()> {
    validate_address(address).map_err(|e| Error::InvalidAddress {
        address: address.to_string(),
        reason: e.to_string(),
    })
}

fn compile(pattern: &str) -> Result<Pattern> {
    Pattern::compile(pattern).map_err(|e| Error::InvalidAddress {
        address: pattern.to_string(),
        reason: e.to_string(),
    })
}

fn set_message(address: &str, value: Value, opts: &SetOptions) -> Result<Message> {
    check_address(address)?;
    Ok(Message::Set(Set {
        address: address.into(),
        value,
        revision: opts.expected_revision,
        lock: opts.lock,
        unlock: opts.unlock,
        ttl: opts.ttl,
    }))
}
