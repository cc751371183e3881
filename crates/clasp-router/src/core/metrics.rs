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
    /// ERROR messages sent.
    pub errors_sent: u64,
    /// Gesture moves replaced by a later move before being forwarded.
    pub gesture_moves_coalesced: u64,
    /// Bundles scheduled for a future time.
    pub bundles_scheduled: u64,
    /// Params removed because their TTL ran out.
    pub params_expired: u64,
    /// HELLOs refused for their token.
    pub auth_failures: u64,
    /// Messages refused for lack of scope (ERROR 301 or 403).
    pub forbidden: u64,
    /// Sessions closed because their token expired or was revoked.
    pub sessions_revoked: u64,
    /// Messages refused by the per-session rate limit.
    pub rate_limited: u64,
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
            auth_failures: 0,
            forbidden: 0,
            sessions_revoked: 0,
            rate_limited: 0,
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

    /// `(type name, count)` for every message type seen inbound or outbound.
    pub fn by_type(counts: &[u64; 256]) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        counts
            .iter()
            .enumerate()
            .filter_map(|(c, n)| name_of(c as u8).map(|name| (name, *n)))
    }
}
