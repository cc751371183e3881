//! `transports`: the same single hop (publisher → router → subscriber, one SET in flight at a
//! time) over each transport the router serves: WebSocket, raw TCP and QUIC, with
//! `clasp-client` at both ends. The figures compare the transports, client included; the
//! `latency` workload (raw frames) is the one that isolates the router.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clasp_client::{Client, Subscription};
use clasp_proto::Value;
use serde::Serialize;

use crate::conn::{Target, seq_value};
use crate::latency::percentile_us;
use crate::output::{Out, r1};

/// The address written and subscribed to.
const ADDR: &str = "/bench/transport";
/// How long one SET may take to arrive.
const SAMPLE_WAIT: Duration = Duration::from_secs(2);

/// Options of `transports`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TransportOpts {
    /// The router's raw TCP listener, e.g. 127.0.0.1:7332 (127.0.0.1 only).
    #[arg(long)]
    pub(crate) tcp: Option<String>,
    /// The router's QUIC listener, e.g. 127.0.0.1:7331 (127.0.0.1 only).
    #[arg(long)]
    pub(crate) quic: Option<String>,
    /// PEM certificate to trust for QUIC (e.g. `<data dir>/tls/self-signed.crt` of
    /// `clasp server --tls-self-signed`).
    #[arg(long)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Timed samples per transport.
    #[arg(long, default_value_t = 5000)]
    pub(crate) samples: usize,
    /// Untimed samples sent first.
    #[arg(long, default_value_t = 200)]
    pub(crate) warmup: usize,
    /// Value size in bytes: 8 or less sends an f64, more a string of that many bytes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=60_000))]
    pub(crate) size: u16,
}

#[derive(Debug, Serialize)]
struct TransportResult {
    transport: &'static str,
    samples: usize,
    size: u16,
    p50_us: f64,
    p95_us: f64,
    p99_us: f64,
    max_us: f64,
    mean_us: f64,
}

/// `host:port` checked to be on 127.0.0.1.
fn loopback(addr: &str, flag: &str) -> anyhow::Result<String> {
    let a: std::net::SocketAddr = addr
        .replace("localhost", "127.0.0.1")
        .parse()
        .with_context(|| format!("{flag}: expected 127.0.0.1:PORT, got {addr:?}"))?;
    if !a.ip().is_loopback() {
        bail!("{flag}: the benchmark only connects to 127.0.0.1, got {addr:?}");
    }
    Ok(a.to_string())
}

/// The number a value written by [`seq_value`] carries.
fn seq_of(v: &Value) -> Option<u64> {
    match v {
        Value::Float(f) if *f >= 0.0 => Some(*f as u64),
        Value::String(s) => s.split(':').next()?.parse().ok(),
        _ => None,
    }
}

async fn client(url: &str, name: &str, ca: Option<&[u8]>) -> anyhow::Result<Client> {
    let mut b = Client::builder(url).name(name);
    if let Some(pem) = ca {
        b = b.add_root_certificate_pem(pem.to_vec()).only_added_roots();
    }
    b.connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// Waits until the subscription delivers: writes a marker until it comes back.
async fn subscribed(publisher: &Client, sub: &mut Subscription) -> anyhow::Result<()> {
    let marker = Value::Float(-1.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        publisher.set(ADDR, marker.clone()).await?;
        if let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await
            && u.value == marker
        {
            return Ok(());
        }
    }
    bail!("the subscription never delivered")
}

/// One transport's single hop.
async fn hop(
    transport: &'static str,
    url: &str,
    ca: Option<&[u8]>,
    o: &TransportOpts,
) -> anyhow::Result<TransportResult> {
    let size = usize::from(o.size);
    let sub_client = client(url, "bench-sub", ca).await?;
    let publisher = client(url, "bench-pub", ca).await?;
    let mut sub = sub_client.subscribe(ADDR).await?;
    subscribed(&publisher, &mut sub).await?;
    let mut lat = Vec::with_capacity(o.samples);
    for seq in 0..(o.warmup + o.samples) as u64 {
        let t0 = Instant::now();
        publisher
            .set(ADDR, seq_value(seq, size))
            .await
            .context("publisher send failed")?;
        loop {
            let u = tokio::time::timeout(SAMPLE_WAIT, sub.recv())
                .await
                .map_err(|_| anyhow::anyhow!("SET {seq} not delivered within {SAMPLE_WAIT:?}"))?
                .context("the subscription ended")?;
            if seq_of(&u.value) == Some(seq) {
                if seq >= o.warmup as u64 {
                    lat.push(t0.elapsed());
                }
                break;
            }
        }
    }
    publisher.close().await;
    sub_client.close().await;
    lat.sort_unstable();
    let mean = lat.iter().map(Duration::as_secs_f64).sum::<f64>() / lat.len().max(1) as f64;
    Ok(TransportResult {
        transport,
        samples: lat.len(),
        size: o.size,
        p50_us: r1(percentile_us(&lat, 0.50)),
        p95_us: r1(percentile_us(&lat, 0.95)),
        p99_us: r1(percentile_us(&lat, 0.99)),
        max_us: r1(percentile_us(&lat, 1.0)),
        mean_us: r1(mean * 1e6),
    })
}

/// Runs the hop over the WebSocket of `target`, then over TCP and QUIC if given.
pub(crate) async fn run(target: &Target, o: &TransportOpts, out: &Out) -> anyhow::Result<()> {
    let ca = match &o.ca_cert {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read --ca-cert {}", p.display()))?,
        ),
        None => None,
    };
    let mut runs: Vec<(&'static str, String)> = vec![("websocket", target.url().to_owned())];
    if let Some(a) = &o.tcp {
        runs.push(("tcp", format!("tcp://{}", loopback(a, "--tcp")?)));
    }
    if let Some(a) = &o.quic {
        runs.push(("quic", format!("quic://{}", loopback(a, "--quic")?)));
    }
    for (transport, url) in runs {
        let ca = (transport == "quic").then_some(ca.as_deref()).flatten();
        let r = hop(transport, &url, ca, o)
            .await
            .with_context(|| format!("{transport} ({url})"))?;
        out.result(
            "transport_latency",
            &format!(
                "transport_latency {transport}: single hop SET {ADDR} with clasp-client, {} samples, {} B value",
                r.samples, o.size
            ),
            &r,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_read_back() {
        assert_eq!(seq_of(&seq_value(42, 8)), Some(42));
        assert_eq!(seq_of(&seq_value(42, 64)), Some(42));
        assert_eq!(seq_of(&Value::Float(-1.0)), None);
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(loopback("127.0.0.1:7332", "--tcp").is_ok());
        assert!(loopback("localhost:7332", "--tcp").is_ok());
        assert!(loopback("10.0.0.1:7332", "--tcp").is_err());
    }
}
