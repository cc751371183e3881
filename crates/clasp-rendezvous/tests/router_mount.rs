#![allow(clippy::unwrap_used)]
//! The API mounted on the CLASP router's WebSocket port (`Server::with_http`), persisting in
//! the router's own redb database (`Server::records`), with per-IP limits from the real peer
//! address.

#[path = "../../clasp-client/tests/support/mod.rs"]
mod router_support;
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clasp_rendezvous::{RendezvousConfig, RendezvousService, SystemClock, routes};
use clasp_router::server::{Server, ServerConfig};
use support::{config, http};

struct Running {
    router: router_support::Router,
    service: RendezvousService,
}

async fn start(data: &Path, cfg: RendezvousConfig) -> Running {
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(data.to_path_buf()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let table = server.records("rendezvous").unwrap();
    let service = RendezvousService::open(cfg, Arc::new(SystemClock::new()), Some(table)).unwrap();
    let router = router_support::Router::run(server.with_http(routes(service.clone())));
    Running { router, service }
}

impl Running {
    async fn stop(self) {
        self.router.stop().await;
        // Releases the database even if HTTP connections still hold clones of the service.
        self.service.close().await.unwrap();
    }

    /// POSTs `body` to `/api/v1/register` from `client`.
    async fn register(
        &self,
        client: &reqwest::Client,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let url = format!("http://{}/api/v1/register", self.router.addr);
        client.post(url).json(body).send().await.unwrap()
    }
}

fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    let _ = http();
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn mounted_on_the_websocket_port_with_router_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RendezvousConfig {
        max_devices_per_source: 1,
        ..config()
    };
    let running = start(dir.path(), cfg.clone()).await;
    let base = format!("http://{}", running.router.addr);
    let one = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let body = serde_json::json!({"name": "r1", "endpoints": {"ws": format!("ws://{}", running.router.addr)}});
    let r = running.register(&one, &body).await;
    assert_eq!(r.status(), 201);
    let first: serde_json::Value = r.json().await.unwrap();
    // The per-source cap sees the real peer address (ConnectInfo on the WebSocket port):
    // 127.0.0.1 is full, 127.0.0.2 is another source.
    let r = running.register(&one, &body).await;
    assert_eq!(r.status(), 429);
    let two = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let r = running.register(&two, &body).await;
    assert_eq!(r.status(), 201);
    // The router's own routes and the WebSocket upgrade still work on the port.
    let r = one.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = one
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "OK");
    let (ws, resp) = tokio_tungstenite::connect_async(&running.router.url)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    drop(ws);
    running.stop().await;

    // Restart on the same data directory: both registrations are back.
    let running = start(dir.path(), cfg).await;
    let base = format!("http://{}", running.router.addr);
    let r = one
        .get(format!("{base}/api/v1/discover"))
        .send()
        .await
        .unwrap();
    let devices: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().any(|d| d["id"] == first["id"]));
    // The per-source count is restored too.
    let r = running.register(&one, &body).await;
    assert_eq!(r.status(), 429);
    running.stop().await;
}
