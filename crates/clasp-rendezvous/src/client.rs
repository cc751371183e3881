//! The HTTP client of the rendezvous API, and a keep-alive helper that keeps one registration
//! alive.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::SECRET_HEADER;
use crate::model::{Device, DiscoverQuery, Registered, Registration};

/// The largest response body read (discover of 1000 big devices fits).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid rendezvous URL {url:?}: {detail}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// The request failed (connect, TLS, timeout, I/O).
    #[error("rendezvous request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an unexpected status.
    #[error("rendezvous server answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's `error` message, or the body.
        message: String,
    },
    /// The answer is bigger than the client accepts.
    #[error("rendezvous response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The answer is not the expected JSON.
    #[error("rendezvous response is not valid: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A client of one rendezvous server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RendezvousClient {
    base: Url,
    http: reqwest::Client,
    token: Option<Arc<str>>,
}

impl RendezvousClient {
    /// A client for `base_url` (e.g. `https://relay.example:7340`; a trailing `/` is ignored),
    /// with a 10 s request timeout. HTTPS uses rustls (ring) with the webpki roots.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_timeout(base_url, Duration::from_secs(10))
    }

    /// Like [`RendezvousClient::new`] with another request timeout.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::with_roots(base_url, timeout, &[])
    }

    /// Like [`RendezvousClient::new`], also trusting the certificates in `pem` (for a
    /// service behind a private CA or a self-signed certificate).
    pub fn with_root_certificates_pem(base_url: &str, pem: &[u8]) -> Result<Self, ClientError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Setup(format!("not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Setup("no certificate in the PEM data".into()));
        }
        Self::with_roots(base_url, Duration::from_secs(10), &certs)
    }

    fn with_roots(
        base_url: &str,
        timeout: Duration,
        extra: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self, ClientError> {
        let invalid = |detail: String| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            detail,
        };
        let mut base =
            Url::parse(base_url.trim_end_matches('/')).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected an http:// or https:// URL".to_owned()));
        }
        base.set_query(None);
        base.set_fragment(None);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Setup(e.to_string()))?
        .with_root_certificates({
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            for c in extra {
                roots
                    .add(c.clone())
                    .map_err(|e| ClientError::Setup(format!("unusable certificate: {e}")))?;
            }
            roots
        })
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(RendezvousClient {
            base,
            http,
            token: None,
        })
    }

    /// Sends `Authorization: Bearer <token>` with register and unregister.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::from(token.into()));
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `base/api/v1/<segments...>`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url, auth: bool) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match (&self.token, auth) {
            (Some(t), true) => req.bearer_auth(t),
            _ => req,
        }
    }

    /// `POST /api/v1/register`.
    pub async fn register(&self, registration: &Registration) -> Result<Registered, ClientError> {
        let resp = self
            .request(Method::POST, self.url(&["register"]), true)
            .json(registration)
            .send()
            .await?;
        let body = expect(resp, StatusCode::CREATED).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// `GET /api/v1/discover` with the query's filters (URL-encoded).
    pub async fn discover(&self, query: &DiscoverQuery) -> Result<Vec<Device>, ClientError> {
        let mut url = self.url(&["discover"]);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(tag) = &query.tag {
                pairs.append_pair("tag", tag);
            }
            if let Some(feature) = &query.feature {
                pairs.append_pair("feature", feature);
            }
            if let Some(limit) = query.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let resp = self.request(Method::GET, url, false).send().await?;
        let body = expect(resp, StatusCode::OK).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// `POST /api/v1/refresh/{id}`: true = refreshed, false = unknown or expired (404).
    pub async fn refresh(&self, id: &str) -> Result<bool, ClientError> {
        self.refresh_with_secret(id, None).await
    }

    /// [`RendezvousClient::refresh`] proving ownership with the secret from [`Registered`].
    pub async fn refresh_with_secret(
        &self,
        id: &str,
        secret: Option<&str>,
    ) -> Result<bool, ClientError> {
        let mut req = self.request(Method::POST, self.url(&["refresh", id]), false);
        if let Some(s) = secret {
            req = req.header(SECRET_HEADER, s);
        }
        found(req.send().await?, StatusCode::OK).await
    }

    /// `DELETE /api/v1/unregister/{id}`: true = removed, false = unknown or expired (404).
    /// Without the owner secret, which this crate's server requires by default (403 without
    /// it): use [`RendezvousClient::unregister_with_secret`] for those.
    pub async fn unregister(&self, id: &str) -> Result<bool, ClientError> {
        self.unregister_with_secret(id, None).await
    }

    /// [`RendezvousClient::unregister`] proving ownership with the secret from [`Registered`].
    pub async fn unregister_with_secret(
        &self,
        id: &str,
        secret: Option<&str>,
    ) -> Result<bool, ClientError> {
        let mut req = self.request(Method::DELETE, self.url(&["unregister", id]), true);
        if let Some(s) = secret {
            req = req.header(SECRET_HEADER, s);
        }
        found(req.send().await?, StatusCode::NO_CONTENT).await
    }

    /// `GET /api/v1/health`: Ok when the server answers 200 `OK`.
    pub async fn health(&self) -> Result<(), ClientError> {
        let resp = self
            .request(Method::GET, self.url(&["health"]), false)
            .send()
            .await?;
        let body = expect(resp, StatusCode::OK).await?;
        if body.trim_ascii() == b"OK" {
            Ok(())
        } else {
            Err(ClientError::Status {
                status: 200,
                message: format!(
                    "unexpected health body {:?}",
                    String::from_utf8_lossy(&body)
                ),
            })
        }
    }

    /// Keeps `registration` registered: registers at once, refreshes every `interval` (at most
    /// half the TTL the server announced), registers again (new id) when a refresh says the device
    /// is gone, and unregisters when stopped or dropped. Errors are logged and retried at the
    /// next tick. Must be called inside a tokio runtime.
    pub fn keep_alive(&self, registration: Registration, interval: Duration) -> KeepAlive {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (state_tx, state_rx) = watch::channel(None);
        let task = tokio::spawn(keep_alive_loop(
            self.clone(),
            registration,
            interval.max(Duration::from_millis(10)),
            stop_rx,
            state_tx,
        ));
        KeepAlive {
            stop: Some(stop_tx),
            task: Some(task),
            state: state_rx,
        }
    }
}

/// Reads a body of at most [`MAX_RESPONSE_BYTES`].
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ClientError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body if the status is `want`, else a [`ClientError::Status`].
async fn expect(resp: reqwest::Response, want: StatusCode) -> Result<Vec<u8>, ClientError> {
    let status = resp.status();
    let body = read_body(resp).await?;
    if status == want {
        Ok(body)
    } else {
        Err(status_error(status, &body))
    }
}

/// true for `want`, false for 404, an error otherwise.
async fn found(resp: reqwest::Response, want: StatusCode) -> Result<bool, ClientError> {
    let status = resp.status();
    let body = read_body(resp).await?;
    match status {
        s if s == want => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        s => Err(status_error(s, &body)),
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
    };
    ClientError::Status {
        status: status.as_u16(),
        message,
    }
}

/// A registration kept alive by [`RendezvousClient::keep_alive`]. Dropping it stops the
/// keep-alive and unregisters in the background; [`KeepAlive::stop`] waits for that.
#[derive(Debug)]
pub struct KeepAlive {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    state: watch::Receiver<Option<Registered>>,
}

impl KeepAlive {
    /// The current registration, if one succeeded.
    pub fn current(&self) -> Option<Registered> {
        self.state.borrow().clone()
    }

    /// Waits until the registration changes (first registration or a new id); returns it, or
    /// None once the keep-alive has ended.
    pub async fn changed(&mut self) -> Option<Registered> {
        self.state.changed().await.ok()?;
        self.state.borrow_and_update().clone()
    }

    /// Stops, unregisters, and waits for both.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn keep_alive_loop(
    client: RendezvousClient,
    registration: Registration,
    interval: Duration,
    mut stop: oneshot::Receiver<()>,
    state: watch::Sender<Option<Registered>>,
) {
    let mut current: Option<Registered> = None;
    loop {
        if let Some(r) = &current {
            match client.refresh_with_secret(&r.id, r.secret.as_deref()).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(id = %r.id, "rendezvous registration expired; registering again");
                    current = None;
                }
                Err(e) => tracing::warn!(error = %e, "rendezvous refresh failed"),
            }
        }
        if current.is_none() {
            match client.register(&registration).await {
                Ok(r) => {
                    tracing::debug!(id = %r.id, "registered with rendezvous");
                    current = Some(r.clone());
                    state.send_replace(Some(r));
                }
                Err(e) => tracing::warn!(error = %e, "rendezvous registration failed"),
            }
        }
        // Never wait as long as the server's TTL, whatever the caller asked for.
        let wait = match &current {
            Some(r) if r.ttl > 0 => interval.min(Duration::from_secs(r.ttl) / 2),
            _ => interval,
        };
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    if let Some(r) = current
        && let Err(e) = client
            .unregister_with_secret(&r.id, r.secret.as_deref())
            .await
    {
        tracing::warn!(error = %e, "rendezvous unregister failed");
    }
    state.send_replace(None);
}
