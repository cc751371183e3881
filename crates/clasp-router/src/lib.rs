//! The CLASP router.
//!
//! [`core`] (the `clasp-router-core` crate, re-exported) is a deterministic state machine:
//! sessions, the subscription index, the param store, locks, bundles, gesture coalescing and P2P
//! signalling, driven by "frame in from session S at time T" and producing frames for sessions
//! that the shell pulls ([`core::Router::poll_transmit`]). It never touches a socket or the
//! system clock. [`server`] puts it
//! on WebSocket, raw TCP and QUIC with tokio, and persists params.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

pub use clasp_router_core as core;
pub mod server;
