//! The sACN (ANSI E1.31-2018) packets, by hand: the `sacn` crate's parser can be made to
//! panic by a datagram with a short PDU length, and its receiver logic (sequence, termination)
//! is private to its sockets. Data, synchronization and universe-discovery packets are decoded
//! with every layer's length and vector checked, and encoded into a caller's buffer. Decoding
//! never panics and allocates only for a discovery page (at most 512 universes).

use std::net::{Ipv4Addr, SocketAddrV4};

/// The UDP port of sACN, multicast and unicast.
pub const PORT: u16 = 5568;
/// `ASC-E1.17\0\0\0`.
pub const ACN_ID: [u8; 12] = *b"ASC-E1.17\0\0\0";
/// The universe discovery packets go to.
pub const DISCOVERY_UNIVERSE: u16 = 64214;
/// Highest priority (values above are taken as this).
pub const MAX_PRIORITY: u8 = 200;
/// Options: preview data (visualisers only).
pub const OPT_PREVIEW: u8 = 0x80;
/// Options: the source stops sending this universe.
pub const OPT_TERMINATED: u8 = 0x40;

const ROOT_DATA: u32 = 0x0000_0004;
const ROOT_EXTENDED: u32 = 0x0000_0008;
const FRAMING_DATA: u32 = 0x0000_0002;
const FRAMING_SYNC: u32 = 0x0000_0001;
const FRAMING_DISCOVERY: u32 = 0x0000_0002;
const DISCOVERY_LIST: u32 = 0x0000_0001;

/// Why a datagram is not a usable sACN packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SacnError {
    /// Shorter than its packet's minimum, or a PDU length past the datagram.
    #[error("sACN packet too short or truncated ({0} bytes)")]
    TooShort(usize),
    /// Not an ACN root layer (preamble, identifier).
    #[error("not sACN")]
    NotSacn,
    /// A layer's flags, vector, or DMP header is not E1.31's.
    #[error("sACN {0} is not E1.31's")]
    BadLayer(&'static str),
    /// A universe outside 1–63999 (64214 only for discovery).
    #[error("sACN universe {0} is out of range")]
    BadUniverse(u16),
}

/// A decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Levels (or another START code's data) of one universe.
    Data(Data<'a>),
    /// Synchronization: apply what waits for `sync_address`.
    Sync {
        /// The source.
        cid: [u8; 16],
        /// The sync packets' own sequence.
        sequence: u8,
        /// The synchronization universe.
        sync_address: u16,
    },
    /// A page of the universes a source sends.
    Discovery {
        /// The source.
        cid: [u8; 16],
        /// Its name.
        source_name: String,
        /// This page (from 0).
        page: u8,
        /// The last page.
        last_page: u8,
        /// The universes on this page.
        universes: Vec<u16>,
    },
}

/// A data packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data<'a> {
    /// The source's CID.
    pub cid: [u8; 16],
    /// Its name.
    pub source_name: String,
    /// 0–200.
    pub priority: u8,
    /// 0, or the synchronization universe.
    pub sync_address: u16,
    /// Per universe, wrapping.
    pub sequence: u8,
    /// Options bits.
    pub options: u8,
    /// 1–63999.
    pub universe: u16,
    /// The START code (0 for levels).
    pub start_code: u8,
    /// Slots from 1 (0–512).
    pub slots: &'a [u8],
}

