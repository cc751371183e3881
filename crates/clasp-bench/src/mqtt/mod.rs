//! `mqtt`: MQTT fan-out against any MQTT 3.1.1 broker on this machine (our relay's MQTT
//! listener, mosquitto, ...): one publisher, N subscribers on one topic, QoS 0.
//!
//! Every payload starts with an 8-byte header: `0xFF` (the payload is then never UTF-8, so a
//! broker that reads payloads as text or numbers, as our relay does, must pass it on as raw
//! bytes), the message's sequence number (24 bits, little-endian) and the publisher's send time
//! in µs since the run's start (32 bits, little-endian); the rest, up to `--size`, is padding.
//! Publisher and subscribers are in this one process, so the send and receive times come from
//! the same monotonic clock.
//!
//! Two ways to send:
//!
//! * **windowed** (`--rate 0`, the default; workload `mqtt_fanout`): the publisher sends as
//!   fast as the subscribers keep up, never more than `--window` messages ahead of the slowest
//!   subscriber. What is in flight is bounded, so the broker's queues stay short and the figure
//!   is the rate it sustains, not how much it can buffer; latency is then mostly the window
//!   divided by that rate (Little's law), so compare it only at the same window.
//! * **paced** (`--rate R` messages/s; workload `mqtt_paced`): open loop at R messages/s,
//!   whatever arrives; what a broker cannot keep up with shows as loss, as `sent_per_sec` below
//!   R (the broker did not read the publisher fast enough), or as latency.
//!
//! Deliveries (messages received, summed over the subscribers) are counted by arrival time over
//! the measured window (after `--warmup-secs`, for `--seconds`); latencies over the messages sent
//! in that window. Loss: every message published (warm-up included) that a subscriber had not
//! received when the run stopped waiting for the drain (nothing arrived for `--drain-secs`, or
//! 60 s after publishing ended), summed over the subscribers; a subscriber the broker
//! disconnected counts what it missed as lost. A broker that stops reading the publisher for 10 s
//! ends the publishing early (`publisher_blocked`) rather than the run.
//!
//! The client is a minimal MQTT 3.1.1 client written here (CONNECT, SUBSCRIBE, PUBLISH QoS 0)
//! over tokio TCP, one task per connection, on one thread by default (`--threads`). Why not
//! rumqttc (`--client rumqttc` keeps it for comparison): the client shares the machine's cores
//! with the broker, so every µs it spends per delivery is taken from the broker under test.
//! rumqttc's event loop decodes each message into a `Publish` (topic and payload), queues it as
//! an event and hands it out one `poll` at a time, arming a flush timeout and a sleep per read
//! batch. Measured on the 2-vCPU VM of docs/benchmarks-mqtt.md against our relay (windowed,
//! 3 rounds each), it cost about 4x the CPU per delivery of the hand-written reader (about 400
//! vs 100 ns, `client_cpu_ns_per_delivery` in the results) and the relay's figure fell from about
//! 3.0 to 1.1 million deliveries/s with it: rumqttc would have measured itself. The hand-written
//! reader parses PUBLISH packets in place from one read buffer and reads the clock once per read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use crate::output::{Out, r1, r4};

mod clients;
mod histogram;
mod packets;
mod report;

use clients::*;
use histogram::Histogram;
use packets::*;
pub(crate) use report::{MqttReportOpts, report};

/// Size of the header every payload starts with.
const HEADER: usize = 8;
/// First payload byte: never valid UTF-8.
const MARK: u8 = 0xFF;
/// Sequence numbers are 24 bits on the wire.
const SEQ_MOD: u64 = 1 << 24;
/// Most messages encoded into one write of the publisher.
const BATCH: u64 = 32;
/// Keep-alive announced in CONNECT: longer than any run, so no client sends PINGREQ (brokers
/// enforce 1.5x of it).
const KEEP_ALIVE_SECS: u16 = 3600;
/// How long the windowed publisher waits for the slowest subscriber before it sends anyway
/// (counted as `window_timeouts`): a broker that dropped a subscriber's last messages would
/// otherwise stop the run.
const WINDOW_WAIT: Duration = Duration::from_millis(200);
/// How long one write of the publisher may wait for the broker to read.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);
/// How long one step of a connection's setup may take.
const SETUP_WAIT: Duration = Duration::from_secs(10);

