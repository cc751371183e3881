//! Accepting connections: plain TCP or TLS (`wss://`), a per-IP connection limit, and time
//! limits on the TLS handshake and on the HTTP request head, so slow or silent clients cannot
//! hold sockets open before they ever become sessions.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router as HttpRouter;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// A certificate chain and its private key, for serving `wss://`.
#[derive(Debug)]
pub struct TlsConfig {
    /// The chain, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsConfig {
    fn clone(&self) -> Self {
        TlsConfig {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the certificate or key.
    #[error("certificate or key refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// A self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
}

impl TlsConfig {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, TlsError> {
        use rustls_pki_types::pem::PemObject;
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let cert_chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: cert.display().to_string(),
                what: format!("not a PEM certificate chain ({e})"),
            })?;
        if cert_chain.is_empty() {
            return Err(TlsError::Pem {
                path: cert.display().to_string(),
                what: "no CERTIFICATE block".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            path: key.display().to_string(),
            what: format!("no usable private key ({e})"),
        })?;
        Ok(TlsConfig { cert_chain, key })
    }

    /// A new self-signed certificate for `hosts` (names or IP addresses), for development.
    /// Returns it with the certificate and the key in PEM form (the certificate is what
    /// clients trust; the key is secret).
    pub fn self_signed(hosts: &[String]) -> Result<(Self, String, String), TlsError> {
        let ck = rcgen::generate_simple_self_signed(hosts.to_vec())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        let cert_chain = vec![ck.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        Ok((TlsConfig { cert_chain, key }, cert_pem, key_pem))
    }

    /// The SHA-256 fingerprint of the leaf certificate, as colon-separated hex pairs.
    pub fn fingerprint(&self) -> String {
        self.cert_chain
            .first()
            .map(|c| fingerprint(c.as_ref()))
            .unwrap_or_default()
    }

    /// A rustls server configuration serving this certificate (TLS 1.2 and 1.3, no client
    /// certificates) and offering `alpn` (empty: a client's ALPN offer is ignored).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }

    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(Arc::new(
            self.server_config(&[b"http/1.1"])?,
        )))
    }
}

/// SHA-256 of `der` as colon-separated upper-case hex pairs.
fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Limits applied before a connection is a session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AcceptLimits {
    /// Most connections open at once from one IP address (0: no limit).
    pub(crate) per_ip: usize,
    /// Time for the TLS handshake.
    pub(crate) tls_handshake: Duration,
    /// Time for the HTTP request head (slow-loris protection).
    pub(crate) header_read: Duration,
}

/// When a connection was accepted: a request extension, so the WebSocket handler can hold
/// the HELLO deadline to an absolute time from accept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accepted(pub(crate) std::time::Instant);

/// Connections open per IP address, for listeners that limit them (share it with `Arc`).
#[derive(Debug, Default)]
pub struct IpTable {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in the [`IpTable`], given back when the last clone is dropped (the
/// HTTP connection and, after an upgrade, the WebSocket each hold one).
#[derive(Debug)]
pub struct IpSlot {
    table: Arc<IpTable>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl IpTable {
    /// A slot for `peer` if it has fewer than `max` connections open (0: no limit); otherwise
    /// `None`, counted in `refused` and logged with `transport` (the listener's name).
    pub(crate) fn admit(
        self: &Arc<Self>,
        peer: SocketAddr,
        max: usize,
        refused: &AtomicU64,
        transport: &'static str,
    ) -> Option<IpSlot> {
        let slot = self.take(peer.ip(), max);
        if slot.is_none() {
            refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, transport, "too many connections from this address");
        }
        slot
    }

    /// A slot for `ip`, unless it already holds `max` (0: no limit); dropping the slot gives
    /// the place back.
    pub fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// The next TCP connection of `listener`, with `TCP_NODELAY` set. Accept errors (out of
/// descriptors and the like) are logged with `transport` and retried after a short back-off
/// instead of spinning. Cancel-safe.
pub(crate) async fn accept_tcp(
    listener: &TcpListener,
    transport: &'static str,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                return (tcp, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, transport, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts connections until `stop` is notified, serving `app` on each (HTTP/1.1 with
/// upgrades). Counts refusals with `refused`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: HttpRouter,
    tls: Option<TlsAcceptor>,
    limits: AcceptLimits,
    stop: Arc<Notify>,
    refused: Arc<std::sync::atomic::AtomicU64>,
) {
    let table = Arc::new(IpTable::default());
    loop {
        let (tcp, peer) = tokio::select! {
            c = accept_tcp(&listener, "websocket") => c,
            () = stop.notified() => return,
        };
        let accepted = Accepted(std::time::Instant::now());
        let Some(slot) = table.admit(peer, limits.per_ip, &refused, "websocket") else {
            tokio::spawn(refuse(tcp, tls.is_some(), limits.per_ip));
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let slot = Arc::new(slot);
            match tls {
                None => serve(TokioIo::new(tcp), app, peer, slot, accepted, limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.tls_handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve(TokioIo::new(stream), app, peer, slot, accepted, limits).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Answers a connection over the per-IP limit: an HTTP 429 on plain TCP, a bare close on TLS
/// (nothing readable can be said before a handshake).
async fn refuse(mut tcp: TcpStream, tls: bool, max: usize) {
    if !tls {
        let body = format!("too many connections from this address (the limit is {max})\n");
        let resp = format!(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(resp.as_bytes())).await;
    }
    let _ = tcp.shutdown().await;
}

async fn serve<I>(
    io: TokioIo<I>,
    app: HttpRouter,
    peer: SocketAddr,
    slot: Arc<IpSlot>,
    accepted: Accepted,
    limits: AcceptLimits,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(slot.clone());
        req.extensions_mut().insert(accepted);
        let mut app = app.clone();
        async move { app.call(req).await }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let conn = http.serve_connection(io, svc).with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}
