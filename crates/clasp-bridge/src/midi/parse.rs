//! The MIDI 1.0 byte-stream parser: running status, real-time bytes anywhere (even inside a
//! message or a SysEx), System Common cancelling running status, SysEx bounded, and stray or
//! cut-off bytes counted rather than misread.

use super::message::MidiMsg;

/// Longest SysEx kept (bytes between F0 and F7); longer ones are dropped and counted.
pub const MAX_SYSEX: usize = 64 * 1024;

/// What the parser skipped, for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Data bytes with no status to belong to.
    pub stray: u64,
    /// Messages cut off by a new status byte before their data was complete.
    pub truncated: u64,
    /// SysEx messages over [`MAX_SYSEX`].
    pub oversized_sysex: u64,
    /// Undefined status bytes (F4, F5, F9, FD).
    pub undefined: u64,
}

/// A streaming parser. Feed it bytes in any chunks; it keeps its state between them.
#[derive(Debug, Clone, Default)]
pub struct Parser {
    /// The status the data bytes being collected belong to (channel or System Common).
    status: Option<u8>,
    /// Whether `status` may be reused for more data (channel messages only).
    running: bool,
    data: [u8; 2],
    have: usize,
    sysex: Option<Vec<u8>>,
    sysex_too_long: bool,
    skipped: Skipped,
}

/// Data bytes a status byte takes.
fn data_len(status: u8) -> usize {
    match status & 0xF0 {
        0xC0 | 0xD0 => 1,
        0x80..=0xE0 => 2,
        _ => match status {
            0xF1 | 0xF3 => 1,
            0xF2 => 2,
            _ => 0,
        },
    }
}

impl Parser {
    /// A parser with no state.
    pub fn new() -> Self {
        Parser::default()
    }

    /// What it skipped so far.
    pub fn skipped(&self) -> Skipped {
        self.skipped
    }

    /// Parses `bytes`, appending complete messages to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<MidiMsg>) {
        for &b in bytes {
            self.push(b, out);
        }
    }

    /// One byte; appends the messages it completes (two at most: a SysEx ended by a status
    /// byte that is itself complete, such as F6).
    pub fn push(&mut self, b: u8, out: &mut Vec<MidiMsg>) {
        if b >= 0xF8 {
            // Real-time: at once, touching nothing else.
            let m = match b {
                0xF8 => MidiMsg::Clock,
                0xFA => MidiMsg::Start,
                0xFB => MidiMsg::Continue,
                0xFC => MidiMsg::Stop,
                0xFE => MidiMsg::ActiveSensing,
                0xFF => MidiMsg::Reset,
                _ => {
                    self.skipped.undefined += 1;
                    return;
                }
            };
            out.push(m);
            return;
        }
        if b & 0x80 != 0 {
            self.status_byte(b, out);
            return;
        }
        // A data byte.
        if let Some(buf) = &mut self.sysex {
            if buf.len() < MAX_SYSEX {
                buf.push(b);
            } else {
                self.sysex_too_long = true;
            }
            return;
        }
        let Some(status) = self.status else {
            self.skipped.stray += 1;
            return;
        };
        self.data[self.have] = b;
        self.have += 1;
        if self.have < data_len(status) {
            return;
        }
        self.have = 0;
        if !self.running {
            self.status = None;
        }
        out.push(message(status, self.data));
    }

    fn status_byte(&mut self, b: u8, out: &mut Vec<MidiMsg>) {
        // Whatever was being collected ends here.
        self.end_sysex(out);
        if self.have > 0 {
            self.skipped.truncated += 1;
            self.have = 0;
        }
        match b {
            0x80..=0xEF => {
                self.status = Some(b);
                self.running = true;
            }
            0xF0 => {
                self.status = None;
                self.running = false;
                self.sysex = Some(Vec::new());
                self.sysex_too_long = false;
            }
            // F7 (end of exclusive, or a stray one), F4, F5: cancel running status.
            0xF4 | 0xF5 | 0xF7 => {
                if b != 0xF7 {
                    self.skipped.undefined += 1;
                }
                self.status = None;
                self.running = false;
            }
            // F6 is complete as it is.
            0xF6 => {
                self.status = None;
                self.running = false;
                out.push(MidiMsg::TuneRequest);
            }
            // F1, F2, F3: System Common with data; cancels running status.
            _ => {
                self.status = Some(b);
                self.running = false;
            }
        }
    }

    /// Ends a SysEx in progress (by F7 or by another status byte).
    fn end_sysex(&mut self, out: &mut Vec<MidiMsg>) {
        let Some(buf) = self.sysex.take() else { return };
        if self.sysex_too_long {
            self.skipped.oversized_sysex += 1;
        } else {
            out.push(MidiMsg::SysEx(buf));
        }
    }
}

fn message(status: u8, d: [u8; 2]) -> MidiMsg {
    let ch = status & 0x0F;
    match status & 0xF0 {
        0x80 => MidiMsg::NoteOff {
            ch,
            note: d[0],
            velocity: d[1],
        },
        0x90 => MidiMsg::NoteOn {
            ch,
            note: d[0],
            velocity: d[1],
        },
        0xA0 => MidiMsg::PolyPressure {
            ch,
            note: d[0],
            value: d[1],
        },
        0xB0 => MidiMsg::Control {
            ch,
            cc: d[0],
            value: d[1],
        },
        0xC0 => MidiMsg::Program { ch, program: d[0] },
        0xD0 => MidiMsg::ChannelPressure { ch, value: d[0] },
        0xE0 => MidiMsg::PitchBend {
            ch,
            value: ((i16::from(d[1]) << 7) | i16::from(d[0])) - 8192,
        },
        _ => match status {
            0xF1 => MidiMsg::MtcQuarterFrame(d[0]),
            0xF2 => MidiMsg::SongPosition((u16::from(d[1]) << 7) | u16::from(d[0])),
            _ => MidiMsg::SongSelect(d[0]),
        },
    }
}
