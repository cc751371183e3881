//! The tokio shell: CLASP over WebSocket on one port that also serves `/healthz` and `/metrics`,
//! optionally over raw TCP and QUIC as well, with write-behind persistence of params.

mod auth_files;
mod cause;
mod cluster;
mod cluster_locks;
mod cluster_p2p;
mod cluster_routers;
mod cluster_signals;
mod cluster_watch;
mod cluster_writes;
mod console;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod http;
pub mod inbox;
mod journal;
mod listen;
pub mod outbox;
mod persist;
mod quic;
mod status;
mod stream;
mod tcp;
pub mod tokens;
mod writers;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router as HttpRouter;
use axum::routing::get;
use clasp_store::{MemoryStore, RedbStore, Store};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::core::{Event, Now, Output, Router, RouterConfig, Transmit};
pub use cluster::ClusterConfig;
pub use handle::RouterHandle;
use inbox::Inbox;
pub use journal::JournalConfig;
use outbox::Outbox;
pub use status::{write_counter, write_gauge};

/// The router core as the server runs it: each connection's handle is its queue.
pub type Core = Router<Link>;

/// Where the server delivers what the core produces for a connection.
#[derive(Debug, Clone)]
pub enum Link {
    /// A client on a transport: frames, written by the connection's writer.
    Wire(Outbox),
    /// An in-process adapter session: typed deliveries (see [`crate::core::adapter`]).
    Adapter(Inbox),
}
pub use http::{HttpLimits, serve_http};
pub use listen::{IpSlot, IpTable, TlsConfig, TlsError};
use outbox::{OutboxCounters, OutboxLimits};
pub use quic::{ALPN as QUIC_ALPN, QuicListen};
pub use tcp::MAX_TCP_MESSAGE;

/// Everything `clasp server` can be configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the state database lives; `None` keeps state in memory only.
    pub data_dir: Option<PathBuf>,
    /// The router core's limits and behaviour.
    pub router: RouterConfig,
    /// Outbound queue limits per connection.
    pub outbox: OutboxLimits,
    /// Time a new connection has to send HELLO.
    pub handshake_timeout: Duration,
    /// A connection with no inbound traffic (frames, pings or pongs) for this long is closed.
    pub idle_timeout: Duration,
    /// How often the router pings idle connections so live peers keep answering.
    pub ping_interval: Duration,
    /// How often changed params are written to the database (the most a `kill -9` can lose).
    pub flush_interval: Duration,
    /// Tokens and keys; open mode when none are configured.
    pub auth: AuthConfig,
    /// Serve `wss://` with this certificate; `None` serves plain `ws://`.
    pub tls: Option<TlsConfig>,
    /// Most connections open at once from one IP address (0: no limit); more get HTTP 429.
    pub max_connections_per_ip: usize,
    /// Time a client has to send its HTTP request head (upgrade requests included).
    pub header_read_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Threads of the pool that writes large fan-outs (0: write on the calling runtime). The
    /// default is one per CPU.
    pub writer_threads: usize,
    /// Run the writer pool at a lower CPU priority (nice 10), so reading input and answering
    /// small exchanges never wait behind a burst of fan-out writes.
    pub lower_writer_priority: bool,
    /// Also serve CLASP over raw TCP (length-prefixed frames) on this address.
    pub tcp_listen: Option<SocketAddr>,
    /// Also serve CLASP over QUIC (UDP) with this address and certificate.
    pub quic: Option<QuicListen>,
    /// Share params with other routers through NATS JetStream (see [`ClusterConfig`]).
    pub cluster: Option<ClusterConfig>,
    /// Serve the web console at `/console` (default on; it costs nothing while nobody has it
    /// open).
    pub console: bool,
    /// Keep a journal of what the router broadcast (in `data_dir/journal.redb`, or in memory
    /// without a data directory), for history and REPLAY; `None`: no journal.
    pub journal: Option<JournalConfig>,
}

