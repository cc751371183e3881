//! Attackers mixed into the soak, and the honest latency probe that shows what they cost.
//!
//! Each attacker loops until the soak ends, reconnecting whenever the router cuts it off:
//! * **announce flood**: ANNOUNCEs of 400 new signals every 10 ms until refused, then a new
//!   connection (the router frees what a session announced when it ends);
//! * **QUERY flood**: `QUERY /**` every 20 ms against whatever has been announced;
//! * **oversize patterns**: subscriptions with 60,000-byte patterns until refused;
//! * **gesture flood**: gesture starts with new ids on long addresses until refused;
//! * **slow readers**: subscribe to everything and never read, for 30 s, then leave without a
//!   close frame;
//! * **OSC sources** (with `--osc`): many UDP sources that subscribe to feedback without ever
//!   verifying and send SETs; the bytes they get back are counted against the bytes they sent.
//!
//! The probe writes one SET every 10 ms to `/soak/probe/x` and times its arrival at a
//! subscriber; samples are split into before the attackers start and during the attack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message as WsMsg;

use crate::conn::{Target, Ws, connect, set_frame, set_info};
use crate::latency::percentile_us;
use crate::output::r1;
use clasp_proto::{
    Announce, FrameOptions, GesturePhase, Message, Publish, PublishPayload, Qos, Query, SignalDef,
    SignalType, Subscribe, Value, encode_with,
};

/// Options for the attackers.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AttackOpts {
    /// Mix attackers into the load from the end of the warm-up (the first fifth) on.
    #[arg(long)]
    pub(crate) attack: bool,
    /// The router's OSC UDP port (127.0.0.1:PORT, e.g. of `clasp relay --osc-port`): adds OSC
    /// sources to the attack.
    #[arg(long)]
    pub(crate) osc: Option<String>,
    /// OSC sources (distinct UDP ports).
    #[arg(long, default_value_t = 200)]
    pub(crate) osc_sources: usize,
    /// Which attackers run (all by default): announce, query, patterns, gestures, slow, osc.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "announce,query,patterns,gestures,slow,osc"
    )]
    pub(crate) attackers: Vec<String>,
}

/// What the attackers did and got.
#[derive(Debug, Default)]
pub(crate) struct AttackCounters {
    pub(crate) reconnects: AtomicU64,
    pub(crate) refusals: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) osc_sent_bytes: AtomicU64,
    pub(crate) osc_received_bytes: AtomicU64,
}

/// The attack's figures in the soak result.
#[derive(Debug, Serialize)]
pub(crate) struct AttackFigures {
    pub(crate) attack_started_s: u64,
    pub(crate) attacker_frames: u64,
    pub(crate) attacker_refusals: u64,
    pub(crate) attacker_reconnects: u64,
    pub(crate) osc_sent_bytes: u64,
    pub(crate) osc_received_bytes: u64,
    pub(crate) probe_before: Option<Percentiles>,
    pub(crate) probe_during: Option<Percentiles>,
}

/// Latency percentiles of probe samples.
#[derive(Debug, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) samples: usize,
    pub(crate) lost: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
}

fn frame(m: &Message) -> anyhow::Result<bytes::Bytes> {
    encode_with(m, FrameOptions::with_qos(Qos::Fire)).context("encode")
}

