//! Why a connection ended, as the transports log it.

use std::fmt;

/// Why a connection's read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// The peer closed the connection.
    PeerClosed,
    /// The transport failed (reset, TLS or WebSocket error).
    TransportError,
    /// No HELLO by the deadline (counted as `handshake_timeout`).
    HandshakeTimeout,
    /// No inbound traffic (frames, pongs, answers to PING) for the idle timeout.
    IdleTimeout,
    /// The router closed it (refused handshake, slow consumer, revoked token, shutdown).
    ClosedByRouter,
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseCause::PeerClosed => "peer closed",
            CloseCause::TransportError => "transport error",
            CloseCause::HandshakeTimeout => "handshake timeout",
            CloseCause::IdleTimeout => "idle timeout (no traffic, no answer to pings)",
            CloseCause::ClosedByRouter => "closed by the router",
        })
    }
}
