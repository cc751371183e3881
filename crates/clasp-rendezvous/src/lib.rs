//! The CLASP rendezvous service: an HTTP API where devices register and clients discover routers across networks, and its client.
//!
//! The wire API is the reference's (`/api/v1/register`, `discover`, `refresh/{id}`,
//! `unregister/{id}`, `health`; camelCase JSON, times in µs since the Unix epoch), described by
//! the OpenAPI document served at `/api/v1/openapi.json` ([`OPENAPI_JSON`]).
//!
//! - feature `server` (default): [`RendezvousService`], [`routes`] and [`serve`];
//! - feature `client` (default): [`client::RendezvousClient`] and [`client::KeepAlive`].
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

mod model;

pub use model::{Device, DiscoverQuery, Registered, Registration};

/// The default TCP port of a dedicated rendezvous listener.
pub const DEFAULT_PORT: u16 = 7340;

/// The header that carries a registration's owner secret on refresh and unregister.
pub const SECRET_HEADER: &str = "x-clasp-secret";

/// The OpenAPI 3 description of the HTTP API (served at `/api/v1/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

#[cfg(feature = "server")]
mod clock;
#[cfg(feature = "server")]
mod http;
#[cfg(feature = "server")]
mod service;

#[cfg(feature = "server")]
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "server")]
pub use http::{routes, serve};
#[cfg(feature = "server")]
pub use service::{
    FieldLimits, RATE_LIMIT_ALL_SOURCES, RateLimit, RendezvousConfig, RendezvousError,
    RendezvousService, TokenCheck,
};

#[cfg(feature = "client")]
pub mod client;
