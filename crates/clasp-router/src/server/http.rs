//! Plain HTTP services beside the router (such as the relay's rendezvous port), served with the
//! same protections as the WebSocket port: a per-IP connection limit and a deadline for the
//! request head.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router as HttpRouter;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::listen::{AcceptLimits, accept_loop};

/// Limits of [`serve_http`].
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Most connections open at once from one IP address (0: no limit); more get HTTP 429.
    pub per_ip: usize,
    /// Time a client has to send its request head.
    pub header_read: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            per_ip: 256,
            header_read: Duration::from_secs(10),
        }
    }
}

/// Serves `app` (HTTP/1.1, with `ConnectInfo<SocketAddr>` for per-source decisions) on
/// `listener` until `shutdown` completes; then stops accepting (requests already in progress
/// finish on their own). Returns the number of connections refused for the per-IP limit.
pub async fn serve_http(
    listener: TcpListener,
    app: HttpRouter,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> u64 {
    let stop = Arc::new(Notify::new());
    let refused = Arc::new(AtomicU64::new(0));
    let accept = tokio::spawn(accept_loop(
        listener,
        app,
        None,
        AcceptLimits {
            per_ip: limits.per_ip,
            tls_handshake: Duration::from_secs(10),
            header_read: limits.header_read,
        },
        stop.clone(),
        refused.clone(),
    ));
    shutdown.await;
    stop.notify_one();
    let _ = accept.await;
    refused.load(std::sync::atomic::Ordering::Relaxed)
}
