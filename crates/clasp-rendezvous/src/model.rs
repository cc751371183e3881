//! The JSON bodies of the API (shared by server and client).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A registration request (`POST /api/v1/register`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// A human-readable name.
    pub name: String,
    /// The device's public key, if it has one (stored and returned, not verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Feature names, e.g. `param`, `event`.
    #[serde(default)]
    pub features: Vec<String>,
    /// Transport name → URL, e.g. `ws` → `wss://relay.example:7330`.
    pub endpoints: BTreeMap<String, String>,
    /// Free-form tags used by `discover?tag=`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form string metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Default for Registration {
    /// The reference client's defaults: name "CLASP Device", features `param` and `event`.
    fn default() -> Self {
        Registration {
            name: "CLASP Device".to_owned(),
            public_key: None,
            features: vec!["param".to_owned(), "event".to_owned()],
            endpoints: BTreeMap::new(),
            tags: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }
}

/// The answer to a registration (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    /// The new device id (a UUIDv4).
    pub id: String,
    /// Server time of the registration, µs since the Unix epoch.
    pub timestamp: u64,
    /// Seconds the registration lives without a refresh.
    pub ttl: u64,
    /// The owner secret: send it in the `X-Clasp-Secret` header to unregister (this crate's
    /// server requires it by default) and to refresh (absent from servers that do not issue
    /// one, such as the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A registered device as returned by discover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The device id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its public key, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Feature names.
    #[serde(default)]
    pub features: Vec<String>,
    /// Transport name → URL.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// When it registered, µs since the Unix epoch.
    pub registered_at: u64,
    /// When it last registered or refreshed, µs since the Unix epoch.
    pub last_seen: u64,
}

/// The filters of `GET /api/v1/discover`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverQuery {
    /// Only devices that have this tag (exact match).
    pub tag: Option<String>,
    /// Only devices that have this feature (exact match).
    pub feature: Option<String>,
    /// At most this many devices (server default 100, capped at 1000).
    pub limit: Option<usize>,
}
