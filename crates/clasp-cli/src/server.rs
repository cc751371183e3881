//! `clasp server`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use clasp_router::core::RateLimit;
use clasp_router::core::auth::JwtConfig;
use clasp_router::server::{QuicListen, Server, ServerConfig, TlsConfig};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::in_process::{InProcess, RulesSpec};

/// Options of `clasp server`. Each has an environment variable, and all but `--config` can also
/// be set in the TOML file given with `--config`; flags win over the file.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on, for every listener [default: 0.0.0.0].
    #[arg(long, visible_alias = "host", env = "CLASP_BIND")]
    pub(crate) bind: Option<IpAddr>,
    /// Port for WebSocket, /healthz and /metrics [default: 7330].
    #[arg(long, short, visible_alias = "ws-port", env = "CLASP_PORT")]
    pub(crate) port: Option<u16>,
    /// Directory of the state database [default: the user's data directory, e.g.
    /// ~/.local/share/clasp].
    #[arg(long, env = "CLASP_DATA_DIR", conflicts_with = "memory")]
    data_dir: Option<PathBuf>,
    /// Keep state in memory only: nothing is written to disk, nothing survives a restart.
    #[arg(long, env = "CLASP_MEMORY")]
    memory: bool,
    /// Router name sent to clients in WELCOME [default: "CLASP Router"].
    #[arg(long, short = 'n', env = "CLASP_NAME")]
    name: Option<String>,
    /// Seconds a param lives after its last write (0: forever) [default: forever; the
    /// reference relay used 3600].
    #[arg(long, env = "CLASP_PARAM_TTL")]
    param_ttl: Option<u64>,
    /// Maximum concurrent sessions [default: 10000].
    #[arg(long, env = "CLASP_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// TOML configuration file (keys as the long flags, with underscores).
    #[arg(long, env = "CLASP_CONFIG")]
    config: Option<PathBuf>,
    /// CPSK token file, managed with `clasp token` [default: tokens.json in the data
    /// directory]. Tokens are required once the file exists (a file named here: always), and
    /// stay required while the router runs, even with no token left; the file is reloaded when
    /// it changes (a blank or missing file keeps the tokens in force), sessions of removed
    /// tokens end and edited scopes apply to live sessions.
    #[arg(long, env = "CLASP_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Revoked tokens, JWT ids (jti) or subjects, one per line [default: revoked.txt in the
    /// data directory]; reloaded when it changes.
    #[arg(long, env = "CLASP_REVOKED_FILE")]
    revoked_file: Option<PathBuf>,
    /// Accept HS256 JWTs signed with the secret in this file.
    #[arg(long, env = "CLASP_JWT_SECRET_FILE")]
    jwt_secret_file: Option<PathBuf>,
    /// Accept EdDSA (Ed25519) or RS256 JWTs signed by the key whose public half is in this PEM
    /// file (repeatable).
    #[arg(
        long = "jwt-public-key",
        env = "CLASP_JWT_PUBLIC_KEY",
        value_delimiter = ','
    )]
    jwt_public_keys: Vec<PathBuf>,
    /// Required JWT audience (`aud`).
    #[arg(long, env = "CLASP_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Required JWT issuer (`iss`).
    #[arg(long, env = "CLASP_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Longest time a JWT id (jti) is remembered to refuse replays, in seconds [default:
    /// 86400; tokens are remembered until they expire, at most this long].
    #[arg(long, env = "CLASP_JWT_REPLAY_WINDOW")]
    jwt_replay_window: Option<u64>,
    /// Serve wss:// (and QUIC, with --quic-port) with this PEM certificate chain (with
    /// --tls-key).
    #[arg(
        long,
        visible_alias = "cert",
        env = "CLASP_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        visible_alias = "key",
        env = "CLASP_TLS_KEY",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Serve wss:// with a self-signed certificate for development (kept in the data
    /// directory, so its fingerprint stays the same across restarts; printed at start).
    #[arg(long, env = "CLASP_TLS_SELF_SIGNED")]
    tls_self_signed: bool,
    /// Also serve CLASP over raw TCP on this port (tcp://HOST:PORT; each frame behind a 4-byte
    /// big-endian length), on the --bind address. Plain: no TLS.
    #[arg(long, env = "CLASP_TCP_PORT")]
    tcp_port: Option<u16>,
    /// Also serve CLASP over QUIC on this UDP port (quic://HOST:PORT), on the --bind address.
    /// QUIC always runs TLS 1.3: it needs --tls-cert/--tls-key or --tls-self-signed, and the
    /// same certificate then serves wss:// on --port too, unless --quic-tls-only is given.
    #[arg(long, env = "CLASP_QUIC_PORT")]
    quic_port: Option<u16>,
    /// Use the --tls-* certificate for QUIC only and keep --port plain ws:// (e.g. when a
    /// TLS-terminating proxy sits in front of the WebSocket port).
    #[arg(long, env = "CLASP_QUIC_TLS_ONLY", requires = "quic_port")]
    quic_tls_only: bool,
    /// Messages per second each session may send (token bucket; 0: no limit) [default: 10000].
    #[arg(long, env = "CLASP_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Largest burst a session may send above the rate [default: twice the rate].
    #[arg(long, env = "CLASP_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Most connections open at once from one IP address (0: no limit) [default: 1000].
    #[arg(long, env = "CLASP_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Threads that write large fan-outs, at a lower CPU priority so input and small exchanges
    /// keep their latency under load (0: write on the main threads) [default: one per CPU].
    #[arg(long, env = "CLASP_WRITER_THREADS")]
    writer_threads: Option<usize>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CLASP_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Do not serve the web console at /console.
    #[arg(long, env = "CLASP_NO_CONSOLE")]
    no_console: bool,
    #[command(flatten)]
    cluster: crate::cluster::ClusterArgs,
    #[command(flatten)]
    journal: crate::journal::JournalArgs,
    /// Run the rules of this file (TOML, or JSON for .json; see docs/rules.md) inside the
    /// router; reloaded when it changes.
    #[arg(long, env = "CLASP_RULES", value_name = "FILE")]
    rules: Option<PathBuf>,
    /// The token the rules' session joins with (needed when tokens are; its scopes are what
    /// the rules may read and write) [default: bridge_token of the config file].
    #[arg(long, env = "CLASP_RULES_TOKEN", value_name = "TOKEN")]
    rules_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<IpAddr>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    memory: Option<bool>,
    name: Option<String>,
    max_sessions: Option<usize>,
    max_subscriptions: Option<usize>,
    max_params: Option<usize>,
    /// Bytes the param store may hold (addresses, values, overhead).
    max_param_bytes: Option<usize>,
    /// Bytes of subscription patterns per session.
    max_subscription_bytes: Option<usize>,
    /// Gestures in progress per session, and their bytes.
    max_gestures: Option<usize>,
    max_gesture_bytes: Option<usize>,
    /// Bytes of scheduled bundles per session.
    max_scheduled_bytes: Option<usize>,
    /// Announced signals per session and router-wide, in signals and bytes.
    max_signals_per_session: Option<usize>,
    max_signal_bytes_per_session: Option<usize>,
    max_signals: Option<usize>,
    max_signal_bytes: Option<usize>,
    /// Bytes queued for one connection before it is cut off as too slow.
    max_queued_bytes: Option<usize>,
    max_payload: Option<usize>,
    /// Seconds without inbound traffic before a connection is closed.
    idle_timeout_secs: Option<u64>,
    /// Milliseconds between writes of changed params to the database.
    flush_interval_ms: Option<u64>,
    /// Default param time to live in seconds (0 or absent: forever).
    param_ttl_secs: Option<u64>,
    /// Gesture coalescing interval in milliseconds (0: off).
    gesture_interval_ms: Option<u64>,
    token_file: Option<PathBuf>,
    revoked_file: Option<PathBuf>,
    jwt_secret_file: Option<PathBuf>,
    jwt_public_keys: Option<Vec<PathBuf>>,
    jwt_audience: Option<String>,
    jwt_issuer: Option<String>,
    jwt_replay_window_secs: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_self_signed: Option<bool>,
    tcp_port: Option<u16>,
    quic_port: Option<u16>,
    quic_tls_only: Option<bool>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    max_connections_per_ip: Option<usize>,
    writer_threads: Option<usize>,
    /// Seconds a client has to send its HTTP request head.
    header_read_timeout_secs: Option<u64>,
    /// Seconds a new connection has to send HELLO.
    handshake_timeout_secs: Option<u64>,
    /// Mappings run inside the router (see docs/bridges.md).
    #[serde(default)]
    mapping: Vec<clasp_mapping::MappingSpec>,
    /// Bridges run inside the router (see docs/bridges.md).
    #[serde(default)]
    bridge: Vec<clasp_bridge::host::BridgeSpec>,
    /// The token the in-process bridges and mappings join the router with (needed when
    /// tokens are).
    bridge_token: Option<String>,
    /// The cluster to join (see docs/cluster.md).
    cluster: Option<crate::cluster::ClusterFile>,
    /// Serve the web console at /console (default true).
    console: Option<bool>,
    /// The journal and history (see docs/time.md).
    journal: Option<crate::journal::JournalFile>,
    /// A rules file to run inside the router (see docs/rules.md).
    rules: Option<PathBuf>,
    /// The token the rules join the router with.
    rules_token: Option<String>,
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// The config file's `[[mapping]]` tables, checked, to run inside the router.
pub(crate) fn load_mappings(args: &ServerArgs) -> anyhow::Result<Option<InProcess>> {
    let file = match &args.config {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };
    let rules = args.rules.clone().or(file.rules).map(|path| RulesSpec {
        path,
        token: args.rules_token.clone().or(file.rules_token),
    });
    let path = args.config.clone().unwrap_or_default();
    InProcess::new(file.mapping, file.bridge, file.bridge_token, &path, rules)
}

pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    match directories::ProjectDirs::from("", "", "clasp") {
        Some(d) => Ok(d.data_dir().to_path_buf()),
        None => {
            bail!("cannot find a data directory for this user; pass --data-dir DIR or --memory")
        }
    }
}

pub(crate) fn build_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let file = match &args.config {
        Some(p) => load_file(p)?,
        None => FileConfig::default(),
    };
    let mut c = ServerConfig {
        cluster: crate::cluster::config(&args.cluster, file.cluster)?,
        console: !args.no_console && file.console.unwrap_or(true),
        ..ServerConfig::default()
    };
    let bind = args.bind.or(file.bind).unwrap_or(c.listen.ip());
    let port = args.port.or(file.port).unwrap_or(c.listen.port());
    c.listen = SocketAddr::new(bind, port);
    let memory = args.memory || (args.data_dir.is_none() && file.memory.unwrap_or(false));
    c.data_dir = if memory {
        None
    } else {
        Some(match args.data_dir.clone().or(file.data_dir) {
            Some(d) => d,
            None => default_data_dir()?,
        })
    };
    if let Some(n) = args.name.clone().or(file.name) {
        c.router.name = n;
    }
    if let Some(n) = args.max_sessions.or(file.max_sessions) {
        c.router.max_sessions = n;
    }
    if let Some(n) = file.max_subscriptions {
        c.router.max_subscriptions = n;
    }
    if let Some(n) = file.max_params {
        c.router.max_params = n;
    }
    let r = &mut c.router;
    for (value, field) in [
        (file.max_param_bytes, &mut r.max_param_bytes),
        (file.max_subscription_bytes, &mut r.max_subscription_bytes),
        (file.max_gestures, &mut r.max_gestures),
        (file.max_gesture_bytes, &mut r.max_gesture_bytes),
        (file.max_scheduled_bytes, &mut r.max_scheduled_bytes),
        (file.max_signals_per_session, &mut r.max_signals_per_session),
        (
            file.max_signal_bytes_per_session,
            &mut r.max_signal_bytes_per_session,
        ),
        (file.max_signals, &mut r.max_signals),
        (file.max_signal_bytes, &mut r.max_signal_bytes),
    ] {
        if let Some(v) = value {
            *field = v;
        }
    }
    if let Some(n) = file.max_queued_bytes {
        if n < 64 << 10 {
            bail!("max_queued_bytes must be at least 65536, got {n}");
        }
        c.outbox.max_bytes = n;
        c.outbox.soft_bytes = n / 4;
    }
    if let Some(n) = file.max_payload {
        if n == 0 || n > 65_535 {
            bail!("max_payload must be between 1 and 65535, got {n}");
        }
        c.router.max_payload = n;
    }
    if let Some(s) = file.idle_timeout_secs {
        c.idle_timeout = Duration::from_secs(s.max(1));
        c.ping_interval = c.idle_timeout / 3;
    }
    if let Some(ms) = file.flush_interval_ms {
        c.flush_interval = Duration::from_millis(ms.max(1));
    }
    crate::journal::apply(&args.journal, file.journal, &mut c)?;
    if let Some(s) = args.param_ttl.or(file.param_ttl_secs) {
        c.router.param_ttl = (s > 0).then(|| Duration::from_secs(s));
    }
    if let Some(ms) = file.gesture_interval_ms {
        c.router.gesture_interval = Duration::from_millis(ms);
    }
    let in_data_dir = |name: &str| c.data_dir.as_ref().map(|d| d.join(name));
    let named_token_file = args.token_file.clone().or(file.token_file);
    // A token file named explicitly requires tokens even before it exists; the default one in
    // the data directory does once it exists (`clasp token create` makes it).
    c.auth.require_tokens = named_token_file.is_some();
    c.auth.token_file =
        named_token_file.or_else(|| in_data_dir(clasp_router::server::tokens::TOKEN_FILE));
    c.auth.revoked_file = args
        .revoked_file
        .clone()
        .or(file.revoked_file)
        .or_else(|| in_data_dir("revoked.txt"));
    let secret_file = args.jwt_secret_file.clone().or(file.jwt_secret_file);
    let mut key_files = args.jwt_public_keys.clone();
    if key_files.is_empty() {
        key_files = file.jwt_public_keys.unwrap_or_default();
    }
    if secret_file.is_some() || !key_files.is_empty() {
        let mut jwt = JwtConfig::default();
        if let Some(p) = secret_file {
            let secret = std::fs::read(&p)
                .with_context(|| format!("cannot read the JWT secret {}", p.display()))?;
            let secret = secret.trim_ascii().to_vec();
            if secret.len() < 32 {
                bail!(
                    "the JWT secret in {} is {} bytes; use at least 32",
                    p.display(),
                    secret.len()
                );
            }
            jwt.hs256_secret = Some(secret);
        }
        for p in &key_files {
            jwt.public_keys.push(load_public_key(p)?);
        }
        jwt.audience = args.jwt_audience.clone().or(file.jwt_audience);
        jwt.issuer = args.jwt_issuer.clone().or(file.jwt_issuer);
        if let Some(s) = args.jwt_replay_window.or(file.jwt_replay_window_secs) {
            jwt.replay_window = Duration::from_secs(s);
        }
        c.auth.jwt = Some(jwt);
    }
    if let Some(rate) = args.rate_limit.or(file.rate_limit) {
        c.router.rate_limit = (rate > 0).then(|| RateLimit {
            per_sec: rate,
            burst: args
                .rate_burst
                .or(file.rate_burst)
                .unwrap_or(rate.saturating_mul(2))
                .max(1),
        });
    } else if let (Some(limit), Some(burst)) = (
        c.router.rate_limit.as_mut(),
        args.rate_burst.or(file.rate_burst),
    ) {
        limit.burst = burst.max(1);
    }
    if let Some(n) = args.max_connections_per_ip.or(file.max_connections_per_ip) {
        c.max_connections_per_ip = n;
    }
    if let Some(n) = args.writer_threads.or(file.writer_threads) {
        c.writer_threads = n;
    }
    if let Some(s) = file.header_read_timeout_secs {
        c.header_read_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(s) = file.handshake_timeout_secs {
        c.handshake_timeout = Duration::from_secs(s.max(1));
    }
    let cert = args.tls_cert.clone().or(file.tls_cert);
    let key = args.tls_key.clone().or(file.tls_key);
    c.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(&cert, &key)?),
        (Some(_), None) | (None, Some(_)) => bail!("TLS needs both a certificate and a key"),
        (None, None) if args.tls_self_signed || file.tls_self_signed.unwrap_or(false) => {
            Some(self_signed(c.data_dir.as_deref(), bind)?)
        }
        (None, None) => None,
    };
    if let Some(port) = args.tcp_port.or(file.tcp_port) {
        c.tcp_listen = Some(SocketAddr::new(bind, port));
    }
    if let Some(port) = args.quic_port.or(file.quic_port) {
        let Some(tls) = c.tls.clone() else {
            bail!("QUIC needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed");
        };
        c.quic = Some(QuicListen {
            listen: SocketAddr::new(bind, port),
            tls,
        });
        if args.quic_tls_only || file.quic_tls_only.unwrap_or(false) {
            c.tls = None;
        }
    }
    Ok(c)
}

