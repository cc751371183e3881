//! Output pacing, sans-IO (time is passed in): the frames a bridge sends, at most one per
//! universe per refresh period, only for universes that changed, plus a keep-alive of
//! unchanged ones (every second by default, as Art-Net and sACN receivers expect), each with its
//! own sequence number.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::universe::SLOTS;

/// How sequence numbers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// Art-Net: 1..=255, then 1 again (0 would mean "no sequencing").
    ArtNet,
    /// sACN: 0..=255, wrapping.
    Sacn,
}

impl Sequence {
    /// The number after `n`.
    fn after(self, n: u8) -> u8 {
        match self {
            Sequence::ArtNet if n == 255 => 1,
            _ => n.wrapping_add(1),
        }
    }
}

#[derive(Debug, Clone)]
struct Out {
    frame: [u8; SLOTS],
    dirty: bool,
    /// When it was last sent, or added (then `fresh`).
    sent: Instant,
    fresh: bool,
    /// Sent at all: someone wrote to it (a frame only absorbed from input is not).
    live: bool,
    seq: u8,
}

/// A frame due on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The universe.
    pub universe: u16,
    /// Its sequence number.
    pub sequence: u8,
    /// The 512 slots.
    pub frame: [u8; SLOTS],
}

/// The universes a bridge sends and when each is due.
#[derive(Debug, Clone)]
pub struct Pacer {
    period: Duration,
    keepalive: Duration,
    seq: Sequence,
    out: BTreeMap<u16, Out>,
}

impl Pacer {
    /// Frames at most every `period` per universe, unchanged ones again every `keepalive`.
    pub fn new(period: Duration, keepalive: Duration, seq: Sequence) -> Pacer {
        Pacer {
            period,
            keepalive,
            seq,
            out: BTreeMap::new(),
        }
    }

    /// Sends `universe` from `now` on (all slots 0 until set; a first frame goes out at once,
    /// so receivers learn the universe).
    pub fn add(&mut self, universe: u16, now: Instant) {
        let o = self.out.entry(universe).or_insert(Out {
            frame: [0; SLOTS],
            dirty: false,
            sent: now,
            fresh: true,
            live: false,
            seq: 0,
        });
        if !o.live {
            o.live = true;
            o.fresh = true;
            o.sent = now;
        }
    }

    /// Takes `frame` as the universe's current state without sending it (what came in from
    /// the network): a later change goes out on top of it. A universe nobody wrote to stays
    /// unsent.
    pub fn absorb(&mut self, universe: u16, frame: &[u8; SLOTS], now: Instant) {
        let o = self.out.entry(universe).or_insert(Out {
            frame: [0; SLOTS],
            dirty: false,
            sent: now,
            fresh: false,
            live: false,
            seq: 0,
        });
        o.frame = *frame;
    }

    /// Whether `universe` is sent.
    pub fn has_live(&self, universe: u16) -> bool {
        self.out.get(&universe).is_some_and(|o| o.live)
    }

    /// Sets one slot (`channel` from 1); `false` if the universe is not sent or the channel is
    /// out of range.
    pub fn set(&mut self, universe: u16, channel: u16, level: u8) -> bool {
        let Some(o) = self.out.get_mut(&universe) else {
            return false;
        };
        let Some(slot) = o.frame.get_mut(usize::from(channel).wrapping_sub(1)) else {
            return false;
        };
        if *slot != level {
            *slot = level;
            o.dirty = true;
        }
        true
    }

    /// Sets the whole frame (slots past `data` become 0).
    pub fn set_frame(&mut self, universe: u16, data: &[u8]) -> bool {
        let Some(o) = self.out.get_mut(&universe) else {
            return false;
        };
        let mut frame = [0u8; SLOTS];
        let n = data.len().min(SLOTS);
        frame[..n].copy_from_slice(&data[..n]);
        if frame != o.frame {
            o.frame = frame;
            o.dirty = true;
        }
        true
    }

    /// Sends `universe` again at the next chance, changed or not.
    pub fn touch(&mut self, universe: u16) {
        if let Some(o) = self.out.get_mut(&universe) {
            o.dirty = true;
        }
    }