/// Which MQTT client the subscribers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientKind {
    /// The minimal client of this module (default).
    Raw,
    /// rumqttc's `AsyncClient` and `EventLoop`, one per subscriber (for comparison).
    Rumqttc,
}

/// Options of `mqtt`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MqttOpts {
    /// The broker, e.g. 127.0.0.1:1883 (loopback only).
    #[arg(long)]
    pub(crate) addr: SocketAddr,
    /// Subscribers, each on its own connection, all on the same topic.
    #[arg(long, default_value_t = 100)]
    pub(crate) subscribers: usize,
    /// Payload size in bytes (at least 8: sequence number and send time).
    #[arg(long, default_value_t = 8)]
    pub(crate) size: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) seconds: f64,
    /// Seconds of publishing before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup_secs: f64,
    /// Messages per second, open loop (0: windowed, as fast as the slowest subscriber keeps
    /// up).
    #[arg(long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Windowed: most messages the publisher may be ahead of the slowest subscriber.
    #[arg(long, default_value_t = 64)]
    pub(crate) window: u64,
    /// Topic published and subscribed to.
    #[arg(long, default_value = "bench/fan")]
    pub(crate) topic: String,
    /// Process id of the broker: its CPU use over the measured window is reported.
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// MQTT client of the subscribers.
    #[arg(long, value_enum, default_value_t = ClientKind::Raw)]
    pub(crate) client: ClientKind,
    /// Threads of this tool (1: a single-threaded runtime, leaving the other cores to the
    /// broker).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// After publishing, stop waiting for deliveries when nothing arrived for this long.
    #[arg(long, default_value_t = 2)]
    pub(crate) drain_secs: u64,
}

#[derive(Debug, Serialize)]
struct MqttResult {
    /// `windowed` or `paced`.
    mode: &'static str,
    subscribers: usize,
    size: usize,
    /// Windowed: the window in messages.
    window: Option<u64>,
    /// Paced: messages/s asked for.
    rate: Option<u64>,
    client: ClientKind,
    threads: usize,
    /// Length of the measured window.
    seconds: f64,
    /// Messages published in all (warm-up included).
    sent: u64,
    /// Messages published per second in the measured window.
    sent_per_sec: f64,
    /// Messages received per second in the measured window, summed over the subscribers.
    deliveries_per_sec: f64,
    /// `sent` × connected subscribers.
    expected: u64,
    /// Messages received in all, summed over the subscribers.
    delivered: u64,
    /// `expected` − `delivered`: messages some subscriber had not received when the run stopped
    /// waiting (nothing arrived for `--drain-secs`, or 60 s after publishing ended): dropped by
    /// the broker, or still queued in it.
    lost: u64,
    /// `lost` / `expected`.
    lost_fraction: f64,
    /// Messages received out of order or twice (should be 0).
    out_of_order: u64,
    /// Subscribers the broker disconnected during the run.
    disconnected: usize,
    /// Publish → receive latency of the messages sent in the measured window.
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    latency_samples: u64,
    /// Windowed: times the publisher sent without waiting longer for the slowest subscriber.
    window_timeouts: Option<u64>,
    /// The broker stopped reading the publisher for 10 s (overload), so publishing stopped
    /// early: the figures cover what was sent until then.
    publisher_blocked: bool,
    /// Broker CPU in the measured window, % of one core (with `--pid`).
    broker_cpu_pct: Option<f64>,
    /// This tool's CPU in the measured window, % of one core.
    client_cpu_pct: Option<f64>,
    /// The rest of the machine's busy CPU in the measured window (other processes, interrupts,
    /// steal), % of one core: how noisy the run was.
    other_cpu_pct: Option<f64>,
    /// This tool's CPU time per delivery in the measured window.
    client_cpu_ns_per_delivery: Option<f64>,
    /// From the end of publishing to the last delivery (or giving up).
    drain_ms: f64,
    /// Connecting and subscribing every subscriber.
    setup_ms: f64,
}

/// A counter on its own cache line (the subscribers write theirs from several threads).
#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

