//! The Art-Net 4 packets a bridge needs, by hand (the `artnet_protocol` crate cannot send
//! ArtSync or ArtAddress, rejects the short ArtPoll and ArtPollReply older gear sends and
//! ignores ArtDmx's Length): ArtDmx, ArtPoll, ArtPollReply, ArtSync and ArtAddress decoded;
//! ArtDmx, ArtPoll, ArtPollReply and ArtSync encoded. Every multi-byte field is written with
//! its own byte order (OpCode little-endian, most others big-endian, Port and EstaMan in
//! ArtPollReply little-endian). Decoding never panics and never reads past the datagram.

use std::net::Ipv4Addr;

/// The UDP port of Art-Net.
pub const PORT: u16 = 6454;
/// `Art-Net\0`.
pub const ID: [u8; 8] = *b"Art-Net\0";
/// The protocol version sent (14).
pub const PROTOCOL: u16 = 14;

/// OpPoll.
pub const OP_POLL: u16 = 0x2000;
/// OpPollReply.
pub const OP_POLL_REPLY: u16 = 0x2100;
/// OpDmx (OpOutput).
pub const OP_DMX: u16 = 0x5000;
/// OpSync.
pub const OP_SYNC: u16 = 0x5200;
/// OpAddress.
pub const OP_ADDRESS: u16 = 0x6000;

/// Length of an ArtPollReply as sent.
pub const POLL_REPLY_LEN: usize = 239;

/// Why a datagram is not a usable Art-Net packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArtError {
    /// Shorter than its packet's minimum.
    #[error("Art-Net packet too short ({0} bytes)")]
    TooShort(usize),
    /// Not `Art-Net\0` (another protocol on the port, say MADRIX sync).
    #[error("not Art-Net")]
    NotArtNet,
    /// A protocol version below 14.
    #[error("Art-Net protocol version {0} (14 or later needed)")]
    OldVersion(u16),
    /// An ArtDmx Length of 0 or past 512, or past the datagram.
    #[error("ArtDmx length {0}")]
    BadLength(usize),
}

/// A decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// ArtDmx: one universe's slots.
    Dmx {
        /// 1..=255, or 0 when the sender does not sequence.
        sequence: u8,
        /// The sender's physical input port.
        physical: u8,
        /// The 15-bit Port-Address.
        port_address: u16,
        /// Slots from 1 (2–512 of them; odd counts accepted).
        data: &'a [u8],
    },
    /// ArtPoll.
    Poll {
        /// Flags (bit 1: send a reply whenever the node changes).
        flags: u8,
    },
    /// ArtPollReply (short ones zero-filled).
    PollReply(Box<PollReply>),
    /// ArtSync.
    Sync,
    /// ArtAddress (answered with an ArtPollReply).
    Address {
        /// Command (0x01 cancel merge, 0x10+p LTP, 0x50+p HTP…).
        command: u8,
    },
    /// Any other opcode (timecode, RDM, diagnostics…): ignored.
    Other(u16),
}

/// What a node says of itself in an ArtPollReply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollReply {
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Its UDP port (6454).
    pub port: u16,
    /// Port-Address bits 14–8.
    pub net: u8,
    /// Port-Address bits 7–4.
    pub sub_net: u8,
    /// Short name (up to 17 bytes).
    pub short_name: String,
    /// Long name (up to 63 bytes).
    pub long_name: String,
    /// The node report text.
    pub report: String,
    /// Ports in use (0–4).
    pub ports: u8,
    /// Port types (bit 7 output, bit 6 input).
    pub port_types: [u8; 4],
    /// Output status (bit 3 merging, bit 1 LTP).
    pub good_output: [u8; 4],
    /// Input Port-Address low nibbles.
    pub sw_in: [u8; 4],
    /// Output Port-Address low nibbles.
    pub sw_out: [u8; 4],
    /// Style (0 node, 1 controller…).
    pub style: u8,
    /// MAC address.
    pub mac: [u8; 6],
    /// Bind index (0 from older gear means 1).
    pub bind_index: u8,
    /// Status2 (bit 3: 15-bit Port-Address).
    pub status2: u8,
}

