//! `commit`: QoS Commit writes, whose ACK means "on disk", against a router with a database.
//!
//! For each number of concurrent writers, every writer loops `set_durable` (one write in flight
//! per writer) on its own address for the given time; the result is the acknowledged writes
//! per second and the write-to-ACK latency. One writer shows the cost of one fsync per write;
//! more writers show group commit (writes arriving during a sync share the next one). The same
//! single-writer loop with QoS Confirm (ACK before the disk) is measured for comparison.

use std::time::{Duration, Instant};

use anyhow::Context;
use clasp_client::Client;
use serde::Serialize;

use crate::conn::Target;
use crate::latency::percentile_us;
use crate::output::{Out, r1};

/// Options of `commit`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CommitOpts {
    /// Numbers of concurrent writers to measure, e.g. 1,8,64.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub(crate) writers: Vec<usize>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
    /// Value size in bytes (a string value).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=60_000))]
    pub(crate) size: u16,
}

#[derive(Debug, Serialize)]
struct CommitResult {
    qos: &'static str,
    writers: usize,
    size: u16,
    writes: usize,
    writes_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

async fn client(url: &str, name: &str) -> anyhow::Result<Client> {
    Client::builder(url)
        .name(name)
        .connect()
        .await
        .with_context(|| format!("connecting {name} to {url}"))
}

/// One writer's loop: (latencies) until `until`.
async fn write_loop(
    c: Client,
    address: String,
    value: String,
    durable: bool,
    until: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut lat = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        if durable {
            c.set_durable(&address, value.as_str()).await?;
        } else {
            c.set_confirmed(&address, value.as_str()).await?;
        }
        lat.push(t.elapsed());
    }
    c.close().await;
    Ok(lat)
}

async fn measure(
    target: &Target,
    writers: usize,
    o: &CommitOpts,
    durable: bool,
    out: &Out,
) -> anyhow::Result<()> {
    let mut clients = Vec::with_capacity(writers);
    for w in 0..writers {
        clients.push(client(target.url(), &format!("bench-commit-{w}")).await?);
    }
    let value = "v".repeat(usize::from(o.size));
    let start = Instant::now();
    let until = start + Duration::from_secs(o.seconds);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, c)| {
            tokio::spawn(write_loop(
                c,
                format!("/bench/commit/{w}"),
                value.clone(),
                durable,
                until,
            ))
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.context("writer task")??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let r = CommitResult {
        qos: if durable { "commit" } else { "confirm" },
        writers,
        size: o.size,
        writes: lat.len(),
        writes_per_sec: r1(lat.len() as f64 / elapsed),
        p50_us: r1(percentile_us(&lat, 0.50)),
        p99_us: r1(percentile_us(&lat, 0.99)),
        max_us: r1(lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e6)),
    };
    let title = format!("commit: QoS {}, {} writer(s)", r.qos, r.writers);
    out.result("commit", &title, &r);
    Ok(())
}

/// Runs the workload and prints its results.
pub(crate) async fn run(target: &Target, o: &CommitOpts, out: &Out) -> anyhow::Result<()> {
    anyhow::ensure!(o.seconds > 0, "--seconds must be at least 1");
    measure(target, 1, o, false, out).await?;
    for &w in &o.writers {
        anyhow::ensure!(w > 0, "--writers: each count must be at least 1");
        measure(target, w, o, true, out).await?;
    }
    Ok(())
}
