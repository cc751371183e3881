//! `fanout`: N subscribers on one address, one publisher sending as fast as it can.
//!
//! The headline figure is `deliveries_per_sec`: SETs received by all subscribers together per
//! second, from the first send to the last delivery, next to `delivered` / `expected` (every
//! subscriber should receive every SET). A subscriber is done when it receives the last message:
//! a router that coalesces params (skips superseded values for a slow reader) still delivers the
//! last one, and one that drops may lose any; both show as `undelivered` > 0. The `settled_*`
//! figure counts how fast every subscriber reached the final value, skipped values included.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as WsMsg;

use crate::conn::{Exhausted, Fleet, Target, Ws, connect, seq_value, set_frame, set_info};
use crate::output::{Out, r1, r4};

/// The address every subscriber subscribes to (exactly) and the publisher writes.
const ADDR: &str = "/bench/fan";
/// Frames the publisher queues between two flushes of its socket.
pub(crate) const SEND_BATCH: usize = 32;

/// Options of `fanout`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutOpts {
    /// Subscriber counts to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub(crate) subscribers: Vec<usize>,
    /// SETs the publisher sends for each subscriber count (at least).
    #[arg(long, default_value_t = 1000)]
    pub(crate) messages: usize,
    /// Send more SETs when needed for this many deliveries in all, so a run lasts long enough
    /// to measure a steady rate (0: exactly `--messages`).
    #[arg(long, default_value_t = 0)]
    pub(crate) min_deliveries: u64,
    /// How long to wait for deliveries.
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    /// Connections set up at once.
    #[arg(long, default_value_t = 50)]
    pub(crate) concurrency: usize,
    /// Spread the subscribers over these routers (of a cluster) in turn instead of --url;
    /// the publisher stays on --url.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sub_urls: Vec<String>,
}

#[derive(Debug, Serialize)]
struct FanoutResult {
    subscribers: usize,
    messages: usize,
    /// `messages` × `subscribers`.
    expected: u64,
    /// SETs received by all subscribers together.
    delivered: u64,
    /// `delivered` / `expected`.
    delivered_fraction: f64,
    /// `expected` − `delivered`: values skipped (coalesced) or dropped by the router.
    undelivered: u64,
    /// Subscribers that received every one of the `messages`.
    subscribers_complete: usize,
    /// Every subscriber got the last message before the deadline.
    complete: bool,
    /// Time to hand every SET to the publisher's socket.
    send_ms: f64,
    /// From the first send to the last delivery (every subscriber has the final value).
    elapsed_ms: f64,
    /// `delivered` / `elapsed`: deliveries per second, all subscribers together.
    deliveries_per_sec: f64,
    /// `expected` / `elapsed`: how fast every subscriber was brought up to date, counting the
    /// values a router coalesced away as delivered (absent when not complete).
    settled_deliveries_per_sec: Option<f64>,
    /// Time to connect and subscribe all subscribers.
    setup_ms: f64,
}

/// One subscriber's counters, written only by its own task.
#[derive(Default)]
pub(crate) struct Slot {
    /// Messages received.
    pub(crate) count: AtomicU64,
    /// When the last one arrived, ns after the run's base instant.
    pub(crate) last_ns: AtomicU64,
}

/// Shared completion state: how many subscribers are not done yet, and a wake-up when none.
pub(crate) struct Completion {
    remaining: AtomicUsize,
    /// Notified once every subscriber has all messages.
    pub(crate) done: Notify,
}

impl Completion {
    /// Waiting for `n` subscribers.
    pub(crate) fn new(n: usize) -> Completion {
        Completion {
            remaining: AtomicUsize::new(n),
            done: Notify::new(),
        }
    }

    /// One more subscriber is done.
    pub(crate) fn one_done(&self) {
        let before = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1));
        if before == Ok(1) {
            self.done.notify_one();
        }
    }
}

/// When to stop waiting for deliveries.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WaitArgs {
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub(crate) deadline_secs: u64,
    /// Stop waiting early when nothing arrived for this many seconds (0: wait for the deadline).
    #[arg(long, default_value_t = 5)]
    pub(crate) stall_secs: u64,
}

impl Default for WaitArgs {
    fn default() -> Self {
        WaitArgs {
            deadline_secs: 30,
            stall_secs: 5,
        }
    }
}

/// Total messages counted in `slots`.
pub(crate) fn total(slots: &[Slot]) -> u64 {
    slots.iter().map(|s| s.count.load(Ordering::Relaxed)).sum()
}

/// Waits until `completion` fires (true), or the deadline passes or nothing arrives for `stall`
/// (false). The periodic check only decides when to give up; completion wakes at once.
pub(crate) async fn wait_done(
    completion: &Completion,
    slots: &[Slot],
    deadline: Instant,
    stall: Duration,
) -> bool {
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut seen = total(slots);
    let mut last_change = tokio::time::Instant::now();
    loop {
        let check = (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline);
        tokio::select! {
            () = completion.done.notified() => return true,
            () = tokio::time::sleep_until(check) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return false;
                }
                let t = total(slots);
                if t != seen {
                    seen = t;
                    last_change = now;
                } else if !stall.is_zero() && now - last_change >= stall {
                    return false;
                }
            }
        }
    }
}

/// Sends `frames` with [`blast`] starting at `start`, then waits with [`wait_done`] until every
/// subscriber is done, the deadline passes or delivery stalls. Returns the send result, whether
/// it completed, and how long sending took.
pub(crate) async fn blast_and_wait<S>(
    sink: &mut S,
    frames: Vec<Bytes>,
    start: Instant,
    completion: &Completion,
    slots: &[Slot],
    deadline: Duration,
    stall: Duration,
) -> (anyhow::Result<()>, bool, Duration)
where
    S: futures_util::Sink<WsMsg, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let sent = blast(sink, frames).await;
    let send_time = start.elapsed();
    let complete = match sent {
        Ok(()) => wait_done(completion, slots, start + deadline, stall).await,
        Err(_) => false,
    };
    (sent, complete, send_time)
}