/// State shared by the publisher, the subscribers and the run.
struct Shared {
    base: Instant,
    /// Per subscriber: the sequence number after the highest received (gaps skipped);
    /// `u64::MAX` once it is disconnected.
    progress: Box<[Padded]>,
    /// The publisher waits for the slowest subscriber.
    waiting: AtomicBool,
    wake: Notify,
    disconnected: AtomicUsize,
    /// Measured window, µs since `base`.
    window_from: u64,
    window_to: u64,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    fn min_progress(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.0.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn all_reached(&self, sent: u64) -> bool {
        self.min_progress() >= sent
    }

    fn total_progress(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.0.load(Ordering::Relaxed))
            .filter(|&p| p != u64::MAX)
            .sum()
    }
}

/// What one subscriber counted.
struct SubStats {
    received: u64,
    in_window: u64,
    out_of_order: u64,
    /// Sequence number after the highest received.
    next: u64,
    hist: Histogram,
    disconnected: bool,
}

/// One subscriber's bookkeeping, shared by both clients.
struct Receiver {
    idx: usize,
    shared: Arc<Shared>,
    stats: SubStats,
}

impl Receiver {
    fn new(idx: usize, shared: Arc<Shared>) -> Receiver {
        Receiver {
            idx,
            shared,
            stats: SubStats {
                received: 0,
                in_window: 0,
                out_of_order: 0,
                next: 0,
                hist: Histogram::new(),
                disconnected: false,
            },
        }
    }

    /// One PUBLISH payload, received at `now_us`.
    fn on_payload(&mut self, p: &[u8], now_us: u64) {
        if p.len() < HEADER || p[0] != MARK {
            return;
        }
        let seq24 = u64::from(u32::from_le_bytes([p[1], p[2], p[3], 0]));
        let sent_us = u64::from(u32::from_le_bytes([p[4], p[5], p[6], p[7]]));
        let s = &mut self.stats;
        s.received += 1;
        // Expand the 24-bit number around the one expected next.
        let ahead = (seq24 + SEQ_MOD - (s.next % SEQ_MOD)) % SEQ_MOD;
        if ahead < SEQ_MOD / 2 {
            s.next += ahead + 1;
        } else {
            s.out_of_order += 1;
        }
        let (from, to) = (self.shared.window_from, self.shared.window_to);
        if (from..to).contains(&now_us) {
            s.in_window += 1;
        }
        // The send time wraps at 2^32 µs (71 minutes); runs are much shorter.
        let sent_full = (now_us & !0xFFFF_FFFF) | sent_us;
        let sent_full = if sent_full > now_us {
            sent_full.wrapping_sub(1 << 32)
        } else {
            sent_full
        };
        if (from..to).contains(&sent_full) {
            s.hist.record(now_us - sent_full);
        }
    }

    /// Publishes this subscriber's progress (once per read) and wakes a waiting publisher.
    fn commit(&self) {
        // SeqCst with the publisher's store of `waiting` and load of the progress: one of the
        // two sides sees the other's store.
        self.shared.progress[self.idx]
            .0
            .store(self.stats.next, Ordering::SeqCst);
        if self.shared.waiting.load(Ordering::SeqCst)
            && self.shared.waiting.swap(false, Ordering::SeqCst)
        {
            self.shared.wake.notify_one();
        }
    }

    fn disconnected(mut self) -> SubStats {
        self.stats.disconnected = true;
        self.shared.progress[self.idx]
            .0
            .store(u64::MAX, Ordering::Release);
        self.shared.disconnected.fetch_add(1, Ordering::Relaxed);
        if self.shared.waiting.swap(false, Ordering::AcqRel) {
            self.shared.wake.notify_one();
        }
        self.stats
    }
}

/// What the publisher did.
#[derive(Default)]
struct PubStats {
    sent: u64,
    sent_in_window: u64,
    window_timeouts: u64,
    /// The broker stopped reading the publisher for PUBLISH_WAIT; publishing ended there.
    blocked: bool,
}

