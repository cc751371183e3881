//! P2P signalling (protocol.md §11) between clients of different routers of a cluster, on
//! core NATS subjects:
//!
//! * `clasp.NAME.p2p.announce`: a session's announce (the PUBLISH frame, its session id in the
//!   `Clasp-Session` header and its router's in `Clasp-Router`), told to every router's
//!   subscribers of the announce address (and forgotten when that router falls silent, see
//!   `cluster_routers.rs`);
//! * `clasp.NAME.p2p.to.<session>`: signals for that session, subscribed to by its router only
//!   while the session is announced;
//! * `clasp.NAME.p2p.leave`: an announced session has ended (its id as the payload);
//! * `clasp.NAME.p2p.hello`: a router that has just joined asks the others to announce their
//!   sessions again, so its clients learn of peers that announced earlier.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use clasp_cluster::Subjects;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Shared;
use crate::core::{P2pIn, P2pOut};

const SESSION: &str = "Clasp-Session";
const ROUTER: &str = "Clasp-Router";

enum Incoming {
    Announce(async_nats::Message),
    Leave(async_nats::Message),
    Hello,
    To(Arc<str>, async_nats::Message),
}

/// The subject of signals for `session`.
fn to_subject(subjects: &Subjects, session: &str) -> Option<String> {
    let token = clasp_cluster::naming::encode_tokens(&format!("/{session}")).ok()?;
    Some(subjects.control(&format!("p2p.to.{token}")))
}

fn forward(
    mut sub: async_nats::Subscriber,
    tx: mpsc::UnboundedSender<Incoming>,
    wrap: impl Fn(async_nats::Message) -> Incoming + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if tx.send(wrap(m)).is_err() {
                return;
            }
        }
    })
}

/// Runs the P2P side of the link until the channel closes.
pub(crate) async fn run(
    client: async_nats::Client,
    subjects: Subjects,
    router: String,
    mut outbound: mpsc::UnboundedReceiver<P2pOut>,
    shared: Arc<Shared>,
) {
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Incoming>();
    let mut tasks = Vec::new();
    for (what, wrap) in [
        ("p2p.announce", Incoming::Announce as fn(_) -> Incoming),
        ("p2p.leave", Incoming::Leave),
        ("p2p.hello", |_| Incoming::Hello),
    ] {
        match client.subscribe(subjects.control(what)).await {
            Ok(sub) => tasks.push(forward(sub, in_tx.clone(), wrap)),
            Err(e) => tracing::warn!(error = %e, "cluster: cannot subscribe to P2P {what}"),
        }
    }
    // Peers that announced before this router joined.
    let _ = client
        .publish(subjects.control("p2p.hello"), Bytes::new())
        .await;
    let mut listening: HashMap<Arc<str>, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            o = outbound.recv() => match o {
                None => break,
                Some(P2pOut::Announce(session, frame)) => {
                    if !listening.contains_key(&session)
                        && let Some(subject) = to_subject(&subjects, &session)
                        && let Ok(sub) = client.subscribe(subject).await
                    {
                        let s = session.clone();
                        listening.insert(session.clone(), forward(sub, in_tx.clone(), move |m| Incoming::To(s.clone(), m)));
                    }
                    announce(&client, &subjects, &router, &session, frame).await;
                }
                Some(P2pOut::Signal(target, frame)) => {
                    if let Some(subject) = to_subject(&subjects, &target) {
                        let _ = client.publish(subject, frame).await;
                    }
                }
                Some(P2pOut::Leave(session)) => {
                    if let Some(t) = listening.remove(&session) {
                        t.abort();
                    }
                    let _ = client
                        .publish(subjects.control("p2p.leave"), Bytes::copy_from_slice(session.as_bytes()))
                        .await;
                }
            },
            Some(m) = in_rx.recv() => {
                let msg = match m {
                    Incoming::Announce(m) => {
                        let Some(h) = m.headers.as_ref() else { continue };
                        let Some(session) = h.get(SESSION) else { continue };
                        // A router without heartbeats (an older version) names no router.
                        let from = h.get(ROUTER).map_or("", |r| r.as_str());
                        P2pIn::Announce(Arc::from(session.as_str()), Arc::from(from), m.payload)
                    }
                    Incoming::Leave(m) => match std::str::from_utf8(&m.payload) {
                        Ok(s) => P2pIn::Leave(Arc::from(s)),
                        Err(_) => continue,
                    },
                    Incoming::To(session, m) => P2pIn::Signal(session, m.payload),
                    Incoming::Hello => {
                        let mine = shared.core.lock().local_p2p_announces();
                        for (session, frame) in mine {
                            announce(&client, &subjects, &router, &session, frame).await;
                        }
                        continue;
                    }
                };
                shared.with_core(|core, now| core.p2p_remote(msg, now));
            }
        }
    }
    for t in tasks.into_iter().chain(listening.into_values()) {
        t.abort();
    }
}

async fn announce(
    client: &async_nats::Client,
    subjects: &Subjects,
    router: &str,
    session: &str,
    frame: Bytes,
) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(SESSION, async_nats::HeaderValue::from_lossy(session));
    h.insert(ROUTER, async_nats::HeaderValue::from_lossy(router));
    let _ = client
        .publish_with_headers(subjects.control("p2p.announce"), h, frame)
        .await;
}