/// Sends the frames as fast as the socket takes them, flushing every [`SEND_BATCH`] frames.
pub(crate) async fn blast<S>(sink: &mut S, frames: Vec<Bytes>) -> anyhow::Result<()>
where
    S: futures_util::Sink<WsMsg, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    for (i, f) in frames.into_iter().enumerate() {
        sink.feed(WsMsg::Binary(f))
            .await
            .context("publisher send failed")?;
        if (i + 1) % SEND_BATCH == 0 {
            sink.flush().await.context("publisher send failed")?;
        }
    }
    sink.flush().await.context("publisher send failed")
}

/// Splits a publisher's socket; a background task reads and discards what the router sends.
pub(crate) fn publisher_sink(
    ws: Ws,
) -> (
    futures_util::stream::SplitSink<Ws, WsMsg>,
    tokio::task::JoinHandle<()>,
) {
    let (sink, mut stream) = ws.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    (sink, drain)
}

/// Explains a failure to open many connections.
pub(crate) fn open_error(f: crate::conn::OpenFailure, wanted: usize) -> anyhow::Error {
    match f.error.downcast_ref::<Exhausted>() {
        Some(e) => anyhow::anyhow!(
            "{e} at {} connections (wanted {wanted}); raise the open-file limit (ulimit -n) of \
             this tool and of the router",
            f.opened
        ),
        None => f
            .error
            .context(format!("connection {} of {wanted} failed", f.opened + 1)),
    }
}

async fn one(target: &Target, n: usize, o: &FanoutOpts, out: &Out) -> anyhow::Result<()> {
    let m = (o.messages as u64).max(o.min_deliveries.div_ceil(n as u64));
    let base = Instant::now();
    let slots: Arc<[Slot]> = (0..n).map(|_| Slot::default()).collect();
    let completion = Arc::new(Completion::new(n));
    let setup = Instant::now();
    let targets = if o.sub_urls.is_empty() {
        vec![target.clone()]
    } else {
        o.sub_urls
            .iter()
            .map(|u| Target::parse(u))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("--sub-urls")?
    };
    let (fleet, opened) = Fleet::open_spread(&targets, n, o.concurrency, Some(ADDR), |i| {
        let slots = slots.clone();
        let completion = completion.clone();
        move |frame: &Bytes, at: Instant| {
            let Some(set) = set_info(frame) else { return };
            if set.address != ADDR {
                return;
            }
            let slot = &slots[i];
            slot.count.fetch_add(1, Ordering::Relaxed);
            slot.last_ns
                .store((at - base).as_nanos() as u64, Ordering::Relaxed);
            // One address, one writer: the last message arrives last, whether or not the
            // router skipped (coalesced or dropped) some before it.
            if set.seq == Some(m - 1) {
                completion.one_done();
            }
        }
    })
    .await;
    if let Err(f) = opened {
        fleet.close().await;
        return Err(open_error(f, n));
    }
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;

    let publisher = connect(target, "bench-pub", None).await;
    let publisher = match publisher {
        Ok(p) => p,
        Err(e) => {
            fleet.close().await;
            return Err(e.context("publisher setup"));
        }
    };
    let (mut sink, drain) = publisher_sink(publisher);
    let frames = (0..m)
        .map(|i| set_frame(ADDR, seq_value(i, 8)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let (sent, complete, send_time) = blast_and_wait(
        &mut sink,
        frames,
        start,
        &completion,
        &slots,
        Duration::from_secs(o.wait.deadline_secs),
        Duration::from_secs(o.wait.stall_secs),
    )
    .await;
    let send_ms = send_time.as_secs_f64() * 1e3;
    let delivered = total(&slots);
    let subscribers_complete = slots
        .iter()
        .filter(|s| s.count.load(Ordering::Relaxed) >= m)
        .count();
    let last_ns = slots
        .iter()
        .map(|s| s.last_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let start_ns = (start - base).as_nanos() as u64;
    let elapsed = Duration::from_nanos(last_ns.saturating_sub(start_ns));

    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    drain.abort();
    fleet.close().await;
    sent?;

    let expected = m * n as u64;
    let secs = elapsed.as_secs_f64();
    let r = FanoutResult {
        subscribers: n,
        messages: m as usize,
        expected,
        delivered,
        delivered_fraction: r4(delivered as f64 / expected.max(1) as f64),
        undelivered: expected.saturating_sub(delivered),
        subscribers_complete,
        complete,
        send_ms: r1(send_ms),
        elapsed_ms: r1(secs * 1e3),
        deliveries_per_sec: if secs > 0.0 {
            (delivered as f64 / secs).round()
        } else {
            0.0
        },
        settled_deliveries_per_sec: (complete && secs > 0.0)
            .then(|| (expected as f64 / secs).round()),
        setup_ms: r1(setup_ms),
    };
    out.result(
        "fanout",
        &format!("fanout: {n} subscribers x {m} SETs on {ADDR}"),
        &r,
    );
    Ok(())
}

/// Runs the workload for each subscriber count and prints the results.
pub(crate) async fn run(target: &Target, o: &FanoutOpts, out: &Out) -> anyhow::Result<()> {
    anyhow::ensure!(o.messages > 0, "--messages must be at least 1");
    for &n in o.subscribers.iter().filter(|&&n| n > 0) {
        one(target, n, o, out)
            .await
            .with_context(|| format!("fanout with {n} subscribers"))?;
    }
    Ok(())
}
