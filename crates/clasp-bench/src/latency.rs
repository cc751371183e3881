//! `latency`: one hop, publisher → router → subscriber, one SET in flight at a time; with
//! `--load-subscribers N`, measured while a background fan-out load runs (see [`crate::load`]).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMsg;

use crate::conn::{Target, Ws, close, connect, seq_value, set_frame, set_info};
use crate::load::{Load, LoadFigures};
use crate::output::{Out, r1};

/// The address the publisher writes and the subscriber subscribes to (exactly).
const ADDR: &str = "/bench/hop";
/// How long one SET may take to arrive before it counts as lost.
const SAMPLE_WAIT: Duration = Duration::from_secs(2);
/// Lost SETs tolerated before the run is abandoned.
const MAX_LOST: usize = 20;
/// How long a background load runs before the warm-up samples start.
const LOAD_SETTLE: Duration = Duration::from_millis(500);

/// Options of `latency`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LatencyOpts {
    /// Timed samples.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) samples: usize,
    /// Untimed samples sent first.
    #[arg(long, default_value_t = 200)]
    pub(crate) warmup: usize,
    /// Value size in bytes: 8 or less sends an f64, more a string of that many bytes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=60_000))]
    pub(crate) size: u16,
    /// Background load: subscribers on /bench/load (0: an idle run).
    #[arg(long, default_value_t = 0)]
    pub(crate) load_subscribers: usize,
    /// Background load: deliveries per second to all load subscribers together.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) load_rate: u64,
    /// Put the background load on this other router instead (127.0.0.1 only): the probe then
    /// measures the machine's noise floor under that load, with a router doing no load work.
    #[arg(long)]
    pub(crate) load_url: Option<String>,
    /// Connect the subscriber to this router instead (another router of a cluster: the
    /// cross-router hop).
    #[arg(long)]
    pub(crate) sub_url: Option<String>,
    /// Also write every timed sample to this file, one latency in microseconds per line, in
    /// the order sent (to see how the slow samples are spread over time).
    #[arg(long)]
    pub(crate) raw: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct LatencyResult {
    samples: usize,
    warmup: usize,
    size: u16,
    /// The publisher's SET frame, bytes.
    sent_frame_bytes: usize,
    /// The SET frame the subscriber received (the router adds the revision), bytes.
    delivered_frame_bytes: usize,
    p50_us: f64,
    p95_us: f64,
    p99_us: f64,
    max_us: f64,
    min_us: f64,
    mean_us: f64,
    lost: usize,
    /// The background load, in a loaded run.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    load: Option<LoadFigures>,
}

/// One SET seen by the subscriber.
struct Delivery {
    seq: u64,
    at: Instant,
    bytes: usize,
}