/// Publishes until the end of the measured window: windowed or paced (see the module docs).
async fn publish(mut s: TcpStream, o: &MqttOpts, shared: &Shared) -> anyhow::Result<PubStats> {
    let topic = o.topic.as_bytes();
    let (from, end) = (shared.window_from, shared.window_to);
    let mut buf = Vec::with_capacity(BATCH as usize * (o.size + topic.len() + 8));
    let mut st = PubStats::default();
    let mut seq = 0u64;
    // Sends `n` messages; `false` if the broker did not take them within PUBLISH_WAIT (an
    // overloaded broker that stops reading its publisher ends the publishing, not the run).
    let mut send = async |st: &mut PubStats, seq: &mut u64, n: u64, now: u64| {
        buf.clear();
        for i in 0..n {
            put_publish(&mut buf, topic, *seq + i, now, o.size);
        }
        match tokio::time::timeout(PUBLISH_WAIT, s.write_all(&buf)).await {
            Ok(r) => r.context("publisher send failed")?,
            Err(_) => {
                // Part of this batch may be on the wire; it is not counted as sent.
                st.blocked = true;
                return anyhow::Ok(false);
            }
        }
        *seq += n;
        if (from..end).contains(&now) {
            st.sent_in_window += n;
        }
        Ok(true)
    };
    if o.rate == 0 {
        // The slowest subscriber's progress, as last looked at.
        let mut floor = 0u64;
        loop {
            let now = shared.now_us();
            if now >= end {
                break;
            }
            if seq >= floor + o.window {
                floor = shared.min_progress();
            }
            if seq >= floor + o.window {
                let notified = shared.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                shared.waiting.store(true, Ordering::SeqCst);
                floor = shared.min_progress();
                if seq >= floor + o.window {
                    if tokio::time::timeout(WINDOW_WAIT, notified).await.is_err() {
                        // Send one batch anyway: a subscriber whose last messages were
                        // dropped catches up on the next one it receives.
                        st.window_timeouts += 1;
                        floor = (seq + BATCH).saturating_sub(o.window);
                    }
                } else {
                    shared.waiting.store(false, Ordering::SeqCst);
                }
                continue;
            }
            let n = (floor + o.window - seq).min(BATCH);
            if !send(&mut st, &mut seq, n, now).await? {
                break;
            }
        }
    } else {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        'publishing: loop {
            tick.tick().await;
            let now = shared.now_us();
            if now >= end {
                break;
            }
            let due = (u128::from(now) * u128::from(o.rate) / 1_000_000) as u64;
            while seq < due {
                let n = (due - seq).min(BATCH);
                if !send(&mut st, &mut seq, n, now).await? {
                    break 'publishing;
                }
            }
        }
    }
    st.sent = seq;
    if !st.blocked {
        // DISCONNECT, so that no broker publishes a will or keeps a session.
        let _ = s.write_all(&[0xE0, 0x00]).await;
        let _ = s.shutdown().await;
    }
    Ok(st)
}

/// utime + stime of process `pid` (`None`: this process), in clock ticks (1/100 s).
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // After the command name, which may hold spaces: field 3 (state) on; utime is field 14.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Busy time of the whole machine (every CPU; idle and iowait excluded), in clock ticks.
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = f.iter().take(8).sum();
    Some(total - f.get(3)? - f.get(4)?)
}

/// Linux reports process CPU times in USER_HZ, 100 per second on every architecture.
const TICKS_PER_SEC: f64 = 100.0;

/// A connected subscriber, not yet reading.
enum Sub {
    Raw(TcpStream),
    Rumqttc(Box<(rumqttc::AsyncClient, rumqttc::EventLoop)>),
}

/// Runs the workload and prints the result.
pub(crate) fn run(o: &MqttOpts, out: &Out) -> anyhow::Result<()> {
    anyhow::ensure!(
        o.addr.ip().is_loopback(),
        "the benchmark only connects to this machine (a loopback address), got {}",
        o.addr
    );
    anyhow::ensure!(o.size >= HEADER, "--size must be at least {HEADER}");
    anyhow::ensure!(o.size <= 64 * 1024, "--size must be at most 65536");
    anyhow::ensure!(o.subscribers >= 1, "--subscribers must be at least 1");
    anyhow::ensure!(o.window >= 1, "--window must be at least 1");
    anyhow::ensure!(o.threads >= 1, "--threads must be at least 1");
    anyhow::ensure!(
        o.seconds > 0.0 && o.warmup_secs >= 0.0 && o.seconds + o.warmup_secs < 3600.0,
        "--seconds must be positive and the run shorter than an hour"
    );
    anyhow::ensure!(
        !o.topic.is_empty() && !o.topic.contains(['+', '#']),
        "--topic must be a topic name"
    );
    let rt = if o.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run_async(o, out))
}

