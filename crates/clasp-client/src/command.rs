//! What client handles ask of the connection task ([`Command`]) and the calls waiting for the
//! router's answer ([`Waiter`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clasp_proto::pattern::Pattern;
use clasp_proto::{Ack, ParamValue, SignalDef, Str};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::options::{SubscribeOptions, Update};

/// A call waiting for the router's answer.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// ACK for a SET (key = address), an ANNOUNCE (key = namespace) or a BUNDLE (no key).
    Ack {
        key: Option<Str>,
        tx: oneshot::Sender<Result<Ack>>,
    },
    /// SNAPSHOT entry for the address, or ERROR 201.
    Get {
        address: Str,
        tx: oneshot::Sender<Result<ParamValue>>,
    },
    /// RESULTs for a QUERY, collected until the PONG that follows them (a large answer comes
    /// in several RESULT frames).
    Query {
        pattern: Str,
        signals: Vec<SignalDef>,
        tx: oneshot::Sender<Result<Vec<SignalDef>>>,
    },
    /// PONG for a PING.
    Pong {
        sent: Instant,
        tx: oneshot::Sender<Result<Duration>>,
    },
    /// State under a pattern: collected from SNAPSHOTs until the PONG that follows them.
    Snapshot {
        pattern: Pattern,
        sub_id: u32,
        params: BTreeMap<Str, ParamValue>,
        tx: oneshot::Sender<Result<Vec<ParamValue>>>,
    },
}

impl Waiter {
    pub(crate) fn is_abandoned(&self) -> bool {
        match self {
            Waiter::Ack { tx, .. } => tx.is_closed(),
            Waiter::Get { tx, .. } => tx.is_closed(),
            Waiter::Query { tx, .. } => tx.is_closed(),
            Waiter::Pong { tx, .. } => tx.is_closed(),
            Waiter::Snapshot { tx, .. } => tx.is_closed(),
        }
    }

    pub(crate) fn fail(self, e: Error) {
        // A caller that gave up is not an error.
        match self {
            Waiter::Ack { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Get { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Query { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Pong { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Snapshot { tx, .. } => drop(tx.send(Err(e))),
        }
    }

    /// Whether an ERROR naming `address` answers this call.
    pub(crate) fn concerns(&self, address: &str) -> bool {
        match self {
            Waiter::Ack { key: Some(k), .. } => &**k == address,
            Waiter::Get { address: a, .. } => &**a == address,
            Waiter::Query { pattern, .. } => &**pattern == address,
            _ => false,
        }
    }
}

/// What handles ask of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Write a frame; register the waiter first so its answer cannot be missed.
    Send {
        frame: Bytes,
        wait: Option<Waiter>,
    },
    Subscribe {
        id: u32,
        pattern: Pattern,
        options: SubscribeOptions,
        tx: mpsc::Sender<Update>,
        dropped: Arc<AtomicU64>,
    },
    Unsubscribe {
        id: u32,
    },
    Snapshot {
        pattern: Pattern,
        tx: oneshot::Sender<Result<Vec<ParamValue>>>,
    },
    /// QUERY, then PING: the router answers in order, so every RESULT comes before the PONG.
    Query {
        pattern: Str,
        tx: oneshot::Sender<Result<Vec<SignalDef>>>,
    },
}

/// Queues a control command from a synchronous context (a `Drop`).
pub(crate) fn send_control(cmd: &mpsc::Sender<Command>, c: Command) {
    match cmd.try_send(c) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(c)) => {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let cmd = cmd.clone();
                rt.spawn(async move {
                    let _ = cmd.send(c).await;
                });
            }
        }
        // The driver is gone: the connection is closed already.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}
