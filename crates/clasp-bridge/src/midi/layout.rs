//! The MIDI address layout, both ways, under `/midi/{device}` (channels 1–16):
//!
//! | MIDI | address (after `/midi/{device}/`) | value | kind |
//! |---|---|---|---|
//! | note on / off | `ch/{c}/note/{n}` | velocity 1–127; 0 = off | param |
//! | control change 0–119 | `ch/{c}/cc/{n}` | 0–127 | param |
//! | 14-bit pair (CC n and n + 32, n < 32) | `ch/{c}/cc14/{n}` | 0–16383, set when the LSB arrives | param |
//! | NRPN / RPN (99/98 or 101/100, then 6/38, 96/97) | `ch/{c}/nrpn/{p}`, `ch/{c}/rpn/{p}` | 0–16383 | param |
//! | pitch bend | `ch/{c}/pitchbend` | −8192..8191 | param |
//! | channel pressure | `ch/{c}/aftertouch` | 0–127 | param |
//! | poly pressure | `ch/{c}/poly/{n}` | 0–127 | param |
//! | program change | `ch/{c}/program` | 0–127 | param |
//! | channel mode (CC 120–127) | `ch/{c}/mode/{cc}` | 0–127 | event |
//! | SysEx | `sysex` | bytes between F0 and F7 | event |
//! | clock, start / continue / stop | `clock`, `transport` | null, `"start"`… | event |
//! | song position, song select | `song_position`, `song` | 0–16383, 0–127 | param |
//! | MTC quarter frame, tune request, reset | `mtc`, `tune_request`, `reset` | byte, null, null | event |
//!
//! Going out, an Int is sent as it is (clamped) and a Float is read as normalised: 0.0–1.0
//! for 7- and 14-bit values, −1.0–1.0 for pitch bend. The reference's outbound forms are
//! accepted too: `{ch 0–15}/cc/{n}`, `{ch}/bend`, `{ch}/note` with `{note, velocity, on}`.

use clasp_mapping::WriteKind;
use clasp_proto::Value;

use super::message::MidiMsg;

/// One update the device produced, as (address after `/midi/{device}/`, value, kind).
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The address below the device's prefix.
    pub path: String,
    /// The value.
    pub value: Value,
    /// Param or event.
    pub kind: WriteKind,
}

fn param(path: String, v: impl Into<Value>) -> Inbound {
    Inbound {
        path,
        value: v.into(),
        kind: WriteKind::Set,
    }
}

fn event(path: impl Into<String>, v: impl Into<Value>) -> Inbound {
    Inbound {
        path: path.into(),
        value: v.into(),
        kind: WriteKind::Event,
    }
}

/// Per-channel controller state: 14-bit MSBs and the (N)RPN being edited.
#[derive(Debug, Clone, Default)]
struct Channel {
    msb: [Option<u8>; 32],
    /// (registered, number) of the parameter selected, once both halves are in.
    selected: Option<(bool, u16)>,
    select_msb: Option<(bool, u8)>,
    select_lsb: Option<(bool, u8)>,
    data: Option<u16>,
}

impl Channel {
    fn select(&mut self, registered: bool, msb: Option<u8>, lsb: Option<u8>) {
        if let Some(m) = msb {
            self.select_msb = Some((registered, m));
        }
        if let Some(l) = lsb {
            self.select_lsb = Some((registered, l));
        }
        self.data = None;
        self.selected = match (self.select_msb, self.select_lsb) {
            (Some((r1, m)), Some((r2, l))) if r1 == r2 => {
                // RPN 127/127 is "null": data entries after it go nowhere.
                (!(r1 && m == 127 && l == 127)).then_some((r1, (u16::from(m) << 7) | u16::from(l)))
            }
            _ => None,
        };
    }
}

/// Turns a device's messages into updates, keeping the controller state that needs.
#[derive(Debug, Clone)]
pub struct Decoder {
    channels: Box<[Channel; 16]>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            channels: Box::new(std::array::from_fn(|_| Channel::default())),
        }
    }
}

