//! `throughput`: one writer over 100 rotating addresses, one wildcard subscriber.
//!
//! The subscriber is done when every address shows the last value written to it (a router may
//! coalesce superseded values; `delivered` / `expected` shows how many it skipped or lost).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::SinkExt;
use serde::Serialize;

use crate::conn::{Fleet, Target, connect, seq_value, set_frame, set_info};
use crate::fanout::{
    Completion, Slot, WaitArgs, blast_and_wait, open_error, publisher_sink, total,
};
use crate::output::{Out, r1, r4};

/// Addresses written in rotation: `/bench/tp/0` .. `/bench/tp/99`.
const ADDRESSES: u64 = 100;
const PREFIX: &str = "/bench/tp/";
const PATTERN: &str = "/bench/tp/*";

/// Options of `throughput`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ThroughputOpts {
    /// SETs the writer sends.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) messages: usize,
    /// Value size in bytes: 8 or less sends an f64, more a string of that many bytes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=60_000))]
    pub(crate) size: u16,
    /// How long to wait for deliveries.
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    /// Connect the subscriber to this router instead (another router of a cluster).
    #[arg(long)]
    pub(crate) sub_url: Option<String>,
}

#[derive(Debug, Serialize)]
struct ThroughputResult {
    messages: usize,
    size: u16,
    sent_frame_bytes: usize,
    /// Time to hand every SET to the socket.
    send_ms: f64,
    sent_per_sec: f64,
    expected: u64,
    delivered: u64,
    delivered_fraction: f64,
    /// Every address reached its final value before the deadline.
    complete: bool,
    /// From the first send to the last delivery.
    elapsed_ms: f64,
    delivered_per_sec: f64,
    /// `messages` / `elapsed`: SETs written per second until the subscriber showed every final
    /// value (absent when not complete).
    settled_per_sec: Option<f64>,
    /// Addresses whose last delivered value is the last value written.
    final_values_ok: u64,
    /// Addresses written.
    final_values_checked: u64,
}

/// The index of the message written last to address `k` of `m` messages, if any.
fn last_written(k: u64, m: u64) -> Option<u64> {
    if k >= m {
        return None;
    }
    Some(k + (m - 1 - k) / ADDRESSES * ADDRESSES)
}

/// The subscriber's view of the final values: which addresses already show the last value
/// written to them.
struct Finals {
    /// Per address, the sequence number of the last SET written to it.
    want: Vec<Option<u64>>,
    /// Per address, the last sequence number received.
    last: Vec<Option<u64>>,
    /// Addresses whose last received value is the last written.
    matched: u64,
    /// Addresses written.
    needed: u64,
}

impl Finals {
    fn new(m: u64) -> Finals {
        let want: Vec<Option<u64>> = (0..ADDRESSES).map(|k| last_written(k, m)).collect();
        let needed = want.iter().flatten().count() as u64;
        Finals {
            want,
            last: vec![None; ADDRESSES as usize],
            matched: 0,
            needed,
        }
    }

    /// Records a delivery to address `k`; true when it completes the set of final values.
    fn seen(&mut self, k: usize, seq: Option<u64>) -> bool {
        let was = self.last[k].is_some() && self.last[k] == self.want[k];
        self.last[k] = seq;
        let is = seq.is_some() && seq == self.want[k];
        match (was, is) {
            (false, true) => {
                self.matched += 1;
                self.matched == self.needed
            }
            (true, false) => {
                self.matched -= 1;
                false
            }
            _ => false,
        }
    }
}

/// Runs the workload and prints its result.
pub(crate) async fn run(target: &Target, o: &ThroughputOpts, out: &Out) -> anyhow::Result<()> {
    anyhow::ensure!(o.messages > 0, "--messages must be at least 1");
    let m = o.messages as u64;
    let size = usize::from(o.size);
    let base = Instant::now();
    let slots: Arc<[Slot]> = Arc::from([Slot::default()]);
    let completion = Arc::new(Completion::new(1));
    let tracker = Arc::new(Mutex::new(Finals::new(m)));
    let sub_target = match &o.sub_url {
        Some(u) => Target::parse(u).context("--sub-url")?,
        None => target.clone(),
    };
    let (fleet, opened) = Fleet::open(&sub_target, 1, 1, Some(PATTERN), |_| {
        let slots = slots.clone();
        let completion = completion.clone();
        let tracker = tracker.clone();
        move |frame: &Bytes, at: Instant| {
            let Some(set) = set_info(frame) else { return };
            let Some(k) = set
                .address
                .strip_prefix(PREFIX)
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|&k| k < ADDRESSES as usize)
            else {
                return;
            };
            let slot = &slots[0];
            slot.count.fetch_add(1, Ordering::Relaxed);
            slot.last_ns
                .store((at - base).as_nanos() as u64, Ordering::Relaxed);
            if let Ok(mut t) = tracker.lock()
                && t.seen(k, set.seq)
            {
                completion.one_done();
            }
        }
    })
    .await;
    if let Err(f) = opened {
        fleet.close().await;
        return Err(open_error(f, 1).context("subscriber setup"));
    }
    let writer = match connect(target, "bench-writer", None).await {
        Ok(w) => w,
        Err(e) => {
            fleet.close().await;
            return Err(e.context("writer setup"));
        }
    };
    let (mut sink, drain) = publisher_sink(writer);
    let frames = (0..m)
        .map(|i| set_frame(&format!("{PREFIX}{}", i % ADDRESSES), seq_value(i, size)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sent_frame_bytes = frames.first().map_or(0, |f| f.len());

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
    let delivered = total(&slots);
    let last_ns = slots[0].last_ns.load(Ordering::Relaxed);
    let elapsed = Duration::from_nanos(last_ns.saturating_sub((start - base).as_nanos() as u64));
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    drain.abort();
    fleet.close().await;
    sent.context("writer")?;

    let (ok, checked) = match tracker.lock() {
        Ok(t) => (t.matched, t.needed),
        Err(_) => (0, 0),
    };
    let per_sec = |n: u64, d: Duration| {
        if d.is_zero() {
            0.0
        } else {
            (n as f64 / d.as_secs_f64()).round()
        }
    };
    let r = ThroughputResult {
        messages: o.messages,
        size: o.size,
        sent_frame_bytes,
        send_ms: r1(send_time.as_secs_f64() * 1e3),
        sent_per_sec: per_sec(m, send_time),
        expected: m,
        delivered,
        delivered_fraction: r4(delivered as f64 / m as f64),
        complete,
        elapsed_ms: r1(elapsed.as_secs_f64() * 1e3),
        delivered_per_sec: per_sec(delivered, elapsed),
        settled_per_sec: complete.then(|| per_sec(m, elapsed)),
        final_values_ok: ok,
        final_values_checked: checked,
    };
    out.result(
        "throughput",
        &format!(
            "throughput: {} SETs over {ADDRESSES} addresses, subscriber on {PATTERN}",
            o.messages
        ),
        &r,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finals_complete_on_the_last_values() {
        let mut f = Finals::new(150);
        assert_eq!(f.needed, 100);
        for i in 0..149 {
            assert!(!f.seen((i % 100) as usize, Some(i)));
        }
        assert_eq!(f.matched, 99);
        assert!(f.seen(49, Some(149)));
    }

    #[test]
    fn last_written_index() {
        assert_eq!(last_written(0, 1000), Some(900));
        assert_eq!(last_written(99, 1000), Some(999));
        assert_eq!(last_written(5, 250), Some(205));
        assert_eq!(last_written(60, 250), Some(160));
        assert_eq!(last_written(60, 50), None);
        assert_eq!(last_written(3, 4), Some(3));
    }
}
