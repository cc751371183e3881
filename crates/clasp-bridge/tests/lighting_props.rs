//! Property tests of the lighting codecs: what the encoders write decodes to what was put in
//! (Art-Net ArtDmx, E1.31 data, ENTTEC messages), no input makes a decoder panic, every strict
//! prefix of a valid datagram is refused, and the ENTTEC stream parser finds the same messages
//! however the bytes are split and whatever garbage (without a start byte) comes between them.
#![allow(clippy::unwrap_used, missing_docs)]

use clasp_bridge::lighting::enttec::{self, Message, Parser};
use clasp_bridge::lighting::{artnet, sacn};
use proptest::prelude::*;

fn slots() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 2..=512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn artdmx_round_trips(seq in any::<u8>(), physical in any::<u8>(), pa in 0u16..0x8000, data in slots()) {
        let mut out = Vec::new();
        artnet::encode_dmx(seq, physical, pa, &data, &mut out);
        match artnet::decode(&out).unwrap() {
            artnet::Packet::Dmx { sequence, physical: p, port_address, data: d } => {
                prop_assert_eq!((sequence, p, port_address), (seq, physical, pa));
                // An odd count comes back with the one pad slot the standard asks for.
                prop_assert_eq!(&d[..data.len()], &data[..]);
                prop_assert!(d.len() == data.len() || (d.len() == data.len() + 1 && d[data.len()] == 0));
            }
            other => prop_assert!(false, "decoded as {:?}", other),
        }
        for cut in 0..out.len() {
            // Every strict prefix is refused; the Length field tells a short frame.
            prop_assert!(artnet::decode(&out[..cut]).is_err(), "prefix of {} bytes accepted", cut);
        }
    }

    #[test]
    fn sacn_data_round_trips(
        cid in any::<[u8; 16]>(),
        name in "[a-zA-Z0-9 é]{0,70}",
        priority in 0u8..=200,
        seq in any::<u8>(),
        options in prop::sample::select(vec![0u8, sacn::OPT_PREVIEW, sacn::OPT_TERMINATED]),
        universe in 1u16..=63999,
        data in slots(),
    ) {
        let mut out = Vec::new();
        let h = sacn::DataHeader { cid: &cid, source_name: &name, priority, sequence: seq, options, universe };
        sacn::encode_data(&h, &data, &mut out);
        match sacn::decode(&out).unwrap() {
            sacn::Packet::Data(d) => {
                prop_assert_eq!(d.cid, cid);
                prop_assert!(name.starts_with(&d.source_name) && d.source_name.len() <= 63);
                prop_assert_eq!((d.priority, d.sequence, d.options, d.universe, d.start_code), (priority, seq, options, universe, 0));
                prop_assert_eq!(d.slots, &data[..]);
            }
            other => prop_assert!(false, "decoded as {:?}", other),
        }
        for cut in 0..out.len() {
            prop_assert!(sacn::decode(&out[..cut]).is_err(), "prefix of {} bytes accepted", cut);
        }
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700), prefix in 0usize..3) {
        // Plain noise, and noise behind each protocol's identifier so the deeper layers run.
        let mut b = match prefix {
            0 => Vec::new(),
            1 => b"Art-Net\0".to_vec(),
            _ => [0x00, 0x10, 0x00, 0x00].iter().chain(b"ASC-E1.17\0\0\0").copied().collect(),
        };
        b.extend_from_slice(&bytes);
        let _ = artnet::decode(&b);
        let _ = sacn::decode(&b);
        let _ = enttec::received(&b);
        let _ = enttec::params(&b);
        let mut out = Vec::new();
        Parser::new().feed(&b, &mut out);
    }

    #[test]
    fn enttec_stream_split_anywhere(
        msgs in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..600)), 1..6),
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("not a start byte", |b| *b != 0x7E), 0..8), 6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (i, (label, data)) in msgs.iter().enumerate() {
            stream.extend_from_slice(&garbage[i]);
            enttec::encode(*label, data, &mut stream);
            want.push(Message { label: *label, data: data.clone() });
        }
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.push(0);
        at.push(stream.len());
        at.sort_unstable();
        let mut parser = Parser::new();
        let mut got = Vec::new();
        for w in at.windows(2) {
            parser.feed(&stream[w[0]..w[1]], &mut got);
        }
        prop_assert_eq!(got, want);
        let junk: usize = garbage[..msgs.len()].iter().map(Vec::len).sum();
        prop_assert_eq!(parser.skipped(), junk as u64);
    }
}