/// Where tokens and keys come from. The router requires tokens when JWT verification is
/// configured, when `require_tokens` is set, or once the token file exists; otherwise it is in
/// open mode. Once required, tokens stay required until the router restarts.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// The CPSK token file (see [`tokens`]), reloaded when it changes.
    pub token_file: Option<PathBuf>,
    /// Require tokens even while the token file does not exist yet (e.g. it was named
    /// explicitly): every client is then refused until a token is added.
    pub require_tokens: bool,
    /// The revocation list (tokens, JWT `jti`s or subjects, one per line), reloaded when it
    /// changes.
    pub revoked_file: Option<PathBuf>,
    /// JWT verification, if JWTs are accepted.
    pub jwt: Option<crate::core::auth::JwtConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7330)),
            data_dir: None,
            router: RouterConfig::default(),
            outbox: OutboxLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            flush_interval: Duration::from_millis(50),
            auth: AuthConfig::default(),
            tls: None,
            max_connections_per_ip: 1000,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            writer_threads: std::thread::available_parallelism().map_or(1, usize::from),
            lower_writer_priority: true,
            tcp_listen: None,
            quic: None,
            cluster: None,
            console: true,
            journal: None,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The state database could not be opened or read.
    #[error(transparent)]
    Store(#[from] clasp_store::StoreError),
    /// The token file or the revocation list could not be read.
    #[error(transparent)]
    Tokens(#[from] tokens::TokenFileError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// The cluster could not be joined.
    #[error("{0}")]
    Cluster(String),
}

/// Writes more Prometheus text for `/metrics` (see [`Server::with_metrics`]).
pub(crate) type MetricsSource = Arc<dyn Fn(&mut String) + Send + Sync>;

/// State shared by every task of a running server.
pub(crate) struct Shared {
    pub(crate) core: Mutex<Core>,
    pub(crate) config: ServerConfig,
    pub(crate) counters: Arc<OutboxCounters>,
    pub(crate) start: Instant,
    /// Wakes the timer task when a deadline earlier than the one it sleeps for appears.
    pub(crate) timer: Notify,
    /// The deadline the timer task sleeps for (monotonic µs; `u64::MAX` = none).
    pub(crate) timer_at: AtomicU64,
    pub(crate) store_desc: String,
    pub(crate) persist: persist::Status,
    /// Wakes the persistence thread (a Commit write waits, or the server stops).
    pub(crate) persist_wake: Arc<persist::Wake>,
    /// When the token files were last read.
    auth_watch: Mutex<auth_files::Watch>,
    /// Connections refused for the per-IP limit.
    pub(crate) refused_per_ip: Arc<AtomicU64>,
    /// Where writer tasks run (see [`writers`]).
    pub(crate) writers: tokio::runtime::Handle,
    /// Whether the writer pool has threads of its own.
    separate_writers: bool,
    /// Where the core's output for the cluster goes, on a clustered router.
    cluster_tx: Option<cluster::Senders>,
    /// The cluster link's state, on a clustered router.
    pub(crate) cluster: Option<Arc<cluster::Status>>,
    /// Where journaled entries and journal requests go, with a journal.
    pub(crate) journal: Option<journal::Sender>,
}

impl Shared {
    pub(crate) fn now(&self) -> Now {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Now {
            mono: self.start.elapsed().as_micros() as u64,
            wall,
        }
    }

    /// Runs `f` on the core, then wakes the timer task if the next deadline moved earlier.
    pub(crate) fn with_core<T>(&self, f: impl FnOnce(&mut Core, Now) -> T) -> T {
        let now = self.now();
        let mut core = self.core.lock();
        let out = f(&mut core, now);
        while let Some(event) = core.poll_event() {
            match event {
                Event::CommitsWaiting => self.persist_wake.write_now(),
            }
        }
        if let Some(j) = &self.journal {
            let entries = core.take_journal();
            if !entries.is_empty() {
                j.append(entries);
            }
            while let Some(r) = core.poll_journal_request() {
                j.request(r);
            }
        }
        if let Some(tx) = &self.cluster_tx {
            while let Some(signal) = core.poll_cluster_publish() {
                let _ = tx.outbound.send(cluster_signals::Outbound::Publish(signal));
            }
            while let Some(r) = core.poll_lock_release() {
                let _ = tx.releases.send(r);
            }
            while let Some(e) = core.poll_cluster_expired() {
                let _ = tx.expired.send(e);
            }
            while let Some(m) = core.poll_cluster_p2p() {
                let _ = tx.p2p.send(m);
            }
            while let Some(change) = core.poll_interest() {
                let _ = tx
                    .outbound
                    .send(cluster_signals::Outbound::Interest(change));
            }
            while let Some(w) = core.poll_cluster_write() {
                if let Err(lost) = tx.writes.send(w) {
                    let now = self.now();
                    let why = "the cluster link has stopped".to_string();
                    core.cluster_written(lost.0.id, crate::core::ClusterOutcome::Failed(why), now);
                }
            }
        }
        let next = core.poll_timeout().unwrap_or(u64::MAX);
        let output = core.take_output();
        drop(core);
        // Frames are queued (and their writers woken) after the lock is released, so other
        // connections wait for the core only as long as the routing itself takes. For one of
        // few recipients the frames are written straight away from this task when the writer
        // is idle; for more they are staged and the writers woken together.
        let mut wake = Vec::new();
        let mut wake_adapters = Vec::new();
        let inline = output.len() <= ws::INLINE_FANOUT;
        for Output { to, transmit, .. } in output {
            match (to, transmit) {
                (Link::Wire(to), Transmit::Frames(mut frames)) if inline => {
                    to.send_batch_inline(&mut frames);
                }
                (Link::Wire(to), Transmit::Frames(mut frames)) => {
                    to.push_all(&mut frames);
                    wake.push(to);
                }
                (Link::Adapter(to), Transmit::Deliver(mut d)) if inline => to.push_all(&mut d),
                (Link::Adapter(to), Transmit::Deliver(mut d)) => {
                    if to.stage_all(&mut d) {
                        wake_adapters.push(to);
                    }
                }
                (Link::Wire(to), Transmit::Close(reason)) => to.request_close(reason),
                (Link::Adapter(to), Transmit::Close(reason)) => to.request_close(reason),
                // The core sends frames to wire connections and deliveries to adapters only.
                (Link::Wire(_), Transmit::Deliver(_)) | (Link::Adapter(_), Transmit::Frames(_)) => {
                }
            }
        }
        match wake.len() + wake_adapters.len() {
            0 => {}
            // One task on the writer pool wakes them all: the wake-ups are then local to
            // the pool's threads instead of one cross-thread hand-off per connection (and
            // adapter tasks woken from there spread over the main runtime's workers).
            n if n > 1 && self.separate_writers => {
                self.writers.spawn(async move {
                    for outbox in wake {
                        outbox.wake();
                    }
                    for inbox in wake_adapters {
                        inbox.wake();
                    }
                });
            }
            _ => {
                for outbox in wake {
                    outbox.wake();
                }
                for inbox in wake_adapters {
                    inbox.wake();
                }
            }
        }
        if next < self.timer_at.load(Ordering::Acquire) {
            self.timer_at.store(next, Ordering::Release);
            self.timer.notify_one();
        }
        out
    }
}

/// A bound, ready-to-run server.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    store: Box<dyn Store>,
    writers: writers::WriterPool,
    /// Extra HTTP routes served on the WebSocket port (e.g. the rendezvous API).
    http: Option<HttpRouter>,
    /// More Prometheus text for `/metrics`.
    metrics: Vec<MetricsSource>,
    /// The raw TCP listener, if configured.
    tcp: Option<TcpListener>,
    /// The QUIC endpoint, if configured.
    quic: Option<quinn::Endpoint>,
    /// The cluster link, on a clustered router.
    cluster: Option<cluster::Link>,
    /// The journal and what the core sends it, until the server runs.
    journal: Option<(
        Arc<clasp_store::Journal>,
        std::sync::mpsc::Receiver<journal::Work>,
    )>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.shared.config.listen)
            .field("store", &self.shared.store_desc)
            .finish()
    }
}

