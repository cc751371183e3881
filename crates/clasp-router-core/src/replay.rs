//! REPLAY (v4, 0x24): the journaled broadcasts of a pattern in a time range, oldest first,
//! within the session's read scopes, answered by the shell a slice at a time (see
//! [`crate::journal`]).

use clasp_proto::Replay;

use super::*;
use crate::auth::Scopes;
use crate::history::Past;
use crate::journal::JournalRequest;

/// REPLAYs of one session answered at once.
const MAX_REPLAYS: usize = 4;

/// A REPLAY to answer.
#[derive(Debug)]
pub struct ReplayRequest<H> {
    /// The connection.
    pub conn: ConnId,
    /// Its handle (to pace the answer by its queue).
    pub to: H,
    /// What was asked.
    pub replay: Replay,
    /// The pattern, compiled.
    pub pattern: Pattern,
    /// What the session may read (`None`: everything).
    pub reader: Option<Scopes>,
    /// The newest entry to send.
    pub upto: u64,
    /// Whether the end is acknowledged (QoS Confirm or Commit).
    pub ack: bool,
}

impl<H> ReplayRequest<H> {
    /// Whether an entry of `signal` at `address` at `time` belongs to the answer.
    pub fn wants(&self, signal: SignalType, address: &str, time: u64) -> bool {
        self.replay.types.accepts(signal)
            && self.replay.from.is_none_or(|f| time >= f)
            && self.replay.to.is_none_or(|t| time <= t)
            && self.pattern.matches(address)
            && self
                .reader
                .as_ref()
                .is_none_or(|s| s.allows(Action::Read, address))
    }
}

/// How a REPLAY's answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayEnd {
    /// Every entry was sent; ACK if asked.
    Done {
        /// The pattern (the ACK's address).
        pattern: Str,
        /// Whether to ACK.
        ack: bool,
    },
    /// The journal failed.
    Failed(String),
}

impl<H: Clone> Router<H> {
    /// REPLAY.
    pub(super) fn on_replay(&mut self, conn: ConnId, qos: Qos, replay: Replay) {
        let pattern = match Pattern::compile(&replay.pattern) {
            Ok(p) => p,
            Err(e) => {
                self.refuse(conn, e.into(), Some(replay.pattern));
                return;
            }
        };
        if !self.permits_pattern(conn, Action::Read, &pattern) {
            self.refuse(conn, Refusal::Scope(Operation::Read), Some(replay.pattern));
            return;
        }
        if !self.journal.on {
            self.refuse(conn, Refusal::NoJournal, Some(replay.pattern));
            return;
        }
        let running = self.journal.replays.get(&conn).copied().unwrap_or(0);
        if running >= MAX_REPLAYS {
            self.refuse(conn, Refusal::Replays(running), Some(replay.pattern));
            return;
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let to = c.handle.clone();
        let reader = c
            .session
            .as_ref()
            .and_then(|s| s.grant.as_ref().map(|g| g.scopes.clone()));
        *self.journal.replays.entry(conn).or_default() += 1;
        self.metrics.replays += 1;
        let upto = self.journal.next_seq - 1;
        self.journal
            .requests
            .push_back(JournalRequest::Replay(ReplayRequest {
                conn,
                to,
                replay,
                pattern,
                reader,
                upto,
                ack: qos.wants_ack(),
            }));
    }

    /// A slice of a REPLAY's answer, oldest first; `end` once it is the last.
    pub fn replay_ready(
        &mut self,
        conn: ConnId,
        entries: Vec<Past>,
        end: Option<ReplayEnd>,
        now: Now,
    ) {
        self.last_now = now;
        if !self.conns.contains_key(&conn) {
            return;
        }
        for p in entries {
            self.metrics.replayed += 1;
            self.send_past(conn, p);
        }
        if let Some(end) = end {
            if let Some(n) = self.journal.replays.get_mut(&conn) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.journal.replays.remove(&conn);
                }
            }
            match end {
                ReplayEnd::Done { pattern, ack } => {
                    if ack {
                        let ack = Ack {
                            address: Some(pattern),
                            ..Ack::default()
                        };
                        self.reply(conn, &Message::Ack(ack));
                    }
                }
                ReplayEnd::Failed(why) => self.refuse(conn, Refusal::Journal(why), None),
            }
        }
        self.flush();
    }
}
