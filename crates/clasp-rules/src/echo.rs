//! The engine's own writes whose echo has not come back yet, to tell the router's echo of a
//! write from someone else's change.
//!
//! SETs are kept per address in the order they were made, for at most [`ECHO_TTL`]: the
//! router echoes a SET at once, so anything older is a write whose echo will not come
//! (refused, not subscribed). PUBLISHes are not kept: the router never sends an event back
//! to its sender.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use clasp_proto::Value;

use crate::io::WriteId;

/// How long a write waits for its echo.
pub const ECHO_TTL: Duration = Duration::from_secs(10);
/// Writes remembered per address; past it the oldest is forgotten.
const MAX_PER_ADDRESS: usize = 256;
/// Addresses with writes waiting; past it every record is dropped (echoes that never come
/// must not grow this for ever).
const MAX_ADDRESSES: usize = 50_000;

#[derive(Debug, Clone)]
struct Sent {
    id: WriteId,
    value: Value,
    at: Duration,
}

/// What an echo told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Echo {
    /// A later own write to the same address is still waiting for its echo.
    pub(crate) newer_pending: bool,
}

/// Own writes waiting for their echo.
#[derive(Debug, Default)]
pub(crate) struct OwnWrites {
    pending: HashMap<(bool, String), VecDeque<Sent>>,
}

impl OwnWrites {
    /// Records write `id` of `value` at `address` (a SET if `param`), made at `now`.
    pub(crate) fn sent(
        &mut self,
        id: WriteId,
        param: bool,
        address: &str,
        value: &Value,
        now: Duration,
    ) {
        let key = (param, address.to_owned());
        if self.pending.len() >= MAX_ADDRESSES && !self.pending.contains_key(&key) {
            self.pending.clear();
        }
        let q = self.pending.entry(key).or_default();
        if q.len() == MAX_PER_ADDRESS {
            q.pop_front();
        }
        q.push_back(Sent {
            id,
            value: value.clone(),
            at: now,
        });
    }

    /// Takes the record of write `id` at `address` (and every older one there: the router
    /// echoes in order). `None` if it is not known (expired).
    pub(crate) fn take_id(
        &mut self,
        id: WriteId,
        param: bool,
        address: &str,
        now: Duration,
    ) -> Option<Echo> {
        self.take(param, address, now, |s| s.id == id)
    }

    /// Takes the oldest record of `value` at `address`, if there is one.
    pub(crate) fn take_value(
        &mut self,
        param: bool,
        address: &str,
        value: &Value,
        now: Duration,
    ) -> Option<Echo> {
        self.take(param, address, now, |s| s.value == *value)
    }

    /// Whether a write to `address` is waiting for its echo.
    pub(crate) fn waiting(&self, param: bool, address: &str) -> bool {
        self.pending.contains_key(&(param, address.to_owned()))
    }

    fn take(
        &mut self,
        param: bool,
        address: &str,
        now: Duration,
        hit: impl Fn(&Sent) -> bool,
    ) -> Option<Echo> {
        let key = (param, address.to_owned());
        let q = self.pending.get_mut(&key)?;
        while q
            .front()
            .is_some_and(|s| now.saturating_sub(s.at) > ECHO_TTL)
        {
            q.pop_front();
        }
        let found = q.iter().position(hit);
        if let Some(i) = found {
            q.drain(..=i);
        }
        let newer_pending = !q.is_empty();
        if q.is_empty() {
            self.pending.remove(&key);
        }
        found.map(|_| Echo { newer_pending })
    }

    /// Forgets the writes older than [`ECHO_TTL`].
    pub(crate) fn expire(&mut self, now: Duration) {
        self.pending.retain(|_, q| {
            while q
                .front()
                .is_some_and(|s| now.saturating_sub(s.at) > ECHO_TTL)
            {
                q.pop_front();
            }
            !q.is_empty()
        });
    }

    /// How many writes are waiting.
    pub(crate) fn len(&self) -> usize {
        self.pending.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::ZERO;

    #[test]
    fn echoes_come_back_in_order() {
        let mut o = OwnWrites::default();
        o.sent(WriteId(1), true, "/a", &Value::Int(1), T0);
        o.sent(WriteId(2), true, "/a", &Value::Int(2), T0);
        assert_eq!(
            o.take_value(true, "/a", &Value::Int(1), T0),
            Some(Echo {
                newer_pending: true
            })
        );
        // An event is not a param's echo; 2.0 is not the echo of 2.
        assert_eq!(o.take_value(false, "/a", &Value::Int(2), T0), None);
        assert_eq!(o.take_value(true, "/a", &Value::Float(2.0), T0), None);
        assert_eq!(
            o.take_id(WriteId(2), true, "/a", T0),
            Some(Echo {
                newer_pending: false
            })
        );
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn an_echo_consumes_older_writes_and_records_expire() {
        let mut o = OwnWrites::default();
        for i in 0..5 {
            o.sent(WriteId(i), true, "/a", &Value::Int(i as i64), T0);
        }
        assert!(o.take_id(WriteId(3), true, "/a", T0).is_some());
        assert_eq!(o.len(), 1);
        assert!(o.take_value(true, "/a", &Value::Int(1), T0).is_none());
        o.expire(ECHO_TTL + Duration::from_millis(1));
        assert_eq!(o.len(), 0);
        assert!(!o.waiting(true, "/a"));
    }
}
