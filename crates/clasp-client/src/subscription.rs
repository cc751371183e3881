//! The subscription handles: a `Stream` of updates, and the callback form.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use crate::command::{Command, send_control};
use crate::options::Update;

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

    /// The next update if one is already buffered, without waiting (`None`: none is, or the
    /// client is closed). Unlike polling [`Subscription::recv`], never held back by the
    /// runtime's cooperative budget, so it can drain everything received so far.
    pub fn try_recv(&mut self) -> Option<Update> {
        self.rx.try_recv().ok()
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
        send_control(&self.cmd, Command::Unsubscribe { id: self.id });
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