impl Server {
    /// Opens the state database, restores the params in it, and binds the listening socket.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let store: Box<dyn Store> = match &config.data_dir {
            Some(dir) => Box::new(RedbStore::open(dir)?),
            None => Box::new(MemoryStore::default()),
        };
        let loaded = store.load()?;
        let restored = loaded.len();
        let mut core = Router::new(
            config.router.clone(),
            Box::new(|| uuid::Uuid::new_v4().to_string()),
        );
        // With a database, a QoS Commit write is acknowledged once it is on disk.
        core.set_durable_acks(config.data_dir.is_some());
        // A clustered router takes its state from the cluster (the local database keeps a
        // copy); otherwise from the database.
        let mut cluster_link = None;
        let mut cluster_tx = None;
        let mut cluster_status = None;
        if let Some(c) = &config.cluster {
            let (link, tx, status) =
                cluster::connect(c, &mut core, config.router.max_payload).await?;
            cluster_link = Some(link);
            cluster_tx = Some(tx);
            cluster_status = Some(status);
        } else {
            persist::restore(&mut core, loaded);
        }
        let (bytes, max) = (core.params().bytes(), core.params().max_bytes());
        if bytes > max {
            tracing::warn!(
                bytes,
                max,
                "the restored params pass max_param_bytes: writes that grow the store are refused until it shrinks"
            );
        }
        let journal = match &config.journal {
            Some(_) => {
                let (journal, sender, rx) = journal::open(config.data_dir.as_deref())?;
                let s = journal.stats();
                let (seq, time) = s.last.unwrap_or((0, 0));
                core.start_journal(seq, time);
                tracing::info!(journal = %sender.describe, entries = s.entries, "journal opened");
                Some((journal, sender, rx))
            }
            None => None,
        };
        let (journal, journal_tx) = match journal {
            Some((j, sender, rx)) => (Some((j, rx)), Some(sender)),
            None => (None, None),
        };
        let auth_watch = auth_files::load(&mut core, &config.auth)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let tcp = match config.tcp_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let quic = match &config.quic {
            Some(q) => Some(quic::bind(q, config.idle_timeout, config.ping_interval)?),
            None => None,
        };
        let store_desc = store.describe();
        tracing::info!(store = %store_desc, params = restored, "state restored");
        let writers =
            writers::WriterPool::new(config.writer_threads, config.lower_writer_priority)?;
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            config,
            counters: Arc::new(OutboxCounters::default()),
            start: Instant::now(),
            timer: Notify::new(),
            timer_at: AtomicU64::new(u64::MAX),
            store_desc,
            persist: persist::Status::default(),
            persist_wake: Arc::new(persist::Wake::default()),
            auth_watch,
            refused_per_ip: Arc::new(AtomicU64::new(0)),
            writers: writers.handle(),
            separate_writers: writers.separate(),
            cluster_tx,
            cluster: cluster_status,
            journal: journal_tx,
        });
        Ok(Server {
            journal,
            cluster: cluster_link,
            shared,
            listener,
            store,
            writers,
            http: None,
            metrics: Vec::new(),
            tcp,
            quic,
        })
    }

    /// A handle on the router core, for listeners of other protocols (see [`RouterHandle`]).
    pub fn handle(&self) -> RouterHandle {
        RouterHandle {
            shared: self.shared.clone(),
        }
    }

    /// The record table `table` of the server's state store (in the same database file as the
    /// params with `data_dir`, in memory otherwise), e.g. for the rendezvous registrations.
    pub fn records(
        &self,
        table: &str,
    ) -> Result<std::sync::Arc<dyn clasp_store::RecordTable>, ServerError> {
        Ok(self.store.records(table)?)
    }

    /// Serves `routes` on the WebSocket port too, beside `/healthz` and `/metrics` (paths not
    /// matched by any route still go to the WebSocket upgrade). Routes added by several calls
    /// are merged; overlapping paths panic, as in [`axum::Router::merge`].
    pub fn with_http(mut self, routes: HttpRouter) -> Server {
        self.http = Some(match self.http.take() {
            Some(r) => r.merge(routes),
            None => routes,
        });
        self
    }

    /// Adds the Prometheus text `source` writes (complete `# HELP`/`# TYPE` families) to
    /// `/metrics`, e.g. the counters of a listener of another protocol.
    pub fn with_metrics(mut self, source: impl Fn(&mut String) + Send + Sync + 'static) -> Server {
        self.metrics.push(Arc::new(source));
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        Ok(self.listener.local_addr()?)
    }

    /// The raw TCP address actually bound, if TCP is configured.
    pub fn tcp_local_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The QUIC (UDP) address actually bound, if QUIC is configured.
    pub fn quic_local_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref().and_then(|e| e.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every connection with a
    /// close frame, flushes state to the database and returns.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            shared,
            listener,
            store,
            writers,
            http,
            metrics: metric_sources,
            tcp,
            quic,
            cluster,
            journal,
        } = self;
        let addr = listener.local_addr()?;
        let scheme = if shared.config.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        tracing::info!(%addr, scheme, name = %shared.config.router.name, "CLASP router listening (WebSocket, /healthz, /metrics)");
        if let Some(t) = &shared.config.tls {
            tracing::info!(fingerprint = %t.fingerprint(), "TLS certificate (SHA-256)");
        }
        let tracker = TaskTracker::new();
        let persister = persist::spawn(shared.clone(), store);
        let journal_threads = match (journal, shared.config.journal) {
            (Some((j, rx)), Some(config)) => Some(journal::spawn(shared.clone(), j, rx, config)?),
            _ => None,
        };
        let timer = tokio::spawn(timer_loop(shared.clone()));
        let token_watch = tokio::spawn(auth_files::watch(shared.clone()));
        let cluster_tasks = cluster
            .map(|l| cluster::spawn(l, shared.clone()))
            .unwrap_or_default();

        let mut app = HttpRouter::new()
            .route("/healthz", get(status::healthz))
            .route("/metrics", get(status::metrics));
        if shared.config.console {
            app = app.merge(console::routes());
        }
        let mut app = app.fallback(ws::upgrade).with_state(ws::AppState {
            shared: shared.clone(),
            tracker: tracker.clone(),
            metrics: Arc::new(metric_sources),
        });
        if let Some(extra) = http {
            app = app.merge(extra);
        }
        let tls = match &shared.config.tls {
            Some(t) => Some(t.acceptor()?),
            None => None,
        };
        let limits = listen::AcceptLimits {
            per_ip: shared.config.max_connections_per_ip,
            tls_handshake: shared.config.tls_handshake_timeout,
            header_read: shared.config.header_read_timeout,
        };
        let stop = Arc::new(Notify::new());
        let accept = tokio::spawn(listen::accept_loop(
            listener,
            app,
            tls,
            limits,
            stop.clone(),
            shared.refused_per_ip.clone(),
        ));
        // Raw TCP and QUIC share one per-IP table (the WebSocket port keeps its own).
        let stop_streams = tokio_util::sync::CancellationToken::new();
        let stream_ips = Arc::new(listen::IpTable::default());
        let tcp_accept = tcp.map(|l| {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, "CLASP over TCP listening (tcp://, 4-byte length prefix)");
            }
            tokio::spawn(tcp::accept_loop(
                l,
                shared.clone(),
                tracker.clone(),
                stream_ips.clone(),
                stop_streams.clone(),
            ))
        });
        let quic_accept = quic.map(|e| {
            if let Ok(addr) = e.local_addr() {
                tracing::info!(%addr, "CLASP over QUIC listening (quic://, ALPN clasp, UDP)");
            }
            let task = tokio::spawn(quic::accept_loop(
                e.clone(),
                shared.clone(),
                tracker.clone(),
                stream_ips.clone(),
                stop_streams.clone(),
            ));
            (e, task)
        });
        shutdown.await;
        stop.notify_one();
        stop_streams.cancel();
        let _ = accept.await;
        if let Some(t) = tcp_accept {
            let _ = t.await;
        }
        let quic_endpoint = match quic_accept {
            Some((e, t)) => {
                let _ = t.await;
                Some(e)
            }
            None => None,
        };
        tracing::info!("shutting down: closing connections and flushing state");
        shared.with_core(|core, _| core.shutdown());
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 5 s");
        }
        if let Some(e) = quic_endpoint {
            quic::close(e).await;
        }
        timer.abort();
        token_watch.abort();
        for t in cluster_tasks {
            t.abort();
        }
        persist::stop(persister).await;
        if let Some(t) = journal_threads {
            let _ = tokio::task::spawn_blocking(move || journal::stop(t)).await;
        }
        drop(writers);
        tracing::info!("stopped");
        Ok(())
    }
}

async fn timer_loop(shared: Arc<Shared>) {
    loop {
        let at = shared.timer_at.load(Ordering::Acquire);
        let now = shared.start.elapsed().as_micros() as u64;
        if at <= now {
            shared.timer_at.store(u64::MAX, Ordering::Release);
            shared.with_core(|core, now| core.tick(now));
            let next = shared.core.lock().poll_timeout().unwrap_or(u64::MAX);
            // with_core may have lowered it already; keep the earliest.
            shared.timer_at.fetch_min(next, Ordering::AcqRel);
            continue;
        }
        let wait = Duration::from_micros(at.saturating_sub(now)).min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                if at == u64::MAX {
                    // Periodic wake-up: pick up deadlines such as param expiry.
                    let next = shared.core.lock().poll_timeout().unwrap_or(u64::MAX);
                    shared.timer_at.fetch_min(next, Ordering::AcqRel);
                }
            }
            _ = shared.timer.notified() => {}
        }
    }
}
