//! `soak`: a long mixed load with the router's memory sampled at a fixed interval, to show
//! that resident memory reaches a plateau instead of growing.
//!
//! The load, all on 127.0.0.1: publishers sending SETs over a fixed address space (so the
//! param store fills, then only overwrites), events, stream samples and gesture phases, and
//! atomic bundles; long-lived subscribers on wildcard patterns; and churn: short-lived clients
//! that connect, subscribe to a random pattern, read for a moment and leave (half of them
//! without a close frame). Every `interval` the router's VmRSS is read from /proc.
//!
//! Verdict: after a warm-up (the first fifth), the highest RSS of the last two fifths must not
//! exceed the highest of the two before them by more than 5% (plus 2 MiB of allocator slack).
//!
//! With `--attack`, attackers join the load after the warm-up (see [`crate::attack`]), and an
//! honest probe's single-hop latency is reported before and during the attack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message as WsMsg;

use crate::attack::{self, AttackCounters, AttackFigures, AttackOpts};
use crate::conn::{Target, close, connect, set_frame};
use crate::memory::rss_kb;
use crate::output::{Out, r1};
use clasp_proto::{
    Bundle, FrameOptions, GesturePhase, Message, Publish, PublishPayload, Qos, Set, SignalType,
    Value, encode_with,
};

/// Options of `soak`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakOpts {
    /// Process id of the router (its VmRSS is sampled).
    #[arg(long)]
    pub(crate) pid: u32,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub(crate) duration_secs: u64,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10)]
    pub(crate) interval_secs: u64,
    /// SETs per second, all publishers together.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) sets_per_sec: u64,
    /// Distinct param addresses written.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) addresses: u64,
    /// Publisher connections.
    #[arg(long, default_value_t = 4)]
    pub(crate) publishers: usize,
    /// Long-lived subscriber connections.
    #[arg(long, default_value_t = 20)]
    pub(crate) subscribers: usize,
    /// Short-lived clients started per second.
    #[arg(long, default_value_t = 5)]
    pub(crate) churn_per_sec: u64,
    /// Attackers mixed into the load.
    #[command(flatten)]
    pub(crate) attack: AttackOpts,
}

#[derive(Debug, Serialize)]
struct Sample {
    t_s: u64,
    rss_kb: u64,
    sent: u64,
    received: u64,
    churned: u64,
}

#[derive(Debug, Serialize)]
struct SoakResult {
    duration_s: u64,
    samples: Vec<Sample>,
    rss_start_kb: u64,
    rss_end_kb: u64,
    rss_max_kb: u64,
    /// Highest RSS in the two fifths after the warm-up.
    rss_middle_max_kb: u64,
    /// Highest RSS in the last two fifths.
    rss_last_max_kb: u64,
    growth_last_vs_middle: f64,
    plateau: bool,
    sent: u64,
    received: u64,
    churned: u64,
    errors: u64,
    /// The attack and the honest probe, with `--attack`.
    #[serde(skip_serializing_if = "Option::is_none")]
    attack: Option<AttackFigures>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    churned: AtomicU64,
    errors: AtomicU64,
}

const PATTERNS: [&str; 6] = [
    "/soak/**",
    "/soak/p/1*",
    "/soak/p/*",
    "/soak/ev/**",
    "/soak/stream/*",
    "/soak/p/42",
];

fn frame(m: &Message) -> anyhow::Result<bytes::Bytes> {
    encode_with(m, FrameOptions::with_qos(Qos::Fire)).context("encode")
}

