//! Arbitrary bytes as a MIDI device's stream, through the parser and the address layout.
//! Invariants:
//!
//! * nothing panics; no SysEx longer than the bound comes out;
//! * splitting the stream anywhere (the first byte of the input picks where) gives the same
//!   messages and the same skipped counts;
//! * every message encodes to bytes that parse back to the same message;
//! * every param the layout makes goes back out (layout `encode`) as messages that decode to
//!   the same address and value (notes, CCs, pitch bend, pressure, programs; 14-bit pairs and
//!   (N)RPNs come back as their CCs).
#![no_main]

use clasp_bridge::midi::{Decoder, MidiMsg, Parser, encode, parse::MAX_SYSEX};
use clasp_mapping::WriteKind;
use libfuzzer_sys::fuzz_target;

fn parse(bytes: &[u8]) -> (Vec<MidiMsg>, Parser) {
    let mut p = Parser::new();
    let mut out = Vec::new();
    p.feed(bytes, &mut out);
    (out, p)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let (msgs, p) = parse(bytes);
    let at = usize::from(cut).min(bytes.len());
    let mut q = Parser::new();
    let mut split = Vec::new();
    q.feed(&bytes[..at], &mut split);
    q.feed(&bytes[at..], &mut split);
    assert_eq!(split, msgs);
    assert_eq!(q.skipped(), p.skipped());
    let mut d = Decoder::new();
    let mut ups = Vec::new();
    for m in &msgs {
        if let MidiMsg::SysEx(b) = m {
            assert!(b.len() <= MAX_SYSEX);
        }
        let mut enc = Vec::new();
        m.encode(&mut enc);
        let (back, _) = parse(&enc);
        assert_eq!(back.as_slice(), std::slice::from_ref(m), "{enc:02x?}");
        d.decode(m.clone(), &mut ups);
    }
    for up in ups {
        if up.kind != WriteKind::Set || up.path.contains("cc14") || up.path.contains("rpn") {
            continue;
        }
        let out = encode(&up.path, &up.value);
        assert!(!out.is_empty(), "{} = {:?} does not go back out", up.path, up.value);
        let mut again = Vec::new();
        let mut d2 = Decoder::new();
        for m in out {
            d2.decode(m, &mut again);
        }
        assert!(
            again.iter().any(|a| a.path == up.path && a.value == up.value),
            "{} = {:?} came back as {again:?}",
            up.path,
            up.value
        );
    }
});
