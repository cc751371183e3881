//! The counters most bridges keep (OSC, WebSocket, MQTT client): what came in and went out,
//! what was skipped, router writes that failed, reconnections.

use std::sync::atomic::AtomicU64;

/// Counters of a running bridge.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Messages read from the device, peers or broker.
    pub messages_in: AtomicU64,
    /// Messages written to the device, peers or broker.
    pub messages_out: AtomicU64,
    /// Input that could not be used (malformed, not mappable) or output dropped (a queue full).
    pub skipped: AtomicU64,
    /// Router writes refused or not sent, and failed connection attempts (client modes).
    pub errors: AtomicU64,
    /// Connections made again (client modes).
    pub reconnects: AtomicU64,
}