    /// The current frame of a universe.
    pub fn frame(&self, universe: u16) -> Option<&[u8; SLOTS]> {
        self.out.get(&universe).map(|o| &o.frame)
    }

    fn due_at(&self, o: &Out) -> Instant {
        if o.fresh {
            o.sent
        } else if o.dirty {
            o.sent + self.period
        } else {
            o.sent + self.keepalive
        }
    }

    /// The frames due at `now`, each with its next sequence number; they count as sent.
    pub fn poll(&mut self, now: Instant) -> Vec<Due> {
        let seq = self.seq;
        let due_at: Vec<(u16, Instant)> = self
            .out
            .iter()
            .filter(|(_, o)| o.live)
            .map(|(u, o)| (*u, self.due_at(o)))
            .collect();
        let mut due = Vec::new();
        for (u, at) in due_at {
            if at > now {
                continue;
            }
            let Some(o) = self.out.get_mut(&u) else {
                continue;
            };
            o.seq = seq.after(o.seq);
            o.sent = now;
            o.fresh = false;
            o.dirty = false;
            due.push(Due {
                universe: u,
                sequence: o.seq,
                frame: o.frame,
            });
        }
        due
    }

    /// The sequence number the next frame of `universe` would carry.
    pub fn next_sequence(&self, universe: u16) -> u8 {
        self.seq.after(self.out.get(&universe).map_or(0, |o| o.seq))
    }

    /// When the next frame is due (`None`: no universe).
    pub fn next_due(&self) -> Option<Instant> {
        self.out
            .values()
            .filter(|o| o.live)
            .map(|o| self.due_at(o))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_universes_at_the_refresh_rate_others_kept_alive() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(ms(25), ms(1000), Sequence::ArtNet);
        p.add(1, t);
        p.add(2, t);
        // First poll: both go out once (receivers learn the universes).
        let d = p.poll(t);
        assert_eq!(
            d.iter()
                .map(|d| (d.universe, d.sequence))
                .collect::<Vec<_>>(),
            [(1, 1), (2, 1)]
        );
        assert!(p.set(1, 1, 255));
        assert!(!p.set(3, 1, 255));
        assert!(!p.set(1, 0, 255));
        assert!(!p.set(1, 513, 255));
        // Changed, but the period has not passed.
        assert!(p.poll(t + ms(10)).is_empty());
        let d = p.poll(t + ms(25));
        assert_eq!(
            (d.len(), d[0].universe, d[0].sequence, d[0].frame[0]),
            (1, 1, 2, 255)
        );
        // Input absorbed is the state, not a change; a universe only absorbed is not sent.
        p.absorb(1, &[255; SLOTS], t);
        p.absorb(9, &[1; SLOTS], t);
        assert!(p.poll(t + ms(50)).is_empty());
        assert!(!p.has_live(9));
        // Setting the same level again is no change.
        p.set(1, 1, 255);
        assert!(p.poll(t + ms(60)).is_empty());
        // Keep-alive of both after a second.
        let d = p.poll(t + ms(1025));
        assert_eq!(d.len(), 2);
        assert_eq!(p.next_due(), Some(t + ms(1025) + ms(1000)));
    }

    #[test]
    fn sequences_wrap_per_protocol() {
        let t = Instant::now();
        let mut a = Pacer::new(Duration::ZERO, Duration::ZERO, Sequence::ArtNet);
        let mut s = Pacer::new(Duration::ZERO, Duration::ZERO, Sequence::Sacn);
        a.add(0, t);
        s.add(1, t);
        let mut seen_a = Vec::new();
        let mut seen_s = Vec::new();
        for _ in 0..257 {
            seen_a.push(a.poll(t)[0].sequence);
            seen_s.push(s.poll(t)[0].sequence);
        }
        assert_eq!(&seen_a[253..], [254, 255, 1, 2]);
        assert!(!seen_a.contains(&0));
        assert_eq!(&seen_s[254..], [255, 0, 1]);
    }
}