/// The development certificate: loaded from the data directory if it is there, else made
/// (and saved there, the key readable only by this user).
fn self_signed(data_dir: Option<&Path>, bind: IpAddr) -> anyhow::Result<TlsConfig> {
    let dir = data_dir.map(|d| d.join("tls"));
    if let Some(dir) = &dir {
        let (cert, key) = (dir.join("self-signed.crt"), dir.join("self-signed.key"));
        if cert.exists() && key.exists() {
            let tls = TlsConfig::from_pem_files(&cert, &key)?;
            eprintln!("TLS: self-signed certificate {} (reused)", cert.display());
            return Ok(tls);
        }
    }
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !bind.is_unspecified() && !bind.is_loopback() {
        hosts.push(bind.to_string());
    }
    let (tls, cert_pem, key_pem) = TlsConfig::self_signed(&hosts)?;
    match &dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let cert = dir.join("self-signed.crt");
            std::fs::write(&cert, &cert_pem)
                .with_context(|| format!("cannot write {}", cert.display()))?;
            let key = dir.join("self-signed.key");
            clasp_router::server::tokens::write_private(&key, key_pem.as_bytes())
                .with_context(|| format!("cannot write {}", key.display()))?;
            eprintln!(
                "TLS: new self-signed certificate {} for {}",
                cert.display(),
                hosts.join(", ")
            );
        }
        None => eprintln!(
            "TLS: new self-signed certificate for {} (not saved: --memory)\n{cert_pem}",
            hosts.join(", ")
        ),
    }
    Ok(tls)
}

