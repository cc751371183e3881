//! The ENTTEC DMX USB Pro's messages (API 1.44), sans-IO: `7E label len-lo len-hi data… E7`
//! frames encoded, and a stream parser that finds them in whatever the serial port delivers
//! (split anywhere, garbage between frames skipped and counted, lengths past 600 refused,
//! a frame without its end byte dropped), plus the replies the bridge reads: received DMX
//! (label 5: a status byte, the START code, the slots) and the widget parameters (label 3).

/// Start of a message.
pub const SOM: u8 = 0x7E;
/// End of a message (not 0x7E: one public README has it wrong).
pub const EOM: u8 = 0xE7;
/// Longest data a message carries.
pub const MAX_DATA: usize = 600;
/// Get widget parameters (request and reply).
pub const LABEL_GET_PARAMS: u8 = 3;
/// Received DMX packet (widget to host).
pub const LABEL_RECEIVED_DMX: u8 = 5;
/// Output-only send DMX (host to widget; the widget repeats it).
pub const LABEL_SEND_DMX: u8 = 6;
/// Receive DMX on change (0: always send label 5).
pub const LABEL_RECEIVE_MODE: u8 = 8;
/// Shortest label-6 data: START code and 24 slots (the DMX break-to-break minimum).
pub const MIN_SEND: usize = 25;

/// Appends a message of `label` with `data` (at most 600 bytes used) to `out`.
pub fn encode(label: u8, data: &[u8], out: &mut Vec<u8>) {
    let data = &data[..data.len().min(MAX_DATA)];
    out.push(SOM);
    out.push(label);
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(data);
    out.push(EOM);
}

/// Appends a label-6 message sending START code 0 and `slots` (at most 512; padded to 24).
pub fn encode_dmx(slots: &[u8], out: &mut Vec<u8>) {
    let slots = &slots[..slots.len().min(512)];
    let mut data = Vec::with_capacity(513);
    data.push(0x00);
    data.extend_from_slice(slots);
    if data.len() < MIN_SEND {
        data.resize(MIN_SEND, 0);
    }
    encode(LABEL_SEND_DMX, &data, out);
}

/// One message from the widget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its label.
    pub label: u8,
    /// Its data.
    pub data: Vec<u8>,
}

/// What a label-5 message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<'a> {
    /// Bit 0: the widget's receive queue overflowed; bit 1: receive overrun.
    pub status: u8,
    /// The START code.
    pub start_code: u8,
    /// The slots from 1.
    pub slots: &'a [u8],
}

/// Reads a label-5 message's data; `None` when it is shorter than status + START code.
pub fn received(data: &[u8]) -> Option<Received<'_>> {
    match data {
        [status, start_code, slots @ ..] => Some(Received {
            status: *status,
            start_code: *start_code,
            slots: &slots[..slots.len().min(512)],
        }),
        _ => None,
    }
}

/// The widget's parameters (label-3 reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Firmware version (MSB 1: DMX firmware, 2: RDM, 3: RDM sniffer).
    pub firmware: u16,
    /// BREAK time, in 10.67 µs units.
    pub break_time: u8,
    /// Mark-after-break time, in 10.67 µs units.
    pub mab_time: u8,
    /// Output rate, packets per second (0: as fast as possible).
    pub rate: u8,
}

/// Reads a label-3 reply; `None` when it is shorter than 5 bytes.
pub fn params(data: &[u8]) -> Option<Params> {
    match data {
        [lo, hi, b, m, r, ..] => Some(Params {
            firmware: u16::from_le_bytes([*lo, *hi]),
            break_time: *b,
            mab_time: *m,
            rate: *r,
        }),
        _ => None,
    }
}

/// Where the parser is in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for 0x7E.
    Hunt,
    Label,
    LenLo,
    LenHi,
    Data,
    End,
}

/// Finds messages in the bytes read from the widget.
#[derive(Debug, Clone)]
pub struct Parser {
    state: State,
    label: u8,
    len: usize,
    data: Vec<u8>,
    skipped: u64,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser waiting for a message's start.
    pub fn new() -> Parser {
        Parser {
            state: State::Hunt,
            label: 0,
            len: 0,
            data: Vec::new(),
            skipped: 0,
        }
    }

    /// Bytes not part of any message (garbage, over-long or unterminated messages).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Feeds bytes; complete messages are appended to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Message>) {
        for &b in bytes {
            match self.state {
                State::Hunt => {
                    if b == SOM {
                        self.state = State::Label;
                    } else {
                        self.skipped += 1;
                    }
                }
                State::Label => {
                    self.label = b;
                    self.state = State::LenLo;
                }
                State::LenLo => {
                    self.len = usize::from(b);
                    self.state = State::LenHi;
                }
                State::LenHi => {
                    self.len |= usize::from(b) << 8;
                    if self.len > MAX_DATA {
                        // Not a message: the 0x7E was data. Look again from here.
                        self.skipped += 4;
                        self.state = State::Hunt;
                    } else {
                        self.data.clear();
                        self.state = if self.len == 0 {
                            State::End
                        } else {
                            State::Data
                        };
                    }
                }
                State::Data => {
                    self.data.push(b);
                    if self.data.len() == self.len {
                        self.state = State::End;
                    }
                }
                State::End => {
                    if b == EOM {
                        out.push(Message {
                            label: self.label,
                            data: std::mem::take(&mut self.data),
                        });
                    } else {
                        self.skipped += 4 + self.len as u64 + 1;
                    }
                    self.state = State::Hunt;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_full_universe_frame() {
        let mut out = Vec::new();
        encode_dmx(&[9; 512], &mut out);
        assert_eq!(out[..5], [0x7E, 0x06, 0x01, 0x02, 0x00]);
        assert_eq!(out.len(), 4 + 513 + 1);
        assert_eq!(*out.last().unwrap(), 0xE7);
        // A short frame is padded to START code + 24 slots.
        out.clear();
        encode_dmx(&[1, 2], &mut out);
        assert_eq!(out[..7], [0x7E, 0x06, 25, 0, 0, 1, 2]);
        assert_eq!(out.len(), 4 + 25 + 1);
    }

    #[test]
    fn messages_split_anywhere_with_garbage_between() {
        let mut stream = vec![0x00, 0xE7, 0x13];
        encode(LABEL_GET_PARAMS, &[0x44, 0x01, 9, 1, 40], &mut stream);
        stream.extend_from_slice(&[0x7E, 0x05, 0xFF, 0xFF]); // Too long: not a message.
        encode(LABEL_RECEIVED_DMX, &[0, 0, 10, 20], &mut stream);
        stream.extend_from_slice(&[0x7E, 0x05, 1, 0, 7, 0x00]); // No end byte.
        encode(LABEL_RECEIVED_DMX, &[2, 0, 30], &mut stream);
        for cut in 0..stream.len() {
            let mut p = Parser::new();
            let mut got = Vec::new();
            p.feed(&stream[..cut], &mut got);
            p.feed(&stream[cut..], &mut got);
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(
                params(&got[0].data),
                Some(Params {
                    firmware: 0x0144,
                    break_time: 9,
                    mab_time: 1,
                    rate: 40
                })
            );
            let r = received(&got[1].data).unwrap();
            assert_eq!((r.status, r.start_code, r.slots), (0, 0, &[10, 20][..]));
            assert_eq!(received(&got[2].data).unwrap().status, 2);
            assert_eq!(p.skipped(), 3 + 4 + 6, "cut at {cut}");
        }
        assert_eq!(received(&[0]), None);
        assert_eq!(params(&[1, 2, 3, 4]), None);
    }
}
