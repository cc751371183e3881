//! A client that does not reconnect, for the tests of this crate that want to see a loss
//! (`support/mod.rs` is shared with crates that do not depend on `clasp-client`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use clasp_client::{Client, ReconnectPolicy};

use crate::support::Router;

/// A client of `r` that does not reconnect.
pub async fn client(r: &Router) -> Client {
    Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap()
}