impl Decoder {
    /// A decoder with no state.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// The updates `m` makes (none for active sensing).
    pub fn decode(&mut self, m: MidiMsg, out: &mut Vec<Inbound>) {
        let chp = |ch: u8| format!("ch/{}", ch + 1);
        match m.normalized() {
            MidiMsg::NoteOn { ch, note, velocity } => {
                out.push(param(
                    format!("{}/note/{note}", chp(ch)),
                    i64::from(velocity),
                ));
            }
            MidiMsg::NoteOff { ch, note, .. } => {
                out.push(param(format!("{}/note/{note}", chp(ch)), 0i64));
            }
            MidiMsg::PolyPressure { ch, note, value } => {
                out.push(param(format!("{}/poly/{note}", chp(ch)), i64::from(value)));
            }
            MidiMsg::Control { ch, cc, value } => self.control(ch, cc, value, out),
            MidiMsg::Program { ch, program } => {
                out.push(param(format!("{}/program", chp(ch)), i64::from(program)));
            }
            MidiMsg::ChannelPressure { ch, value } => {
                out.push(param(format!("{}/aftertouch", chp(ch)), i64::from(value)));
            }
            MidiMsg::PitchBend { ch, value } => {
                out.push(param(format!("{}/pitchbend", chp(ch)), i64::from(value)));
            }
            MidiMsg::SysEx(bytes) => out.push(event("sysex", Value::Bytes(bytes.into()))),
            MidiMsg::MtcQuarterFrame(v) => out.push(event("mtc", i64::from(v))),
            MidiMsg::SongPosition(v) => out.push(param("song_position".into(), i64::from(v))),
            MidiMsg::SongSelect(v) => out.push(param("song".into(), i64::from(v))),
            MidiMsg::TuneRequest => out.push(event("tune_request", Value::Null)),
            MidiMsg::Clock => out.push(event("clock", Value::Null)),
            MidiMsg::Start => out.push(event("transport", "start")),
            MidiMsg::Continue => out.push(event("transport", "continue")),
            MidiMsg::Stop => out.push(event("transport", "stop")),
            MidiMsg::Reset => out.push(event("reset", Value::Null)),
            MidiMsg::ActiveSensing => {}
        }
    }

    fn control(&mut self, ch: u8, cc: u8, value: u8, out: &mut Vec<Inbound>) {
        let chp = format!("ch/{}", ch + 1);
        if cc >= 120 {
            out.push(event(format!("{chp}/mode/{cc}"), i64::from(value)));
            return;
        }
        out.push(param(format!("{chp}/cc/{cc}"), i64::from(value)));
        let c = &mut self.channels[usize::from(ch & 0x0F)];
        match cc {
            0..=31 => {
                // A new MSB resets the LSB: the pair is reported when its LSB comes.
                c.msb[usize::from(cc)] = Some(value);
            }
            32..=63 => {
                if let Some(msb) = c.msb[usize::from(cc - 32)] {
                    let v = (i64::from(msb) << 7) | i64::from(value);
                    out.push(param(format!("{chp}/cc14/{}", cc - 32), v));
                }
            }
            99 => c.select(false, Some(value), None),
            98 => c.select(false, None, Some(value)),
            101 => c.select(true, Some(value), None),
            100 => c.select(true, None, Some(value)),
            _ => {}
        }
        if let (6 | 38 | 96 | 97, Some((registered, number))) = (cc, c.selected) {
            let data = match cc {
                6 => u16::from(value) << 7,
                38 => (c.data.unwrap_or(0) & !0x7F) | u16::from(value),
                96 => c.data.unwrap_or(0).saturating_add(1).min(16383),
                _ => c.data.unwrap_or(0).saturating_sub(1),
            };
            c.data = Some(data);
            let kind = if registered { "rpn" } else { "nrpn" };
            out.push(param(format!("{chp}/{kind}/{number}"), i64::from(data)));
        }
    }
}

/// A 7-bit value from a CLASP value: an Int clamped, a Float in 0.0–1.0 scaled, a Bool.
fn seven(v: &Value) -> Option<u8> {
    Some(match v {
        Value::Int(i) => (*i).clamp(0, 127) as u8,
        Value::Float(f) if f.is_finite() => (f.clamp(0.0, 1.0) * 127.0).round() as u8,
        Value::Bool(b) => 127 * u8::from(*b),
        _ => return None,
    })
}

fn fourteen(v: &Value) -> Option<u16> {
    Some(match v {
        Value::Int(i) => (*i).clamp(0, 16383) as u16,
        Value::Float(f) if f.is_finite() => (f.clamp(0.0, 1.0) * 16383.0).round() as u16,
        _ => return None,
    })
}

fn bend(v: &Value) -> Option<i16> {
    Some(match v {
        Value::Int(i) => (*i).clamp(-8192, 8191) as i16,
        Value::Float(f) if f.is_finite() => {
            (f.clamp(-1.0, 1.0) * 8192.0).round().clamp(-8192.0, 8191.0) as i16
        }
        _ => return None,
    })
}

fn number<T: std::str::FromStr + PartialOrd>(s: &str, max: T) -> Option<T> {
    s.parse::<T>().ok().filter(|n| *n <= max)
}

