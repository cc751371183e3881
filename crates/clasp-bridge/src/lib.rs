//! Bridges between the CLASP router and the apps and devices people have.
//!
//! This crate holds what every bridge shares: how a bridge reaches the router
//! ([`RouterLink`]: a router client over any CLASP URL with a token, or an adapter session
//! inside the router's own process) and the host that runs
//! the mapping engine ([`clasp_mapping`]) against a router ([`mapper::Mapper`]): it subscribes to
//! the mappings' sources (and targets, for mappings both ways), feeds what changes to the
//! engine and makes the writes it asks for.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod host;
pub mod http;
pub mod lighting;
mod link;
pub mod mapper;
pub mod midi;
pub mod mqtt;
pub mod osc;
pub mod rules;
pub mod socketio;
pub mod stats;
mod stream;
pub mod ws;

pub use link::{BridgeError, LinkSubscription, RouterLink, Update};