async fn run_async(o: &MqttOpts, out: &Out) -> anyhow::Result<()> {
    let n = o.subscribers;
    let setup = Instant::now();
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-sub-{i}");
        let s = match o.client {
            ClientKind::Raw => open_raw(o.addr, &id, Some(&o.topic)).await.map(Sub::Raw),
            ClientKind::Rumqttc => open_rumqttc(o.addr, &id, &o.topic)
                .await
                .map(|ce| Sub::Rumqttc(Box::new(ce))),
        };
        subs.push(s.with_context(|| format!("subscriber {} of {n}", i + 1))?);
    }
    let publisher = open_raw(o.addr, "bench-pub", None)
        .await
        .context("publisher")?;
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;

    let from = (o.warmup_secs * 1e6) as u64;
    let to = from + (o.seconds * 1e6) as u64;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        progress: (0..n).map(|_| Padded::default()).collect(),
        waiting: AtomicBool::new(false),
        wake: Notify::new(),
        disconnected: AtomicUsize::new(0),
        window_from: from,
        window_to: to,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let r = Receiver::new(i, shared.clone());
            let stop = stop_rx.clone();
            match s {
                Sub::Raw(t) => tokio::spawn(run_raw(t, r, stop)),
                Sub::Rumqttc(ce) => {
                    let (c, e) = *ce;
                    tokio::spawn(run_rumqttc(c, e, r, stop))
                }
            }
        })
        .collect();
    // CPU use of the broker and of this tool over the measured window.
    let base = tokio::time::Instant::from_std(shared.base);
    let pid = o.pid;
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(base + Duration::from_micros(from)).await;
        let sample = || {
            (
                cpu_ticks(None),
                pid.and_then(|p| cpu_ticks(Some(p))),
                machine_busy_ticks(),
            )
        };
        let a = sample();
        tokio::time::sleep_until(base + Duration::from_micros(to)).await;
        let b = sample();
        let d = |x: Option<u64>, y: Option<u64>| Some(y?.saturating_sub(x?));
        (d(a.0, b.0), d(a.1, b.1), d(a.2, b.2))
    });

    let published = publish(publisher, o, &shared).await;
    let pub_end = Instant::now();
    let sent = published.as_ref().map_or(0, |p| p.sent);
    // Drain: until every subscriber has everything (or is gone), or deliveries stall.
    let mut seen = shared.total_progress();
    let mut last_change = Instant::now();
    while !shared.all_reached(sent) && pub_end.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t = shared.total_progress();
        if t != seen {
            seen = t;
            last_change = Instant::now();
        } else if last_change.elapsed() >= Duration::from_secs(o.drain_secs) {
            break;
        }
    }
    let drain_ms = pub_end.elapsed().as_secs_f64() * 1e3;
    let _ = stop_tx.send(true);
    let mut hist = Histogram::new();
    let (mut delivered, mut in_window, mut out_of_order, mut lost) = (0, 0, 0, 0);
    for t in tasks {
        let s = t.await.context("subscriber task failed")?;
        delivered += s.received;
        in_window += s.in_window;
        out_of_order += s.out_of_order;
        lost += sent.saturating_sub(s.received - s.out_of_order);
        hist.merge(&s.hist);
    }
    // The sampler's second reading is due at the end of the window, which has passed unless
    // publishing failed early.
    let (client_ticks, broker_ticks, busy_ticks) = if published.is_ok() {
        sampler.await.unwrap_or((None, None, None))
    } else {
        sampler.abort();
        (None, None, None)
    };
    // The rest of the machine: other processes (e.g. someone's build), interrupts, steal.
    let other_ticks = match (busy_ticks, client_ticks) {
        (Some(b), Some(c)) if o.pid.is_none() || broker_ticks.is_some() => {
            Some(b.saturating_sub(c + broker_ticks.unwrap_or(0)))
        }
        _ => None,
    };
    let published = published?;

    let secs = o.seconds;
    let pct = |t: Option<u64>| t.map(|t| r1(t as f64 / TICKS_PER_SEC / secs * 100.0));
    let expected = sent * n as u64;
    let r = MqttResult {
        mode: if o.rate == 0 { "windowed" } else { "paced" },
        subscribers: n,
        size: o.size,
        window: (o.rate == 0).then_some(o.window),
        rate: (o.rate > 0).then_some(o.rate),
        client: o.client,
        threads: o.threads,
        seconds: secs,
        sent,
        sent_per_sec: (published.sent_in_window as f64 / secs).round(),
        deliveries_per_sec: (in_window as f64 / secs).round(),
        expected,
        delivered,
        lost,
        lost_fraction: r4(lost as f64 / expected.max(1) as f64),
        out_of_order,
        disconnected: shared.disconnected.load(Ordering::Relaxed),
        p50_us: r1(hist.quantile(0.50)),
        p99_us: r1(hist.quantile(0.99)),
        p999_us: r1(hist.quantile(0.999)),
        max_us: r1(hist.max()),
        latency_samples: hist.total(),
        window_timeouts: (o.rate == 0).then_some(published.window_timeouts),
        publisher_blocked: published.blocked,
        broker_cpu_pct: pct(broker_ticks),
        client_cpu_pct: pct(client_ticks),
        other_cpu_pct: pct(other_ticks),
        client_cpu_ns_per_delivery: client_ticks
            .filter(|_| in_window > 0)
            .map(|t| (t as f64 / TICKS_PER_SEC * 1e9 / in_window as f64).round()),
        drain_ms: r1(drain_ms),
        setup_ms: r1(setup_ms),
    };
    let (workload, how) = if o.rate == 0 {
        ("mqtt_fanout", format!("window {}", o.window))
    } else {
        ("mqtt_paced", format!("{} messages/s", o.rate))
    };
    out.result(
        workload,
        &format!(
            "{workload}: 1 publisher -> {n} subscribers on {:?}, QoS 0, {} B payloads, {how}",
            o.topic, o.size
        ),
        &r,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 500.0);
        assert_eq!(h.quantile(0.99), 990.0);
        assert_eq!(h.max(), 1000.0);
        let mut big = Histogram::new();
        big.record(1_000_000);
        let got = big.quantile(0.5);
        assert!((got - 1e6).abs() / 1e6 < 0.016, "{got}");
        h.merge(&big);
        assert_eq!(h.total(), 1001);
    }

    #[test]
    fn publish_round_trip_and_loss_accounting() {
        let shared = Arc::new(Shared {
            base: Instant::now(),
            progress: (0..1).map(|_| Padded::default()).collect(),
            waiting: AtomicBool::new(false),
            wake: Notify::new(),
            disconnected: AtomicUsize::new(0),
            window_from: 0,
            window_to: u64::MAX,
        });
        let mut r = Receiver::new(0, shared.clone());
        let mut wire = Vec::new();
        // Message 2 is lost; 200 bytes of payload need a two-byte remaining length.
        for seq in [0, 1, 3] {
            put_publish(&mut wire, b"bench/fan", seq, 100 + seq, 200);
        }
        let mut at = 0;
        while let Some((first, body)) = split_packet(&wire[at..]).unwrap() {
            assert_eq!(first, 0x30);
            let p = publish_payload(first, &wire[at + body.start..at + body.end]).unwrap();
            assert_eq!(p.len(), 200);
            r.on_payload(p, 150);
            at += body.end;
        }
        assert_eq!(at, wire.len());
        r.commit();
        assert_eq!(shared.min_progress(), 4);
        assert_eq!((r.stats.received, r.stats.out_of_order), (3, 0));
        assert_eq!(r.stats.hist.quantile(0.0), 50.0 - 3.0);
        // A partial packet needs more bytes.
        assert!(split_packet(&wire[..5]).unwrap().is_none());
    }
}
