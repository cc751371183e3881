//! Signals between the routers of a cluster, on core NATS subjects
//! (`clasp.NAME.sig.<address tokens>`, see `clasp_cluster::naming`).
//!
//! What this router's sessions publish goes out as the PUBLISH frame itself, with two headers
//! naming this router and numbering the message. This router subscribes on NATS only for the
//! patterns its sessions subscribe to (counted per NATS filter, several patterns may share
//! one), so traffic no one here wants is never sent here. NATS's `no_echo` keeps a router's
//! own messages from coming back to it. Two filters can both match one subject (`a.*.c` and
//! `a.b.*`), and NATS then delivers the message once per filter: the numbering lets this side
//! take each message once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clasp_cluster::Subjects;
use clasp_proto::pattern::Pattern;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Shared;
use crate::core::InterestChange;

/// Header naming the publishing router.
const ORIGIN: &str = "Clasp-Origin";
/// Header numbering the router's messages.
const SEQ: &str = "Clasp-Seq";
/// How many recent message numbers per router are remembered to drop duplicates.
const WINDOW: u64 = 4096;

/// What the core hands to the cluster besides writes.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A signal published here: its address and frame.
    Publish(Arc<str>, Bytes),
    /// A change in what this router's sessions subscribe to.
    Interest(InterestChange),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct SignalStats {
    /// Signals sent to the other routers.
    pub(crate) sent: AtomicU64,
    /// Signals from the other routers fanned out here.
    pub(crate) received: AtomicU64,
    /// Signals not sent: the address makes no NATS subject (too long), or NATS refused.
    pub(crate) unsendable: AtomicU64,
    /// The same signal delivered again through a second matching filter, dropped.
    pub(crate) duplicates: AtomicU64,
    /// NATS subscriptions held for this router's interest.
    pub(crate) filters: AtomicU64,
}

/// The most recent message numbers seen from each router.
#[derive(Default)]
struct Seen {
    by_origin: HashMap<Bytes, (u64, std::collections::BTreeSet<u64>)>,
}

impl Seen {
    /// Whether message `seq` of `origin` is new (and remember it).
    fn first_time(&mut self, origin: &Bytes, seq: u64) -> bool {
        let (top, set) = self
            .by_origin
            .entry(origin.clone())
            .or_insert_with(|| (0, std::collections::BTreeSet::new()));
        if seq + WINDOW <= *top {
            // Older than the window: long delivered through the other filter.
            return false;
        }
        if !set.insert(seq) {
            return false;
        }
        if seq > *top {
            *top = seq;
            while set.first().is_some_and(|s| s + WINDOW <= *top) {
                set.pop_first();
            }
        }
        true
    }
}

/// Runs the signal side of the link until the channel closes.
pub(crate) async fn run(
    client: async_nats::Client,
    subjects: Subjects,
    origin: String,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    shared: Arc<Shared>,
    stats: Arc<SignalStats>,
) {
    // Messages from every filter's subscription, into one place that drops duplicates.
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<async_nats::Message>();
    let mut patterns: HashMap<Arc<str>, String> = HashMap::new();
    let mut filters: HashMap<String, (usize, tokio::task::JoinHandle<()>)> = HashMap::new();
    let mut seq: u64 = 0;
    let mut seen = Seen::default();
    let origin_value = async_nats::HeaderValue::from_lossy(&origin);
    loop {
        tokio::select! {
            o = outbound.recv() => match o {
                None => break,
                Some(Outbound::Publish(address, frame)) => {
                    let Ok(subject) = subjects.signal(&address) else {
                        stats.unsendable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    seq += 1;
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(ORIGIN, origin_value.clone());
                    headers.insert(SEQ, async_nats::HeaderValue::from(seq));
                    match client.publish_with_headers(subject, headers, frame).await {
                        Ok(()) => stats.sent.fetch_add(1, Ordering::Relaxed),
                        Err(_) => stats.unsendable.fetch_add(1, Ordering::Relaxed),
                    };
                }
                Some(Outbound::Interest(InterestChange::Add(p))) => {
                    let Some(filter) = filter_of(&subjects, &p) else { continue };
                    patterns.insert(p, filter.clone());
                    let entry = filters.entry(filter.clone());
                    match entry {
                        std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().0 += 1,
                        std::collections::hash_map::Entry::Vacant(v) => {
                            match client.subscribe(filter.clone()).await {
                                Ok(mut sub) => {
                                    let tx = in_tx.clone();
                                    let task = tokio::spawn(async move {
                                        while let Some(m) = sub.next().await {
                                            if tx.send(m).is_err() {
                                                return;
                                            }
                                        }
                                    });
                                    v.insert((1, task));
                                    stats.filters.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => tracing::warn!(%filter, error = %e, "cluster: cannot subscribe"),
                            }
                        }
                    }
                }
                Some(Outbound::Interest(InterestChange::Remove(p))) => {
                    let Some(filter) = patterns.remove(&p) else { continue };
                    if let Some((n, _)) = filters.get_mut(&filter) {
                        *n -= 1;
                        if *n == 0 && let Some((_, task)) = filters.remove(&filter) {
                            // Dropping the subscriber unsubscribes it on NATS.
                            task.abort();
                            stats.filters.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            },
            Some(first) = in_rx.recv() => {
                let mut batch = vec![first];
                while batch.len() < 256 && let Ok(m) = in_rx.try_recv() {
                    batch.push(m);
                }
                let mut frames = Vec::with_capacity(batch.len());
                for m in batch {
                    let id = m.headers.as_ref().and_then(|h| {
                        let o = Bytes::copy_from_slice(h.get(ORIGIN)?.as_str().as_bytes());
                        let s = h.get(SEQ)?.as_str().parse::<u64>().ok()?;
                        Some((o, s))
                    });
                    if let Some((o, s)) = id && !seen.first_time(&o, s) {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    frames.push(m.payload);
                }
                let n = frames.len() as u64;
                shared.with_core(|core, now| {
                    for f in &frames {
                        core.publish_remote(f, now);
                    }
                });
                stats.received.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
    for (_, (_, task)) in filters {
        task.abort();
    }
}

/// The NATS filter of a CLASP pattern, with the cluster's prefix.
fn filter_of(subjects: &Subjects, pattern: &str) -> Option<String> {
    let p = Pattern::compile(pattern).ok()?;
    let i = clasp_cluster::interest(&p).ok()?;
    Some(format!("{}sig.{}", subjects.prefix(), i.filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_within_the_window() {
        let mut s = Seen::default();
        let a = Bytes::from_static(b"a");
        assert!(s.first_time(&a, 1));
        assert!(s.first_time(&a, 3));
        assert!(!s.first_time(&a, 1));
        assert!(s.first_time(&a, 2));
        assert!(!s.first_time(&a, 3));
        assert!(s.first_time(&Bytes::from_static(b"b"), 1));
        assert!(s.first_time(&a, 10_000));
        assert!(!s.first_time(&a, 4), "older than the window");
    }
}
