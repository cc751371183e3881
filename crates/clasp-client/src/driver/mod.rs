//! The connection: a state machine with no I/O (`state.rs`, with the router's messages handled
//! in `inbound.rs`) and the tokio task that gives it a transport, a clock and the handles'
//! commands (`shell.rs`).

#[cfg(test)]
mod harness;
mod inbound;
mod shell;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32};

use bytes::Bytes;
use clasp_proto::pattern::Pattern;
use clasp_proto::{FrameOptions, Message, Qos, Str, Value, encode_with};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::config::{ConnectionEvent, EventHook};
use crate::error::Result;

pub(crate) use shell::{Started, start};

/// State the handles read and the driver writes.
#[derive(Debug, Default)]
pub(crate) struct SharedState {
    pub(crate) session: Option<String>,
    pub(crate) router_name: Option<String>,
    pub(crate) clock: Clock,
    pub(crate) cache: HashMap<Str, Value>,
    /// Patterns of unfiltered param subscriptions: a cached value under one of them is current.
    pub(crate) fresh: HashMap<u32, Pattern>,
}

/// What the handles and the driver share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) connected: AtomicBool,
    pub(crate) state: std::sync::Mutex<SharedState>,
    pub(crate) events: broadcast::Sender<ConnectionEvent>,
    pub(crate) next_id: AtomicU32,
    on_event: Option<EventHook>,
}

impl Shared {
    pub(crate) fn new(on_event: Option<EventHook>) -> Shared {
        Shared {
            connected: AtomicBool::new(false),
            state: std::sync::Mutex::new(SharedState::default()),
            events: broadcast::channel(64).0,
            next_id: AtomicU32::new(1),
            on_event,
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn emit(&self, e: ConnectionEvent) {
        if let Some(hook) = &self.on_event {
            (hook.0)(&e);
        }
        // Nobody listening is fine.
        let _ = self.events.send(e);
    }
}

/// Encodes a message with an explicit QoS.
pub(crate) fn encode_qos(msg: &Message, qos: Qos) -> Result<Bytes> {
    Ok(encode_with(msg, FrameOptions::with_qos(qos))?)
}
