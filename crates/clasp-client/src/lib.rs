//! An async client for CLASP routers (ours, and the reference router 3.3.0).
//!
//! ```no_run
//! # async fn demo() -> clasp_client::Result<()> {
//! use clasp_client::Client;
//! use futures_util::StreamExt;
//!
//! let client = Client::builder("ws://127.0.0.1:7330").name("demo").connect().await?;
//! let revision = client.set_confirmed("/lights/1/level", 0.8).await?;
//! let mut sub = client.subscribe("/lights/**").await?;
//! while let Some(update) = sub.next().await {
//!     println!("{} = {:?} (rev {:?})", update.address, update.value, update.revision);
//! }
//! # let _ = revision;
//! # Ok(()) }
//! ```
//!
//! Transports, by URL scheme: `ws://` and `wss://` (WebSocket), `tcp://HOST:PORT` (raw TCP,
//! each frame behind a 4-byte big-endian length) and `quic://HOST:PORT` (QUIC, TLS 1.3, ALPN
//! `clasp`). Everything below works the same over each.
//!
//! What it does beyond the reference client:
//! * confirmed writes return the new revision or a typed error (revision conflict, lock held);
//! * `get` of a missing address is [`Error::NotFound`] (with our router), never a hang;
//! * subscriptions are `Stream`s with the router's options and unsubscribe on drop;
//! * periodic NTP-style clock sync with smoothing and a quality figure;
//! * reconnect runs by itself with exponential backoff and jitter, resubscribes with the same
//!   options and resyncs state; connection events are observable;
//! * `close()` and dropping the last [`Client`] send a WebSocket Close: no leaked sessions;
//! * connect and request timeouts; an authentication failure carries the router's code.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

mod client;
mod clock;
mod command;
mod config;
mod driver;
mod error;
mod insecure;
pub mod json;
mod options;
pub mod p2p;
#[cfg(feature = "recording")]
pub mod recording;
mod subscription;
mod transport;

/// Finding routers across networks: register a device with a rendezvous service (and keep it
/// registered) and discover the routers registered there.
///
/// ```no_run
/// # async fn demo() -> Result<(), clasp_client::rendezvous::ClientError> {
/// use clasp_client::rendezvous::{DiscoverQuery, RendezvousClient};
/// let rdv = RendezvousClient::new("https://relay.example.com")?;
/// for d in rdv.discover(&DiscoverQuery { tag: Some("studio".into()), ..Default::default() }).await? {
///     println!("{} at {:?}", d.name, d.endpoints.get("ws"));
/// }
/// # Ok(()) }
/// ```
pub mod rendezvous {
    pub use clasp_rendezvous::client::*;
    pub use clasp_rendezvous::{Device, DiscoverQuery, Registered, Registration};
}

/// LAN discovery: mDNS `_clasp._tcp.local.` and UDP broadcast (feature `lan`).
#[cfg(feature = "lan")]
pub use clasp_discovery as lan;

pub use clasp_proto::{
    self as proto, ErrorCode, GesturePhase, Message, ParamValue, SignalDef, SignalType, Str, Value,
};
pub use client::{Client, ClientBuilder, SetOptions};
pub use clock::ClockStatus;
pub use config::{ConnectionEvent, ReconnectPolicy};
pub use error::{Error, Result};
pub use options::{SubscribeOptions, Update};
pub use subscription::{Listener, Subscription};
