//! Arbitrary datagrams through the Art-Net and sACN decoders. Invariants:
//!
//! * nothing panics, nothing reads past the datagram;
//! * an ArtDmx that decodes re-encodes to a packet that decodes to the same universe,
//!   sequence and slots (padded to an even count);
//! * an sACN data packet that decodes re-encodes (same header) byte for byte, and an ArtPoll
//!   Reply re-encodes to one that decodes to the same reply;
//! * the ENTTEC stream parser finds the same messages and skips the same bytes wherever the
//!   stream is split (the first byte picks where), and every message re-encodes to bytes it
//!   parses back.
#![no_main]

use clasp_bridge::lighting::{artnet, enttec, sacn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match artnet::decode(data) {
        Ok(artnet::Packet::Dmx {
            sequence,
            physical,
            port_address,
            data: slots,
        }) => {
            let mut out = Vec::new();
            artnet::encode_dmx(sequence, physical, port_address, slots, &mut out);
            let Ok(artnet::Packet::Dmx {
                sequence: s,
                port_address: p,
                data: d,
                ..
            }) = artnet::decode(&out)
            else {
                panic!("re-encoded ArtDmx does not decode");
            };
            assert_eq!((s, p), (sequence, port_address));
            assert_eq!(&d[..slots.len()], slots);
            assert!(d.len() - slots.len() <= 1);
        }
        Ok(artnet::Packet::PollReply(r)) => {
            let mut out = Vec::new();
            artnet::encode_poll_reply(&r, &mut out);
            assert_eq!(out.len(), artnet::POLL_REPLY_LEN);
            let Ok(artnet::Packet::PollReply(back)) = artnet::decode(&out) else {
                panic!("re-encoded ArtPollReply does not decode");
            };
            assert_eq!((back.ip, back.outputs()), (r.ip, r.outputs()));
        }
        _ => {}
    }
    if let Ok(sacn::Packet::Data(d)) = sacn::decode(data)
        && d.start_code == 0
        && d.sync_address == 0
        && d.source_name.len() <= 63
        && !d.source_name.contains('\u{fffd}')
    {
        let mut out = Vec::new();
        sacn::encode_data(
            &sacn::DataHeader {
                cid: &d.cid,
                source_name: &d.source_name,
                priority: d.priority,
                sequence: d.sequence,
                options: d.options,
                universe: d.universe,
            },
            d.slots,
            &mut out,
        );
        let Ok(sacn::Packet::Data(back)) = sacn::decode(&out) else {
            panic!("re-encoded sACN data does not decode");
        };
        assert_eq!(back.slots, d.slots);
        assert_eq!((back.universe, back.sequence), (d.universe, d.sequence));
    }
    if let Some((&cut, stream)) = data.split_first() {
        let whole = {
            let mut p = enttec::Parser::new();
            let mut out = Vec::new();
            p.feed(stream, &mut out);
            (out, p.skipped())
        };
        let at = usize::from(cut).min(stream.len());
        let mut p = enttec::Parser::new();
        let mut split = Vec::new();
        p.feed(&stream[..at], &mut split);
        p.feed(&stream[at..], &mut split);
        assert_eq!((&split, p.skipped()), (&whole.0, whole.1));
        for m in &whole.0 {
            assert!(m.data.len() <= enttec::MAX_DATA);
            let mut bytes = Vec::new();
            enttec::encode(m.label, &m.data, &mut bytes);
            let mut again = Vec::new();
            enttec::Parser::new().feed(&bytes, &mut again);
            assert_eq!(again.as_slice(), std::slice::from_ref(m));
        }
    }
});
