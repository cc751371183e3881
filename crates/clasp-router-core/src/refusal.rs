//! Why the core refused, or could not do, what a session sent: one typed value per case, which
//! gives the ERROR code ([`Refusal::code`]), its text (`Display`) and how `/metrics` counts it
//! ([`Refusal::kind`]). Every ERROR the core sends is one of these.

use clasp_proto::address::AddressError;
use clasp_proto::pattern::PatternError;
use clasp_proto::{DecodeError, EncodeError, ErrorCode};

use crate::auth::AuthError;
use crate::metrics::RefusalKind;
use crate::state::WriteError;

/// What a scope refusal was about (the text says "Insufficient scope for …").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// GET.
    Read,
    /// SET.
    Write,
    /// PUBLISH.
    Publish,
    /// SUBSCRIBE.
    Subscription,
    /// ANNOUNCE.
    Announce,
}

impl Operation {
    fn text(self) -> &'static str {
        match self {
            Operation::Read => "read operation",
            Operation::Write => "write operation",
            Operation::Publish => "publish operation",
            Operation::Subscription => "subscription",
            Operation::Announce => "announce",
        }
    }
}

/// Which bound an ANNOUNCE would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceBound {
    /// The session's own.
    Session,
    /// The router's.
    Router,
}

/// A refusal, with its ERROR code, text and metrics kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// HELLO's token was refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A live session's token no longer holds.
    #[error("{0}; the session ends")]
    SessionEnds(AuthError),
    /// The router has its maximum of sessions.
    #[error("router is full: {sessions} sessions (the maximum); try again later")]
    Full {
        /// Sessions open.
        sessions: usize,
    },
    /// A frame's payload is over the limit.
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Its payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame that does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The first message was not HELLO.
    #[error("expected HELLO as the first message, got {0}")]
    ExpectedHello(&'static str),
    /// A message for a connection that has no session (it never reaches the core's handlers
    /// before HELLO; reported rather than hidden).
    #[error("no session for this connection")]
    NoSession,
    /// HELLO on an established session.
    #[error("HELLO on an established session is not allowed; the session is unchanged")]
    SecondHello,
    /// Outside the session's scopes.
    #[error("Insufficient scope for {}", .0.text())]
    Scope(Operation),
    /// A subscription the token's edited scopes no longer allow, removed.
    #[error(
        "Insufficient scope for subscription: the token's scopes changed and this subscription was removed"
    )]
    ScopeNarrowed,
    /// A P2P message naming another session as its sender.
    #[error("P2P messages must name the sender's own session, not `{0}`")]
    P2pSpoof(String),
    /// An address that is not valid.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A wildcard in an address.
    #[error("wildcards are only allowed in patterns, not in addresses: {0}")]
    Wildcard(String),
    /// A pattern that does not compile.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A subscription option the router does not apply.
    #[error("subscription option `{0}` is not supported by this router; subscribe without it")]
    UnsupportedOption(&'static str),
    /// The param store refused the write.
    #[error(transparent)]
    Store(#[from] WriteError),
    /// A value that could never be sent in a snapshot.
    #[error(
        "value too large to store: its snapshot entry would take {len} bytes, over the {max}-byte frame limit"
    )]
    TooLargeToStore {
        /// The snapshot payload it would need.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message that cannot be encoded into a frame.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// GET of an address with no param.
    #[error("no param at {0}")]
    NoParam(String),
    /// A P2P signal to a session that does not exist.
    #[error("Target session not found: {0}")]
    TargetNotFound(String),
    /// Over the session's message rate.
    #[error(
        "Rate limit exceeded: {per_sec} messages/second (bursts of {burst}); messages over it are dropped"
    )]
    RateLimited {
        /// Sustained messages per second.
        per_sec: u32,
        /// Largest burst.
        burst: u32,
    },
    /// The session has its maximum of subscriptions.
    #[error("Subscription limit reached (max {max})")]
    Subscriptions {
        /// The limit.
        max: usize,
    },
    /// The session's patterns would pass their byte budget.
    #[error(
        "Subscription limit reached: this session's patterns would take {bytes} bytes (max {max}); use fewer or shorter patterns"
    )]
    SubscriptionBytes {
        /// What they would take.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The session has its maximum of gestures in progress.
    #[error(
        "too many gestures in progress ({count} of at most {max}, {bytes} of at most {max_bytes} bytes); end or cancel some first"
    )]
    Gestures {
        /// Gestures in progress.
        count: usize,
        /// Their limit.
        max: usize,
        /// Their bytes.
        bytes: usize,
        /// The byte limit.
        max_bytes: usize,
    },
    /// The session has its maximum of scheduled bundles.
    #[error(
        "too many scheduled bundles: {count} of at most {max}, {bytes} of at most {max_bytes} bytes with this one"
    )]
    Scheduled {
        /// Bundles scheduled.
        count: usize,
        /// Their limit.
        max: usize,
        /// Their bytes with this one.
        bytes: usize,
        /// The byte limit.
        max_bytes: usize,
    },
    /// A bundle scheduled too far ahead.
    #[error("BUNDLE scheduled {ahead_s} s ahead; the limit is {max_s} s")]
    ScheduledTooFar {
        /// How far ahead, in seconds.
        ahead_s: u64,
        /// The limit, in seconds.
        max_s: u64,
    },
    /// A bundle member that is not SET or PUBLISH.
    #[error("BUNDLE may contain only SET and PUBLISH, not {0}; nothing was applied")]
    BundleMember(&'static str),
    /// A bundle member outside the session's scopes.
    #[error("Bundle rejected: insufficient scope for {what} to {address}; nothing was applied")]
    BundleScope {
        /// SET or PUBLISH.
        what: &'static str,
        /// Its address.
        address: String,
    },
    /// A bundle SET that would be refused, so nothing was applied.
    #[error("BUNDLE rejected, nothing was applied: SET {address}: {cause}")]
    BundleFailed {
        /// The SET's address.
        address: String,
        /// Why it would be refused.
        cause: Box<Refusal>,
    },
    /// Cluster mode: a bundle SET the cluster refused after others of the bundle were
    /// written (there is no multi-param transaction to undo them).
    #[error(
        "BUNDLE partly applied: {written} of {total} SETs were written; the cluster refused SET {address}: {cause}"
    )]
    BundlePartial {
        /// The refused SET's address.
        address: String,
        /// Why it was refused.
        cause: Box<Refusal>,
        /// SETs of the bundle that were written.
        written: usize,
        /// SETs in the bundle.
        total: usize,
    },
    /// Cluster mode: a bundle whose signals are too many or too large to travel with each of
    /// its SETs.
    #[error(
        "BUNDLE too large for the cluster: {signals} signals in {bytes} bytes would travel with each of its SETs (at most {} signals, {} bytes); send the signals in a bundle of their own",
        crate::cluster_bundles::MAX_MARK_SIGNALS,
        crate::cluster_bundles::MAX_MARK_BYTES
    )]
    ClusterBundleTooLarge {
        /// Signals in the bundle.
        signals: usize,
        /// Their bytes.
        bytes: usize,
    },
    /// An operator ended the session (from the console).
    #[error("session closed by an operator ({0})")]
    Kicked(String),
    /// An ANNOUNCE that would pass a bound on announced signals.
    #[error("{}", announce_text(*.bound, *.count, *.bytes, *.max_count, *.max_bytes))]
    Announce {
        /// Whose bound.
        bound: AnnounceBound,
        /// Signals it would hold.
        count: usize,
        /// Bytes it would hold.
        bytes: usize,
        /// The signal limit.
        max_count: usize,
        /// The byte limit.
        max_bytes: usize,
    },
    /// Too much sent while the connection's QUERY is answered.
    #[error(
        "message dropped: {frames} messages ({bytes} bytes) already wait for this connection's QUERY to be answered"
    )]
    QueryBacklog {
        /// Messages waiting.
        frames: usize,
        /// Their bytes.
        bytes: usize,
    },
    /// A Commit write that did not reach the disk in time.
    #[error(
        "the write was applied but is not on disk after {secs} s (the state database cannot be written); a crash may lose it"
    )]
    NotDurable {
        /// The time waited, in seconds.
        secs: u64,
    },
    /// A reply that could not be encoded (a bug, reported rather than hidden).
    #[error("reply could not be encoded: {0}")]
    Reply(EncodeError),
    /// The cluster could not take a write (NATS unreachable, JetStream refused or silent).
    #[error("the cluster could not take the write: {0}")]
    ClusterUnavailable(String),
    /// REPLAY (or a deep history) on a router that keeps no journal.
    #[error("this router keeps no journal, so it cannot replay; start it with --journal")]
    NoJournal,
    /// History asked of a router that keeps neither a journal nor recent values.
    #[error(
        "subscription option `history` needs a journal (--journal) or recent values kept per address (history depth above 0); subscribe without it"
    )]
    NoHistory,
    /// Too many REPLAYs of one session at once.
    #[error("{0} REPLAYs of this session are being answered already; wait for one to end")]
    Replays(usize),
    /// Too many histories of one session waited for at once.
    #[error(
        "{0} histories of this session are being read already; subscribe again when they have come"
    )]
    Histories(usize),
    /// The journal failed while answering.
    #[error("the journal could not answer: {0}")]
    Journal(String),
    /// The history did not come in time; live updates follow without it.
    #[error("{0}; live updates follow without the history")]
    HistoryLate(String),
}

