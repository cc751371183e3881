//! The CLASP router.
//!
//! [`core`] is a deterministic state machine: sessions, the subscription index, the param store,
//! locks, bundles, gesture coalescing and P2P signalling, driven by "frame in from session S at
//! time T" and producing frames for sessions through an [`core::Outlet`]. It never touches a socket
//! or the system clock. The server module puts it on WebSocket with tokio.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

pub mod core;
pub mod server;
