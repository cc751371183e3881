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
//!
//! A bundle of signals (no SETs) goes out as one message holding all its PUBLISH frames (each
//! after its length, u32 big-endian) on `clasp.NAME.bundle`, which every router follows: each
//! gets the whole bundle once and fans out to its own subscribers what they want, in one go.
//! (Bundles of signals are rare; sending one on every member's subject instead would multiply
//! it by its addresses.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clasp_cluster::Subjects;
use clasp_proto::pattern::Pattern;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Shared;
use crate::core::{InterestChange, SignalOut};

/// Header naming the publishing router.
const ORIGIN: &str = "Clasp-Origin";
/// Header numbering the router's messages.
const SEQ: &str = "Clasp-Seq";
/// How many recent message numbers per router are remembered to drop duplicates.
const WINDOW: u64 = 4096;

/// What the core hands to the cluster besides writes.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A signal, or a bundle of signals, published here.
    Publish(SignalOut),
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
    let mut bundle_task = None;
    let origin_value = async_nats::HeaderValue::from_lossy(&origin);
    // Bundles of signals: every router follows them.
    let bundles = subjects.control("bundle");
    match client.subscribe(bundles.clone()).await {
        Ok(mut sub) => {
            let tx = in_tx.clone();
            bundle_task = Some(tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
            }));
        }
        Err(e) => tracing::warn!(error = %e, "cluster: cannot follow bundles of signals"),
    }
    loop {
        tokio::select! {
            o = outbound.recv() => match o {
                None => break,
                Some(Outbound::Publish(signal)) => {
                    let (subject, payload) = match signal {
                        SignalOut::One(address, frame) => match subjects.signal(&address) {
                            Ok(s) => (s, frame),
                            Err(_) => {
                                stats.unsendable.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                        SignalOut::Bundle(members) => (bundles.clone(), bundle_payload(&members)),
                    };
                    seq += 1;
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(ORIGIN, origin_value.clone());
                    headers.insert(SEQ, async_nats::HeaderValue::from(seq));
                    match client.publish_with_headers(subject, headers, payload).await {
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
                let mut items = Vec::with_capacity(batch.len());
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
                    if *m.subject != *bundles {
                        items.push(Item::One(m.payload));
                    } else if let Some(frames) = bundle_frames(&m.payload) {
                        items.push(Item::Bundle(frames));
                    } else {
                        stats.unsendable.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let n = items.len() as u64;
                shared.with_core(|core, now| {
                    for i in &items {
                        match i {
                            Item::One(frame) => {
                                core.publish_remote(frame, now);
                            }
                            Item::Bundle(frames) => core.publish_remote_bundle(frames, now),
                        }
                    }
                });
                stats.received.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
    for (_, (_, task)) in filters {
        task.abort();
    }
    if let Some(t) = bundle_task {
        t.abort();
    }
}

/// A message from another router: one signal, or a bundle's.
enum Item {
    One(Bytes),
    Bundle(Vec<Bytes>),
}

/// A bundle's signals as one message: each frame after its length.
fn bundle_payload(members: &[(Arc<str>, Bytes)]) -> Bytes {
    let mut out = Vec::with_capacity(members.iter().map(|(_, f)| 4 + f.len()).sum());
    for (_, f) in members {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    Bytes::from(out)
}

/// The frames of a bundle message; `None` if it is cut short.
fn bundle_frames(payload: &Bytes) -> Option<Vec<Bytes>> {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while at < payload.len() {
        let n = payload.get(at..at + 4)?;
        let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
        let end = at.checked_add(4 + n).filter(|e| *e <= payload.len())?;
        frames.push(payload.slice(at + 4..end));
        at = end;
    }
    Some(frames)
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
    fn bundle_messages_round_trip_and_cut_ones_are_refused() {
        let a: Arc<str> = Arc::from("/a");
        let members = vec![
            (a.clone(), Bytes::from_static(b"one")),
            (a, Bytes::from_static(b"")),
        ];
        let p = bundle_payload(&members);
        let frames = bundle_frames(&p).unwrap();
        assert_eq!(frames, vec![Bytes::from_static(b"one"), Bytes::new()]);
        for cut in 1..p.len() {
            let cut = p.slice(..cut);
            if let Some(f) = bundle_frames(&cut) {
                assert!(f.len() < 2, "a cut message never yields both frames");
            }
        }
    }

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