impl PollReply {
    /// The Port-Addresses of its output ports.
    pub fn outputs(&self) -> Vec<u16> {
        (0..usize::from(self.ports.min(4)))
            .filter(|i| self.port_types[*i] & 0x80 != 0)
            .map(|i| port_address(self.net, self.sub_net, self.sw_out[i]))
            .collect()
    }

    /// The Port-Addresses of its input ports.
    pub fn inputs(&self) -> Vec<u16> {
        (0..usize::from(self.ports.min(4)))
            .filter(|i| self.port_types[*i] & 0x40 != 0)
            .map(|i| port_address(self.net, self.sub_net, self.sw_in[i]))
            .collect()
    }
}

/// The 15-bit Port-Address of Net, Sub-Net and Universe.
pub fn port_address(net: u8, sub_net: u8, universe: u8) -> u16 {
    (u16::from(net & 0x7F) << 8) | (u16::from(sub_net & 0x0F) << 4) | u16::from(universe & 0x0F)
}

fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u16_be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Text of a NUL-padded field (lossy UTF-8, up to the first NUL).
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Decodes one datagram.
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, ArtError> {
    if buf.len() < 10 {
        return Err(ArtError::TooShort(buf.len()));
    }
    if buf[..8] != ID {
        return Err(ArtError::NotArtNet);
    }
    let op = u16_le(buf, 8);
    // Every packet but ArtPollReply carries the protocol version next.
    let version = || -> Result<(), ArtError> {
        if buf.len() < 12 {
            return Err(ArtError::TooShort(buf.len()));
        }
        match u16_be(buf, 10) {
            v if v >= PROTOCOL => Ok(()),
            v => Err(ArtError::OldVersion(v)),
        }
    };
    match op {
        OP_DMX => {
            version()?;
            if buf.len() < 18 {
                return Err(ArtError::TooShort(buf.len()));
            }
            let len = usize::from(u16_be(buf, 16));
            if len == 0 || len > 512 || 18 + len > buf.len() {
                return Err(ArtError::BadLength(len));
            }
            Ok(Packet::Dmx {
                sequence: buf[12],
                physical: buf[13],
                // SubUni then Net: the Port-Address little-endian, bit 15 unused.
                port_address: u16_le(buf, 14) & 0x7FFF,
                data: &buf[18..18 + len],
            })
        }
        OP_POLL => {
            version()?;
            // Older senders stop after Flags or DiagPriority: missing fields are 0.
            Ok(Packet::Poll {
                flags: buf.get(12).copied().unwrap_or(0),
            })
        }
        OP_POLL_REPLY => {
            if buf.len() < 198 {
                return Err(ArtError::TooShort(buf.len()));
            }
            let mut b = [0u8; POLL_REPLY_LEN];
            let n = buf.len().min(POLL_REPLY_LEN);
            b[..n].copy_from_slice(&buf[..n]);
            let four = |at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3]];
            Ok(Packet::PollReply(Box::new(PollReply {
                ip: Ipv4Addr::new(b[10], b[11], b[12], b[13]),
                port: u16_le(&b, 14),
                net: b[18] & 0x7F,
                sub_net: b[19] & 0x0F,
                short_name: text(&b[26..44]),
                long_name: text(&b[44..108]),
                report: text(&b[108..172]),
                ports: b[173].min(4),
                port_types: four(174),
                good_output: four(182),
                sw_in: four(186),
                sw_out: four(190),
                style: b[200],
                mac: [b[201], b[202], b[203], b[204], b[205], b[206]],
                bind_index: b[211].max(1),
                status2: b[212],
            })))
        }
        OP_SYNC => {
            version()?;
            Ok(Packet::Sync)
        }
        OP_ADDRESS => {
            version()?;
            if buf.len() < 107 {
                return Err(ArtError::TooShort(buf.len()));
            }
            Ok(Packet::Address { command: buf[106] })
        }
        other => Ok(Packet::Other(other)),
    }
}

