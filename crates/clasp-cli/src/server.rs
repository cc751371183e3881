//! `clasp server`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use clasp_router::server::{Server, ServerConfig};
use serde::Deserialize;

/// Options of `clasp server`. Each has an environment variable, and all but `--config` can also
/// be set in the TOML file given with `--config`; flags win over the file.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "CLASP_BIND")]
    bind: Option<IpAddr>,
    /// Port for WebSocket, /healthz and /metrics [default: 7330].
    #[arg(long, short, env = "CLASP_PORT")]
    port: Option<u16>,
    /// Directory of the state database [default: the user's data directory, e.g.
    /// ~/.local/share/clasp].
    #[arg(long, env = "CLASP_DATA_DIR", conflicts_with = "memory")]
    data_dir: Option<PathBuf>,
    /// Keep state in memory only: nothing is written to disk, nothing survives a restart.
    #[arg(long, env = "CLASP_MEMORY")]
    memory: bool,
    /// Router name sent to clients in WELCOME [default: "CLASP Router"].
    #[arg(long, env = "CLASP_NAME")]
    name: Option<String>,
    /// Maximum concurrent sessions [default: 10000].
    #[arg(long, env = "CLASP_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// TOML configuration file (keys as the long flags, with underscores).
    #[arg(long, env = "CLASP_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CLASP_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
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
    max_payload: Option<usize>,
    /// Seconds without inbound traffic before a connection is closed.
    idle_timeout_secs: Option<u64>,
    /// Milliseconds between writes of changed params to the database.
    flush_interval_ms: Option<u64>,
    /// Default param time to live in seconds (0 or absent: forever).
    param_ttl_secs: Option<u64>,
    /// Gesture coalescing interval in milliseconds (0: off).
    gesture_interval_ms: Option<u64>,
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    match directories::ProjectDirs::from("", "", "clasp") {
        Some(d) => Ok(d.data_dir().to_path_buf()),
        None => {
            bail!("cannot find a data directory for this user; pass --data-dir DIR or --memory")
        }
    }
}

fn build_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let file = match &args.config {
        Some(p) => load_file(p)?,
        None => FileConfig::default(),
    };
    let mut c = ServerConfig::default();
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
    if let Some(s) = file.param_ttl_secs {
        c.router.param_ttl = (s > 0).then(|| Duration::from_secs(s));
    }
    if let Some(ms) = file.gesture_interval_ms {
        c.router.gesture_interval = Duration::from_millis(ms);
    }
    Ok(c)
}

fn init_logging(format: LogFormat) {
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let data = config
            .data_dir
            .as_ref()
            .map_or("memory only".to_owned(), |d| d.display().to_string());
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        tracing::info!(%addr, state = %data, "ready: ws://{addr}/");
        server.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
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
