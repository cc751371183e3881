//! How a bridge reaches the router: a CLASP client (any URL the client takes: `ws://`,
//! `wss://`, `tcp://`, `quic://`), with a token, reconnecting on its own.

use clasp_client::{Client, ReconnectPolicy, SubscribeOptions, Subscription, Value};
use clasp_mapping::{Write, WriteKind};

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
    /// A mapping cannot be loaded.
    #[error("{0}")]
    Mapping(String),
    /// A request to the router failed.
    #[error(transparent)]
    Client(#[from] clasp_client::Error),
}

/// The router as a bridge sees it.
#[derive(Debug, Clone)]
pub struct RouterLink {
    client: Client,
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
        Ok(RouterLink { client })
    }

    /// A link over an existing client.
    pub fn from_client(client: Client) -> Self {
        RouterLink { client }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Subscribes to every signal under `pattern`.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, BridgeError> {
        Ok(self
            .client
            .subscribe_with(pattern, SubscribeOptions::new())
            .await?)
    }

    /// Makes `w`: a SET (not waiting for the router's answer) or an event.
    pub async fn write(&self, w: &Write) -> Result<(), BridgeError> {
        let value: Value = w.value.clone();
        match w.kind {
            WriteKind::Set => self.client.set(&w.address, value).await?,
            WriteKind::Event => self.client.emit(&w.address, value).await?,
        }
        Ok(())
    }

    /// Waits until the router has handled everything sent so far (a PING).
    pub async fn sync(&self) -> Result<(), BridgeError> {
        self.client.ping().await?;
        Ok(())
    }
}
