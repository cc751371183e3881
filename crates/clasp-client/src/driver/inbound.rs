//! What the router sends during a session: answers to waiting calls, subscription updates,
//! clock samples, PINGs and unanswered ERRORs.

use std::sync::atomic::Ordering;

use clasp_proto::{ErrorCode, Message, ParamValue, SignalType, Str, Unsubscribe, Value, encode};
use tokio::sync::mpsc;

use super::state::{DriverState, Now};
use crate::command::Waiter;
use crate::config::ConnectionEvent;
use crate::error::Error;
use crate::options::Update;

impl DriverState {
    /// Handles one message of a live session.
    pub(super) fn handle(&mut self, msg: Message, now: Now) {
        match msg {
            Message::Set(s) => {
                self.cache(&s.address, &s.value);
                self.dispatch(Update::from_set(s));
            }
            Message::Snapshot(snap) => {
                for p in snap.params {
                    self.cache(&p.address, &p.value);
                    self.answer_get(&p);
                    self.dispatch(Update::from_param(p));
                }
            }
            Message::Publish(p) => self.dispatch(Update::from_publish(p)),
            Message::Ack(a) => {
                let at = self
                    .pending
                    .iter()
                    .position(|w| matches!(w, Waiter::Ack { key, .. } if *key == a.address));
                if let Some(Waiter::Ack { tx, .. }) = at.and_then(|i| self.pending.remove(i)) {
                    let _ = tx.send(Ok(a));
                }
            }
            Message::Error(e) => self.router_error(e),
            Message::Sync(s) => {
                if let (Some(t2), Some(t3)) = (s.t2, s.t3) {
                    self.shared.lock().clock.sample(s.t1, t2, t3, now.wall);
                }
            }
            Message::Result(r) => {
                let query = self
                    .pending
                    .iter_mut()
                    .find(|w| matches!(w, Waiter::Query { .. }));
                if let Some(Waiter::Query { signals, .. }) = query {
                    signals.extend(r.signals);
                }
            }
            Message::Pong => {
                let at = self.pending.iter().position(|w| {
                    matches!(
                        w,
                        Waiter::Pong { .. } | Waiter::Snapshot { .. } | Waiter::Query { .. }
                    )
                });
                match at.and_then(|i| self.pending.remove(i)) {
                    Some(Waiter::Pong { sent, tx }) => {
                        drop(tx.send(Ok(now.at.saturating_duration_since(sent))))
                    }
                    Some(Waiter::Snapshot {
                        sub_id, params, tx, ..
                    }) => {
                        let _ = tx.send(Ok(params.into_values().collect()));
                        if let Ok(f) = encode(&Message::Unsubscribe(Unsubscribe { id: sub_id })) {
                            self.reply(f);
                        }
                    }
                    Some(Waiter::Query { signals, tx, .. }) => drop(tx.send(Ok(signals))),
                    _ => {}
                }
            }
            Message::Ping => {
                if let Ok(f) = encode(&Message::Pong) {
                    self.reply(f);
                }
            }
            Message::Bundle(b) => {
                // The updates of one BUNDLE share a number, so subscribers can keep them
                // together (a nested BUNDLE counts as part of the outer one).
                let outer = self.in_bundle;
                if outer.is_none() {
                    self.bundles_in += 1;
                    self.in_bundle = Some(self.bundles_in);
                }
                for m in b.messages {
                    self.handle(m, now);
                }
                self.in_bundle = outer;
            }
            Message::Announce(_)
            | Message::Hello(_)
            | Message::Welcome(_)
            | Message::Subscribe(_)
            | Message::Unsubscribe(_)
            | Message::Get(_)
            | Message::Query(_)
            | Message::Replay(_) => {}
        }
    }

    fn cache(&self, address: &Str, value: &Value) {
        self.shared
            .lock()
            .cache
            .insert(address.clone(), value.clone());
    }

    fn answer_get(&mut self, p: &ParamValue) {
        let mut i = 0;
        while i < self.pending.len() {
            match &mut self.pending[i] {
                Waiter::Get { address, .. } if *address == p.address => {
                    if let Some(Waiter::Get { tx, .. }) = self.pending.remove(i) {
                        let _ = tx.send(Ok(p.clone()));
                    }
                    continue;
                }
                Waiter::Snapshot {
                    pattern, params, ..
                } if pattern.matches(&p.address) => {
                    params.insert(p.address.clone(), p.clone());
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn router_error(&mut self, e: clasp_proto::ErrorMessage) {
        let address = e.address.as_deref();
        let mut answered = false;
        if let Some(a) = address {
            if e.code == ErrorCode::AddressNotFound {
                let mut i = 0;
                while i < self.pending.len() {
                    if matches!(&self.pending[i], Waiter::Get { address, .. } if &**address == a) {
                        if let Some(w) = self.pending.remove(i) {
                            w.fail(Error::from_router(&e));
                            answered = true;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            if !answered
                && let Some(i) = self.pending.iter().position(|w| w.concerns(a))
                && let Some(w) = self.pending.remove(i)
            {
                w.fail(Error::from_router(&e));
                answered = true;
            }
        }
        // A rejected bundle names the inner write that failed.
        if !answered
            && let Some(i) = self
                .pending
                .iter()
                .position(|w| matches!(w, Waiter::Ack { key: None, .. }))
            && let Some(w) = self.pending.remove(i)
        {
            w.fail(Error::from_router(&e));
            answered = true;
        }
        if !answered {
            tracing::warn!(code = %e.code, message = %e.message, address = ?e.address, "router error");
            self.last_error = Some(format!("{} {}", e.code, e.message));
            self.shared.emit(ConnectionEvent::RouterError {
                code: e.code,
                message: e.message.to_string(),
                address: e.address.map(|a| a.to_string()),
            });
        }
    }

    fn dispatch(&mut self, mut u: Update) {
        u.bundle = self.in_bundle;
        for sub in self.subs.values_mut() {
            if !sub.options.types.is_empty() && !sub.options.types.contains(&u.kind) {
                continue;
            }
            if !sub.pattern.matches(&u.address) {
                continue;
            }
            if u.kind == SignalType::Param {
                let seen = (u.revision, u.value.clone());
                if sub.last.get(&u.address) == Some(&seen) {
                    continue;
                }
                sub.last.insert(u.address.clone(), seen);
            }
            match sub.tx.try_send(u.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // The handle is being dropped; its UNSUBSCRIBE is on the way.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}
