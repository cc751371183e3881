//! Subscriptions: options, updates, and the handle that is a `Stream` of updates.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use clasp_proto::{GesturePhase, SignalType, SignalTypes, Str, Value};
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::driver::Command;

/// What a subscription asks the router for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeOptions {
    pub(crate) types: Vec<SignalType>,
    pub(crate) max_rate: Option<u32>,
    pub(crate) epsilon: Option<f64>,
    pub(crate) buffer: Option<usize>,
}

impl SubscribeOptions {
    /// All signal types, every update.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these signal types (default: all).
    pub fn types(mut self, types: impl IntoIterator<Item = SignalType>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// At most this many updates per second per address (params and streams; the router keeps
    /// the latest value and delivers it when the interval has passed).
    pub fn max_rate(mut self, per_second: u32) -> Self {
        self.max_rate = Some(per_second);
        self
    }

    /// Skip numeric updates that differ from the last delivered one by less than `epsilon`.
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = Some(epsilon);
        self
    }

    /// Updates buffered for a slow consumer before further ones are dropped and counted
    /// (default 4096; see [`Subscription::dropped`]).
    pub fn buffer(mut self, updates: usize) -> Self {
        self.buffer = Some(updates.max(1));
        self
    }

    pub(crate) fn wire(&self) -> (SignalTypes, clasp_proto::SubscribeOptions) {
        (
            SignalTypes::of(&self.types),
            clasp_proto::SubscribeOptions {
                max_rate: self.max_rate,
                epsilon: self.epsilon,
                history: None,
                window: None,
            },
        )
    }

    /// Whether every param update reaches this subscription (no rate or epsilon filter), so a
    /// cached value under it is current.
    pub(crate) fn unfiltered(&self) -> bool {
        self.max_rate.is_none() && self.epsilon.is_none()
    }
}

/// One update delivered to a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The address that changed or fired.
    pub address: Str,
    /// The value (for a PUBLISH of samples, an array of floats; without payload, null).
    pub value: Value,
    /// What kind of signal it is.
    pub kind: SignalType,
    /// The param's revision (params only).
    pub revision: Option<u64>,
    /// The session that wrote the param, when the router says (snapshots).
    pub writer: Option<Str>,
    /// The sender's or router's timestamp, µs, when present.
    pub timestamp: Option<u64>,
    /// Gesture id (gestures only).
    pub gesture_id: Option<u32>,
    /// Gesture phase (gestures only).
    pub phase: Option<GesturePhase>,
}

/// A live subscription: a [`Stream`] of [`Update`]s. Dropping it unsubscribes.
///
/// Updates are buffered; if the consumer falls behind by more than the buffer, further
/// updates are dropped and counted in [`Subscription::dropped`] (a param's latest value can
/// always be read back with `get`). The stream ends when the client is closed.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) id: u32,
    pub(crate) pattern: String,
    pub(crate) rx: mpsc::Receiver<Update>,
    pub(crate) dropped: Arc<AtomicU64>,
    pub(crate) cmd: mpsc::Sender<Command>,
}

impl Subscription {
    /// The subscription id sent to the router.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The next update, or `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Update> {
        self.rx.recv().await
    }

    /// Updates dropped so far because this subscription's consumer was too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Stream for Subscription {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        crate::driver::send_control(&self.cmd, Command::Unsubscribe { id: self.id });
    }
}

/// A callback subscription made with [`crate::Client::on`]. Dropping it unsubscribes and stops
/// the callback.
#[derive(Debug)]
pub struct Listener {
    pub(crate) id: u32,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// The subscription id sent to the router.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Aborting the task drops its Subscription, which unsubscribes.
        self.task.abort();
    }
}
