//! The in-process link: an adapter session of the router's typed door. What the router
//! delivers lands in the session's bounded `Inbox`; a task (and `pump`, called inline) hands
//! it to the subscriptions' channels.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use clasp_client::{Update, Value};
use clasp_proto::{Message, ParamValue, Qos, Subscribe};
use clasp_router::core::ConnId;
use clasp_router::core::adapter::Delivery;
use clasp_router::server::RouterHandle;
use clasp_router::server::inbox::Inbox;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::BridgeError;

/// Updates buffered per subscription (past it, updates are dropped and counted).
const SUB_BUFFER: usize = 4096;

#[derive(Clone)]
pub(super) struct Local {
    shared: Arc<Shared>,
}

struct Shared {
    handle: RouterHandle,
    conn: ConnId,
    inbox: Inbox,
    subs: Mutex<HashMap<u32, mpsc::Sender<Update>>>,
    next_id: AtomicU32,
    closed: AtomicBool,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("conn", &self.shared.conn)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.handle.close(self.conn);
    }
}

/// Unsubscribes when the subscription is dropped.
#[derive(Debug)]
pub(super) struct Unsubscribe {
    link: Local,
    id: u32,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let s = &self.link.shared;
        if s.subs.lock().remove(&self.id).is_some() && !s.closed.load(Ordering::Relaxed) {
            let _ = s.handle.submit(
                s.conn,
                Message::Unsubscribe(clasp_proto::Unsubscribe { id: self.id }),
                Qos::Fire,
            );
        }
    }
}

impl Local {
    pub(super) fn open(
        handle: &RouterHandle,
        token: Option<&str>,
        name: &str,
    ) -> Result<Local, BridgeError> {
        let inbox = handle.inbox();
        inbox.set_peer("bridge", None);
        let conn = handle
            .open_adapter_named(&inbox, token, name)
            .map_err(|r| BridgeError::Refused(r.to_string()))?;
        let link = Local {
            shared: Arc::new(Shared {
                handle: handle.clone(),
                conn,
                inbox: inbox.clone(),
                subs: Mutex::new(HashMap::new()),
                next_id: AtomicU32::new(1),
                closed: AtomicBool::new(false),
            }),
        };
        // The task holds the shared state weakly: the session ends with the last link.
        let weak = Arc::downgrade(&link.shared);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = inbox.ready() => {}
                    _ = inbox.closed() => {}
                }
                let Some(shared) = weak.upgrade() else { return };
                let link = Local { shared };
                link.pump();
                if link.is_closed() {
                    return;
                }
            }
        });
        Ok(link)
    }

    pub(super) fn handle(&self) -> &RouterHandle {
        &self.shared.handle
    }

    pub(super) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    pub(super) fn subscribe(
        &self,
        pattern: &str,
    ) -> Result<(mpsc::Receiver<Update>, Unsubscribe), BridgeError> {
        if self.is_closed() {
            return Err(BridgeError::Closed);
        }
        let s = &self.shared;
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SUB_BUFFER);
        s.subs.lock().insert(id, tx);
        let sub = Message::Subscribe(Subscribe {
            id,
            pattern: pattern.into(),
            ..Subscribe::default()
        });
        let unsub = Unsubscribe {
            link: self.clone(),
            id,
        };
        s.handle
            .submit(s.conn, sub, Qos::Confirm)
            .map_err(refused)?;
        // Its current state was delivered as the submit returned: hand it over now.
        self.pump();
        Ok((rx, unsub))
    }

    pub(super) fn write(&self, w: &clasp_mapping::Write) -> Result<(), BridgeError> {
        self.submit(super::message(w))
    }

    pub(super) fn bundle(&self, messages: Vec<Message>, at: u64) -> Result<(), BridgeError> {
        self.submit(Message::Bundle(clasp_proto::Bundle {
            timestamp: Some(at),
            messages,
        }))
    }

    pub(super) fn bundle_now(&self, messages: Vec<Message>) -> Result<(), BridgeError> {
        self.submit(Message::Bundle(clasp_proto::Bundle {
            timestamp: None,
            messages,
        }))
    }

    fn submit(&self, msg: Message) -> Result<(), BridgeError> {
        let s = &self.shared;
        s.handle
            .submit(s.conn, msg, Qos::Fire)
            .map(drop)
            .map_err(refused)
    }

    pub(super) fn read(&self, pattern: &str) -> Result<Vec<ParamValue>, BridgeError> {
        let s = &self.shared;
        s.handle.read(s.conn, pattern).map_err(refused)
    }

    pub(super) fn set_confirmed(&self, address: &str, value: Value) -> Result<u64, BridgeError> {
        let s = &self.shared;
        let msg = Message::Set(clasp_proto::Set {
            address: address.into(),
            value,
            ..clasp_proto::Set::default()
        });
        let a = s
            .handle
            .submit(s.conn, msg, Qos::Confirm)
            .map_err(refused)?;
        Ok(a.revision.unwrap_or_default())
    }

    /// Hands everything delivered so far to the subscriptions.
    pub(super) fn pump(&self) {
        let s = &self.shared;
        let mut got = Vec::new();
        let close = s.inbox.drain(&mut got);
        let mut subs = s.subs.lock();
        for d in got {
            match d {
                Delivery::Update(u) => {
                    let Some(update) = update_of(&u.message) else {
                        continue;
                    };
                    for id in u.subs() {
                        if let Some(tx) = subs.get(&id) {
                            let _ = tx.try_send(update.clone());
                        }
                    }
                }
                Delivery::Snapshot { sub, params } => {
                    if let Some(tx) = subs.get(&sub) {
                        for r in params {
                            let _ = tx.try_send(Update::from_param(r.param));
                        }
                    }
                }
                Delivery::Reply(m) => {
                    if let Message::Error(e) = &*m {
                        tracing::warn!(code = %e.code, message = %e.message, "the router refused a bridge write");
                    }
                }
            }
        }
        if let Some(reason) = close {
            if !s.closed.swap(true, Ordering::Relaxed) {
                tracing::warn!(?reason, "the router closed the bridge's session");
            }
            // The streams end.
            subs.clear();
        }
    }
}

fn update_of(m: &Message) -> Option<Update> {
    match m {
        Message::Set(s) => Some(Update::from_set(s.clone())),
        Message::Publish(p) => Some(Update::from_publish(p.clone())),
        _ => None,
    }
}

/// A refusal of the router as a bridge error.
fn refused(r: clasp_router::core::Refusal) -> BridgeError {
    use clasp_router::core::Refusal;
    match r {
        Refusal::NoParam(a) => BridgeError::NotFound(a),
        r @ Refusal::Scope(_) => BridgeError::Forbidden(r.to_string()),
        r => BridgeError::Refused(r.to_string()),
    }
}
