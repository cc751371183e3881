//! `clasp discover`: find routers on the LAN (mDNS and UDP broadcast) and through a rendezvous
//! service.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use clasp_discovery::{Device, Source, features_to_letters};
use clasp_rendezvous::DiscoverQuery;
use clasp_rendezvous::client::RendezvousClient;

/// Options of `clasp discover`.
#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// Search the LAN: mDNS `_clasp._tcp.local.` and a UDP broadcast (the default when no
    /// --rendezvous is given).
    #[arg(long)]
    lan: bool,
    /// Ask this rendezvous service, e.g. https://relay.example.com (its /api/v1/discover).
    #[arg(long, env = "CLASP_RENDEZVOUS_URL")]
    rendezvous: Option<String>,
    /// Only devices with this tag (rendezvous).
    #[arg(long)]
    tag: Option<String>,
    /// Only devices with this feature (rendezvous).
    #[arg(long)]
    feature: Option<String>,
    /// Most devices to return from the rendezvous service.
    #[arg(long)]
    limit: Option<u32>,
    /// Trust this PEM certificate (or CA) for an https:// rendezvous service.
    #[arg(long)]
    ca_cert: Option<std::path::PathBuf>,
    /// Token for a rendezvous service that requires one.
    #[arg(long, env = "CLASP_TOKEN")]
    token: Option<String>,
    /// Seconds to listen for LAN answers.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    /// UDP port of the broadcast scan.
    #[arg(long, default_value_t = clasp_discovery::DEFAULT_DISCOVERY_PORT)]
    port: u16,
    /// Print JSON (one array) instead of a table.
    #[arg(long)]
    json: bool,
}

/// One line of output, whichever source found it.
#[derive(Debug, serde::Serialize)]
struct Found {
    source: &'static str,
    id: String,
    name: String,
    url: Option<String>,
    features: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    extra: serde_json::Map<String, serde_json::Value>,
}

fn from_lan(d: Device) -> Found {
    let letters = features_to_letters(d.features);
    Found {
        source: match d.source {
            Source::Mdns => "mdns",
            Source::Broadcast => "broadcast",
            Source::Rendezvous => "rendezvous",
        },
        id: d.id,
        name: d.name,
        url: Some(d.ws_url),
        features: letters.chars().map(|c| c.to_string()).collect(),
        addresses: d.addresses.iter().map(ToString::to_string).collect(),
        extra: d
            .txt
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    }
}

pub(crate) fn run(args: DiscoverArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(discover(args))
}

async fn discover(args: DiscoverArgs) -> anyhow::Result<()> {
    if !args.timeout.is_finite() || args.timeout <= 0.0 || args.timeout > 3600.0 {
        anyhow::bail!("--timeout must be between 0 and 3600 seconds");
    }
    let lan = args.lan || args.rendezvous.is_none();
    let mut found = Vec::new();
    if lan {
        if !args.json {
            eprintln!(
                "searching the LAN for {} s (mDNS and UDP broadcast)...",
                args.timeout
            );
        }
        let timeout = Duration::from_secs_f64(args.timeout);
        let devices = clasp_discovery::discover_lan_on(args.port, timeout)
            .await
            .context("LAN discovery failed")?;
        found.extend(devices.into_iter().map(from_lan));
    }
    if let Some(url) = &args.rendezvous {
        found.extend(rendezvous(url, &args).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!("no routers found");
        return Ok(());
    }
    for f in &found {
        println!(
            "{:<10} {:<24} {:<40} features={} id={}",
            f.source,
            f.name,
            f.url.as_deref().unwrap_or("-"),
            f.features.join(","),
            f.id
        );
    }
    Ok(())
}

async fn rendezvous(url: &str, args: &DiscoverArgs) -> anyhow::Result<Vec<Found>> {
    let mut client = match &args.ca_cert {
        Some(path) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            RendezvousClient::with_root_certificates_pem(url, &pem)
        }
        None => RendezvousClient::new(url),
    }
    .with_context(|| format!("cannot use the rendezvous service {url}"))?;
    if let Some(t) = &args.token {
        client = client.with_token(t.clone());
    }
    let query = DiscoverQuery {
        tag: args.tag.clone(),
        feature: args.feature.clone(),
        limit: args.limit.map(|l| l as usize),
    };
    let devices = client
        .discover(&query)
        .await
        .with_context(|| format!("rendezvous query to {url} failed"))?;
    Ok(devices
        .into_iter()
        .map(|d| {
            let url = ["ws", "wss", "quic", "tcp"]
                .iter()
                .find_map(|k| d.endpoints.get(*k).cloned())
                .or_else(|| d.endpoints.values().next().cloned());
            let mut extra = serde_json::Map::new();
            extra.insert("endpoints".into(), serde_json::json!(d.endpoints));
            if !d.tags.is_empty() {
                extra.insert("tags".into(), serde_json::json!(d.tags));
            }
            if !d.metadata.is_empty() {
                extra.insert("metadata".into(), serde_json::json!(d.metadata));
            }
            extra.insert("lastSeen".into(), serde_json::json!(d.last_seen));
            Found {
                source: "rendezvous",
                id: d.id,
                name: d.name,
                url,
                features: d.features,
                addresses: Vec::new(),
                extra,
            }
        })
        .collect())
}
