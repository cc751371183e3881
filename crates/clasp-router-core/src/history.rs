//! History for SUBSCRIBE's `history` option: which earlier broadcasts a new subscriber gets
//! ([`HistoryPicker`], the same rule whether they come from the journal or from the recent
//! values the core keeps), and those recent values ([`Ring`], used when there is no journal).
//!
//! The rule: the newest `count` broadcasts matching the pattern, the subscription's signal
//! types and the session's read scopes, oldest first, **without the current value of each
//! param**, which the SNAPSHOT that follows carries (so nothing arrives twice). Live updates
//! come after both.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use clasp_proto::pattern::Pattern;
use clasp_proto::{SignalType, SignalTypes};

use crate::auth::{Action, Scopes};

/// The most bytes of frames a history holds.
pub const MAX_HISTORY_BYTES: usize = 4 << 20;
/// The most broadcasts looked at for one history (a pattern that matches little must not read
/// the whole journal).
pub const MAX_EXAMINED: usize = 2_000_000;

/// An earlier broadcast sent again (a history, a REPLAY): its kind, address and frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Past {
    /// The signal kind.
    pub signal: SignalType,
    /// The address (checked against the session's read scopes when it is sent).
    pub address: Box<str>,
    /// The frame as broadcast.
    pub frame: Bytes,
}

/// Chooses a subscription's history from broadcasts offered newest first.
#[derive(Debug, Clone)]
pub struct HistoryPicker {
    pattern: Pattern,
    types: SignalTypes,
    count: usize,
    reader: Option<Scopes>,
    /// Params whose newest broadcast was seen (their current value, in the snapshot).
    current: HashSet<Box<str>>,
    picked: Vec<Past>,
    bytes: usize,
    examined: usize,
}

impl HistoryPicker {
    /// A picker of `count` broadcasts matching `pattern` and `types`, readable with `reader`
    /// (`None`: everything).
    pub fn new(pattern: Pattern, types: SignalTypes, count: usize, reader: Option<Scopes>) -> Self {
        HistoryPicker {
            pattern,
            types,
            count,
            reader,
            current: HashSet::new(),
            picked: Vec::new(),
            bytes: 0,
            examined: 0,
        }
    }

    /// The pattern asked for.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Offers the next older broadcast; breaks once the history is complete.
    pub fn offer(
        &mut self,
        signal: SignalType,
        address: &str,
        frame: impl FnOnce() -> Bytes,
    ) -> ControlFlow<()> {
        self.examined += 1;
        if self.picked.len() >= self.count
            || self.bytes >= MAX_HISTORY_BYTES
            || self.examined > MAX_EXAMINED
        {
            return ControlFlow::Break(());
        }
        if !self.types.accepts(signal)
            || !self.pattern.matches(address)
            || self
                .reader
                .as_ref()
                .is_some_and(|s| !s.allows(Action::Read, address))
        {
            return ControlFlow::Continue(());
        }
        if signal == SignalType::Param && !self.current.contains(address) {
            self.current.insert(address.into());
            return ControlFlow::Continue(());
        }
        let frame = frame();
        self.bytes += frame.len();
        self.picked.push(Past {
            signal,
            address: address.into(),
            frame,
        });
        if self.picked.len() >= self.count || self.bytes >= MAX_HISTORY_BYTES {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// The history, oldest first.
    pub fn finish(mut self) -> Vec<Past> {
        self.picked.reverse();
        self.picked
    }
}

/// Bytes a kept broadcast is counted for besides its frame.
const ENTRY_OVERHEAD: usize = 64;

/// The last few broadcasts of each address, kept in memory when there is no journal: at most
/// `depth` per address and `max_bytes` in all (the oldest go first).
#[derive(Debug, Default)]
pub(crate) struct Ring {
    depth: usize,
    max_bytes: usize,
    bytes: usize,
    kept: usize,
    per: HashMap<Arc<str>, VecDeque<(u64, SignalType, Bytes)>>,
    /// Every kept broadcast by age (sequence, address); entries already dropped for the
    /// address's depth are skipped when they come up.
    order: VecDeque<(u64, Arc<str>)>,
}

impl Ring {
    pub(crate) fn new(depth: usize, max_bytes: usize) -> Self {
        Ring {
            depth,
            max_bytes,
            ..Ring::default()
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.depth > 0 && self.max_bytes > 0
    }

    /// Broadcasts kept, and their bytes.
    pub(crate) fn usage(&self) -> (usize, usize) {
        (self.kept, self.bytes)
    }

    fn cost(address: &str, frame: &Bytes) -> usize {
        ENTRY_OVERHEAD + address.len() + frame.len()
    }

    pub(crate) fn push(&mut self, seq: u64, signal: SignalType, address: &Arc<str>, frame: &Bytes) {
        let frame = crate::journal::owned_frame(signal, frame);
        let cost = Self::cost(address, &frame);
        if cost > self.max_bytes {
            return;
        }
        let ring = self.per.entry(address.clone()).or_default();
        ring.push_back((seq, signal, frame));
        self.bytes += cost;
        self.kept += 1;
        if ring.len() > self.depth
            && let Some((_, _, old)) = ring.pop_front()
        {
            self.bytes -= Self::cost(address, &old);
            self.kept -= 1;
        }
        self.order.push_back((seq, address.clone()));
        while self.bytes > self.max_bytes {
            let Some((s, a)) = self.order.pop_front() else {
                break;
            };
            self.drop_oldest(s, &a);
        }
        if self.order.len() > 2 * self.kept + 1024 {
            self.rebuild_order();
        }
    }

    /// Drops the broadcast `seq` of `address` if it is still kept.
    fn drop_oldest(&mut self, seq: u64, address: &Arc<str>) {
        let Some(ring) = self.per.get_mut(address) else {
            return;
        };
        if ring.front().is_some_and(|f| f.0 == seq)
            && let Some((_, _, f)) = ring.pop_front()
        {
            self.bytes -= Self::cost(address, &f);
            self.kept -= 1;
        }
        if ring.is_empty() {
            self.per.remove(address);
        }
    }

    fn rebuild_order(&mut self) {
        let mut all: Vec<(u64, Arc<str>)> = self
            .per
            .iter()
            .flat_map(|(a, r)| r.iter().map(move |(s, _, _)| (*s, a.clone())))
            .collect();
        all.sort_unstable_by_key(|(s, _)| *s);
        self.order = all.into();
    }

    /// Offers the kept broadcasts matching the picker's pattern to it, newest first.
    pub(crate) fn pick(&self, picker: &mut HistoryPicker) {
        let mut found: Vec<(u64, &Arc<str>, SignalType, &Bytes)> = Vec::new();
        if picker.pattern().is_exact() {
            if let Some((a, r)) = self.per.get_key_value(picker.pattern().as_str()) {
                found.extend(r.iter().map(|(s, t, f)| (*s, a, *t, f)));
            }
        } else {
            for (a, r) in &self.per {
                if picker.pattern().matches(a) {
                    found.extend(r.iter().map(|(s, t, f)| (*s, a, *t, f)));
                }
            }
        }
        found.sort_unstable_by_key(|(s, ..)| std::cmp::Reverse(*s));
        for (_, address, signal, frame) in found {
            if picker.offer(signal, address, || frame.clone()).is_break() {
                break;
            }
        }
    }
}
