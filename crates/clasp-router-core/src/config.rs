//! Router core configuration.

use std::time::Duration;

/// Limits and behaviour of the router core. Every field has a default that just works.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// Name sent in WELCOME.
    pub name: String,
    /// Maximum concurrent sessions; a HELLO beyond it gets ERROR 503 and the connection closes.
    pub max_sessions: usize,
    /// Maximum subscriptions per session (ERROR 429 beyond).
    pub max_subscriptions: usize,
    /// Most bytes of subscription patterns per session (ERROR 429 beyond).
    pub max_subscription_bytes: usize,
    /// Most gestures in progress per session (a start beyond gets ERROR 429).
    pub max_gestures: usize,
    /// Most bytes of gesture state per session (addresses and buffered moves); past it,
    /// moves are forwarded at once instead of buffered.
    pub max_gesture_bytes: usize,
    /// Most bytes of scheduled bundles per session (ERROR 429 beyond).
    pub max_scheduled_bytes: usize,
    /// Maximum number of params; writes to new addresses beyond it get an ERROR.
    pub max_params: usize,
    /// Most bytes the params may take (addresses, values and a fixed overhead each); a write
    /// that would pass it gets an ERROR.
    pub max_param_bytes: usize,
    /// Largest accepted frame payload in bytes (at most 65,535). Larger frames get ERROR 413 and
    /// the connection stays open.
    pub max_payload: usize,
    /// Default time to live of params without one of their own; `None` keeps them forever.
    pub param_ttl: Option<Duration>,
    /// How long announced signals stay listed for QUERY after their last ANNOUNCE (they also
    /// go when the session that announced them ends).
    pub signal_ttl: Duration,
    /// Most signals one session may have announced.
    pub max_signals_per_session: usize,
    /// Most bytes one session's announced signals may take.
    pub max_signal_bytes_per_session: usize,
    /// Most signals announced router-wide.
    pub max_signals: usize,
    /// Most bytes announced signals may take router-wide.
    pub max_signal_bytes: usize,
    /// Gesture move coalescing interval: at most one move per gesture per interval is forwarded.
    /// Zero forwards every move.
    pub gesture_interval: Duration,
    /// Largest number of scheduled (future-timestamped) bundles per session.
    pub max_scheduled_bundles: usize,
    /// How far in the future a bundle may be scheduled.
    pub max_schedule_ahead: Duration,
    /// Messages each session may send, as a token bucket; `None` for no limit. Messages over
    /// the limit are dropped with ERROR 429 (at most one ERROR per second); a BUNDLE costs one
    /// message per inner message.
    pub rate_limit: Option<RateLimit>,
    /// The signal kinds journaled (and kept as recent values for history): params and
    /// events by default.
    pub journal_kinds: clasp_proto::SignalTypes,
    /// Without a journal: the broadcasts of each address kept for the `history` SUBSCRIBE
    /// option (0: none, and history is refused).
    pub history_depth: usize,
    /// Without a journal: the most bytes those recent broadcasts take in all (the oldest go
    /// first).
    pub history_bytes: usize,
}

/// A token bucket: `per_sec` messages a second on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_sec: u32,
    /// Largest burst.
    pub burst: u32,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            name: "CLASP Router".to_owned(),
            max_sessions: 10_000,
            max_subscriptions: 1_000,
            max_subscription_bytes: 256 << 10,
            max_gestures: 256,
            max_gesture_bytes: 1 << 20,
            max_scheduled_bytes: 4 << 20,
            max_params: 1_000_000,
            max_param_bytes: 256 << 20,
            max_payload: clasp_proto::frame::MAX_PAYLOAD,
            param_ttl: None,
            signal_ttl: Duration::from_secs(3600),
            max_signals_per_session: 10_000,
            max_signal_bytes_per_session: 4 << 20,
            max_signals: 100_000,
            max_signal_bytes: 64 << 20,
            gesture_interval: Duration::from_millis(16),
            max_scheduled_bundles: 1_000,
            max_schedule_ahead: Duration::from_secs(24 * 3600),
            rate_limit: Some(RateLimit {
                per_sec: 10_000,
                burst: 20_000,
            }),
            journal_kinds: clasp_proto::SignalTypes::of(&[
                clasp_proto::SignalType::Param,
                clasp_proto::SignalType::Event,
            ]),
            history_depth: 8,
            history_bytes: 16 << 20,
        }
    }
}
