//! `clasp-bench`: drives any CLASP router by URL with raw frames and measures single-hop latency,
//! fan-out, throughput and memory per connection; `echo-server` is a zero-work server that
//! calibrates the latency floor.
//!
//! `mqtt` loads any MQTT 3.1.1 broker (our relay's MQTT listener, mosquitto) instead; see
//! `mqtt.rs`.
//!
//! Every client speaks CLASP directly over WebSocket (subprotocol `clasp`): HELLO → WELCOME, the
//! connect SNAPSHOT drained, then the workload. Writers use QoS Fire and discard whatever the
//! router sends back. Connections go to 127.0.0.1 only.
//!
//! ```text
//! clasp-bench latency    --url ws://127.0.0.1:7330/ [--samples 10000] [--warmup 200] [--size 8]
//!                        [--load-subscribers 100 --load-rate 200000]
//! clasp-bench fanout     --url ... [--subscribers 10,100,1000] [--messages 1000] [--min-deliveries N]
//! clasp-bench throughput --url ... [--messages 100000] [--size 8]
//! clasp-bench memory     --url ... --pid PID [--connections 1000,10000] [--metrics-url URL]
//! clasp-bench all        --url ... --pid PID
//! clasp-bench soak       --url ... --pid PID [--duration-secs 1800] [--interval-secs 10]
//! clasp-bench transports --url ws://... [--tcp 127.0.0.1:P] [--quic 127.0.0.1:P --ca-cert PEM]
//! clasp-bench commit     --url ... [--writers 1,8,64] [--seconds 5] [--size 64]
//! clasp-bench playback   --url ... [--cues 10000] [--rate 1000] [--precise-us 2000]
//! clasp-bench replay     --url ... [--fill 1000000] [--size 8] (a router with --journal)
//! clasp-bench report     --input results.jsonl [--ours ours --reference reference --echo echo]
//! clasp-bench mqtt       --addr 127.0.0.1:1883 [--subscribers 100] [--size 8] [--seconds 10]
//!                        [--warmup-secs 1] [--window 64 | --rate R] [--pid PID]
//! clasp-bench mqtt-report --input results.jsonl
//! clasp-bench echo-server --listen 127.0.0.1:7332
//! ```
//!
//! With `--json` each result is also printed as one JSON object per line on stdout (the tables
//! then go to stderr); `--label` and `--round` tag those lines for `report`.

mod attack;
mod bridges;
mod commit;
mod conn;
mod echo;
mod fanout;
mod latency;
mod lighting;
mod load;
mod memory;
mod mqtt;
mod output;
mod p2p;
mod playback;
mod replay;
mod report;
mod soak;
mod throughput;
mod transports;

use clap::{Parser, Subcommand};

