//! MIDI 1.0 messages, and their bytes.

/// One MIDI 1.0 message. Channels are 0–15 here (the wire's numbering); addresses show 1–16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MidiMsg {
    /// 8n: note off.
    NoteOff {
        /// Channel 0–15.
        ch: u8,
        /// Key 0–127.
        note: u8,
        /// Release velocity.
        velocity: u8,
    },
    /// 9n: note on (velocity 0 is a note off: see [`MidiMsg::normalized`]).
    NoteOn {
        /// Channel 0–15.
        ch: u8,
        /// Key 0–127.
        note: u8,
        /// Velocity 1–127 (0 means off).
        velocity: u8,
    },
    /// An: polyphonic key pressure.
    PolyPressure {
        /// Channel 0–15.
        ch: u8,
        /// Key.
        note: u8,
        /// Pressure.
        value: u8,
    },
    /// Bn: control change (120–127 are channel mode messages).
    Control {
        /// Channel 0–15.
        ch: u8,
        /// Controller 0–127.
        cc: u8,
        /// Value 0–127.
        value: u8,
    },
    /// Cn: program change.
    Program {
        /// Channel 0–15.
        ch: u8,
        /// Program 0–127.
        program: u8,
    },
    /// Dn: channel pressure.
    ChannelPressure {
        /// Channel 0–15.
        ch: u8,
        /// Pressure.
        value: u8,
    },
    /// En: pitch bend, 0–16383 on the wire, here centred: −8192..=8191.
    PitchBend {
        /// Channel 0–15.
        ch: u8,
        /// −8192..=8191.
        value: i16,
    },
    /// F0 … F7: the bytes between (manufacturer id first).
    SysEx(Vec<u8>),
    /// F1: MTC quarter frame (`0nnn dddd`).
    MtcQuarterFrame(u8),
    /// F2: song position, in MIDI beats (16th notes), 0–16383.
    SongPosition(u16),
    /// F3: song select.
    SongSelect(u8),
    /// F6: tune request.
    TuneRequest,
    /// F8: timing clock (24 per quarter note).
    Clock,
    /// FA: start.
    Start,
    /// FB: continue.
    Continue,
    /// FC: stop.
    Stop,
    /// FE: active sensing.
    ActiveSensing,
    /// FF: system reset.
    Reset,
}

impl MidiMsg {
    /// A note on with velocity 0 as what it means: a note off.
    pub fn normalized(self) -> MidiMsg {
        match self {
            MidiMsg::NoteOn {
                ch,
                note,
                velocity: 0,
            } => MidiMsg::NoteOff {
                ch,
                note,
                velocity: 0,
            },
            m => m,
        }
    }

    /// Its status byte.
    pub fn status(&self) -> u8 {
        match self {
            MidiMsg::NoteOff { ch, .. } => 0x80 | ch,
            MidiMsg::NoteOn { ch, .. } => 0x90 | ch,
            MidiMsg::PolyPressure { ch, .. } => 0xA0 | ch,
            MidiMsg::Control { ch, .. } => 0xB0 | ch,
            MidiMsg::Program { ch, .. } => 0xC0 | ch,
            MidiMsg::ChannelPressure { ch, .. } => 0xD0 | ch,
            MidiMsg::PitchBend { ch, .. } => 0xE0 | ch,
            MidiMsg::SysEx(_) => 0xF0,
            MidiMsg::MtcQuarterFrame(_) => 0xF1,
            MidiMsg::SongPosition(_) => 0xF2,
            MidiMsg::SongSelect(_) => 0xF3,
            MidiMsg::TuneRequest => 0xF6,
            MidiMsg::Clock => 0xF8,
            MidiMsg::Start => 0xFA,
            MidiMsg::Continue => 0xFB,
            MidiMsg::Stop => 0xFC,
            MidiMsg::ActiveSensing => 0xFE,
            MidiMsg::Reset => 0xFF,
        }
    }

    /// Appends its bytes to `out`, always with the status byte (the safe form for any
    /// receiver); data bytes are masked to 7 bits, channels to 4.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let d = |b: u8| b & 0x7F;
        let status = match self {
            MidiMsg::NoteOff { ch, .. }
            | MidiMsg::NoteOn { ch, .. }
            | MidiMsg::PolyPressure { ch, .. }
            | MidiMsg::Control { ch, .. }
            | MidiMsg::Program { ch, .. }
            | MidiMsg::ChannelPressure { ch, .. }
            | MidiMsg::PitchBend { ch, .. } => (self.status() & 0xF0) | (ch & 0x0F),
            _ => self.status(),
        };
        out.push(status);
        match self {
            MidiMsg::NoteOff { note, velocity, .. } | MidiMsg::NoteOn { note, velocity, .. } => {
                out.extend_from_slice(&[d(*note), d(*velocity)]);
            }
            MidiMsg::PolyPressure { note, value, .. } => {
                out.extend_from_slice(&[d(*note), d(*value)])
            }
            MidiMsg::Control { cc, value, .. } => out.extend_from_slice(&[d(*cc), d(*value)]),
            MidiMsg::Program { program, .. } => out.push(d(*program)),
            MidiMsg::ChannelPressure { value, .. } => out.push(d(*value)),
            MidiMsg::PitchBend { value, .. } => {
                let v = (i32::from(*value) + 8192).clamp(0, 16383) as u16;
                out.extend_from_slice(&[(v & 0x7F) as u8, (v >> 7) as u8]);
            }
            MidiMsg::SysEx(bytes) => {
                out.extend(bytes.iter().map(|b| d(*b)));
                out.push(0xF7);
            }
            MidiMsg::MtcQuarterFrame(v) | MidiMsg::SongSelect(v) => out.push(d(*v)),
            MidiMsg::SongPosition(v) => {
                let v = v & 0x3FFF;
                out.extend_from_slice(&[(v & 0x7F) as u8, (v >> 7) as u8]);
            }
            MidiMsg::TuneRequest
            | MidiMsg::Clock
            | MidiMsg::Start
            | MidiMsg::Continue
            | MidiMsg::Stop
            | MidiMsg::ActiveSensing
            | MidiMsg::Reset => {}
        }
    }
}
