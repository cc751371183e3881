//! The listener's counters, for `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a listener, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OscStats {
    /// Datagrams received.
    pub datagrams: u64,
    /// Datagrams that were not valid OSC (or nested too deep), ignored.
    pub decode_errors: u64,
    /// OSC messages applied (SET or PUBLISH), bundles' contents included.
    pub messages: u64,
    /// OSC bundles received (nested ones included).
    pub bundles: u64,
    /// Groups of messages handed to the router for a future time.
    pub scheduled: u64,
    /// Bundles dropped for a time tag too far ahead or too many pending for their peer.
    pub schedule_rejected: u64,
    /// Messages with an address that is not a valid CLASP address, or unknown control messages.
    pub invalid: u64,
    /// Messages the router refused as too large (its frame limit).
    pub too_large: u64,
    /// OSC sources with a session now (static feedback targets included).
    pub peers: u64,
    /// Sessions opened for OSC sources.
    pub peers_opened: u64,
    /// Datagrams ignored because `max_peers` sources already had sessions.
    pub peers_refused: u64,
    /// Sessions closed for inactivity.
    pub peers_reaped: u64,
    /// Datagrams ignored from a source whose session the router refused (e.g. a bad token).
    pub rejected_datagrams: u64,
    /// OSC messages sent to peers.
    pub feedback_sent: u64,
    /// A peer's own changes not sent back to it.
    pub echo_suppressed: u64,
    /// Failed UDP sends (and receives).
    pub send_errors: u64,
    /// Refusals and errors the router answered OSC sessions with (a refused session included;
    /// rate-limit refusals at most once a second per source, as the router tells clients).
    pub router_errors: u64,
    /// OSC messages not sent to an unverified source because they would take what it was sent
    /// past 3× what it sent (cookies and error replies included).
    pub amplification_dropped: u64,
    /// OSC messages not sent because their destination's byte rate limit had no room.
    pub rate_limited: u64,
    /// Sources with a session that are verified now (cookie, allow-list or static target).
    pub verified_peers: u64,
    /// Cookie round trips completed (sources verified by `/clasp/verify`).
    pub verifications: u64,
    /// `/clasp/verify` messages with a wrong or expired cookie.
    pub verify_failed: u64,
    /// Cookies (`/clasp/verify ,s <cookie>`) sent.
    pub cookies_sent: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) datagrams: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) bundles: AtomicU64,
    pub(crate) scheduled: AtomicU64,
    pub(crate) schedule_rejected: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) peers: AtomicU64,
    pub(crate) peers_opened: AtomicU64,
    pub(crate) peers_refused: AtomicU64,
    pub(crate) peers_reaped: AtomicU64,
    pub(crate) rejected_datagrams: AtomicU64,
    pub(crate) feedback_sent: AtomicU64,
    pub(crate) echo_suppressed: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) router_errors: AtomicU64,
    pub(crate) amplification_dropped: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) verified_peers: AtomicU64,
    pub(crate) verifications: AtomicU64,
    pub(crate) verify_failed: AtomicU64,
    pub(crate) cookies_sent: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A cloneable view of a listener's counters that outlives [`OscListener::run`](crate::OscListener::run)'s `self`.
#[derive(Debug, Clone)]
pub struct OscStatsHandle(pub(crate) Arc<Counters>);

impl OscStatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> OscStats {
        let c = &*self.0;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OscStats {
            datagrams: l(&c.datagrams),
            decode_errors: l(&c.decode_errors),
            messages: l(&c.messages),
            bundles: l(&c.bundles),
            scheduled: l(&c.scheduled),
            schedule_rejected: l(&c.schedule_rejected),
            invalid: l(&c.invalid),
            too_large: l(&c.too_large),
            peers: l(&c.peers),
            peers_opened: l(&c.peers_opened),
            peers_refused: l(&c.peers_refused),
            peers_reaped: l(&c.peers_reaped),
            rejected_datagrams: l(&c.rejected_datagrams),
            feedback_sent: l(&c.feedback_sent),
            echo_suppressed: l(&c.echo_suppressed),
            send_errors: l(&c.send_errors),
            router_errors: l(&c.router_errors),
            amplification_dropped: l(&c.amplification_dropped),
            rate_limited: l(&c.rate_limited),
            verified_peers: l(&c.verified_peers),
            verifications: l(&c.verifications),
            verify_failed: l(&c.verify_failed),
            cookies_sent: l(&c.cookies_sent),
        }
    }
}