fn u16_be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_be(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks the Flags & Length at `at`: flags 0x7, the PDU reaching exactly to the end of `b`.
fn pdu(b: &[u8], at: usize, what: &'static str) -> Result<(), SacnError> {
    let fl = u16_be(b, at);
    if fl >> 12 != 0x7 {
        return Err(SacnError::BadLayer(what));
    }
    if usize::from(fl & 0x0FFF) != b.len() - at {
        return Err(SacnError::TooShort(b.len()));
    }
    Ok(())
}

/// Text of a NUL-padded field (lossy UTF-8, up to the first NUL).
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Decodes one datagram (its length must match the root PDU's: trailing bytes are refused).
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, SacnError> {
    if buf.len() < 38 {
        return Err(SacnError::TooShort(buf.len()));
    }
    if u16_be(buf, 0) != 0x0010 || u16_be(buf, 2) != 0 || buf[4..16] != ACN_ID {
        return Err(SacnError::NotSacn);
    }
    pdu(buf, 16, "root layer")?;
    let mut cid = [0u8; 16];
    cid.copy_from_slice(&buf[22..38]);
    match u32_be(buf, 18) {
        ROOT_DATA => data(buf, cid),
        ROOT_EXTENDED => {
            if buf.len() < 44 {
                return Err(SacnError::TooShort(buf.len()));
            }
            pdu(buf, 38, "framing layer")?;
            match u32_be(buf, 40) {
                FRAMING_SYNC => {
                    if buf.len() != 49 {
                        return Err(SacnError::TooShort(buf.len()));
                    }
                    Ok(Packet::Sync {
                        cid,
                        sequence: buf[44],
                        sync_address: u16_be(buf, 45),
                    })
                }
                FRAMING_DISCOVERY => discovery(buf, cid),
                _ => Err(SacnError::BadLayer("framing vector")),
            }
        }
        _ => Err(SacnError::BadLayer("root vector")),
    }
}

fn data(buf: &[u8], cid: [u8; 16]) -> Result<Packet<'_>, SacnError> {
    if buf.len() < 126 {
        return Err(SacnError::TooShort(buf.len()));
    }
    pdu(buf, 38, "framing layer")?;
    if u32_be(buf, 40) != FRAMING_DATA {
        return Err(SacnError::BadLayer("framing vector"));
    }
    pdu(buf, 115, "DMP layer")?;
    if buf[117] != 0x02 || buf[118] != 0xA1 || u16_be(buf, 119) != 0 || u16_be(buf, 121) != 1 {
        return Err(SacnError::BadLayer("DMP header"));
    }
    let count = usize::from(u16_be(buf, 123));
    if count == 0 || count > 513 || 125 + count != buf.len() {
        return Err(SacnError::BadLayer("DMP property count"));
    }
    let universe = u16_be(buf, 113);
    if !(1..=63999).contains(&universe) {
        return Err(SacnError::BadUniverse(universe));
    }
    Ok(Packet::Data(Data {
        cid,
        source_name: text(&buf[44..108]),
        priority: buf[108].min(MAX_PRIORITY),
        sync_address: u16_be(buf, 109),
        sequence: buf[111],
        options: buf[112],
        universe,
        start_code: buf[125],
        slots: &buf[126..],
    }))
}

fn discovery(buf: &[u8], cid: [u8; 16]) -> Result<Packet<'_>, SacnError> {
    if buf.len() < 120 {
        return Err(SacnError::TooShort(buf.len()));
    }
    pdu(buf, 112, "discovery layer")?;
    if u32_be(buf, 114) != DISCOVERY_LIST {
        return Err(SacnError::BadLayer("discovery vector"));
    }
    let list = &buf[120..];
    if !list.len().is_multiple_of(2) || list.len() > 2 * 512 {
        return Err(SacnError::BadLayer("universe list"));
    }
    Ok(Packet::Discovery {
        cid,
        source_name: text(&buf[44..108]),
        page: buf[118],
        last_page: buf[119],
        universes: list
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    })
}

/// Whether a packet with sequence `new` may follow `last` (E1.31: discard when
/// `-20 < new - last <= 0`, wrapping).
pub fn in_order(last: u8, new: u8) -> bool {
    let diff = new.wrapping_sub(last) as i8;
    !(diff > -20 && diff <= 0)
}

/// The multicast group of a universe: `239.255.{hi}.{lo}`, port 5568.
pub fn multicast(universe: u16) -> SocketAddrV4 {
    let [hi, lo] = universe.to_be_bytes();
    SocketAddrV4::new(Ipv4Addr::new(239, 255, hi, lo), PORT)
}

fn root(vector: u32, cid: &[u8; 16], total: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&0x0010u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&ACN_ID);
    out.extend_from_slice(&(0x7000 | (total - 16) as u16).to_be_bytes());
    out.extend_from_slice(&vector.to_be_bytes());
    out.extend_from_slice(cid);
}

/// A source name field: up to 63 bytes cut at a character boundary, NUL-padded to 64.
fn name_field(name: &str, out: &mut Vec<u8>) {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&name.as_bytes()[..end]);
    out.resize(out.len() + (64 - end), 0);
}

/// What a data packet says besides its slots.
#[derive(Debug, Clone)]
pub struct DataHeader<'a> {
    /// The source's CID.
    pub cid: &'a [u8; 16],
    /// Its name (cut to 63 bytes).
    pub source_name: &'a str,
    /// 0–200 (clamped).
    pub priority: u8,
    /// The sequence number.
    pub sequence: u8,
    /// Options bits.
    pub options: u8,
    /// 1–63999.
    pub universe: u16,
}

/// Appends a data packet with START code 0 and `slots` (at most 512 used) to `out`.
pub fn encode_data(h: &DataHeader<'_>, slots: &[u8], out: &mut Vec<u8>) {
    let slots = &slots[..slots.len().min(512)];
    let total = 126 + slots.len();
    let start = out.len();
    root(ROOT_DATA, h.cid, total, out);
    out.extend_from_slice(&(0x7000 | (total - 38) as u16).to_be_bytes());
    out.extend_from_slice(&FRAMING_DATA.to_be_bytes());
    name_field(h.source_name, out);
    out.push(h.priority.min(MAX_PRIORITY));
    out.extend_from_slice(&0u16.to_be_bytes()); // Synchronization address: none.
    out.push(h.sequence);
    out.push(h.options);
    out.extend_from_slice(&h.universe.to_be_bytes());
    out.extend_from_slice(&(0x7000 | (total - 115) as u16).to_be_bytes());
    out.extend_from_slice(&[0x02, 0xA1, 0x00, 0x00, 0x00, 0x01]);
    out.extend_from_slice(&((slots.len() + 1) as u16).to_be_bytes());
    out.push(0x00);
    out.extend_from_slice(slots);
    debug_assert_eq!(out.len() - start, total);
}