fn announce_text(
    bound: AnnounceBound,
    count: usize,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
) -> String {
    match bound {
        AnnounceBound::Session => format!(
            "ANNOUNCE refused, nothing was applied: this session would hold {count} signals ({bytes} bytes); the limit is {max_count} signals and {max_bytes} bytes per session"
        ),
        AnnounceBound::Router => format!(
            "ANNOUNCE refused, nothing was applied: the router would hold {count} signals ({bytes} bytes); its limit is {max_count} signals and {max_bytes} bytes"
        ),
    }
}

impl Refusal {
    /// The ERROR code the session gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Auth(e) | Refusal::SessionEnds(e) => e.code(),
            Refusal::Kicked(_) => ErrorCode::Forbidden,
            Refusal::Full { .. } => ErrorCode::Overloaded,
            Refusal::FrameTooLarge { .. }
            | Refusal::TooLargeToStore { .. }
            | Refusal::ClusterBundleTooLarge { .. }
            | Refusal::Encode(_) => ErrorCode::TooLarge,
            Refusal::Decode(e) if e.context == "frame" => ErrorCode::InvalidFrame,
            Refusal::Decode(_)
            | Refusal::ExpectedHello(_)
            | Refusal::SecondHello
            | Refusal::NoSession
            | Refusal::UnsupportedOption(_)
            | Refusal::NoHistory => ErrorCode::InvalidMessage,
            Refusal::Scope(_) | Refusal::ScopeNarrowed | Refusal::P2pSpoof(_) => {
                ErrorCode::Forbidden
            }
            Refusal::Address(_) | Refusal::Wildcard(_) => ErrorCode::InvalidAddress,
            Refusal::Pattern(_) => ErrorCode::InvalidPattern,
            Refusal::Store(WriteError::RevisionConflict { .. }) => ErrorCode::RevisionConflict,
            Refusal::Store(WriteError::LockHeld { .. }) => ErrorCode::LockHeld,
            Refusal::Store(_) => ErrorCode::StateRejected,
            Refusal::NoParam(_) => ErrorCode::AddressNotFound,
            Refusal::TargetNotFound(_) => ErrorCode::TargetNotFound,
            Refusal::RateLimited { .. }
            | Refusal::Subscriptions { .. }
            | Refusal::SubscriptionBytes { .. }
            | Refusal::Gestures { .. }
            | Refusal::Scheduled { .. }
            | Refusal::Announce { .. }
            | Refusal::QueryBacklog { .. }
            | Refusal::Replays(_)
            | Refusal::Histories(_) => ErrorCode::RateLimited,
            Refusal::ScheduledTooFar { .. }
            | Refusal::BundleMember(_)
            | Refusal::BundleScope { .. } => ErrorCode::BundleRejected,
            Refusal::BundleFailed { cause, .. } | Refusal::BundlePartial { cause, .. } => {
                cause.code()
            }
            Refusal::NotDurable { .. } | Refusal::Reply(_) | Refusal::Journal(_) => {
                ErrorCode::Internal
            }
            Refusal::NoJournal => ErrorCode::ServiceUnavailable,
            Refusal::HistoryLate(_) => ErrorCode::Timeout,
            Refusal::ClusterUnavailable(_) => ErrorCode::ServiceUnavailable,
        }
    }

    /// How `/metrics` counts it (`clasp_refusals_total{kind}`), if it is one of the counted
    /// kinds.
    pub fn kind(&self) -> Option<RefusalKind> {
        Some(match self {
            Refusal::Auth(e) => e.kind(),
            Refusal::Scope(_) | Refusal::ScopeNarrowed | Refusal::BundleScope { .. } => {
                RefusalKind::Scope
            }
            Refusal::P2pSpoof(_) => RefusalKind::P2pSpoof,
            Refusal::RateLimited { .. }
            | Refusal::QueryBacklog { .. }
            | Refusal::Replays(_)
            | Refusal::Histories(_) => RefusalKind::RateLimit,
            Refusal::Subscriptions { .. } | Refusal::SubscriptionBytes { .. } => {
                RefusalKind::Subscriptions
            }
            Refusal::Gestures { .. } => RefusalKind::Gestures,
            Refusal::Scheduled { .. } => RefusalKind::Scheduled,
            Refusal::Announce { .. } => RefusalKind::Announce,
            Refusal::Store(WriteError::AtCapacity { .. } | WriteError::OverBudget { .. }) => {
                RefusalKind::Params
            }
            Refusal::BundleFailed { cause, .. } | Refusal::BundlePartial { cause, .. } => {
                return cause.kind();
            }
            Refusal::ClusterUnavailable(_) | Refusal::ClusterBundleTooLarge { .. } => {
                RefusalKind::Cluster
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_texts_and_kinds() {
        let r = Refusal::Scope(Operation::Read);
        assert_eq!(r.code(), ErrorCode::Forbidden);
        assert_eq!(r.to_string(), "Insufficient scope for read operation");
        assert_eq!(r.kind(), Some(RefusalKind::Scope));
        let r = Refusal::Store(WriteError::OverBudget { would: 2, max: 1 });
        assert_eq!(r.code(), ErrorCode::StateRejected);
        assert_eq!(r.kind(), Some(RefusalKind::Params));
        let r = Refusal::Store(WriteError::RevisionConflict {
            expected: 1,
            actual: 2,
        });
        assert_eq!(r.code(), ErrorCode::RevisionConflict);
        assert_eq!(r.kind(), None);
        // A bundle refusal carries its cause's code and kind, and names it.
        let r = Refusal::BundleFailed {
            address: "/a".into(),
            cause: Box::new(Refusal::Store(WriteError::AtCapacity { max: 1 })),
        };
        assert_eq!(r.code(), ErrorCode::StateRejected);
        assert_eq!(r.kind(), Some(RefusalKind::Params));
        assert!(
            r.to_string()
                .starts_with("BUNDLE rejected, nothing was applied: SET /a: ")
        );
        let r = Refusal::SessionEnds(AuthError::Expired);
        assert_eq!(r.code(), ErrorCode::TokenExpired);
        assert_eq!(r.to_string(), "Token has expired; the session ends");
        assert_eq!(r.kind(), None, "counted as a revoked session instead");
        let r = Refusal::Auth(AuthError::NoneConfigured);
        assert_eq!(r.kind(), Some(RefusalKind::AuthNoneConfigured));
    }
}
