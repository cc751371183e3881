//! An in-process router for client tests (other crates' tests include this file with
//! `#[path = "../../clasp-client/tests/support/mod.rs"]`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use clasp_router::server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a test waits for something it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// A router running in this process on 127.0.0.1.
pub struct Router {
    pub addr: SocketAddr,
    pub url: String,
    /// The raw TCP listener's address, if the config asked for one.
    pub tcp: Option<SocketAddr>,
    /// The QUIC listener's address, if the config asked for one.
    pub quic: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Router {
    /// A router with in-memory state on a free port.
    pub async fn start() -> Router {
        Router::start_with(|_| {}).await
    }

    /// A router on a free port, configured by `f`.
    pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> Router {
        Router::start_on("127.0.0.1:0".parse().unwrap(), f).await
    }

    /// A router on `addr`, configured by `f`.
    pub async fn start_on(addr: SocketAddr, f: impl FnOnce(&mut ServerConfig)) -> Router {
        let mut config = ServerConfig {
            listen: addr,
            ..ServerConfig::default()
        };
        f(&mut config);
        Router::run(Server::bind(config).await.unwrap())
    }

    /// Runs an already bound server (for tests that take its handle or mount routes first).
    pub fn run(server: Server) -> Router {
        let addr = server.local_addr().unwrap();
        let (tcp, quic) = (server.tcp_local_addr(), server.quic_local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Router {
            addr,
            url: format!("ws://{addr}/"),
            tcp,
            quic,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts the router down (close frames to every client) and waits for it; panics if it
    /// failed or did not stop within a minute.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("router did not stop")
                .unwrap();
        }
    }

    /// The body of an HTTP GET of `path` on the router's port.
    pub async fn http_get(&self, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        body
    }

    /// A figure of the router's `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        self.http_get("/metrics")
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
            .parse()
            .unwrap()
    }

    /// The `sessions` figure of `/healthz`.
    pub async fn sessions(&self) -> u64 {
        let body = self.http_get("/healthz").await;
        let i = body.find("\"sessions\":").unwrap() + 11;
        body[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Waits until `/healthz` reports `n` sessions.
    pub async fn wait_sessions(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.sessions().await;
            if now == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "router still has {now} sessions, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Waits for `fut` at most [`WAIT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
