//! Recognising the router's echo of one's own writes: a router sends a SET back to every
//! subscriber, the writer included, so anything that both writes and subscribes (the mapping
//! engine, a bridge) must not take its own value back as someone else's change.

use std::collections::{HashMap, VecDeque};

use clasp_proto::Value;

/// Own writes remembered per address until their echo comes back.
const MAX_PENDING: usize = 64;
/// Addresses with writes waiting for their echo; past it the oldest address is forgotten.
const MAX_ADDRESSES: usize = 100_000;

/// The writes whose echo has not come back yet.
#[derive(Debug, Default)]
pub struct Echoes {
    pending: HashMap<String, VecDeque<Value>>,
}

impl Echoes {
    /// An empty filter.
    pub fn new() -> Self {
        Echoes::default()
    }

    /// Records a SET of `value` at `address` about to be made.
    pub fn sent(&mut self, address: &str, value: &Value) {
        if self.pending.len() >= MAX_ADDRESSES && !self.pending.contains_key(address) {
            // Echoes that never came (a write refused, say) must not grow this for ever.
            self.pending.clear();
        }
        let q = self.pending.entry(address.to_owned()).or_default();
        if q.len() == MAX_PENDING {
            q.pop_front();
        }
        q.push_back(value.clone());
    }

    /// Whether (`address`, `value`) is the echo of a write recorded with [`Echoes::sent`]
    /// (consumed if so). Echoes come back in order: anything recorded before it was
    /// overwritten meanwhile and is forgotten too.
    pub fn is_echo(&mut self, address: &str, value: &Value) -> bool {
        let Some(q) = self.pending.get_mut(address) else {
            return false;
        };
        let Some(i) = q.iter().position(|v| v == value) else {
            return false;
        };
        q.drain(..=i);
        if q.is_empty() {
            self.pending.remove(address);
        }
        true
    }
}