fn header(op: u16, out: &mut Vec<u8>, version: bool) {
    out.extend_from_slice(&ID);
    out.extend_from_slice(&op.to_le_bytes());
    if version {
        out.extend_from_slice(&PROTOCOL.to_be_bytes());
    }
}

/// Appends an ArtDmx of `data` (1–512 slots; an odd count is padded with a 0 slot, as the
/// standard wants an even Length) to `out`.
pub fn encode_dmx(sequence: u8, physical: u8, port_address: u16, data: &[u8], out: &mut Vec<u8>) {
    let data = &data[..data.len().min(512)];
    header(OP_DMX, out, true);
    out.push(sequence);
    out.push(physical);
    out.extend_from_slice(&(port_address & 0x7FFF).to_le_bytes());
    let len = (data.len() + data.len() % 2).max(2);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + (len - data.len()), 0);
}

/// Appends an ArtPoll (22 bytes; Flags bit 1: reply when the node changes) to `out`.
pub fn encode_poll(out: &mut Vec<u8>) {
    header(OP_POLL, out, true);
    out.push(0x02); // Flags: send ArtPollReply on change.
    out.push(0x10); // DiagPriority low.
    out.extend_from_slice(&[0; 8]); // Target Port-Addresses, EstaMan, Oem.
}

/// Appends an ArtSync (14 bytes) to `out`.
pub fn encode_sync(out: &mut Vec<u8>) {
    header(OP_SYNC, out, true);
    out.extend_from_slice(&[0, 0]);
}

