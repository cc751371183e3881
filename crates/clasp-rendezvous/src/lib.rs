//! The CLASP rendezvous service: an HTTP API where devices register and clients discover routers across networks, and its client.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]
