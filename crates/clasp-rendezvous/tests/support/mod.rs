//! Shared test helpers: a real rendezvous server on 127.0.0.1, port 0.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use clasp_rendezvous::{ManualClock, RendezvousConfig, RendezvousService, serve};
use clasp_store::RecordTable;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// 2026-01-01T00:00:00Z in µs.
pub const T0: u64 = 1_767_225_600_000_000;

pub struct TestServer {
    pub base: String,
    pub service: RendezvousService,
    pub clock: Arc<ManualClock>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: RendezvousConfig) -> TestServer {
        Self::start_with(config, Arc::new(ManualClock::new(T0)), None).await
    }

    pub async fn start_with(
        config: RendezvousConfig,
        clock: Arc<ManualClock>,
        table: Option<Arc<dyn RecordTable>>,
    ) -> TestServer {
        let service = RendezvousService::open(config, clock.clone(), table).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = service.clone();
        let task = tokio::spawn(async move {
            serve(listener, svc, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base,
            service,
            clock,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits until it has flushed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.task.take().unwrap())
            .await
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A config without rate limit (tests that exercise it turn it on).
pub fn config() -> RendezvousConfig {
    RendezvousConfig {
        rate_limit: None,
        max_devices_per_source: 1000,
        ..RendezvousConfig::default()
    }
}

pub fn http() -> reqwest::Client {
    // reqwest is built without a default crypto provider (no aws-lc): install ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn registration(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "endpoints": {"ws": format!("ws://{name}.local:7330")},
    })
}

/// POSTs a registration and returns the response JSON (asserting 201).
pub async fn register(
    http: &reqwest::Client,
    server: &TestServer,
    body: serde_json::Value,
) -> serde_json::Value {
    let resp = http
        .post(server.url("/api/v1/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

pub async fn discover(
    http: &reqwest::Client,
    server: &TestServer,
    query: &str,
) -> Vec<serde_json::Value> {
    let resp = http
        .get(server.url(&format!("/api/v1/discover{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Asserts a JSON error body `{"error": "..."}` with the status, returns the message.
pub async fn error(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status(), status);
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    let body: serde_json::Value = resp.json().await.unwrap();
    let msg = body["error"].as_str().unwrap().to_owned();
    assert!(!msg.is_empty());
    msg
}

/// GETs `path` (e.g. `/api/v1/discover?limit=1`), whatever the answer.
pub async fn get(http: &reqwest::Client, server: &TestServer, path: &str) -> reqwest::Response {
    http.get(server.url(path)).send().await.unwrap()
}

/// POSTs `body` as JSON to `/api/v1/register`, whatever the answer.
pub async fn post_register(
    http: &reqwest::Client,
    server: &TestServer,
    body: &serde_json::Value,
) -> reqwest::Response {
    http.post(server.url("/api/v1/register"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POSTs `/api/v1/refresh/{id}` without token or secret, whatever the answer.
pub async fn refresh(http: &reqwest::Client, server: &TestServer, id: &str) -> reqwest::Response {
    http.post(server.url(&format!("/api/v1/refresh/{id}")))
        .send()
        .await
        .unwrap()
}

/// DELETEs `/api/v1/unregister/{id}` without token or secret, whatever the answer.
pub async fn unregister(
    http: &reqwest::Client,
    server: &TestServer,
    id: &str,
) -> reqwest::Response {
    http.delete(server.url(&format!("/api/v1/unregister/{id}")))
        .send()
        .await
        .unwrap()
}

/// DELETEs `/api/v1/unregister/{id}` of a registration (the register response JSON) with its
/// owner secret, whatever the answer.
pub async fn unregister_owned(
    http: &reqwest::Client,
    server: &TestServer,
    registered: &serde_json::Value,
) -> reqwest::Response {
    let id = registered["id"].as_str().unwrap();
    http.delete(server.url(&format!("/api/v1/unregister/{id}")))
        .header("x-clasp-secret", registered["secret"].as_str().unwrap())
        .send()
        .await
        .unwrap()
}
