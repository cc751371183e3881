//! Background fan-out load for `latency --load-subscribers N`: N subscribers on [`LOAD_ADDR`] and
//! one publisher sending QoS Fire SETs there, paced by a 1 ms interval so that the subscribers
//! together receive about the requested deliveries per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::SinkExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::conn::{Fleet, Target, connect, seq_value, set_frame, set_info};
use crate::fanout::{open_error, publisher_sink};
use crate::output::{r1, r4};

/// The address the load runs on (exactly), distinct from the latency address.
pub(crate) const LOAD_ADDR: &str = "/bench/load";
/// The pacing interval.
const TICK: Duration = Duration::from_millis(1);
/// The publisher stops by itself after this long.
const MAX_RUN: Duration = Duration::from_secs(600);
/// After the publisher stops, how long to wait for the deliveries still in flight.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// A running background load.
pub(crate) struct Load {
    subscribers: usize,
    rate: u64,
    fleet: Fleet,
    /// SETs the publisher has written.
    sent: Arc<AtomicU64>,
    /// SETs on [`LOAD_ADDR`] received by all load subscribers together.
    delivered: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    publisher: JoinHandle<anyhow::Result<()>>,
}

/// The load's counters at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    at: Instant,
    sent: u64,
    delivered: u64,
}

/// What the load achieved, added to the latency result.
#[derive(Debug, Serialize)]
pub(crate) struct LoadFigures {
    pub(crate) load_subscribers: usize,
    /// Deliveries per second asked for.
    pub(crate) load_rate: u64,
    /// SETs per second the load publisher sent while the samples were timed.
    pub(crate) load_sets_per_sec: f64,
    /// Deliveries per second the load subscribers received while the samples were timed.
    pub(crate) load_deliveries_per_sec: f64,
    /// Deliveries / (SETs sent × subscribers) over the whole load run, in-flight ones drained.
    pub(crate) load_delivered_fraction: f64,
}

impl Load {
    /// Connects `subscribers` load subscribers and the publisher, and starts sending so that
    /// about `rate` deliveries per second arrive in total.
    pub(crate) async fn start(
        target: &Target,
        subscribers: usize,
        rate: u64,
    ) -> anyhow::Result<Load> {
        anyhow::ensure!(subscribers > 0, "a load needs at least one subscriber");
        let delivered = Arc::new(AtomicU64::new(0));
        let (fleet, opened) = Fleet::open(target, subscribers, 50, Some(LOAD_ADDR), |_| {
            let delivered = delivered.clone();
            move |frame: &Bytes, _at| {
                if set_info(frame).is_some_and(|s| s.address == LOAD_ADDR) {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
        if let Err(f) = opened {
            fleet.close().await;
            return Err(open_error(f, subscribers).context("load subscribers"));
        }
        let publisher = match connect(target, "bench-load-pub", None).await {
            Ok(p) => p,
            Err(e) => {
                fleet.close().await;
                return Err(e.context("load publisher setup"));
            }
        };
        let sent = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let sets_per_sec = rate as f64 / subscribers as f64;
        let publisher = tokio::spawn(publish(publisher, sets_per_sec, sent.clone(), stop_rx));
        Ok(Load {
            subscribers,
            rate,
            fleet,
            sent,
            delivered,
            stop,
            publisher,
        })
    }

    /// The counters now.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            at: Instant::now(),
            sent: self.sent.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
        }
    }

    /// Stops the publisher, waits for the deliveries in flight, closes everything, and returns
    /// the figures between `from` and `to` plus the delivered fraction of the whole run.
    pub(crate) async fn finish(self, from: Mark, to: Mark) -> anyhow::Result<LoadFigures> {
        let _ = self.stop.send(true);
        let published = tokio::time::timeout(Duration::from_secs(5), self.publisher).await;
        let sent = self.sent.load(Ordering::Relaxed);
        let want = sent.saturating_mul(self.subscribers as u64);
        let drain_until = Instant::now() + DRAIN_WAIT;
        while self.delivered.load(Ordering::Relaxed) < want && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delivered = self.delivered.load(Ordering::Relaxed);
        self.fleet.close().await;
        match published {
            Ok(Ok(r)) => r.context("load publisher")?,
            Ok(Err(e)) => return Err(anyhow::Error::new(e).context("load publisher task")),
            Err(_) => anyhow::bail!("the load publisher did not stop within 5 s"),
        }
        let secs = (to.at - from.at).as_secs_f64();
        let per_sec = |a: u64, b: u64| {
            if secs > 0.0 {
                r1(b.saturating_sub(a) as f64 / secs)
            } else {
                0.0
            }
        };
        Ok(LoadFigures {
            load_subscribers: self.subscribers,
            load_rate: self.rate,
            load_sets_per_sec: per_sec(from.sent, to.sent),
            load_deliveries_per_sec: per_sec(from.delivered, to.delivered),
            load_delivered_fraction: r4(delivered as f64 / want.max(1) as f64),
        })
    }
}

/// Sends SETs to [`LOAD_ADDR`] at `sets_per_sec`: every [`TICK`] the SETs due by then, in one
/// flush. After a stall (the router not reading) at most four ticks' worth is sent at once and
/// the rest of the backlog is dropped, so the load never turns into a blast. Ends on `stop` or
/// after [`MAX_RUN`].
async fn publish(
    ws: crate::conn::Ws,
    sets_per_sec: f64,
    sent: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut sink, drain) = publisher_sink(ws);
    let max_burst = ((sets_per_sec * TICK.as_secs_f64()).ceil() as u64).max(1) * 4;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut seq = 0u64;
    // SETs that fell due during stalls and were never sent.
    let mut skipped = 0u64;
    let result = async {
        while start.elapsed() < MAX_RUN {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = tick.tick() => {}
            }
            let due = (sets_per_sec * start.elapsed().as_secs_f64()) as u64;
            let backlog = due.saturating_sub(seq + skipped);
            let n = backlog.min(max_burst);
            skipped += backlog - n;
            for _ in 0..n {
                let frame = set_frame(LOAD_ADDR, seq_value(seq, 8))?;
                sink.feed(tokio_tungstenite::tungstenite::Message::Binary(frame))
                    .await
                    .context("load publisher send failed")?;
                seq += 1;
            }
            if n > 0 {
                sink.flush().await.context("load publisher send failed")?;
                sent.store(seq, Ordering::Relaxed);
            }
        }
        anyhow::Ok(())
    }
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    drain.abort();
    result
}