/// The messages for `value` at `path` (the address after `/midi/{device}/`); empty when the
/// path is not part of the layout or the value does not fit it.
pub fn encode(path: &str, value: &Value) -> Vec<MidiMsg> {
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        ["ch", c, rest @ ..] => {
            let Some(ch) = number::<u8>(c, 16).filter(|c| *c >= 1).map(|c| c - 1) else {
                return Vec::new();
            };
            channel(ch, rest, value)
        }
        // The reference's outbound forms: channel 0–15 with no `ch`.
        [c, rest @ ..] if c.bytes().all(|b| b.is_ascii_digit()) => {
            let Some(ch) = number::<u8>(c, 15) else {
                return Vec::new();
            };
            match rest {
                ["cc", n] => channel(ch, &["cc", n], value),
                ["bend"] => channel(ch, &["pitchbend"], value),
                ["note"] => {
                    let field = |k: &str| value.get(k).and_then(seven);
                    let (Some(note), Some(velocity)) = (field("note"), field("velocity")) else {
                        return Vec::new();
                    };
                    let on = value
                        .get("on")
                        .and_then(Value::as_bool)
                        .unwrap_or(velocity > 0);
                    vec![if on {
                        MidiMsg::NoteOn { ch, note, velocity }
                    } else {
                        MidiMsg::NoteOff { ch, note, velocity }
                    }]
                }
                _ => Vec::new(),
            }
        }
        ["sysex"] => match value {
            Value::Bytes(b) => vec![MidiMsg::SysEx(b.to_vec())],
            Value::Array(a) => {
                let bytes: Option<Vec<u8>> = a.iter().map(seven).collect();
                bytes.map(|b| vec![MidiMsg::SysEx(b)]).unwrap_or_default()
            }
            _ => Vec::new(),
        },
        ["clock"] => vec![MidiMsg::Clock],
        ["transport"] => match value.as_str() {
            Some("start") => vec![MidiMsg::Start],
            Some("continue") => vec![MidiMsg::Continue],
            Some("stop") => vec![MidiMsg::Stop],
            _ => Vec::new(),
        },
        ["song_position"] => fourteen(value)
            .map(|v| vec![MidiMsg::SongPosition(v)])
            .unwrap_or_default(),
        ["song"] => seven(value)
            .map(|v| vec![MidiMsg::SongSelect(v)])
            .unwrap_or_default(),
        ["mtc"] => seven(value)
            .map(|v| vec![MidiMsg::MtcQuarterFrame(v)])
            .unwrap_or_default(),
        ["tune_request"] => vec![MidiMsg::TuneRequest],
        ["reset"] => vec![MidiMsg::Reset],
        _ => Vec::new(),
    }
}

fn channel(ch: u8, rest: &[&str], value: &Value) -> Vec<MidiMsg> {
    let cc = |cc: u8, value: u8| MidiMsg::Control { ch, cc, value };
    match rest {
        ["note", n] => {
            let (Some(note), Some(velocity)) = (number::<u8>(n, 127), seven(value)) else {
                return Vec::new();
            };
            vec![if velocity > 0 {
                MidiMsg::NoteOn { ch, note, velocity }
            } else {
                MidiMsg::NoteOff {
                    ch,
                    note,
                    velocity: 0,
                }
            }]
        }
        ["cc", n] => match (number::<u8>(n, 119), seven(value)) {
            (Some(n), Some(v)) => vec![cc(n, v)],
            _ => Vec::new(),
        },
        ["mode", n] => match (number::<u8>(n, 127).filter(|n| *n >= 120), seven(value)) {
            (Some(n), Some(v)) => vec![cc(n, v)],
            _ => Vec::new(),
        },
        ["cc14", n] => match (number::<u8>(n, 31), fourteen(value)) {
            (Some(n), Some(v)) => vec![cc(n, (v >> 7) as u8), cc(n + 32, (v & 0x7F) as u8)],
            _ => Vec::new(),
        },
        [kind @ ("nrpn" | "rpn"), p] => match (number::<u16>(p, 16383), fourteen(value)) {
            (Some(p), Some(v)) => {
                let (m, l) = if *kind == "rpn" { (101, 100) } else { (99, 98) };
                vec![
                    cc(m, (p >> 7) as u8),
                    cc(l, (p & 0x7F) as u8),
                    cc(6, (v >> 7) as u8),
                    cc(38, (v & 0x7F) as u8),
                ]
            }
            _ => Vec::new(),
        },
        ["pitchbend"] => bend(value)
            .map(|value| vec![MidiMsg::PitchBend { ch, value }])
            .unwrap_or_default(),
        ["aftertouch"] => seven(value)
            .map(|value| vec![MidiMsg::ChannelPressure { ch, value }])
            .unwrap_or_default(),
        ["poly", n] => match (number::<u8>(n, 127), seven(value)) {
            (Some(note), Some(value)) => vec![MidiMsg::PolyPressure { ch, note, value }],
            _ => Vec::new(),
        },
        ["program"] => seven(value)
            .map(|program| vec![MidiMsg::Program { ch, program }])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}