/// One publisher: SETs paced every 10 ms, and every tick one of an event, a stream sample, a
/// gesture phase or a bundle.
async fn publisher(
    target: Target,
    n: usize,
    per_sec: u64,
    addresses: u64,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) -> anyhow::Result<()> {
    let ws = connect(&target, &format!("soak-pub-{n}"), None).await?;
    let (mut sink, mut stream) = ws.split();
    let counters = c.clone();
    let drain = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, WsMsg::Binary(_)) {
                counters.received.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let per_tick = (per_sec / 100).max(1);
    let mut seq: u64 = n as u64;
    let mut round: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        for _ in 0..per_tick {
            seq = seq
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let addr = format!("/soak/p/{}", (seq >> 33) % addresses);
            sink.feed(WsMsg::Binary(set_frame(&addr, Value::Float(round as f64))?))
                .await?;
        }
        round += 1;
        let extra = match round % 4 {
            0 => Message::Publish(Publish {
                address: format!("/soak/ev/{}", round % 50).into(),
                signal: SignalType::Event,
                payload: PublishPayload::Value(Value::Map(vec![
                    ("cue".into(), Value::Int(round as i64)),
                    ("name".into(), Value::String("go".into())),
                ])),
                ..Default::default()
            }),
            1 => Message::Publish(Publish {
                address: format!("/soak/stream/{n}").into(),
                signal: SignalType::Stream,
                payload: PublishPayload::Samples(vec![0.1, 0.2, 0.3, 0.4]),
                rate: Some(100),
                ..Default::default()
            }),
            2 => Message::Publish(Publish {
                address: format!("/soak/gesture/{n}").into(),
                signal: SignalType::Gesture,
                phase: match (round / 4) % 10 {
                    0 => GesturePhase::Start,
                    9 => GesturePhase::End,
                    _ => GesturePhase::Move,
                },
                id: Some(((round / 40) % 1000) as u32),
                payload: PublishPayload::Value(Value::Float(0.5)),
                ..Default::default()
            }),
            _ => Message::Bundle(Bundle {
                timestamp: None,
                messages: (0..4)
                    .map(|k| {
                        Message::Set(Set {
                            address: format!("/soak/bundle/{n}/{k}").into(),
                            value: Value::Int(round as i64),
                            ..Default::default()
                        })
                    })
                    .collect(),
            }),
        };
        sink.feed(WsMsg::Binary(frame(&extra)?)).await?;
        sink.flush().await?;
        c.sent.fetch_add(per_tick + 1, Ordering::Relaxed);
    }
    let _ = sink.close().await;
    drain.abort();
    Ok(())
}

async fn subscriber(
    target: Target,
    pattern: &'static str,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) {
    let Ok(mut ws) = connect(&target, "soak-sub", Some(pattern)).await else {
        c.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(WsMsg::Binary(_)))) => {
                c.received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(_))) | Ok(None) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    close(ws).await;
}

/// A short-lived client: subscribes, reads for `life`, leaves (politely or not).
async fn churner(target: Target, k: u64, c: Arc<Counters>) {
    let pattern = PATTERNS[(k % PATTERNS.len() as u64) as usize];
    let Ok(mut ws) = connect(&target, "soak-churn", Some(pattern)).await else {
        c.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let life = Duration::from_millis(200 + (k * 7919) % 1800);
    let end = tokio::time::Instant::now() + life;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, ws.next()).await {
        if matches!(m, WsMsg::Binary(_)) {
            c.received.fetch_add(1, Ordering::Relaxed);
        }
    }
    if k.is_multiple_of(2) {
        close(ws).await;
    } else {
        // Gone without a close frame: the router must notice on its own.
        drop(ws);
    }
    c.churned.fetch_add(1, Ordering::Relaxed);
}