/// Appends an ArtPollReply (239 bytes) describing `r` to `out`.
pub fn encode_poll_reply(r: &PollReply, out: &mut Vec<u8>) {
    let start = out.len();
    header(OP_POLL_REPLY, out, false);
    out.extend_from_slice(&r.ip.octets());
    out.extend_from_slice(&r.port.to_le_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // VersInfo.
    out.push(r.net & 0x7F);
    out.push(r.sub_net & 0x0F);
    out.extend_from_slice(&0u16.to_be_bytes()); // Oem: unknown.
    out.push(0); // UbeaVersion.
    out.push(0b1110_0000); // Status1: indicators normal, Port-Address set over the network.
    out.extend_from_slice(&0u16.to_le_bytes()); // EstaMan.
    let name = |s: &str, size: usize, out: &mut Vec<u8>| {
        // Cut at a character boundary, leaving room for the NUL.
        let mut end = s.len().min(size - 1);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        out.extend_from_slice(&s.as_bytes()[..end]);
        out.resize(out.len() + (size - end), 0);
    };
    name(&r.short_name, 18, out);
    name(&r.long_name, 64, out);
    name(&r.report, 64, out);
    out.extend_from_slice(&u16::from(r.ports.min(4)).to_be_bytes());
    out.extend_from_slice(&r.port_types);
    out.extend_from_slice(&[0; 4]); // GoodInput.
    out.extend_from_slice(&r.good_output);
    out.extend_from_slice(&r.sw_in.map(|v| v & 0x0F));
    out.extend_from_slice(&r.sw_out.map(|v| v & 0x0F));
    out.extend_from_slice(&[0, 0, 0]); // AcnPriority, SwMacro, SwRemote.
    out.extend_from_slice(&[0, 0, 0]); // Spare.
    out.push(r.style);
    out.extend_from_slice(&r.mac);
    out.extend_from_slice(&r.ip.octets()); // BindIp: its own.
    out.push(r.bind_index.max(1));
    out.push(r.status2);
    out.resize(start + POLL_REPLY_LEN, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_example_dmx() {
        // Net 1, SubNet 2, Universe 3, sequence 5, 512 slots.
        let mut out = Vec::new();
        encode_dmx(5, 0, port_address(1, 2, 3), &[7; 512], &mut out);
        assert_eq!(
            out[..18],
            [
                0x41, 0x72, 0x74, 0x2D, 0x4E, 0x65, 0x74, 0x00, 0x00, 0x50, 0x00, 0x0E, 0x05, 0x00,
                0x23, 0x01, 0x02, 0x00
            ]
        );
        assert_eq!(out.len(), 530);
        let Ok(Packet::Dmx {
            sequence,
            port_address: pa,
            data,
            ..
        }) = decode(&out)
        else {
            panic!()
        };
        assert_eq!((sequence, pa, data.len(), data[511]), (5, 0x0123, 512, 7));
    }

    #[test]
    fn odd_lengths_are_padded_on_send_and_taken_on_receive() {
        let mut out = Vec::new();
        encode_dmx(1, 0, 0, &[1, 2, 3], &mut out);
        assert_eq!(u16::from_be_bytes([out[16], out[17]]), 4);
        assert_eq!(&out[18..], [1, 2, 3, 0]);
        out[17] = 3;
        out.pop();
        let Ok(Packet::Dmx { data, .. }) = decode(&out) else {
            panic!()
        };
        assert_eq!(data, [1, 2, 3]);
    }

    #[test]
    fn poll_reply_round_trip_and_short_replies() {
        let r = PollReply {
            ip: Ipv4Addr::new(10, 0, 0, 7),
            port: PORT,
            net: 1,
            sub_net: 2,
            short_name: "CLASP".into(),
            long_name: "ü".repeat(40),
            report: "#0001 [0001] OK".into(),
            ports: 1,
            port_types: [0xC0, 0, 0, 0],
            good_output: [0x80, 0, 0, 0],
            sw_in: [3, 0, 0, 0],
            sw_out: [3, 0, 0, 0],
            style: 1,
            mac: [0; 6],
            bind_index: 1,
            status2: 0x08,
        };
        let mut out = Vec::new();
        encode_poll_reply(&r, &mut out);
        assert_eq!(out.len(), POLL_REPLY_LEN);
        assert_eq!(out[14..16], [0x36, 0x19]);
        let Ok(Packet::PollReply(back)) = decode(&out) else {
            panic!()
        };
        // The long name is cut at a character boundary within 63 bytes.
        assert_eq!(back.long_name, "ü".repeat(31));
        assert_eq!(back.outputs(), [0x0123]);
        assert_eq!(back.inputs(), [0x0123]);
        // Older gear: 198 bytes are enough, 197 are not.
        assert!(matches!(decode(&out[..198]), Ok(Packet::PollReply(_))));
        assert_eq!(decode(&out[..197]), Err(ArtError::TooShort(197)));
    }

    #[test]
    fn bad_datagrams_are_errors_not_panics() {
        let mut dmx = Vec::new();
        encode_dmx(1, 0, 0, &[0; 10], &mut dmx);
        assert_eq!(decode(b"Art-Net"), Err(ArtError::TooShort(7)));
        assert_eq!(decode(b"MadrixN\0\x01\x51"), Err(ArtError::NotArtNet));
        let mut old = dmx.clone();
        old[11] = 13;
        assert_eq!(decode(&old), Err(ArtError::OldVersion(13)));
        let mut long = dmx.clone();
        long[16..18].copy_from_slice(&600u16.to_be_bytes());
        assert_eq!(decode(&long), Err(ArtError::BadLength(600)));
        assert_eq!(decode(&dmx[..20]), Err(ArtError::BadLength(10)));
        let mut poll = Vec::new();
        encode_poll(&mut poll);
        assert_eq!(poll.len(), 22);
        assert_eq!(decode(&poll[..12]), Ok(Packet::Poll { flags: 0 }));
        let mut sync = Vec::new();
        encode_sync(&mut sync);
        assert_eq!((sync.len(), decode(&sync)), (14, Ok(Packet::Sync)));
        let mut other = poll.clone();
        other[8..10].copy_from_slice(&0x9700u16.to_le_bytes());
        assert_eq!(decode(&other), Ok(Packet::Other(0x9700)));
        for n in 0..poll.len() {
            let _ = decode(&poll[..n]);
        }
    }
}
