//! The rendezvous service's settings: limits, rate limit, owner-secret rules.

use std::fmt;
use std::time::Duration;

use clasp_proto::rate::Rate;

use super::TokenCheck;

/// A per-source token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Bucket size.
    pub burst: u32,
    /// Tokens added per second.
    pub per_second: f64,
}

impl RateLimit {
    /// As the workspace's token bucket counts it (at least one token, a positive rate).
    pub(super) fn rate(self) -> Rate {
        Rate::new(self.per_second.max(1e-6), f64::from(self.burst.max(1)))
    }
}

impl Default for RateLimit {
    /// 30 requests at once, 10 per second sustained.
    fn default() -> Self {
        RateLimit {
            burst: 30,
            per_second: 10.0,
        }
    }
}

/// Size limits on a registration (violations are answered with 422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldLimits {
    /// Longest `name`, in bytes (default 256).
    pub name_bytes: usize,
    /// Longest `publicKey` (default 1024).
    pub public_key_bytes: usize,
    /// Most `endpoints` (default 16).
    pub endpoints: usize,
    /// Longest endpoint URL (default 2048).
    pub url_bytes: usize,
    /// Most `tags` and most `features`, each (default 32).
    pub list_items: usize,
    /// Longest transport name, tag, feature or metadata key (default 128).
    pub item_bytes: usize,
    /// Most `metadata` entries (default 64).
    pub metadata_entries: usize,
    /// Total bytes of metadata keys and values (default 8192).
    pub metadata_bytes: usize,
}

impl Default for FieldLimits {
    fn default() -> Self {
        FieldLimits {
            name_bytes: 256,
            public_key_bytes: 1024,
            endpoints: 16,
            url_bytes: 2048,
            list_items: 32,
            item_bytes: 128,
            metadata_entries: 64,
            metadata_bytes: 8192,
        }
    }
}

/// How the service behaves.
#[derive(Clone)]
pub struct RendezvousConfig {
    /// How long a registration lives after its last register/refresh (default 300 s).
    pub ttl: Duration,
    /// Most devices overall; a register at capacity evicts the least recently seen one
    /// (default 10,000).
    pub max_total_devices: usize,
    /// Most live devices per source address (IPv4 address, or IPv6 /64); more are refused with
    /// 429 (default 10, the reference's declared value; raise it for big sites behind one NAT).
    pub max_devices_per_source: usize,
    /// How often expired devices are swept from memory and the store (default 60 s). Expiry is
    /// also checked on every read, so the sweep only frees memory.
    pub cleanup_interval: Duration,
    /// How often refreshes are written to the store (default 10 s). Registrations and
    /// unregistrations are written before they are answered.
    pub persist_interval: Duration,
    /// Per-source request rate limit on every endpoint but health (None = unlimited).
    pub rate_limit: Option<RateLimit>,
    /// Most rate-limit buckets kept (default 100,000); when full, idle ones are dropped and, if
    /// none is idle, new sources are refused with 429.
    pub max_tracked_sources: usize,
    /// Largest request body (default 64 KiB; 413 beyond).
    pub max_body_bytes: usize,
    /// Registration field limits.
    pub limits: FieldLimits,
    /// Token check for register and unregister (`Authorization: Bearer <token>`); None = open.
    pub auth: Option<TokenCheck>,
    /// Whether unregister must carry the owner secret (`X-Clasp-Secret`) returned by register,
    /// on top of any token (default true). False is the reference's behaviour: anyone who
    /// passes the token check (anyone at all without `auth`) may unregister any device.
    pub require_secret: bool,
    /// Whether refresh must carry the owner secret too (default false: the reference's clients
    /// refresh without it, and a refresh only keeps a registration alive).
    pub require_secret_on_refresh: bool,
}

impl Default for RendezvousConfig {
    fn default() -> Self {
        RendezvousConfig {
            ttl: Duration::from_secs(300),
            max_total_devices: 10_000,
            max_devices_per_source: 10,
            cleanup_interval: Duration::from_secs(60),
            persist_interval: Duration::from_secs(10),
            rate_limit: Some(RateLimit::default()),
            max_tracked_sources: 100_000,
            max_body_bytes: 64 * 1024,
            limits: FieldLimits::default(),
            auth: None,
            require_secret: true,
            require_secret_on_refresh: false,
        }
    }
}

impl fmt::Debug for RendezvousConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RendezvousConfig")
            .field("ttl", &self.ttl)
            .field("max_total_devices", &self.max_total_devices)
            .field("max_devices_per_source", &self.max_devices_per_source)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("persist_interval", &self.persist_interval)
            .field("rate_limit", &self.rate_limit)
            .field("max_tracked_sources", &self.max_tracked_sources)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("limits", &self.limits)
            .field("auth", &self.auth.is_some())
            .field("require_secret", &self.require_secret)
            .field("require_secret_on_refresh", &self.require_secret_on_refresh)
            .finish()
    }
}