/// Appends a synchronization packet for `sync_address` to `out`.
pub fn encode_sync(cid: &[u8; 16], sequence: u8, sync_address: u16, out: &mut Vec<u8>) {
    root(ROOT_EXTENDED, cid, 49, out);
    out.extend_from_slice(&0x700Bu16.to_be_bytes());
    out.extend_from_slice(&FRAMING_SYNC.to_be_bytes());
    out.push(sequence);
    out.extend_from_slice(&sync_address.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
}

/// Appends a universe-discovery page (`universes` sorted, at most 512 used) to `out`.
pub fn encode_discovery(
    cid: &[u8; 16],
    source_name: &str,
    page: u8,
    last_page: u8,
    universes: &[u16],
    out: &mut Vec<u8>,
) {
    let universes = &universes[..universes.len().min(512)];
    let total = 120 + 2 * universes.len();
    root(ROOT_EXTENDED, cid, total, out);
    out.extend_from_slice(&(0x7000 | (total - 38) as u16).to_be_bytes());
    out.extend_from_slice(&FRAMING_DISCOVERY.to_be_bytes());
    name_field(source_name, out);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(0x7000 | (total - 112) as u16).to_be_bytes());
    out.extend_from_slice(&DISCOVERY_LIST.to_be_bytes());
    out.push(page);
    out.push(last_page);
    for u in universes {
        out.extend_from_slice(&u.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: [u8; 16] = [7; 16];

    fn header(universe: u16) -> DataHeader<'static> {
        DataHeader {
            cid: &CID,
            source_name: "CLASP",
            priority: 100,
            sequence: 9,
            options: 0,
            universe,
        }
    }

    #[test]
    fn a_full_universe_has_the_standards_lengths() {
        let mut out = Vec::new();
        encode_data(&header(1), &[5; 512], &mut out);
        assert_eq!(out.len(), 638);
        assert_eq!(out[16..18], [0x72, 0x6E]);
        assert_eq!(out[38..40], [0x72, 0x58]);
        assert_eq!(out[115..117], [0x72, 0x0B]);
        assert_eq!(out[123..125], [0x02, 0x01]);
        let Ok(Packet::Data(d)) = decode(&out) else {
            panic!()
        };
        assert_eq!(
            (
                d.universe,
                d.priority,
                d.sequence,
                d.slots.len(),
                d.source_name.as_str()
            ),
            (1, 100, 9, 512, "CLASP")
        );
    }

    #[test]
    fn sync_and_discovery_round_trip() {
        let mut out = Vec::new();
        encode_sync(&CID, 3, 7, &mut out);
        assert_eq!(out.len(), 49);
        assert_eq!(
            decode(&out),
            Ok(Packet::Sync {
                cid: CID,
                sequence: 3,
                sync_address: 7
            })
        );
        out.clear();
        encode_discovery(&CID, "CLASP", 0, 0, &[1, 2, 300], &mut out);
        assert_eq!(out.len(), 126);
        let Ok(Packet::Discovery { universes, .. }) = decode(&out) else {
            panic!()
        };
        assert_eq!(universes, [1, 2, 300]);
    }

    #[test]
    fn the_out_of_order_rule() {
        assert!(in_order(9, 10));
        assert!(!in_order(10, 10));
        assert!(!in_order(10, 9));
        assert!(!in_order(10, 250)); // -16: late.
        assert!(in_order(10, 246)); // -20: taken as a restart.
        assert!(in_order(255, 0));
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        let mut good = Vec::new();
        encode_data(&header(1), &[1, 2, 3], &mut good);
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "{n} bytes");
        }
        let mut bad_universe = Vec::new();
        encode_data(&header(0), &[1], &mut bad_universe);
        assert_eq!(decode(&bad_universe), Err(SacnError::BadUniverse(0)));
        let mut high = Vec::new();
        encode_data(&header(64000), &[1], &mut high);
        assert_eq!(decode(&high), Err(SacnError::BadUniverse(64000)));
        // A root length of 0, the input that panics the `sacn` crate's parser.
        let mut zero = good.clone();
        zero[16..18].copy_from_slice(&0x7000u16.to_be_bytes());
        assert!(decode(&zero).is_err());
        let mut dmp = good.clone();
        dmp[118] = 0xA2;
        assert_eq!(decode(&dmp), Err(SacnError::BadLayer("DMP header")));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut art = b"Art-Net\0".to_vec();
        art.resize(200, 0);
        assert_eq!(decode(&art), Err(SacnError::NotSacn));
        assert_eq!(multicast(258).ip().octets(), [239, 255, 1, 2]);
    }
}
