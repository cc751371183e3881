//! How a bridge reaches the router, with the same code either way:
//!
//! * **remote**: a CLASP client (any URL the client takes: `ws://`, `wss://`, `tcp://`,
//!   `quic://`), with a token, reconnecting on its own;
//! * **local**: inside `clasp server` / `clasp relay`, an adapter session of the router's
//!   typed door ([`clasp_router::server::RouterHandle::open_adapter`]): no socket, no frames.

mod local;

use std::pin::Pin;
use std::task::{Context, Poll};

use clasp_client::{Client, Message, ReconnectPolicy, SubscribeOptions, Value};
use clasp_mapping::{Write, WriteKind};
use clasp_router::server::RouterHandle;
use futures_util::Stream;
use tokio::sync::mpsc;

pub use clasp_client::Update;

/// What a bridge can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The router could not be reached, or refused the session (a bad token, say).
    #[error("router {url}: {source}")]
    Router {
        /// The router's URL.
        url: String,
        /// The client's error.
        #[source]
        source: clasp_client::Error,
    },
    /// The router refused what the in-process session asked (a bad token, a scope).
    #[error("the router refused: {0}")]
    Refused(String),
    /// The in-process session was closed by the router.
    #[error("the router closed the session")]
    Closed,
    /// A mapping cannot be loaded.
    #[error("{0}")]
    Mapping(String),
    /// A bridge's configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// A device or port cannot be opened.
    #[error("{0}")]
    Device(String),
    /// A request to the router failed.
    #[error(transparent)]
    Client(#[from] clasp_client::Error),
}

/// The router as a bridge sees it.
#[derive(Debug, Clone)]
pub struct RouterLink {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Remote(Client),
    Local(local::Local),
}

/// A subscription made through a [`RouterLink`]: a stream of updates, ending when the link
/// closes for good. Dropping it unsubscribes.
#[derive(Debug)]
pub struct LinkSubscription {
    inner: SubInner,
}

#[derive(Debug)]
enum SubInner {
    Remote(clasp_client::Subscription),
    /// The guard unsubscribes when the subscription is dropped.
    Local(
        mpsc::Receiver<Update>,
        #[allow(dead_code, reason = "held for its Drop")] local::Unsubscribe,
    ),
}

impl Stream for LinkSubscription {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        match &mut self.inner {
            SubInner::Remote(s) => Pin::new(s).poll_next(cx),
            SubInner::Local(rx, _) => rx.poll_recv(cx),
        }
    }
}

impl RouterLink {
    /// Connects to `url` as `name`, with `token` if given; reconnects by itself afterwards.
    pub async fn connect(url: &str, name: &str, token: Option<&str>) -> Result<Self, BridgeError> {
        let mut b = Client::builder(url)
            .name(name)
            .reconnect(ReconnectPolicy::default());
        if let Some(t) = token {
            b = b.token(t);
        }
        let client = b.connect().await.map_err(|source| BridgeError::Router {
            url: url.to_owned(),
            source,
        })?;
        Ok(RouterLink {
            inner: Inner::Remote(client),
        })
    }

    /// A link over an existing client.
    pub fn from_client(client: Client) -> Self {
        RouterLink {
            inner: Inner::Remote(client),
        }
    }

    /// An in-process link: an adapter session of the router behind `handle`, opened with
    /// `token` (checked as a HELLO's would be). Needs a tokio runtime.
    pub fn local(handle: &RouterHandle, token: Option<&str>) -> Result<Self, BridgeError> {
        Ok(RouterLink {
            inner: Inner::Local(local::Local::open(handle, token)?),
        })
    }

    /// Whether the router is reachable right now (a remote link may be reconnecting).
    pub fn is_connected(&self) -> bool {
        match &self.inner {
            Inner::Remote(c) => c.is_connected(),
            Inner::Local(l) => !l.is_closed(),
        }
    }

    /// Subscribes to every signal under `pattern`; the current params under it come first.
    pub async fn subscribe(&self, pattern: &str) -> Result<LinkSubscription, BridgeError> {
        let inner = match &self.inner {
            Inner::Remote(c) => {
                SubInner::Remote(c.subscribe_with(pattern, SubscribeOptions::new()).await?)
            }
            Inner::Local(l) => {
                let (rx, unsub) = l.subscribe(pattern)?;
                SubInner::Local(rx, unsub)
            }
        };
        Ok(LinkSubscription { inner })
    }

    /// Makes `w`: a SET (not waiting for the router's answer) or an event.
    pub async fn write(&self, w: &Write) -> Result<(), BridgeError> {
        let value: Value = w.value.clone();
        match &self.inner {
            Inner::Remote(c) => match w.kind {
                WriteKind::Set => c.set(&w.address, value).await?,
                WriteKind::Event => c.emit(&w.address, value).await?,
            },
            Inner::Local(l) => {
                drop(value);
                l.write(w)?;
            }
        }
        Ok(())
    }

    /// Makes the SETs and events of `writes` together (one bundle, applied atomically) at
    /// wall-clock time `at` (µs since the Unix epoch), without waiting for it.
    pub async fn write_at(&self, writes: &[Write], at: u64) -> Result<(), BridgeError> {
        let messages: Vec<Message> = writes.iter().map(message).collect();
        match &self.inner {
            Inner::Remote(c) => {
                // The router's clock, by the client's estimate of the difference.
                let offset = c.clock().offset_us;
                let at = at.saturating_add_signed(offset);
                c.schedule_bundle(messages, at).await?;
            }
            Inner::Local(l) => l.bundle(messages, at)?,
        }
        Ok(())
    }

    /// Waits until every update the router has produced for this link so far is in its
    /// subscriptions (remote: a PING round trip; local: the queue handed over).
    pub async fn sync(&self) -> Result<(), BridgeError> {
        match &self.inner {
            Inner::Remote(c) => {
                c.ping().await?;
            }
            Inner::Local(l) => l.pump(),
        }
        Ok(())
    }
}

/// The message for a write.
pub(crate) fn message(w: &Write) -> Message {
    match w.kind {
        WriteKind::Set => Message::Set(clasp_proto::Set {
            address: w.address.as_str().into(),
            value: w.value.clone(),
            ..clasp_proto::Set::default()
        }),
        WriteKind::Event => Message::Publish(clasp_proto::Publish {
            address: w.address.as_str().into(),
            signal: clasp_proto::SignalType::Event,
            payload: clasp_proto::PublishPayload::Value(w.value.clone()),
            ..clasp_proto::Publish::default()
        }),
    }
}
