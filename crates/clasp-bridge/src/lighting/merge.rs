//! Merging DMX sources on input, sans-IO (time is passed in): Art-Net's rule (at most two
//! sources, HTP — the highest level per slot — or LTP — the latest change per slot; a silent
//! source leaves after a timeout, a third one is refused) and sACN's (only the sources of the
//! highest priority count, HTP among them; a source that says it stopped leaves at once).

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::universe::SLOTS;

/// How two sources of one universe combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    /// Highest takes precedence, slot by slot (the Art-Net default).
    #[default]
    Htp,
    /// Latest takes precedence, slot by slot.
    Ltp,
}

/// Who sent a frame: an address and, for Art-Net, the physical port; for sACN, the CID.
pub type SourceId = [u8; 16];

#[derive(Debug, Clone)]
struct Source {
    id: SourceId,
    frame: [u8; SLOTS],
    priority: u8,
    seen: Instant,
}

/// What [`Merger::input`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// The merged frame may have changed.
    Taken,
    /// Refused: already two sources (Art-Net), or below the highest priority (sACN).
    Refused,
}

/// The sources of one universe and their merge.
#[derive(Debug, Clone)]
pub struct Merger {
    mode: MergeMode,
    max_sources: usize,
    timeout: Duration,
    sources: Vec<Source>,
    /// LTP's output (HTP recomputes from the sources).
    latest: [u8; SLOTS],
}

impl Merger {
    /// Art-Net's merge: two sources at most, `mode`, a silent source gone after 10 s.
    pub fn artnet(mode: MergeMode) -> Merger {
        Merger::new(mode, 2, Duration::from_secs(10))
    }

    /// sACN's merge: any number of sources, the highest priority's HTP, a silent source gone
    /// after 2.5 s (E1.31's data-loss timeout).
    pub fn sacn() -> Merger {
        Merger::new(MergeMode::Htp, 16, Duration::from_millis(2500))
    }

    fn new(mode: MergeMode, max_sources: usize, timeout: Duration) -> Merger {
        Merger {
            mode,
            max_sources,
            timeout,
            sources: Vec::new(),
            latest: [0; SLOTS],
        }
    }

    /// A frame from `id` (slots from 1; missing ones are 0).
    pub fn input(&mut self, id: SourceId, data: &[u8], priority: u8, now: Instant) -> Merged {
        self.expire(now);
        let mut frame = [0u8; SLOTS];
        let n = data.len().min(SLOTS);
        frame[..n].copy_from_slice(&data[..n]);
        let at = self.sources.iter().position(|s| s.id == id);
        let at = match at {
            Some(i) => i,
            None if self.sources.len() >= self.max_sources => return Merged::Refused,
            None => {
                self.sources.push(Source {
                    id,
                    frame: [0; SLOTS],
                    priority,
                    seen: now,
                });
                // A new source's first frame is all change (LTP).
                if self.mode == MergeMode::Ltp {
                    self.latest = frame;
                }
                self.sources.len() - 1
            }
        };
        let s = &mut self.sources[at];
        if self.mode == MergeMode::Ltp {
            for (i, (old, new)) in s.frame.iter().zip(frame.iter()).enumerate() {
                if old != new {
                    self.latest[i] = *new;
                }
            }
        }
        s.frame = frame;
        s.priority = priority;
        s.seen = now;
        let top = self.sources.iter().map(|s| s.priority).max().unwrap_or(0);
        if priority < top {
            Merged::Refused
        } else {
            Merged::Taken
        }
    }

    /// Forgets the sources silent for longer than the timeout; `true` if one left.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.sources.len();
        let timeout = self.timeout;
        self.sources
            .retain(|s| now.saturating_duration_since(s.seen) <= timeout);
        before != self.sources.len()
    }

    /// `id` said it stopped (sACN's stream-terminated bit): it leaves now.
    pub fn terminate(&mut self, id: SourceId) -> bool {
        let before = self.sources.len();
        self.sources.retain(|s| s.id != id);
        before != self.sources.len()
    }

    /// How many sources count now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// The merged frame; `None` when no source is left (the output holds what it had).
    pub fn output(&self) -> Option<[u8; SLOTS]> {
        let top = self.sources.iter().map(|s| s.priority).max()?;
        if self.mode == MergeMode::Ltp {
            return Some(self.latest);
        }
        let mut out = [0u8; SLOTS];
        for s in self.sources.iter().filter(|s| s.priority == top) {
            for (o, v) in out.iter_mut().zip(s.frame.iter()) {
                *o = (*o).max(*v);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SourceId {
        [n; 16]
    }

    #[test]
    fn htp_takes_the_highest_and_a_third_source_is_refused() {
        let t = Instant::now();
        let mut m = Merger::artnet(MergeMode::Htp);
        assert_eq!(m.input(id(1), &[10, 200], 0, t), Merged::Taken);
        assert_eq!(m.input(id(2), &[50, 100, 7], 0, t), Merged::Taken);
        assert_eq!(m.input(id(3), &[255], 0, t), Merged::Refused);
        assert_eq!(m.output().unwrap()[..4], [50, 200, 7, 0]);
        // Source 1 goes silent: after 10 s only source 2 counts.
        let later = t + Duration::from_secs(11);
        m.input(id(2), &[50, 100, 7], 0, later);
        assert_eq!(m.sources(), 1);
        assert_eq!(m.output().unwrap()[..3], [50, 100, 7]);
    }

    #[test]
    fn ltp_takes_the_latest_change_per_slot() {
        let t = Instant::now();
        let mut m = Merger::artnet(MergeMode::Ltp);
        m.input(id(1), &[10, 10], 0, t);
        m.input(id(2), &[20, 10], 0, t);
        assert_eq!(m.output().unwrap()[..2], [20, 10]);
        // Source 1 moves slot 2 only: slot 1 keeps source 2's later value.
        m.input(id(1), &[10, 99], 0, t);
        assert_eq!(m.output().unwrap()[..2], [20, 99]);
    }

    #[test]
    fn sacn_priority_and_termination() {
        let t = Instant::now();
        let mut m = Merger::sacn();
        m.input(id(1), &[100], 100, t);
        assert_eq!(m.input(id(2), &[255], 50, t), Merged::Refused);
        assert_eq!(m.output().unwrap()[0], 100);
        m.input(id(3), &[150], 100, t);
        assert_eq!(m.output().unwrap()[0], 150);
        assert!(m.terminate(id(1)));
        assert!(m.terminate(id(3)));
        // Only the low-priority source is left: it counts now.
        assert_eq!(m.output().unwrap()[0], 255);
        assert!(!m.expire(t + Duration::from_secs(2)));
        assert!(m.expire(t + Duration::from_secs(3)));
        assert_eq!(m.output(), None);
    }
}
