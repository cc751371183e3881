//! The console feed's messages: JSON objects tagged by `op`, one per WebSocket text message.
//!
//! From the page: `hello` (first, with the viewer's token), `set`, `monitor` (the signal
//! monitor's pattern and pause), `kick`, `ping`. From the router: `welcome`, `params` (every 50 ms at
//! most: the params that changed, the latest of each, and the ones removed; the first one has
//! every param the viewer may read), `signals` (per 50 ms: each address's count and last value
//! of the events, streams and gestures the monitor's pattern matches), `sessions` and `metrics`
//! (every second), `result` (the answer to a `set` or `kick`), `pong`, `error` (then the feed
//! closes).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// What the page sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum FromPage {
    /// Opens the feed with the viewer's token (none in open mode).
    Hello {
        #[serde(default)]
        token: Option<String>,
    },
    /// Writes a param, as the viewer.
    Set {
        id: u64,
        address: String,
        value: Json,
    },
    /// The signal monitor's pattern, and whether it is paused.
    Monitor {
        pattern: String,
        #[serde(default)]
        paused: bool,
    },
    /// Ends a session (admins only).
    Kick { id: u64, session: String },
    /// Asks for a `pong` carrying `t` back: the page's round trip to the router.
    Ping { t: f64 },
}

/// A param as the page shows it.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub(crate) struct ParamRow {
    /// Address.
    pub(crate) a: String,
    /// Value.
    pub(crate) v: Json,
    /// Revision.
    pub(crate) r: u64,
    /// Writer (session id).
    pub(crate) w: String,
    /// When it was written, ms since the Unix epoch.
    pub(crate) t: u64,
}

/// One address's signals in a window.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub(crate) struct SignalRow {
    /// Address.
    pub(crate) a: String,
    /// `event`, `stream`, `gesture` or `timeline`.
    pub(crate) k: &'static str,
    /// How many in the window.
    pub(crate) n: u64,
    /// The last one's value.
    pub(crate) v: Json,
}

/// A session as the page lists it.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub(crate) struct SessionRow {
    pub(crate) id: String,
    pub(crate) name: String,
    /// `ws`, `wss`, `tcp`, `quic`, … or `adapter` (in-process: MQTT, OSC, bridges, consoles).
    pub(crate) transport: String,
    /// The peer's address, for wire clients.
    pub(crate) peer: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) subscriptions: usize,
    pub(crate) locks: usize,
    pub(crate) p2p: bool,
    /// Frames and bytes waiting to be written to it.
    pub(crate) queued: usize,
    pub(crate) queued_bytes: usize,
    /// Connected since, ms since the Unix epoch.
    pub(crate) since: u64,
}

/// A bridge running inside the router.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub(crate) struct BridgeRow {
    /// Its label (`osc`, `artnet:…`).
    pub(crate) name: String,
    /// Its counters (messages in and out, errors, …).
    pub(crate) counters: serde_json::Map<String, Json>,
}

/// What the router sends.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ToPage {
    Welcome {
        router: String,
        session: String,
        /// Whether the router requires tokens.
        auth: bool,
        /// Whether the viewer may end sessions (admin scope on `/clasp/sessions/*`).
        admin: bool,
        /// Whether the viewer sees every session, P2P link and bridge (read scope on
        /// `/clasp/sessions/**`); others see their own session only.
        operator: bool,
        /// Whether the viewer may read every address (else the tree shows what it may).
        read_all: bool,
        version: &'static str,
    },
    Params {
        /// The router's clock when sent, ms since the Unix epoch (for the page's lag figure).
        now: u64,
        full: bool,
        items: Vec<ParamRow>,
        removed: Vec<String>,
    },
    Signals {
        now: u64,
        /// The window's length, ms.
        window: u64,
        items: Vec<SignalRow>,
        /// Updates the feed could not keep (the viewer's queue overflowed): counted, not hidden.
        dropped: u64,
    },
    Sessions {
        items: Vec<SessionRow>,
        /// Direct P2P links the peers reported: `[session, session, since ms]`.
        links: Vec<(String, String, u64)>,
    },
    /// The bridges and mappings running inside the router, with their counters.
    Bridges {
        items: Vec<BridgeRow>,
    },
    Metrics {
        now: u64,
        /// Counter name → value (totals since start; the page plots their rates).
        counters: serde_json::Map<String, Json>,
    },
    Result {
        id: u64,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        revision: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
    },
    Error {
        error: String,
    },
    /// The answer to a `ping`.
    Pong {
        t: f64,
    },
}
