//! Counters kept by the router core, rendered by the shell as Prometheus text.

use clasp_proto::message::{code, name_of};

/// Message-type code used for counting SET broadcasts.
pub(crate) const OUT_SET: u8 = code::SET;
/// Message-type code used for counting forwarded PUBLISH frames.
pub(crate) const OUT_PUBLISH: u8 = code::PUBLISH;

/// Router counters. Indexed by message type code where per-type.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Frames received, by message type code.
    pub messages_in: [u64; 256],
    /// Frames sent, by message type code.
    pub messages_out: [u64; 256],
    /// Bytes received in frames.
    pub bytes_in: u64,
    /// Bytes handed to connections.
    pub bytes_out: u64,
    /// Frames refused (undecodable or over the size limit).
    pub frames_rejected: u64,
    /// ERROR messages sent, and refusals answered in place to adapter sessions.
    pub errors_sent: u64,
    /// Gesture moves replaced by a later move before being forwarded.
    pub gesture_moves_coalesced: u64,
    /// Bundles scheduled for a future time.
    pub bundles_scheduled: u64,
    /// Params removed because their TTL ran out.
    pub params_expired: u64,
    /// Broadcasts handed to the journal.
    pub journaled: u64,
    /// Subscriptions that asked for history.
    pub history_requests: u64,
    /// Broadcasts sent as history.
    pub history_sent: u64,
    /// Histories given up (late, or too much waited behind them).
    pub history_late: u64,
    /// REPLAYs accepted.
    pub replays: u64,
    /// Entries sent in answer to REPLAYs.
    pub replayed: u64,
    /// HELLOs refused for their token.
    pub auth_failures: u64,
    /// Messages refused for lack of scope (ERROR 301 or 403).
    pub forbidden: u64,
    /// Sessions closed because their token expired or was revoked.
    pub sessions_revoked: u64,
    /// Messages refused by the per-session rate limit.
    pub rate_limited: u64,
    /// Refusals by kind (see [`RefusalKind`]), for `clasp_refusals_total{kind}`.
    pub refusals: [u64; RefusalKind::ALL.len()],
    /// Cluster mode: changes from the cluster applied to this router's replica.
    pub cluster_applied: u64,
    /// Cluster mode: changes from the cluster applied but not sent to subscribers (a value
    /// that cannot be framed).
    pub cluster_undeliverable: u64,
    /// Cluster mode: bundles from other routers applied together (every SET arrived).
    pub cluster_bundles: u64,
    /// Cluster mode: bundles applied without some of their SETs — from another router, when
    /// the rest did not arrive in time (overwritten before this router read them, or their
    /// writer failed), or written here when the cluster refused one SET after others stood.
    pub cluster_bundles_partial: u64,
}

/// Why the router refused something: every refusal is counted by its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// HELLO without a token on a router that requires one.
    AuthMissing,
    /// An unknown CPSK token, or a token of no known format.
    AuthUnknown,
    /// An expired token.
    AuthExpired,
    /// A revoked (or removed) token.
    AuthRevoked,
    /// A JWT used a second time.
    AuthReplayed,
    /// A JWT that does not verify or fit the configuration, or is not valid yet.
    AuthInvalid,
    /// Tokens are required and none is configured.
    AuthNoneConfigured,
    /// An operation outside the session's scopes.
    Scope,
    /// A message over the session's rate limit.
    RateLimit,
    /// A P2P message that names another session as its sender.
    P2pSpoof,
    /// A subscription over the session's count or pattern-bytes budget.
    Subscriptions,
    /// An ANNOUNCE over the session's or the router's signal budget.
    Announce,
    /// A gesture start over the session's gesture budget.
    Gestures,
    /// A scheduled bundle over the session's count or bytes budget.
    Scheduled,
    /// A write over the param store's count or bytes budget.
    Params,
    /// A connection that did not complete HELLO within the handshake deadline.
    HandshakeTimeout,
    /// A write the cluster (NATS JetStream) could not take.
    Cluster,
}