/// Reads the subscriber's socket; reports each SET on [`ADDR`] as soon as it is decoded.
async fn subscriber(
    mut ws: Ws,
    tx: mpsc::UnboundedSender<Delivery>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            next = ws.next() => match next {
                Some(Ok(WsMsg::Binary(b))) => {
                    let at = Instant::now();
                    let Some(set) = set_info(&b) else { continue };
                    if set.address != ADDR {
                        continue;
                    }
                    let Some(seq) = set.seq else { continue };
                    let d = Delivery { seq, at, bytes: b.len() };
                    if tx.send(d).is_err() {
                        break;
                    }
                }
                Some(Ok(WsMsg::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    close(ws).await;
}

/// The sample at percentile `p` (nearest rank) of sorted `v`, in µs.
pub(crate) fn percentile_us(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1e6
}

/// Runs the workload and prints its result.
pub(crate) async fn run(target: &Target, o: &LatencyOpts, out: &Out) -> anyhow::Result<()> {
    let size = usize::from(o.size);
    let sub_target = match &o.sub_url {
        Some(u) => Target::parse(u).context("--sub-url")?,
        None => target.clone(),
    };
    let sub = connect(&sub_target, "bench-sub", Some(ADDR))
        .await
        .context("subscriber setup")?;
    let publisher = connect(target, "bench-pub", None)
        .await
        .context("publisher setup")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let sub_task = tokio::spawn(subscriber(sub, tx, stop_rx));
    // The publisher reads and discards whatever comes back (the reference ACKs every SET).
    let (mut sink, mut stream) = publisher.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    // The load runs on its own runtime (its own threads), so the probe's subscriber never
    // waits in a task queue behind the load's 100 subscribers: what the probe measures is the
    // router under load, not this tool's scheduler.
    let load_rt = if o.load_subscribers > 0 {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("bench-load")
                .enable_all()
                .build()
                .context("load runtime")?,
        )
    } else {
        None
    };
    let load = match &load_rt {
        Some(rt) => {
            let t = match &o.load_url {
                Some(u) => Target::parse(u).context("--load-url")?,
                None => target.clone(),
            };
            let (n, rate) = (o.load_subscribers, o.load_rate);
            let load = rt
                .spawn(async move { Load::start(&t, n, rate).await })
                .await
                .context("load setup task")??;
            tokio::time::sleep(LOAD_SETTLE).await;
            Some(load)
        }
        None => None,
    };

    let total = o.warmup + o.samples;
    let frames = (0..total)
        .map(|i| set_frame(ADDR, seq_value(i as u64, size)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sent_frame_bytes = frames.first().map_or(0, |f| f.len());
    let mut delivered_frame_bytes = 0;
    let mut lat = Vec::with_capacity(o.samples);
    let mut lost = 0;
    let mut timed_from = load.as_ref().map(Load::mark);
    for (seq, frame) in frames.into_iter().enumerate() {
        if seq == o.warmup {
            timed_from = load.as_ref().map(Load::mark);
        }
        let t0 = Instant::now();
        sink.send(WsMsg::Binary(frame))
            .await
            .context("publisher send failed")?;
        let deadline = tokio::time::Instant::from_std(t0 + SAMPLE_WAIT);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(d)) if d.seq == seq as u64 => {
                    if seq >= o.warmup {
                        lat.push(d.at - t0);
                    }
                    delivered_frame_bytes = d.bytes;
                    break;
                }
                // A late delivery of an earlier, already counted-as-lost SET.
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the subscriber's connection ended during the run"),
                Err(_) => {
                    lost += 1;
                    if lost > MAX_LOST {
                        bail!(
                            "{lost} SETs not delivered within {SAMPLE_WAIT:?} each; giving up at sample {seq}"
                        );
                    }
                    break;
                }
            }
        }
    }

    let load = match (load, timed_from, &load_rt) {
        (Some(load), Some(from), Some(rt)) => {
            let to = load.mark();
            Some(
                rt.spawn(load.finish(from, to))
                    .await
                    .context("load finish task")??,
            )
        }
        _ => None,
    };
    if let Some(rt) = load_rt {
        rt.shutdown_background();
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), sub_task).await;
    drain.abort();

    if let Some(path) = &o.raw {
        let text: String = lat
            .iter()
            .map(|d| format!("{:.1}\n", d.as_secs_f64() * 1e6))
            .collect();
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the raw samples to {}", path.display()))?;
    }
    lat.sort_unstable();
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(Duration::as_secs_f64).sum::<f64>() / lat.len() as f64 * 1e6
    };
    let r = LatencyResult {
        samples: lat.len(),
        warmup: o.warmup,
        size: o.size,
        sent_frame_bytes,
        delivered_frame_bytes,
        p50_us: r1(percentile_us(&lat, 0.50)),
        p95_us: r1(percentile_us(&lat, 0.95)),
        p99_us: r1(percentile_us(&lat, 0.99)),
        max_us: r1(percentile_us(&lat, 1.0)),
        min_us: r1(lat.first().map_or(0.0, |d| d.as_secs_f64() * 1e6)),
        mean_us: r1(mean),
        lost,
        load,
    };
    let (workload, during) = match o.load_subscribers {
        0 => ("latency", String::new()),
        n => (
            "latency_loaded",
            format!(
                ", under load ({n} subscribers, {} deliveries/s)",
                o.load_rate
            ),
        ),
    };
    out.result(
        workload,
        &format!(
            "{workload}: single hop SET {ADDR}, {} samples ({} B frame){during}",
            o.samples, sent_frame_bytes
        ),
        &r,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&v, 0.50), 50.0);
        assert_eq!(percentile_us(&v, 0.99), 99.0);
        assert_eq!(percentile_us(&v, 1.0), 100.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