use crate::commit::CommitOpts;
use crate::conn::Target;
use crate::echo::EchoOpts;
use crate::fanout::{FanoutOpts, WaitArgs};
use crate::latency::LatencyOpts;
use crate::memory::MemoryOpts;
use crate::mqtt::{MqttOpts, MqttReportOpts};
use crate::output::Out;
use crate::p2p::P2pOpts;
use crate::playback::PlaybackOpts;
use crate::replay::ReplayOpts;
use crate::report::ReportOpts;
use crate::soak::SoakOpts;
use crate::throughput::ThroughputOpts;
use crate::transports::TransportOpts;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "clasp-bench",
    version,
    about = "Benchmarks a CLASP router by URL"
)]
struct Cli {
    /// Also print each result as one JSON object per line on stdout (tables go to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Tag added to the JSON lines: which router this is (e.g. `ours`, `reference`).
    #[arg(long, global = true)]
    label: Option<String>,
    /// Tag added to the JSON lines: the round of a repeated run.
    #[arg(long, global = true)]
    round: Option<u32>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The router to load.
#[derive(Debug, Clone, clap::Args)]
struct UrlArg {
    /// WebSocket URL of the router, e.g. ws://127.0.0.1:7330/ (127.0.0.1 only).
    #[arg(long)]
    url: String,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Single hop: publisher → router → subscriber, one SET in flight at a time, optionally
    /// under a background fan-out load.
    Latency {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: LatencyOpts,
    },
    /// N subscribers on one address, one publisher sending as fast as it can.
    Fanout {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: FanoutOpts,
    },
    /// One writer over 100 addresses, one wildcard subscriber; sent/s, delivered/s, final values.
    Throughput {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: ThroughputOpts,
    },
    /// Router resident memory per idle connection (VmRSS from /proc/PID/status).
    Memory {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: MemoryOpts,
    },
    /// Latency, fan-out 10/100/1000, throughput, then memory 1000/10000, with default settings.
    All {
        #[command(flatten)]
        url: UrlArg,
        /// Process id of the router (for the memory workload).
        #[arg(long)]
        pid: u32,
        /// The router's Prometheus endpoint, passed to the memory workload.
        #[arg(long)]
        metrics_url: Option<String>,
    },
    /// A long mixed load (SETs, events, streams, gestures, bundles, wildcard subscribers,
    /// client churn) with the router's RSS sampled at an interval; checks that memory plateaus.
    Soak {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: SoakOpts,
    },
    /// Two clients exchange messages directly over WebRTC (P2P) and through the router: round
    /// trips and reliable throughput for each route.
    P2p {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: P2pOpts,
    },
    /// The same single hop over WebSocket (--url), raw TCP and QUIC, with clasp-client at both
    /// ends.
    Transports {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: TransportOpts,
    },
    /// QoS Commit writes (ACK once on disk) with 1..N concurrent writers: writes/s and
    /// write-to-ACK latency, beside QoS Confirm with one writer.
    Commit {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: CommitOpts,
    },
    /// The timing error of `clasp play` at a steady cue rate: lateness as seen by the player
    /// and by a subscriber.
    Playback {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: PlaybackOpts,
    },
    /// Fills a journaled router with SETs, then REPLAYs them all: entries/s.
    Replay {
        #[command(flatten)]
        url: UrlArg,
        #[command(flatten)]
        opts: ReplayOpts,
    },
    /// MQTT fan-out against any MQTT 3.1.1 broker on this machine: one publisher, N
    /// subscribers on one topic, QoS 0; deliveries/s, publish-to-receive latency, loss.
    Mqtt(MqttOpts),
    /// Medians and spread of `mqtt` runs per label from JSON lines, with the per-round table.
    MqttReport(MqttReportOpts),
    /// Compares routers from JSON lines: medians per workload and metric, ratios, and targets.
    Report(ReportOpts),
    /// Bridge latency (OSC → router → OSC, MIDI → router → OSC) against the direct path, and
    /// sustained OSC through the bridges of a `clasp server` it starts (--clasp).
    Bridges(bridges::BridgeOpts),
    /// Lighting through a `clasp server` it starts (--clasp): 64 Art-Net universes at 44 Hz in
    /// and out with dropped frames and the router's CPU use, and SET-to-wire latency.
    Lighting(lighting::LightingOpts),
    /// A zero-work server (WELCOME, PONG, forwards everything else to every other client) that
    /// gives the floor of single-hop latency. Prints `ready` when listening.
    EchoServer(EchoOpts),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clasp-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let url = match &cli.cmd {
        Cmd::Latency { url, .. }
        | Cmd::Fanout { url, .. }
        | Cmd::Throughput { url, .. }
        | Cmd::Memory { url, .. }
        | Cmd::Soak { url, .. }
        | Cmd::P2p { url, .. }
        | Cmd::Transports { url, .. }
        | Cmd::Commit { url, .. }
        | Cmd::Playback { url, .. }
        | Cmd::Replay { url, .. }
        | Cmd::All { url, .. } => url.url.clone(),
        Cmd::Report(o) => return report::run(o),
        Cmd::MqttReport(o) => return mqtt::report(o),
        Cmd::Bridges(o) => {
            let out = Out {
                json: cli.json,
                label: cli.label.clone(),
                round: cli.round,
                url: "bridges".into(),
            };
            bridges::run(o, &out)?;
            return bridges::sustained(o, &out);
        }
        Cmd::Lighting(o) => {
            let out = Out {
                json: cli.json,
                label: cli.label.clone(),
                round: cli.round,
                url: "lighting".into(),
            };
            return lighting::run(o, &out);
        }
        Cmd::Mqtt(o) => {
            let _ = rlimit::increase_nofile_limit(u64::MAX);
            let out = Out {
                json: cli.json,
                label: cli.label.clone(),
                round: cli.round,
                url: format!("mqtt://{}", o.addr),
            };
            return mqtt::run(o, &out);
        }
        Cmd::EchoServer(o) => {
            let _ = rlimit::increase_nofile_limit(u64::MAX);
            return tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(echo::run(o));
        }
    };
    // Many connections need many descriptors: raise the soft limit to the hard one.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).ok();
    let target = Target::parse(&url)?;
    let out = Out {
        json: cli.json,
        label: cli.label.clone(),
        round: cli.round,
        url: target.url().to_owned(),
    };
    if let Some(n) = nofile {
        out.human(&format!("open-file limit: {n}"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.cmd {
            Cmd::Latency { opts, .. } => latency::run(&target, &opts, &out).await,
            Cmd::Fanout { opts, .. } => fanout::run(&target, &opts, &out).await,
            Cmd::Throughput { opts, .. } => throughput::run(&target, &opts, &out).await,
            Cmd::Memory { opts, .. } => memory::run(&target, &opts, &out).await,
            Cmd::Soak { opts, .. } => soak::run(&target, &opts, &out).await,
            Cmd::P2p { opts, .. } => p2p::run(&target, &opts, &out).await,
            Cmd::Transports { opts, .. } => transports::run(&target, &opts, &out).await,
            Cmd::Commit { opts, .. } => commit::run(&target, &opts, &out).await,
            Cmd::Playback { opts, .. } => playback::run(&target, &opts, &out).await,
            Cmd::Replay { opts, .. } => replay::run(&target, &opts, &out).await,
            Cmd::All {
                pid, metrics_url, ..
            } => all(&target, pid, metrics_url, &out).await,
            Cmd::Report(_)
            | Cmd::EchoServer(_)
            | Cmd::Mqtt(_)
            | Cmd::MqttReport(_)
            | Cmd::Bridges(_)
            | Cmd::Lighting(_) => Ok(()),
        }
    })
}

/// Every workload with its defaults, in order.
async fn all(
    target: &Target,
    pid: u32,
    metrics_url: Option<String>,
    out: &Out,
) -> anyhow::Result<()> {
    latency::run(
        target,
        &LatencyOpts {
            samples: 10_000,
            warmup: 200,
            size: 8,
            load_subscribers: 0,
            load_rate: 0,
            load_url: None,
            sub_url: None,
            raw: None,
        },
        out,
    )
    .await?;
    fanout::run(
        target,
        &FanoutOpts {
            subscribers: vec![10, 100, 1000],
            messages: 1000,
            min_deliveries: 1_000_000,
            wait: WaitArgs::default(),
            concurrency: 50,
            sub_urls: Vec::new(),
        },
        out,
    )
    .await?;
    throughput::run(
        target,
        &ThroughputOpts {
            messages: 100_000,
            size: 8,
            wait: WaitArgs::default(),
            sub_url: None,
        },
        out,
    )
    .await?;
    memory::run(
        target,
        &MemoryOpts {
            pid,
            connections: vec![1000, 10_000],
            metrics_url,
            settle_secs: 2,
            concurrency: 50,
        },
        out,
    )
    .await
}
