//! How a client is configured: connection settings fixed at build time, the reconnect policy,
//! TLS, and the connection events and their hook.

use std::sync::Arc;
use std::time::Duration;

use clasp_proto::{ErrorCode, Features};

use crate::error::{Error, Result};

/// Connection settings, fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) features: Features,
    pub(crate) token: Option<String>,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) sync_interval: Duration,
    pub(crate) on_event: Option<EventHook>,
    pub(crate) tls: TlsSettings,
    /// Built from `tls` once, when a `wss://` client connects (reconnects reuse it).
    pub(crate) tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Built from `tls` once, when a `quic://` client connects.
    pub(crate) quic_config: Option<quinn::ClientConfig>,
}

/// How `wss://` and `quic://` routers are verified.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    /// Trust the usual public certificate authorities (Mozilla's list).
    pub(crate) public_roots: bool,
    /// Further trusted certificates (PEM), e.g. a router's self-signed certificate.
    pub(crate) extra_roots_pem: Vec<Vec<u8>>,
    /// Further trusted certificates (DER).
    pub(crate) extra_roots_der: Vec<Vec<u8>>,
    /// Accept any certificate (development only).
    pub(crate) skip_verify: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            public_roots: true,
            extra_roots_pem: Vec::new(),
            extra_roots_der: Vec::new(),
            skip_verify: false,
        }
    }
}

/// The rustls client configuration for `settings` (ring as the crypto provider); for QUIC,
/// TLS 1.3 only with the CLASP ALPN names.
pub(crate) fn tls_config(settings: &TlsSettings, quic: bool) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if settings.public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let mut extra = Vec::new();
    for pem in &settings.extra_roots_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Tls(format!("not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Tls("no certificate in the PEM data".into()));
        }
        extra.extend(certs);
    }
    extra.extend(
        settings
            .extra_roots_der
            .iter()
            .map(|d| CertificateDer::from(d.clone())),
    );
    for c in extra {
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("certificate refused: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone());
    let builder = if quic {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .map_err(|e| Error::Tls(e.to_string()))?;
    let mut cfg = if settings.skip_verify {
        tracing::warn!(
            "TLS certificate verification is OFF: any router, or anyone in between, is accepted (development only)"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::insecure::AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if quic {
        // ALPN names offered over QUIC: ours first, then the reference router's.
        cfg.alpn_protocols = clasp_proto::QUIC_ALPN.iter().map(|p| p.to_vec()).collect();
    }
    Ok(cfg)
}

/// A listener for connection events, registered before connecting.
#[derive(Clone)]
pub(crate) struct EventHook(pub(crate) Arc<dyn Fn(&ConnectionEvent) + Send + Sync>);

impl std::fmt::Debug for EventHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHook")
    }
}

/// How the client reconnects after losing the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Whether to reconnect at all.
    pub enabled: bool,
    /// Delay before the first attempt.
    pub initial_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Growth of the delay per failed attempt.
    pub multiplier: f64,
    /// Random spread of each delay, as a fraction (0.2 = ±20%), so clients of a restarted
    /// router do not all come back at once.
    pub jitter: f64,
    /// Give up after this many failed attempts (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    /// Enabled: 250 ms, doubling, up to 30 s, ±20% jitter, never giving up.
    fn default() -> Self {
        ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// No reconnecting: a lost connection closes the client.
    pub fn disabled() -> Self {
        ReconnectPolicy {
            enabled: false,
            ..Self::default()
        }
    }

    /// The delay before attempt `n` (from 0).
    pub fn delay(&self, n: u32) -> Duration {
        self.delay_with(n, &mut fastrand::Rng::new())
    }

    /// The delay before attempt `n`, its jitter drawn from `rng`.
    pub(crate) fn delay_with(&self, n: u32, rng: &mut fastrand::Rng) -> Duration {
        let base =
            self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(n.min(64) as i32);
        let base = base.min(self.max_delay.as_secs_f64());
        let spread = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + spread * (2.0 * rng.f64() - 1.0);
        Duration::from_secs_f64((base * factor).max(0.0))
    }
}

/// Something that happened to the connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The first connection is up (seen by [`ClientBuilder::on_event`] listeners, which exist
    /// before it; [`Client::events`] receivers are created after it).
    Connected {
        /// The session id.
        session: String,
    },
    /// The connection was lost.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A reconnect attempt is about to be made after `delay`.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// Connected again, subscriptions restored.
    Reconnected {
        /// The new session id.
        session: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// The router sent an ERROR that answers no pending call.
    RouterError {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
        /// The address it names.
        address: Option<String>,
    },
    /// The client is closed for good.
    Closed,
}
