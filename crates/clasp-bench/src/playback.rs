//! `playback`: the timing error of `clasp play` at a steady cue rate (default 1,000 cues/s).
//!
//! A recording of N SETs, one every 1/rate s, is generated in memory and played onto the router
//! with the player `clasp play` uses (`clasp_client::recording::play`, on a single-threaded
//! runtime of its own, as in `clasp play`). Lateness is measured twice: by the player (the
//! instant a cue was handed to the client minus its due instant) and by a subscriber on the
//! same machine (the instant the SET arrived minus the cue's due instant: the player, the
//! client, the router and the way back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clasp_client::recording::{
    CancellationToken, Entry, EntryKind, Header, Lateness, PlayOptions, Recording, play,
};
use clasp_client::{Client, ReconnectPolicy, SubscribeOptions, Value};
use serde::Serialize;

use crate::conn::Target;
use crate::output::{Out, r1};

/// Addresses the cues cycle through.
const ADDRESSES: u64 = 16;
/// How long the subscriber waits for the last cues after the playback.
const DRAIN: Duration = Duration::from_secs(5);

/// Options of `playback`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PlaybackOpts {
    /// Cues in the recording.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) cues: u64,
    /// Cues per second.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u32,
    /// When the player leaves the timer for its precise wait, µs before each due instant (as
    /// `clasp play --precise-us`; 0: the timer alone).
    #[arg(long, default_value_t = 2000)]
    pub(crate) precise_us: u64,
}

#[derive(Debug, Serialize)]
struct PlaybackResult {
    machine: String,
    cues: u64,
    rate: u32,
    precise_us: u64,
    player_p50_us: f64,
    player_p99_us: f64,
    player_max_us: f64,
    player_late_over_1ms: u64,
    subscriber_p50_us: f64,
    subscriber_p99_us: f64,
    subscriber_max_us: f64,
    subscriber_late_over_1ms: u64,
    missing: u64,
}

/// The CPU model and count, from /proc/cpuinfo.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {n} CPUs")
}

fn recording(cues: u64, rate: u32) -> Recording {
    let entries = (0..cues)
        .map(|i| {
            let t_us = i * 1_000_000 / u64::from(rate);
            let address = format!("/bench/playback/{}", i % ADDRESSES);
            Entry::new(t_us, EntryKind::Set, address, Value::Int(i as i64))
        })
        .collect();
    Recording {
        header: Header {
            started_at_us: 0,
            pattern: "/bench/playback/**".into(),
            url: String::new(),
            tool: "clasp-bench playback".into(),
            types: Vec::new(),
        },
        entries,
        end: None,
    }
}

fn us(d: Duration) -> f64 {
    r1(d.as_secs_f64() * 1e6)
}

/// Runs the workload and prints its result.
pub(crate) async fn run(target: &Target, o: &PlaybackOpts, out: &Out) -> anyhow::Result<()> {
    if o.rate == 0 || o.cues == 0 {
        bail!("--rate and --cues must be more than 0");
    }
    let url = target.url().to_owned();
    let sub_client = Client::builder(url.clone())
        .name("clasp-bench playback subscriber")
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await?;
    let options = SubscribeOptions::new().buffer(o.cues as usize + 16);
    let mut sub = sub_client
        .subscribe_with("/bench/playback/**", options)
        .await?;
    sub_client.ping().await?;
    // What the subscription's snapshot holds from an earlier run.
    while sub.try_recv().is_some() {}

    let rec = Arc::new(recording(o.cues, o.rate));
    let opts = PlayOptions {
        precise: Duration::from_micros(o.precise_us),
        initial: false,
        ..PlayOptions::default()
    };
    // The player on a single-threaded runtime of its own, as in `clasp play`.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let player = {
        let rec = rec.clone();
        std::thread::spawn(move || -> anyhow::Result<Lateness> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let client = Client::builder(url)
                    .name("clasp-bench playback player")
                    .reconnect(ReconnectPolicy::disabled())
                    .connect()
                    .await?;
                let stop = CancellationToken::new();
                let mut sent_start = false;
                let report = play(&client, &rec, &opts, &stop, |p| {
                    if !sent_start {
                        sent_start = true;
                        let _ = started_tx.send(p.started);
                    }
                })
                .await?;
                client.ping().await?;
                client.close().await;
                Ok(report.lateness)
            })
        })
    };

    let mut arrived: Vec<Option<Instant>> = vec![None; o.cues as usize];
    let mut got = 0u64;
    let deadline = Instant::now() + Duration::from_secs_f64(o.cues as f64 / f64::from(o.rate));
    while got < o.cues {
        let wait = (deadline + DRAIN).saturating_duration_since(Instant::now());
        let Ok(Some(u)) = tokio::time::timeout(wait, sub.recv()).await else {
            break;
        };
        let now = Instant::now();
        if let Value::Int(i) = u.value
            && let Some(slot) = arrived.get_mut(i as usize)
            && slot.is_none()
        {
            *slot = Some(now);
            got += 1;
        }
    }
    let player_lateness = player
        .join()
        .map_err(|_| anyhow::anyhow!("the player thread panicked"))??;
    let started = started_rx.recv().context("the player never started")?;
    sub_client.close().await;

    let mut seen = Lateness::new();
    for (i, at) in arrived.iter().enumerate() {
        if let Some(at) = at {
            let due = started + Duration::from_micros(rec.entries[i].t_us);
            seen.record(at.saturating_duration_since(due));
        }
    }
    let r = PlaybackResult {
        machine: machine(),
        cues: o.cues,
        rate: o.rate,
        precise_us: o.precise_us,
        player_p50_us: us(player_lateness.quantile(0.5)),
        player_p99_us: us(player_lateness.quantile(0.99)),
        player_max_us: us(player_lateness.max()),
        player_late_over_1ms: player_lateness.over_1ms(),
        subscriber_p50_us: us(seen.quantile(0.5)),
        subscriber_p99_us: us(seen.quantile(0.99)),
        subscriber_max_us: us(seen.max()),
        subscriber_late_over_1ms: seen.over_1ms(),
        missing: o.cues - got,
    };
    out.result(
        "playback",
        &format!("playback: {} cues at {}/s, lateness", o.cues, o.rate),
        &r,
    );
    Ok(())
}