/// A JWT verification key from a PEM file: Ed25519 (EdDSA) or RSA (RS256).
fn load_public_key(p: &Path) -> anyhow::Result<(Algorithm, DecodingKey)> {
    let pem = std::fs::read(p).with_context(|| format!("cannot read key file {}", p.display()))?;
    if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
        return Ok((Algorithm::EdDSA, k));
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, k));
    }
    bail!(
        "{}: not an Ed25519 or RSA public key in PEM form",
        p.display()
    )
}

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(crate) fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let config = build_config(&args)?;
    let mappings = load_mappings(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let data = config
            .data_dir
            .as_ref()
            .map_or("memory only".to_owned(), |d| d.display().to_string());
        let scheme = if config.tls.is_some() { "wss" } else { "ws" };
        if let Some(t) = config.tls.as_ref().or(config.quic.as_ref().map(|q| &q.tls)) {
            eprintln!("TLS certificate fingerprint (SHA-256): {}", t.fingerprint());
        }
        let server = Server::bind(config).await?;
        let stop = CancellationToken::new();
        let server = match mappings {
            Some(m) => m.start(server, stop.clone()).await?,
            None => server,
        };
        let addr = server.local_addr()?;
        if let Some(tcp) = server.tcp_local_addr() {
            tracing::info!(addr = %tcp, "ready: tcp://{tcp}");
        }
        if let Some(quic) = server.quic_local_addr() {
            tracing::info!(addr = %quic, "ready: quic://{quic}");
        }
        tracing::info!(%addr, state = %data, "ready: {scheme}://{addr}/");
        server.run(shutdown_signal()).await?;
        stop.cancel();
        anyhow::Ok(())
    })
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
