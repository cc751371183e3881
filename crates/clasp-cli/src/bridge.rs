//! `clasp bridge --config FILE`: runs the mappings of a configuration file against a router
//! (the bridges themselves join as they are built: `[[bridge]]` tables).
//!
//! ```toml
//! router = "ws://127.0.0.1:7330"   # or --router; default ws://127.0.0.1:7330
//! token = "cpsk_..."               # or --token / CLASP_TOKEN
//!
//! [[mapping]]
//! from = "/midi/{dev}/ch/1/cc/{n}"
//! to = "/mixer/{dev}/{n}/volume"
//! transform = [{ type = "scale", from_min = 0, from_max = 127, to_min = 0.0, to_max = 1.0 }]
//! both_ways = true
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use clasp_bridge::RouterLink;
use clasp_bridge::mapper::{Mapper, MapperStats};
use clasp_mapping::{Engine, MappingSpec, describe};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use clasp_router::server::{Server, write_counter, write_gauge};

use crate::server::{LogFormat, init_logging};

/// Options of `clasp bridge`.
#[derive(Debug, Args)]
pub(crate) struct BridgeArgs {
    /// The configuration file: `[[mapping]]` tables (see docs/bridges.md).
    #[arg(long, short)]
    config: PathBuf,
    /// The router's URL (ws://, wss://, tcp://, quic://); default: the file's `router`, else
    /// ws://127.0.0.1:7330.
    #[arg(long)]
    router: Option<String>,
    /// The token to join the router with; default: the file's `token`.
    #[arg(long, env = "CLASP_TOKEN")]
    token: Option<String>,
    /// Seconds between status lines (0: none).
    #[arg(long, default_value_t = 10)]
    status_every: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeFile {
    router: Option<String>,
    token: Option<String>,
    #[serde(default)]
    mapping: Vec<MappingSpec>,
}

pub(crate) fn run(args: BridgeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let file: BridgeFile = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not a valid bridge configuration",
            args.config.display()
        )
    })?;
    if file.mapping.is_empty() {
        bail!(
            "{} has no [[mapping]] table: nothing to run",
            args.config.display()
        );
    }
    let engine = Engine::new(file.mapping)
        .map_err(|e| anyhow::anyhow!("{}: {}", args.config.display(), describe(&e)))?;
    let url = args
        .router
        .or(file.router)
        .unwrap_or_else(|| "ws://127.0.0.1:7330".into());
    let token = args.token.or(file.token);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(bridge(url, token, engine, args.status_every))
}

async fn bridge(
    url: String,
    token: Option<String>,
    engine: Engine,
    status_every: u64,
) -> anyhow::Result<()> {
    let rules = engine.len();
    let link = RouterLink::connect(&url, "clasp bridge", token.as_deref()).await?;
    let watch = link.clone();
    let mapper = Mapper::start(link, engine).await?;
    println!("clasp bridge: {rules} mapping(s) running against {url}");
    let stats = Arc::new(MapperStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(mapper.run(stats.clone(), stop.clone()));
    let status = {
        let (stats, stop) = (stats.clone(), stop.clone());
        async move {
            if status_every == 0 {
                return stop.cancelled().await;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(status_every));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let (updates, writes, errors) = stats.snapshot();
                let link = if watch.is_connected() {
                    "connected"
                } else {
                    "reconnecting"
                };
                println!(
                    "mappings: {rules} rules, router {link}, {updates} updates in, {writes} writes out, {errors} errors"
                );
            }
        }
    };
    let status = tokio::spawn(status);
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C")?,
        _ = stop.cancelled() => {}
    }
    stop.cancel();
    let _ = status.await;
    task.await.context("the mapper task failed")??;
    let (updates, writes, errors) = stats.snapshot();
    println!("clasp bridge: stopped ({updates} updates in, {writes} writes out, {errors} errors)");
    Ok(())
}

/// Mappings from `clasp server` / `clasp relay`'s config file, run inside the router through
/// its typed door (the same mapper as `clasp bridge`, on an in-process link).
#[derive(Debug)]
pub(crate) struct InProcess {
    engine: Engine,
    token: Option<String>,
}

impl InProcess {
    /// Checks `specs` (from `path`); `None` when there are none.
    pub(crate) fn new(
        specs: Vec<MappingSpec>,
        token: Option<String>,
        path: &std::path::Path,
    ) -> anyhow::Result<Option<InProcess>> {
        if specs.is_empty() {
            return Ok(None);
        }
        let engine = Engine::new(specs)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), describe(&e)))?;
        Ok(Some(InProcess { engine, token }))
    }

    /// Starts the mappings on `server` (until `stop`), and adds their counters to `/metrics`.
    pub(crate) async fn start(
        self,
        server: Server,
        stop: CancellationToken,
    ) -> anyhow::Result<Server> {
        let rules = self.engine.len();
        let link = RouterLink::local(&server.handle(), self.token.as_deref())
            .context("the in-process mappings cannot join the router (set bridge_token)")?;
        let mapper = Mapper::start(link, self.engine).await?;
        let stats = Arc::new(MapperStats::default());
        let run = mapper.run(stats.clone(), stop);
        tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "the in-process mappings stopped");
            }
        });
        tracing::info!(rules, "mappings running in-process");
        Ok(server.with_metrics(move |o| {
            let (updates, writes, errors) = stats.snapshot();
            write_gauge(
                o,
                "clasp_mapping_rules",
                "Mappings running in-process.",
                rules as u64,
            );
            write_counter(
                o,
                "clasp_mapping_updates_total",
                "Updates the in-process mappings received.",
                updates,
            );
            write_counter(
                o,
                "clasp_mapping_writes_total",
                "Writes the in-process mappings made.",
                writes,
            );
            write_counter(
                o,
                "clasp_mapping_errors_total",
                "Writes of the in-process mappings that failed.",
                errors,
            );
        }))
    }
}
