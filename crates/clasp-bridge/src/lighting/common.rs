//! What the lighting bridges share: which way DMX flows, what input writes, router changes
//! into output frames, and input frames into router writes.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use clasp_mapping::echo::Echoes;

use clasp_mapping::{Write, WriteKind};
use clasp_proto::Value;
use futures_util::StreamExt;
use serde::Deserialize;

use super::merge::{Merged, Merger, SourceId};
use super::pace::Pacer;
use super::universe::{self, SLOTS, Target};
use crate::link::{LinkSubscription, RouterLink};
use crate::stats::BridgeStats;

/// What the bridge writes for input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputWrites {
    /// The frame and the changed channels.
    #[default]
    Both,
    /// Only the frame (`/artnet/{u}`): for big rigs.
    Frames,
    /// Only the changed channels.
    Channels,
}

/// Which way DMX flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Network to router and router to network.
    #[default]
    Both,
    /// Network to router only.
    Input,
    /// Router to network only.
    Output,
}

impl Direction {
    /// Network to router.
    pub fn input(self) -> bool {
        self != Direction::Output
    }

    /// Router to network.
    pub fn output(self) -> bool {
        self != Direction::Input
    }
}

/// The next update of an optional subscription (never, without one).
pub(crate) async fn next(sub: &mut Option<LinkSubscription>) -> Option<crate::link::Update> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at` (for ever without one). A time already past returns at once, without a
/// round through the runtime's timer (whose resolution is a millisecond).
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) if at <= Instant::now() => {}
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A router change under the namespace, into the output frames (universes the bridge handles).
pub(crate) fn apply_update(
    pacer: &mut Pacer,
    prefix: &str,
    universes: &[u16],
    address: &str,
    value: &Value,
    now: Instant,
) {
    let Some(target) = universe::parse(prefix, address) else {
        return;
    };
    let u = match target {
        Target::Channel { universe, .. } | Target::Frame { universe } => universe,
    };
    if !universes.contains(&u) {
        return;
    }
    pacer.add(u, now);
    match target {
        Target::Channel { channel, .. } => {
            if let Some(level) = universe::level(value) {
                pacer.set(u, channel, level);
            }
        }
        Target::Frame { .. } => {
            if let Some(frame) = universe::frame(value) {
                pacer.set_frame(u, &frame);
            }
        }
    }
}

/// The router writes for a universe's new input frame.
pub(crate) fn input_writes(
    prefix: &str,
    u: u16,
    before: Option<&[u8; SLOTS]>,
    frame: &[u8; SLOTS],
    what: InputWrites,
) -> Vec<Write> {
    let set = |address: String, value: Value| Write {
        address,
        value,
        kind: WriteKind::Set,
        rule: 0,
        feedback: false,
    };
    let mut writes = Vec::new();
    if what != InputWrites::Channels && before != Some(frame) {
        writes.push(set(
            universe::frame_address(prefix, u),
            Value::Bytes(frame.to_vec().into()),
        ));
    }
    if what != InputWrites::Frames {
        for (i, level) in frame.iter().enumerate() {
            if before.is_none_or(|b| b[i] != *level) {
                writes.push(set(
                    universe::channel_address(prefix, u, i as u16 + 1),
                    Value::Int(i64::from(*level)),
                ));
            }
        }
    }
    writes
}

/// The input side of a lighting bridge: a merge per universe, the universes changed since the
/// last flush, and the frames written so far.
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    mergers: HashMap<u16, Merger>,
    written: HashMap<u16, [u8; SLOTS]>,
    dirty: BTreeSet<u16>,
}

/// Where input frames go.
pub(crate) struct Sink<'a> {
    pub(crate) link: &'a RouterLink,
    pub(crate) prefix: &'a str,
    pub(crate) what: InputWrites,
    pub(crate) echoes: &'a mut Echoes,
    /// The output frames, when the bridge also sends (input is their state, not a change).
    pub(crate) pacer: Option<&'a mut Pacer>,
    pub(crate) stats: &'a BridgeStats,
}

impl Inputs {
    /// A frame from `id` for `universe`; a refused one is counted as skipped.
    pub(crate) fn input(
        &mut self,
        universe: u16,
        id: SourceId,
        data: &[u8],
        priority: u8,
        make: impl FnOnce() -> Merger,
        stats: &BridgeStats,
    ) {
        let m = self.mergers.entry(universe).or_insert_with(make);
        match m.input(id, data, priority, Instant::now()) {
            Merged::Taken => {
                self.dirty.insert(universe);
            }
            Merged::Refused => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `id` stopped sending `universe`.
    pub(crate) fn terminate(&mut self, universe: u16, id: SourceId) {
        if self
            .mergers
            .get_mut(&universe)
            .is_some_and(|m| m.terminate(id))
        {
            self.dirty.insert(universe);
        }
    }

    /// How many sources merge into `universe` now.
    pub(crate) fn sources(&self, universe: u16) -> usize {
        self.mergers.get(&universe).map_or(0, Merger::sources)
    }

    /// Writes the universes that changed (and those a silent source left): the frame and/or
    /// the channels that changed since the last write.
    pub(crate) async fn flush(&mut self, now: Instant, sink: Sink<'_>) {
        let Sink {
            link,
            prefix,
            what,
            echoes,
            mut pacer,
            stats,
        } = sink;
        for (u, m) in &mut self.mergers {
            if m.expire(now) {
                self.dirty.insert(*u);
            }
        }
        for u in std::mem::take(&mut self.dirty) {
            let Some(frame) = self.mergers.get(&u).and_then(Merger::output) else {
                continue;
            };
            let before = self.written.insert(u, frame);
            if let Some(p) = pacer.as_deref_mut() {
                p.absorb(u, &frame, now);
            }
            for w in &input_writes(prefix, u, before.as_ref(), &frame, what) {
                echoes.sent(&w.address, &w.value);
                if let Err(e) = link.write(w).await {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(address = %w.address, error = %e, "DMX input write to the router failed");
                }
            }
        }
    }
}
