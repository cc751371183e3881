//! How a bridge reaches the router, with the same code either way:
//!
//! * **remote**: a CLASP client (any URL the client takes: `ws://`, `wss://`, `tcp://`,
//!   `quic://`), with a token, reconnecting on its own;
//! * **local**: inside `clasp server` / `clasp relay`, an adapter session of the router's
//!   typed door ([`clasp_router::server::RouterHandle::open_adapter`]): no socket, no frames.

mod local;

use std::pin::Pin;
use std::sync::Arc;
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
    /// A bridge's configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// A device or port cannot be opened.
    #[error("{0}")]
    Device(String),
    /// Nothing is stored at the address.
    #[error("nothing is stored at {0}")]
    NotFound(String),
    /// The session's scopes do not allow it.
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// A request to the router failed.
    #[error(transparent)]
    Client(clasp_client::Error),
}

impl From<clasp_client::Error> for BridgeError {
    fn from(e: clasp_client::Error) -> Self {
        match e {
            clasp_client::Error::NotFound(a) => BridgeError::NotFound(a),
            e @ clasp_client::Error::Forbidden { .. } => BridgeError::Forbidden(e.to_string()),
            e => BridgeError::Client(e),
        }
    }
}

/// The router as a bridge sees it.
#[derive(Debug, Clone)]
pub struct RouterLink {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    /// The client, and the URL and name it was opened with (for [`RouterLink::open_as`]).
    Remote(Client, Arc<str>, Arc<str>),
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
            inner: Inner::Remote(client, url.into(), name.into()),
        })
    }

    /// Another session on the same router, opened with `token` (or none): for a bridge that
    /// acts for its own clients, with their tokens' scopes (the HTTP bridge).
    pub async fn open_as(&self, token: Option<&str>) -> Result<RouterLink, BridgeError> {
        match &self.inner {
            Inner::Remote(_, url, name) => RouterLink::connect(url, name, token).await,
            Inner::Local(l) => RouterLink::local_named(l.handle(), token, "bridge client"),
        }
    }

    /// An in-process link: an adapter session of the router behind `handle`, opened with
    /// `token` (checked as a HELLO's would be). Needs a tokio runtime.
    pub fn local(handle: &RouterHandle, token: Option<&str>) -> Result<Self, BridgeError> {
        Self::local_named(handle, token, "adapter")
    }

    /// Like [`RouterLink::local`], the session named `name` in the router's session lists
    /// (its web console): `bridge:osc`, `mappings`.
    pub fn local_named(
        handle: &RouterHandle,
        token: Option<&str>,
        name: &str,
    ) -> Result<Self, BridgeError> {
        Ok(RouterLink {
            inner: Inner::Local(local::Local::open(handle, token, name)?),
        })
    }

    /// Whether the router is reachable right now (a remote link may be reconnecting).
    pub fn is_connected(&self) -> bool {
        match &self.inner {
            Inner::Remote(c, ..) => c.is_connected(),
            Inner::Local(l) => !l.is_closed(),
        }
    }

    /// Subscribes to every signal under `pattern`; the current params under it come first.
    pub async fn subscribe(&self, pattern: &str) -> Result<LinkSubscription, BridgeError> {
        let inner = match &self.inner {
            Inner::Remote(c, ..) => {
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
        match &self.inner {
            Inner::Remote(c, ..) => match w.kind {
                WriteKind::Set => c.set(&w.address, w.value.clone()).await?,
                WriteKind::Event => c.emit(&w.address, w.value.clone()).await?,
            },
            Inner::Local(l) => l.write(w)?,
        }
        Ok(())
    }

    /// The params `pattern` matches (an address with no wildcard: that param, or
    /// [`BridgeError::NotFound`]), sorted by address, as this link's session may read them.
    pub async fn read(&self, pattern: &str) -> Result<Vec<clasp_proto::ParamValue>, BridgeError> {
        match &self.inner {
            Inner::Remote(c, ..) if !pattern.contains('*') => Ok(vec![c.get_param(pattern).await?]),
            Inner::Remote(c, ..) => Ok(c.snapshot(pattern).await?),
            Inner::Local(l) => l.read(pattern),
        }
    }

    /// A SET of `value` at `address`, answered by the router: the param's new revision.
    pub async fn set_confirmed(&self, address: &str, value: Value) -> Result<u64, BridgeError> {
        match &self.inner {
            Inner::Remote(c, ..) => Ok(c.set_confirmed(address, value).await?),
            Inner::Local(l) => l.set_confirmed(address, value),
        }
    }

    /// Makes the SETs and events of `writes` together (one bundle, applied atomically) at
    /// wall-clock time `at` (µs since the Unix epoch), without waiting for it.
    pub async fn write_at(&self, writes: &[Write], at: u64) -> Result<(), BridgeError> {
        let messages: Vec<Message> = writes.iter().map(message).collect();
        match &self.inner {
            Inner::Remote(c, ..) => {
                // The router's clock, by the client's estimate of the difference.
                let offset = c.clock().offset_us;
                let at = at.saturating_add_signed(offset);
                c.schedule_bundle(messages, at).await?;
            }
            Inner::Local(l) => l.bundle(messages, at)?,
        }
        Ok(())
    }

    /// Makes `writes` at once as one BUNDLE: applied together, or not at all.
    pub async fn bundle(&self, writes: &[Write]) -> Result<(), BridgeError> {
        let messages: Vec<Message> = writes.iter().map(message).collect();
        match &self.inner {
            Inner::Remote(c, ..) => {
                c.bundle(messages).await?;
            }
            Inner::Local(l) => l.bundle_now(messages)?,
        }
        Ok(())
    }

    /// Waits until every update the router has produced for this link so far is in its
    /// subscriptions (remote: a PING round trip; local: the queue handed over).
    pub async fn sync(&self) -> Result<(), BridgeError> {
        match &self.inner {
            Inner::Remote(c, ..) => {
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
