//! `memory`: the router's resident memory per idle connection.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::conn::{Fleet, Target};
use crate::fanout::open_error;
use crate::output::{Out, r1};

/// Options of `memory`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MemoryOpts {
    /// Process id of the router (its VmRSS is read from /proc/PID/status).
    #[arg(long)]
    pub(crate) pid: u32,
    /// Connection counts to measure, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub(crate) connections: Vec<usize>,
    /// The router's Prometheus endpoint (e.g. `http://127.0.0.1:7330/metrics`); when given, its
    /// `clasp_sessions` gauge is reported next to the count we opened.
    #[arg(long)]
    pub(crate) metrics_url: Option<String>,
    /// Seconds to wait between opening the connections and reading VmRSS.
    #[arg(long, default_value_t = 2)]
    pub(crate) settle_secs: u64,
    /// Connections set up at once.
    #[arg(long, default_value_t = 50)]
    pub(crate) concurrency: usize,
}

#[derive(Debug, Serialize)]
struct MemoryResult {
    connections: usize,
    rss_before_kb: u64,
    rss_after_kb: u64,
    kb_per_connection: f64,
    /// VmRSS one second after all connections were closed.
    rss_after_close_kb: u64,
    /// Time to open and set up all connections.
    setup_ms: f64,
    /// The router's own session count, when `--metrics-url` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    router_sessions: Option<u64>,
}

/// VmRSS of `pid` in kB.
/// The resident memory of process `pid` in KB (VmRSS from /proc).
pub(crate) fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path} (is the router running?)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS line in {path}"))
}

/// Reads the `clasp_sessions` gauge from a Prometheus text endpoint on 127.0.0.1.
async fn router_sessions(url: &str) -> anyhow::Result<u64> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid metrics URL {url:?}"))?;
    if uri.scheme_str() != Some("http") || !matches!(uri.host(), Some("127.0.0.1" | "localhost")) {
        bail!("the metrics URL must be http://127.0.0.1:PORT/..., got {url:?}");
    }
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let fetch = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut body = Vec::new();
        s.take(4 << 20).read_to_end(&mut body).await?;
        anyhow::Ok(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .context("metrics request timed out")?
        .with_context(|| format!("cannot fetch {url}"))?;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix("clasp_sessions "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .with_context(|| format!("no clasp_sessions gauge at {url}"))
}

/// Runs the workload for each connection count and prints the results.
pub(crate) async fn run(target: &Target, o: &MemoryOpts, out: &Out) -> anyhow::Result<()> {
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let most = o.connections.iter().copied().max().unwrap_or(0) as u64;
        if soft < most + 64 {
            out.human(&format!(
                "warning: open-file limit is {soft}, below the {most} connections asked for"
            ));
        }
    }
    for &n in o.connections.iter().filter(|&&n| n > 0) {
        let before = rss_kb(o.pid)?;
        let setup = Instant::now();
        let (fleet, opened) =
            Fleet::open(target, n, o.concurrency, None, |_| |_: &Bytes, _| {}).await;
        if let Err(f) = opened {
            fleet.close().await;
            return Err(open_error(f, n).context(format!("memory with {n} connections")));
        }
        let setup_ms = setup.elapsed().as_secs_f64() * 1e3;
        tokio::time::sleep(Duration::from_secs(o.settle_secs)).await;
        let after = rss_kb(o.pid)?;
        let sessions = match &o.metrics_url {
            Some(url) => Some(router_sessions(url).await?),
            None => None,
        };
        fleet.close().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after_close = rss_kb(o.pid)?;
        let r = MemoryResult {
            connections: n,
            rss_before_kb: before,
            rss_after_kb: after,
            kb_per_connection: ((after as f64 - before as f64) / n as f64 * 100.0).round() / 100.0,
            rss_after_close_kb: after_close,
            setup_ms: r1(setup_ms),
            router_sessions: sessions,
        };
        out.result(
            "memory",
            &format!("memory: {n} idle connections (router pid {})", o.pid),
            &r,
        );
    }
    Ok(())
}
