//! Which routers are in the cluster, from heartbeats on `clasp.NAME.router.alive`.
//!
//! Every router publishes a heartbeat every [`HEARTBEAT`]: its id, name and how many sessions
//! it serves. A router not heard from for [`SILENCE`] is taken for gone (killed, or cut off
//! from NATS): the P2P sessions it announced are told to this router's clients as having left
//! (`/clasp/p2p/leave`) and forgotten, so no one is offered a peer that is not there. A router
//! heard again after that is asked, with the other routers, to announce its sessions again.
//! The list of routers, with their sessions, is in `/healthz`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clasp_cluster::Subjects;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Shared;
use super::cluster::Status;
use crate::core::P2pIn;

/// How often a router says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a router may be silent before it is taken for gone: three heartbeats missed.
pub(crate) const SILENCE: Duration = Duration::from_millis(6_500);

/// A router's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// The router's id in the cluster (new at every start).
    pub(crate) id: String,
    /// Its configured name.
    pub(crate) name: String,
    /// Sessions it serves.
    pub(crate) sessions: u64,
}

/// A router of the cluster as this one knows it.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Its last heartbeat.
    pub(crate) beat: Heartbeat,
    /// When it came.
    pub(crate) seen: Instant,
}

/// The routers this one knows of (itself not included).
#[derive(Debug, Default)]
pub(crate) struct Routers {
    peers: Mutex<HashMap<String, Peer>>,
}

impl Routers {
    /// The other routers, by id.
    pub(crate) fn list(&self) -> Vec<Peer> {
        let mut v: Vec<Peer> = self.peers.lock().values().cloned().collect();
        v.sort_by(|a, b| a.beat.id.cmp(&b.beat.id));
        v
    }

    /// Records a heartbeat; `true` if the router was not known (new, or back after silence).
    fn beat(&self, beat: Heartbeat, now: Instant) -> bool {
        let mut peers = self.peers.lock();
        let known = peers.contains_key(&beat.id);
        peers.insert(beat.id.clone(), Peer { beat, seen: now });
        !known
    }

    /// Forgets the routers silent for longer than [`SILENCE`]; returns their ids.
    fn sweep(&self, now: Instant) -> Vec<String> {
        let mut peers = self.peers.lock();
        let mut gone: Vec<String> = peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.seen) > SILENCE)
            .map(|(id, _)| id.clone())
            .collect();
        gone.sort();
        for id in &gone {
            peers.remove(id);
        }
        gone
    }
}

/// Runs the heartbeats until the server stops (the task is aborted).
pub(crate) async fn run(
    client: async_nats::Client,
    subjects: Subjects,
    me: Heartbeat,
    shared: Arc<Shared>,
    status: Arc<Status>,
) {
    let subject = subjects.control("router.alive");
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cluster: cannot follow the other routers' heartbeats");
            return;
        }
    };
    let mut tick = tokio::time::interval(HEARTBEAT / 2);
    let mut next_beat = Instant::now();
    // Ids of routers taken for gone, to ask for their announces again if they come back.
    let mut lost: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if now >= next_beat {
                    next_beat = now + HEARTBEAT;
                    let mut beat = me.clone();
                    beat.sessions = shared.core.lock().session_count() as u64;
                    if let Ok(body) = serde_json::to_vec(&beat) {
                        let _ = client.publish(subject.clone(), Bytes::from(body)).await;
                    }
                }
                for id in status.routers.sweep(now) {
                    tracing::warn!(router = %id, "cluster: a router went silent; its P2P sessions are taken as gone");
                    status.routers_lost.fetch_add(1, Ordering::Relaxed);
                    let router: Arc<str> = Arc::from(id.as_str());
                    shared.with_core(|core, now| core.p2p_remote(P2pIn::RouterGone(router), now));
                    lost.push(id);
                    // Ids are new at every start: keep the recent ones only.
                    if lost.len() > 64 {
                        lost.remove(0);
                    }
                }
            }
            m = sub.next() => {
                let Some(m) = m else { return };
                let Ok(beat) = serde_json::from_slice::<Heartbeat>(&m.payload) else { continue };
                if beat.id == me.id {
                    continue;
                }
                let id = beat.id.clone();
                if status.routers.beat(beat, Instant::now()) {
                    tracing::info!(router = %id, "cluster: a router joined");
                    if let Some(i) = lost.iter().position(|l| *l == id) {
                        lost.swap_remove(i);
                        // Back after being taken for gone: its peers' announces were dropped.
                        let _ = client.publish(subjects.control("p2p.hello"), Bytes::new()).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str) -> Heartbeat {
        Heartbeat {
            id: id.into(),
            name: "r".into(),
            sessions: 1,
        }
    }

    #[test]
    fn silent_routers_are_forgotten_after_three_heartbeats() {
        let r = Routers::default();
        let t0 = Instant::now();
        assert!(r.beat(beat("a"), t0));
        assert!(!r.beat(beat("a"), t0 + HEARTBEAT), "known already");
        assert!(r.beat(beat("b"), t0 + HEARTBEAT));
        assert!(r.sweep(t0 + HEARTBEAT * 3).is_empty());
        assert_eq!(
            r.sweep(t0 + HEARTBEAT + SILENCE + HEARTBEAT),
            ["a", "b"].map(String::from)
        );
        assert!(r.list().is_empty());
        assert!(r.beat(beat("a"), t0 + HEARTBEAT * 10), "back after silence");
    }
}
