//! The raw TCP listener's u32 length-prefix reader on arbitrary streams (well-formed, empty and
//! oversize messages mixed with raw bytes) cut into arbitrary chunks. Invariants:
//!
//! * nothing panics;
//! * the messages and errors equal those of a plain model of the framing (4-byte big-endian
//!   length; 0 → InvalidFrame; over `MAX_TCP_MESSAGE` → TooLarge and the bytes skipped), for
//!   the whole stream at once and for any chunking;
//! * after each read is drained, less than one largest message plus its prefix is buffered.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use clasp_proto::ErrorCode;
use clasp_router::server::MAX_TCP_MESSAGE;
use clasp_router::server::fuzzing::TcpReader;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Piece {
    /// Arbitrary bytes (may be a prefix of anything).
    Raw(Vec<u8>),
    /// A well-formed message.
    Message(Vec<u8>),
    /// A message just over the limit, `extra` bytes too long, filled with `fill`.
    Oversize { extra: u16, fill: u8 },
    /// A bare length prefix.
    Prefix(u32),
}

fn wire(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut oversize = 0;
    for p in pieces {
        match p {
            Piece::Raw(b) => out.extend_from_slice(b),
            Piece::Message(m) => {
                out.extend_from_slice(&(m.len() as u32).to_be_bytes());
                out.extend_from_slice(m);
            }
            Piece::Oversize { extra, fill } if oversize < 3 => {
                oversize += 1;
                let n = MAX_TCP_MESSAGE + 1 + usize::from(*extra);
                out.extend_from_slice(&(n as u32).to_be_bytes());
                out.resize(out.len() + n, *fill);
            }
            Piece::Oversize { .. } => {}
            Piece::Prefix(n) => out.extend_from_slice(&n.to_be_bytes()),
        }
    }
    out
}

type Item = Result<Bytes, ErrorCode>;

/// The framing, written plainly on the whole stream.
fn model(data: &[u8]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(p) = data.get(at..at + 4) {
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let body = at + 4;
        if len > MAX_TCP_MESSAGE {
            out.push(Err(ErrorCode::TooLarge));
            at = body + len;
        } else if len == 0 {
            out.push(Err(ErrorCode::InvalidFrame));
            at = body;
        } else if let Some(m) = data.get(body..body + len) {
            out.push(Ok(Bytes::copy_from_slice(m)));
            at = body + len;
        } else {
            break;
        }
    }
    out
}

fn read(data: &[u8], cuts: &[u16]) -> Vec<Item> {
    let mut r = TcpReader::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut cuts = cuts.iter();
    while pos < data.len() {
        let step = cuts.next().map_or(data.len(), |c| usize::from(*c).max(1));
        let end = (pos + step).min(data.len());
        r.push(&data[pos..end]);
        pos = end;
        while let Some(item) = r.next_frame() {
            if let Ok(m) = &item {
                assert!(!m.is_empty() && m.len() <= MAX_TCP_MESSAGE);
            }
            out.push(item);
        }
        assert!(
            r.buffered() < 4 + MAX_TCP_MESSAGE,
            "{} bytes buffered after draining",
            r.buffered()
        );
    }
    out
}

fuzz_target!(|input: (Vec<u16>, Vec<Piece>)| {
    let (cuts, pieces) = input;
    let data = wire(&pieces);
    let expected = model(&data);
    assert_eq!(read(&data, &[]), expected, "whole stream");
    assert_eq!(read(&data, &cuts), expected, "chunked stream");
});