/// Reads everything a connection gets, counting ERRORs as refusals, until it ends.
fn drain(mut stream: futures_util::stream::SplitStream<Ws>, c: Arc<AttackCounters>) {
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let WsMsg::Binary(b) = m
                && matches!(
                    clasp_proto::decode_frame(&b).map(|f| f.message),
                    Ok(Message::Error(_))
                )
            {
                c.refusals.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Runs `round` on fresh connections until `stop`; a round ends when the router cuts the
/// connection off or the round decides to leave.
async fn repeat<F, Fut>(
    target: Target,
    name: &'static str,
    stop: Arc<AtomicBool>,
    c: Arc<AttackCounters>,
    round: F,
) where
    F: Fn(Ws, Arc<AttackCounters>, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while !stop.load(Ordering::Relaxed) {
        match connect(&target, name, None).await {
            Ok(ws) => round(ws, c.clone(), stop.clone()).await,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
        c.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends `make(i)` every `every` for `life`, or until the connection fails.
async fn send_for(
    ws: Ws,
    c: Arc<AttackCounters>,
    stop: Arc<AtomicBool>,
    every: Duration,
    life: Duration,
    make: impl Fn(u64) -> Message,
) {
    let (mut sink, stream) = ws.split();
    drain(stream, c.clone());
    let end = Instant::now() + life;
    let mut i = 0u64;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let Ok(f) = frame(&make(i)) else { return };
        if sink.send(WsMsg::Binary(f)).await.is_err() {
            return;
        }
        c.frames.fetch_add(1, Ordering::Relaxed);
        i += 1;
        tokio::time::sleep(every).await;
    }
    let _ = sink.close().await;
}

fn announce(conn: u64, i: u64) -> Message {
    Message::Announce(Announce {
        namespace: "/atk/ann".into(),
        signals: (0..400)
            .map(|k| SignalDef {
                address: format!("/atk/ann/{conn}/{i}/a-rather-long-signal-name-{k}").into(),
                signal: SignalType::Param,
                datatype: Some("f64".into()),
                access: Some("rw".into()),
                meta: None,
            })
            .collect(),
    })
}

/// An attacker that sends `make(connection, i)` every `every` for `life` per connection, on new
/// connections until the soak ends.
fn flood(
    target: &Target,
    name: &'static str,
    stop: &Arc<AtomicBool>,
    c: &Arc<AttackCounters>,
    every: Duration,
    life: Duration,
    make: fn(u64, u64) -> Message,
) -> tokio::task::JoinHandle<()> {
    let conns = Arc::new(AtomicU64::new(0));
    tokio::spawn(repeat(
        target.clone(),
        name,
        stop.clone(),
        c.clone(),
        move |ws, c, stop| {
            let conn = conns.fetch_add(1, Ordering::Relaxed);
            send_for(ws, c, stop, every, life, move |i| make(conn, i))
        },
    ))
}

fn query(_: u64, _: u64) -> Message {
    Message::Query(Query {
        pattern: "/**".into(),
    })
}

fn oversize_pattern(_: u64, i: u64) -> Message {
    Message::Subscribe(Subscribe {
        id: i as u32,
        pattern: format!("/atk/{i}/{}", "p".repeat(60_000)).into(),
        ..Default::default()
    })
}

fn gesture_start(_: u64, i: u64) -> Message {
    Message::Publish(Publish {
        address: format!("/atk/gesture/{}", "g".repeat(2000)).into(),
        signal: SignalType::Gesture,
        phase: GesturePhase::Start,
        id: Some(i as u32),
        payload: PublishPayload::Value(Value::Float(0.5)),
        ..Default::default()
    })
}

/// Subscribed to everything, never reading, for 30 s: the router coalesces, then cuts it off.
async fn slow_reader(ws: Ws, c: Arc<AttackCounters>, stop: Arc<AtomicBool>) {
    let (mut sink, stream) = ws.split();
    let sub = Message::Subscribe(Subscribe {
        id: 1,
        pattern: "/**".into(),
        ..Default::default()
    });
    if let Ok(f) = frame(&sub) {
        let _ = sink.send(WsMsg::Binary(f)).await;
        c.frames.fetch_add(1, Ordering::Relaxed);
    }
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((sink, stream));
}

/// Starts the attackers `o` names; they stop with `stop`.
pub(crate) fn start(
    target: &Target,
    o: &AttackOpts,
    stop: &Arc<AtomicBool>,
    c: &Arc<AttackCounters>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let on = |name: &str| o.attackers.iter().any(|a| a == name);
    let ms = Duration::from_millis;
    let secs = Duration::from_secs;
    let mut tasks = Vec::new();
    if on("announce") {
        tasks.push(flood(
            target,
            "atk-announce",
            stop,
            c,
            ms(10),
            secs(5),
            announce,
        ));
    }
    if on("query") {
        tasks.push(flood(target, "atk-query", stop, c, ms(20), secs(30), query));
    }
    if on("patterns") {
        tasks.push(flood(
            target,
            "atk-patterns",
            stop,
            c,
            ms(5),
            secs(5),
            oversize_pattern,
        ));
    }
    if on("gestures") {
        tasks.push(flood(
            target,
            "atk-gestures",
            stop,
            c,
            ms(1),
            secs(5),
            gesture_start,
        ));
    }
    if on("slow") {
        for _ in 0..2 {
            tasks.push(tokio::spawn(repeat(
                target.clone(),
                "atk-slow",
                stop.clone(),
                c.clone(),
                slow_reader,
            )));
        }
    }
    if let Some(osc) = o.osc.as_ref().filter(|_| on("osc")) {
        tasks.push(tokio::spawn(osc_sources(
            osc.clone(),
            o.osc_sources,
            stop.clone(),
            c.clone(),
        )));
    }
    tasks
}

/// OSC sources that never verify: each subscribes to feedback and sends a SET every 100 ms.
async fn osc_sources(addr: String, n: usize, stop: Arc<AtomicBool>, c: Arc<AttackCounters>) {
    let Ok(target) = addr.parse::<std::net::SocketAddr>() else {
        eprintln!("--osc: expected 127.0.0.1:PORT, got {addr:?}");
        return;
    };
    let mut sockets = Vec::new();
    for _ in 0..n {
        if let Ok(s) = tokio::net::UdpSocket::bind("127.0.0.1:0").await {
            sockets.push(Arc::new(s));
        }
    }
    let encode = |m: rosc::OscMessage| rosc::encoder::encode(&rosc::OscPacket::Message(m)).ok();
    let subscribe = encode(rosc::OscMessage {
        addr: "/clasp/subscribe".into(),
        args: vec![rosc::OscType::String("/soak/**".into())],
    });
    let mut readers = Vec::new();
    for s in &sockets {
        let (s, c) = (s.clone(), c.clone());
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = s.recv(&mut buf).await {
                c.osc_received_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
    }
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for (i, s) in sockets.iter().enumerate() {
            let datagram = if round.is_multiple_of(50) {
                subscribe.clone()
            } else {
                encode(rosc::OscMessage {
                    addr: format!("/atk/osc/{i}"),
                    args: vec![rosc::OscType::Float(round as f32)],
                })
            };
            if let Some(d) = datagram
                && s.send_to(&d, target).await.is_ok()
            {
                c.osc_sent_bytes
                    .fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in readers {
        r.abort();
    }
}

/// One probe sample: when it was sent (since the soak started), and its latency (`None`:
/// lost).
pub(crate) type ProbeSample = (Duration, Option<Duration>);

/// The honest client: one SET every 10 ms, timed to its delivery, until `stop`.
pub(crate) async fn probe(
    target: Target,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<ProbeSample>> {
    const ADDR: &str = "/soak/probe/x";
    let mut sub = connect(&target, "soak-probe-sub", Some(ADDR)).await?;
    let publisher = connect(&target, "soak-probe-pub", None).await?;
    let (mut sink, mut stream) = publisher.split();
    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    let mut samples = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let t0 = Instant::now();
        sink.send(WsMsg::Binary(set_frame(ADDR, Value::Float(seq as f64))?))
            .await?;
        let deadline = tokio::time::Instant::from_std(t0 + Duration::from_secs(2));
        let mut got = None;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, sub.next()).await {
            if let WsMsg::Binary(b) = m
                && let Some(s) = set_info(&b)
                && s.address == ADDR
                && s.seq == Some(seq)
            {
                got = Some(t0.elapsed());
                break;
            }
        }
        samples.push((t0 - start, got));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(samples)
}

/// Percentiles of the samples sent within `[from, to)`.
pub(crate) fn percentiles(s: &[ProbeSample], from: Duration, to: Duration) -> Option<Percentiles> {
    let window: Vec<&ProbeSample> = s.iter().filter(|(t, _)| *t >= from && *t < to).collect();
    let mut lat: Vec<Duration> = window.iter().filter_map(|(_, l)| *l).collect();
    if lat.is_empty() {
        return None;
    }
    lat.sort_unstable();
    Some(Percentiles {
        samples: lat.len(),
        lost: (window.len() - lat.len()) as u64,
        p50_us: r1(percentile_us(&lat, 0.50)),
        p99_us: r1(percentile_us(&lat, 0.99)),
        max_us: r1(lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e6)),
    })
}