impl RefusalKind {
    /// Every kind, in the order of [`Metrics::refusals`].
    pub const ALL: [RefusalKind; 17] = [
        RefusalKind::AuthMissing,
        RefusalKind::AuthUnknown,
        RefusalKind::AuthExpired,
        RefusalKind::AuthRevoked,
        RefusalKind::AuthReplayed,
        RefusalKind::AuthInvalid,
        RefusalKind::AuthNoneConfigured,
        RefusalKind::Scope,
        RefusalKind::RateLimit,
        RefusalKind::P2pSpoof,
        RefusalKind::Subscriptions,
        RefusalKind::Announce,
        RefusalKind::Gestures,
        RefusalKind::Scheduled,
        RefusalKind::Params,
        RefusalKind::HandshakeTimeout,
        RefusalKind::Cluster,
    ];

    /// The `kind` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            RefusalKind::AuthMissing => "auth_missing",
            RefusalKind::AuthUnknown => "auth_unknown",
            RefusalKind::AuthExpired => "auth_expired",
            RefusalKind::AuthRevoked => "auth_revoked",
            RefusalKind::AuthReplayed => "auth_replayed",
            RefusalKind::AuthInvalid => "auth_invalid",
            RefusalKind::AuthNoneConfigured => "auth_none_configured",
            RefusalKind::Scope => "scope",
            RefusalKind::RateLimit => "rate_limit",
            RefusalKind::P2pSpoof => "p2p_spoof",
            RefusalKind::Subscriptions => "subscription_budget",
            RefusalKind::Announce => "announce_budget",
            RefusalKind::Gestures => "gesture_budget",
            RefusalKind::Scheduled => "scheduled_budget",
            RefusalKind::Params => "param_budget",
            RefusalKind::HandshakeTimeout => "handshake_timeout",
            RefusalKind::Cluster => "cluster",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            messages_in: [0; 256],
            messages_out: [0; 256],
            bytes_in: 0,
            bytes_out: 0,
            frames_rejected: 0,
            errors_sent: 0,
            gesture_moves_coalesced: 0,
            bundles_scheduled: 0,
            params_expired: 0,
            journaled: 0,
            history_requests: 0,
            history_sent: 0,
            history_late: 0,
            replays: 0,
            replayed: 0,
            auth_failures: 0,
            forbidden: 0,
            sessions_revoked: 0,
            rate_limited: 0,
            refusals: [0; RefusalKind::ALL.len()],
            cluster_applied: 0,
            cluster_undeliverable: 0,
            cluster_bundles: 0,
            cluster_bundles_partial: 0,
        }
    }
}

impl Metrics {
    pub(crate) fn count_in(&mut self, code: u8) {
        self.messages_in[usize::from(code)] += 1;
    }

    pub(crate) fn count_out(&mut self, code: u8, bytes: usize) {
        self.messages_out[usize::from(code)] += 1;
        self.bytes_out += bytes as u64;
    }

    /// Counts one refusal of `kind`.
    pub(crate) fn refuse(&mut self, kind: RefusalKind) {
        self.refusals[kind as usize] += 1;
        match kind {
            RefusalKind::Scope | RefusalKind::P2pSpoof => self.forbidden += 1,
            RefusalKind::RateLimit => self.rate_limited += 1,
            _ => {}
        }
    }

    /// `(kind label, count)` for every refusal kind.
    pub fn refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        RefusalKind::ALL
            .iter()
            .map(|k| (k.label(), self.refusals[*k as usize]))
    }

    /// `(type name, count)` for every message type seen inbound or outbound.
    pub fn by_type(counts: &[u64; 256]) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        counts
            .iter()
            .enumerate()
            .filter_map(|(c, n)| name_of(c as u8).map(|name| (name, *n)))
    }
}
