//! Webhooks: changes under a pattern POSTed to a URL as JSON (`{"address", "value", "kind",
//! "revision"}`), in order, with retries (a connection failure or a 5xx answer is tried again
//! with back-off; a 4xx is not), through a bounded queue (when a receiver falls behind, the
//! oldest changes are dropped and counted).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clasp_proto::json::to_json;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::link::{BridgeError, LinkSubscription, RouterLink, Update};

/// One webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The changes to send: a CLASP pattern (`/cue/**`).
    pub pattern: String,
    /// Where to POST them (`http://` or `https://`).
    pub url: String,
    /// Headers sent with every request (`Authorization`, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Attempts after the first for a failed delivery.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Changes waiting at most; past it the oldest are dropped.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_retries() -> u32 {
    3
}

fn default_queue() -> usize {
    1000
}

/// Counters of the webhooks of one HTTP bridge.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Changes delivered (a 2xx answer).
    pub sent: AtomicU64,
    /// Changes given up on (a 4xx answer, or every retry failed).
    pub failed: AtomicU64,
    /// Attempts made again after a failure.
    pub retried: AtomicU64,
    /// Changes dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// An HTTP client for `what` with the usual public roots (ring as the crypto provider).
pub(crate) fn client(what: &str) -> Result<reqwest::Client, BridgeError> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BridgeError::Config(format!("{what} TLS: {e}")))?
    .with_root_certificates(rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| BridgeError::Config(format!("{what} HTTP client: {e}")))
}

/// A webhook subscribed, ready to run.
#[derive(Debug)]
pub struct Subscribed {
    hook: WebhookConfig,
    url: reqwest::Url,
    sub: LinkSubscription,
}

/// Checks and subscribes every webhook; the state found now is not sent.
pub async fn subscribe(
    link: &RouterLink,
    hooks: Vec<WebhookConfig>,
) -> Result<Vec<Subscribed>, BridgeError> {
    let mut out = Vec::new();
    for hook in hooks {
        let url = reqwest::Url::parse(&hook.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                BridgeError::Config(format!("webhook URL `{}` is not http(s)://", hook.url))
            })?;
        let mut sub = link.subscribe(&hook.pattern).await?;
        link.sync().await?;
        while let Some(Some(_)) = sub.next().now_or_never() {}
        out.push(Subscribed { hook, url, sub });
    }
    Ok(out)
}

/// Runs the webhooks until `stop`.
pub fn spawn(
    hooks: Vec<Subscribed>,
    stats: Arc<WebhookStats>,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let http = client("webhook")?;
    for Subscribed { hook, url, mut sub } in hooks {
        let queue = Arc::new(parking_lot::Mutex::new(VecDeque::<Update>::new()));
        let ready = Arc::new(Notify::new());
        // Taker: router updates into the bounded queue, never waiting on the receiver.
        {
            let (queue, ready, stats, stop) =
                (queue.clone(), ready.clone(), stats.clone(), stop.clone());
            let cap = hook.queue.max(1);
            tokio::spawn(async move {
                loop {
                    let u = tokio::select! {
                        _ = stop.cancelled() => return,
                        u = sub.next() => u,
                    };
                    let Some(u) = u else { return };
                    let mut q = queue.lock();
                    if q.len() == cap {
                        q.pop_front();
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    q.push_back(u);
                    drop(q);
                    ready.notify_one();
                }
            });
        }
        // Sender: in order, one at a time, with retries.
        let (http, stats, stop) = (http.clone(), stats.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let next = queue.lock().pop_front();
                let Some(u) = next else {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = ready.notified() => continue,
                    }
                };
                let body = json!({
                    "address": &*u.address,
                    "value": to_json(&u.value),
                    "kind": super::server::kind_name(u.kind),
                    "revision": u.revision,
                });
                deliver(&http, &url, &hook, &body, &stats, &stop).await;
            }
        });
    }
    Ok(())
}

async fn deliver(
    http: &reqwest::Client,
    url: &reqwest::Url,
    hook: &WebhookConfig,
    body: &serde_json::Value,
    stats: &WebhookStats,
    stop: &CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    for attempt in 0..=hook.retries {
        if attempt > 0 {
            stats.retried.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        let mut req = http.post(url.clone()).json(body);
        for (k, v) in &hook.headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(url = %url, status = %r.status(), "webhook refused; not retried");
                break;
            }
            Ok(r) => tracing::debug!(url = %url, status = %r.status(), attempt, "webhook failed"),
            Err(e) => tracing::debug!(url = %url, error = %e, attempt, "webhook failed"),
        }
    }
    stats.failed.fetch_add(1, Ordering::Relaxed);
}