/// Runs the soak and prints the memory series and the verdict.
pub(crate) async fn run(target: &Target, o: &SoakOpts, out: &Out) -> anyhow::Result<()> {
    let c = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for n in 0..o.publishers.max(1) {
        tasks.push(tokio::spawn(publisher(
            target.clone(),
            n,
            o.sets_per_sec / o.publishers.max(1) as u64,
            o.addresses.max(1),
            stop.clone(),
            c.clone(),
        )));
    }
    let mut subs = Vec::new();
    for i in 0..o.subscribers {
        subs.push(tokio::spawn(subscriber(
            target.clone(),
            PATTERNS[i % PATTERNS.len()],
            stop.clone(),
            c.clone(),
        )));
    }
    let churn = {
        let (target, stop, c) = (target.clone(), stop.clone(), c.clone());
        let per_sec = o.churn_per_sec;
        tokio::spawn(async move {
            if per_sec == 0 {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_sec.max(1)));
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                tokio::spawn(churner(target.clone(), k, c.clone()));
                k += 1;
            }
        })
    };
    let start = Instant::now();
    let mut samples = Vec::new();
    let interval = Duration::from_secs(o.interval_secs.max(1));
    let total = Duration::from_secs(o.duration_secs.max(1));
    // The attack starts after the warm-up; the probe runs from the start, so its samples
    // before the attack are the baseline.
    let attack_at = total / 5;
    let atk = Arc::new(AttackCounters::default());
    let probe = o
        .attack
        .attack
        .then(|| tokio::spawn(attack::probe(target.clone(), start, stop.clone())));
    let attackers = o.attack.attack.then(|| {
        let (target, opts, stop, atk) =
            (target.clone(), o.attack.clone(), stop.clone(), atk.clone());
        tokio::spawn(async move {
            tokio::time::sleep(attack_at).await;
            attack::start(&target, &opts, &stop, &atk)
        })
    });
    loop {
        let t = start.elapsed();
        let s = Sample {
            t_s: t.as_secs(),
            rss_kb: rss_kb(o.pid)?,
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            churned: c.churned.load(Ordering::Relaxed),
        };
        out.human(&format!(
            "t={:>5}s  rss={:>7} KB  sent={:>10}  received={:>11}  churned={:>6}",
            s.t_s, s.rss_kb, s.sent, s.received, s.churned
        ));
        samples.push(s);
        if t >= total {
            break;
        }
        tokio::time::sleep(interval.min(total - t)).await;
    }
    stop.store(true, Ordering::Relaxed);
    churn.abort();
    if let Some(a) = attackers
        && let Ok(tasks) = a.await
    {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
    let attack = match probe {
        Some(p) => {
            let probe = p.await.context("probe task")?.context("probe")?;
            let end = start.elapsed();
            Some(AttackFigures {
                attack_started_s: attack_at.as_secs(),
                attacker_frames: atk.frames.load(Ordering::Relaxed),
                attacker_refusals: atk.refusals.load(Ordering::Relaxed),
                attacker_reconnects: atk.reconnects.load(Ordering::Relaxed),
                osc_sent_bytes: atk.osc_sent_bytes.load(Ordering::Relaxed),
                osc_received_bytes: atk.osc_received_bytes.load(Ordering::Relaxed),
                probe_before: attack::percentiles(&probe, Duration::ZERO, attack_at),
                probe_during: attack::percentiles(&probe, attack_at, end),
            })
        }
        None => None,
    };
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            out.human(&format!("publisher failed: {e:#}"));
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    for s in subs {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }

    let n = samples.len();
    let fifth = |k: usize| (n * k) / 5;
    let max_in = |a: usize, b: usize| {
        samples[a.min(n)..b.min(n)]
            .iter()
            .map(|s| s.rss_kb)
            .max()
            .unwrap_or(0)
    };
    let middle = max_in(fifth(1), fifth(3));
    let last = max_in(fifth(3), n);
    let growth = if middle > 0 {
        last as f64 / middle as f64 - 1.0
    } else {
        0.0
    };
    let plateau = last as f64 <= middle as f64 * 1.05 + 2048.0;
    let r = SoakResult {
        duration_s: start.elapsed().as_secs(),
        rss_start_kb: samples.first().map_or(0, |s| s.rss_kb),
        rss_end_kb: samples.last().map_or(0, |s| s.rss_kb),
        rss_max_kb: samples.iter().map(|s| s.rss_kb).max().unwrap_or(0),
        rss_middle_max_kb: middle,
        rss_last_max_kb: last,
        growth_last_vs_middle: r1(growth * 1000.0) / 1000.0,
        plateau,
        sent: c.sent.load(Ordering::Relaxed),
        received: c.received.load(Ordering::Relaxed),
        churned: c.churned.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        samples,
        attack,
    };
    if let Some(a) = &r.attack {
        let show = |p: &Option<attack::Percentiles>| match p {
            Some(p) => format!(
                "p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs ({} samples, {} lost)",
                p.p50_us, p.p99_us, p.max_us, p.samples, p.lost
            ),
            None => "no samples".to_owned(),
        };
        out.human(&format!(
            "honest probe before the attack: {}\nhonest probe during the attack: {}\nattackers: {} frames, {} refusals, {} reconnects; OSC sources sent {} B, got back {} B",
            show(&a.probe_before),
            show(&a.probe_during),
            a.attacker_frames,
            a.attacker_refusals,
            a.attacker_reconnects,
            a.osc_sent_bytes,
            a.osc_received_bytes
        ));
    }
    out.human(&format!(
        "{}  RSS plateau: last two fifths max {} KB vs middle {} KB ({:+.1}%)",
        if plateau { "PASS" } else { "FAIL" },
        last,
        middle,
        growth * 100.0
    ));
    out.result("soak", "soak: mixed load, memory sampled", &r);
    Ok(())
}
