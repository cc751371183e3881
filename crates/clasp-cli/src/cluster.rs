//! The cluster options of `clasp server` and `clasp relay`: several routers as one over NATS
//! (see docs/cluster.md).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use clasp_router::server::ClusterConfig;
use serde::Deserialize;

/// `--cluster` and its companions.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// Join a cluster through this NATS server (nats://HOST:PORT, JetStream on); give it again
    /// for each server of a NATS cluster. Every router with the same NATS and --cluster-name
    /// serves one shared CLASP space.
    #[arg(
        long = "cluster",
        value_name = "URL",
        env = "CLASP_CLUSTER",
        value_delimiter = ','
    )]
    servers: Vec<String>,
    /// The cluster's name (A–Z a–z 0–9 - _) [default: clasp].
    #[arg(long, env = "CLASP_CLUSTER_NAME", value_name = "NAME")]
    cluster_name: Option<String>,
    /// A NATS credentials file (JWT and NKey seed) for the cluster's NATS.
    #[arg(long, env = "CLASP_CLUSTER_CREDS", value_name = "FILE")]
    cluster_creds: Option<PathBuf>,
    /// Copies of the shared params in a NATS cluster (1–5) [default: 1; 3 for a
    /// three-node NATS cluster].
    #[arg(long, env = "CLASP_CLUSTER_REPLICAS", value_name = "N")]
    cluster_replicas: Option<usize>,
}

/// The same in the `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterFile {
    /// NATS URLs.
    #[serde(default)]
    servers: Vec<String>,
    name: Option<String>,
    creds: Option<PathBuf>,
    replicas: Option<usize>,
}

/// The cluster to join, if any (flags win over the file's `[cluster]` table).
pub(crate) fn config(
    args: &ClusterArgs,
    file: Option<ClusterFile>,
) -> anyhow::Result<Option<ClusterConfig>> {
    let file = file.unwrap_or_default();
    let servers = if args.servers.is_empty() {
        file.servers
    } else {
        args.servers.clone()
    };
    if servers.is_empty() {
        if args.cluster_name.is_some() || args.cluster_creds.is_some() {
            bail!("--cluster-name and --cluster-creds need --cluster nats://HOST:PORT");
        }
        return Ok(None);
    }
    for s in &servers {
        if !(s.starts_with("nats://") || s.starts_with("tls://")) {
            bail!("--cluster {s}: give a NATS URL, nats://HOST:PORT (or tls://HOST:PORT)");
        }
    }
    let name = args
        .cluster_name
        .clone()
        .or(file.name)
        .unwrap_or_else(|| "clasp".into());
    if let Err(e) = clasp_cluster::naming::check_cluster_name(&name) {
        bail!("--cluster-name: {e}");
    }
    let replicas = args.cluster_replicas.or(file.replicas).unwrap_or(1);
    if !(1..=5).contains(&replicas) {
        bail!("--cluster-replicas {replicas}: JetStream keeps 1 to 5 copies");
    }
    let mut c = ClusterConfig::new(servers, name);
    c.creds = args.cluster_creds.clone().or(file.creds);
    c.replicas = replicas;
    Ok(Some(c))
}
