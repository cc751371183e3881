//! The MIDI byte-stream parser with byte sequences from the MIDI 1.0 specification's rules
//! (running status, real-time bytes inside messages and SysEx, System Common cancelling
//! running status), and the address layout both ways.
#![allow(clippy::unwrap_used, missing_docs)]

use clasp_bridge::midi::{Decoder, Inbound, MidiMsg, Parser, encode};
use clasp_mapping::WriteKind;
use clasp_proto::Value;
use proptest::prelude::*;

fn parse(bytes: &[u8]) -> (Vec<MidiMsg>, Parser) {
    let mut p = Parser::new();
    let mut out = Vec::new();
    p.feed(bytes, &mut out);
    (out, p)
}

fn on(ch: u8, note: u8, velocity: u8) -> MidiMsg {
    MidiMsg::NoteOn { ch, note, velocity }
}

#[test]
fn running_status_and_note_on_velocity_zero() {
    let (m, _) = parse(&[0x90, 0x3C, 0x40, 0x3E, 0x40, 0x40, 0x00]);
    assert_eq!(m, [on(0, 60, 64), on(0, 62, 64), on(0, 64, 0)]);
    assert_eq!(
        m[2].clone().normalized(),
        MidiMsg::NoteOff {
            ch: 0,
            note: 64,
            velocity: 0
        }
    );
}

#[test]
fn real_time_bytes_go_through_anywhere_and_change_nothing() {
    // Between status and data, between the two data bytes, and inside a SysEx.
    let (m, _) = parse(&[0x90, 0xF8, 0x3C, 0xFA, 0x40, 0xFE, 0x3E, 0x40]);
    assert_eq!(
        m,
        [
            MidiMsg::Clock,
            MidiMsg::Start,
            on(0, 60, 64),
            MidiMsg::ActiveSensing,
            on(0, 62, 64)
        ]
    );
    let (m, _) = parse(&[0xF0, 0x7E, 0xF8, 0x7F, 0x06, 0x01, 0xF7]);
    assert_eq!(
        m,
        [MidiMsg::Clock, MidiMsg::SysEx(vec![0x7E, 0x7F, 0x06, 0x01])]
    );
}

#[test]
fn system_common_cancels_running_status() {
    let (m, p) = parse(&[0x90, 0x3C, 0x40, 0xF3, 0x05, 0x3E, 0x40]);
    assert_eq!(m, [on(0, 60, 64), MidiMsg::SongSelect(5)]);
    assert_eq!(p.skipped().stray, 2);
    // F4/F5 are undefined but still cancel it; F9/FD are undefined real-time and do not.
    let (m, p) = parse(&[0x90, 0x3C, 0x40, 0xF9, 0x3E, 0x40, 0xF4, 0x3F, 0x40]);
    assert_eq!(m, [on(0, 60, 64), on(0, 62, 64)]);
    assert_eq!((p.skipped().undefined, p.skipped().stray), (2, 2));
}

#[test]
fn sysex_ends_at_f7_or_at_the_next_status_byte() {
    let (m, _) = parse(&[0xF0, 0x01, 0x02, 0x90, 0x3C, 0x40]);
    assert_eq!(m, [MidiMsg::SysEx(vec![1, 2]), on(0, 60, 64)]);
    let (m, _) = parse(&[0xF0, 0x01, 0xF6]);
    assert_eq!(m, [MidiMsg::SysEx(vec![1]), MidiMsg::TuneRequest]);
    let mut long = vec![0xF0];
    long.extend(std::iter::repeat_n(
        0x11,
        clasp_bridge::midi::parse::MAX_SYSEX + 1,
    ));
    long.extend([0xF7, 0xC0, 0x05]);
    let (m, p) = parse(&long);
    assert_eq!(m, [MidiMsg::Program { ch: 0, program: 5 }]);
    assert_eq!(p.skipped().oversized_sysex, 1);
}

#[test]
fn two_byte_values_and_cut_off_messages() {
    let (m, _) = parse(&[
        0xE0, 0x00, 0x40, 0xE1, 0x7F, 0x7F, 0xE2, 0x00, 0x00, 0xF2, 0x10, 0x02,
    ]);
    assert_eq!(
        m,
        [
            MidiMsg::PitchBend { ch: 0, value: 0 },
            MidiMsg::PitchBend { ch: 1, value: 8191 },
            MidiMsg::PitchBend {
                ch: 2,
                value: -8192
            },
            MidiMsg::SongPosition(272),
        ]
    );
    let (m, p) = parse(&[0x90, 0x3C, 0x80, 0x3C, 0x00]);
    assert_eq!(
        m,
        [MidiMsg::NoteOff {
            ch: 0,
            note: 60,
            velocity: 0
        }]
    );
    assert_eq!(p.skipped().truncated, 1);
}

fn decode(bytes: &[u8]) -> Vec<(String, Value, WriteKind)> {
    let (msgs, _) = parse(bytes);
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for m in msgs {
        d.decode(m, &mut out);
    }
    out.into_iter()
        .map(|Inbound { path, value, kind }| (path, value, kind))
        .collect()
}

fn params(bytes: &[u8]) -> Vec<(String, i64)> {
    decode(bytes)
        .into_iter()
        .filter(|(_, _, k)| *k == WriteKind::Set)
        .map(|(p, v, _)| (p, v.as_i64().unwrap()))
        .collect()
}

fn p(path: &str, v: i64) -> (String, i64) {
    (path.to_owned(), v)
}

#[test]
fn fourteen_bit_pairs_and_nrpn() {
    // CC 7 MSB then CC 39 LSB on channel 3.
    assert_eq!(
        params(&[0xB2, 0x07, 0x64, 0x27, 0x10]),
        [
            p("ch/3/cc/7", 100),
            p("ch/3/cc/39", 16),
            p("ch/3/cc14/7", 100 << 7 | 16)
        ]
    );
    // An LSB with no MSB seen is only a CC.
    assert_eq!(params(&[0xB0, 0x21, 0x05]), [p("ch/1/cc/33", 5)]);
    // NRPN 130 (99 = 1, 98 = 2), data entry MSB, LSB, increment.
    let got = params(&[
        0xB0, 0x63, 0x01, 0x62, 0x02, 0x06, 0x40, 0x26, 0x05, 0x60, 0x00,
    ]);
    let nrpn: Vec<_> = got
        .into_iter()
        .filter(|(a, _)| a.contains("nrpn"))
        .collect();
    assert_eq!(
        nrpn,
        [
            p("ch/1/nrpn/130", 64 << 7),
            p("ch/1/nrpn/130", 64 << 7 | 5),
            p("ch/1/nrpn/130", (64 << 7 | 5) + 1),
        ]
    );
    // RPN null (127/127): data entries after it go nowhere.
    let got = params(&[0xB0, 0x65, 0x7F, 0x64, 0x7F, 0x06, 0x10]);
    assert!(got.iter().all(|(a, _)| !a.contains("rpn/")), "{got:?}");
}

#[test]
fn every_kind_has_its_address() {
    let got = decode(&[
        0x91, 0x3C, 0x64, // note on, ch 2
        0x81, 0x3C, 0x00, // note off
        0xA1, 0x3C, 0x20, // poly pressure
        0xC1, 0x05, // program
        0xD1, 0x30, // channel pressure
        0xB1, 0x7B, 0x00, // all notes off (channel mode)
        0xF8, 0xFA, 0xFC, 0xF1, 0x21, 0xFF,
    ]);
    let addrs: Vec<(&str, WriteKind)> = got.iter().map(|(a, _, k)| (a.as_str(), *k)).collect();
    use WriteKind::{Event as E, Set as S};
    assert_eq!(
        addrs,
        [
            ("ch/2/note/60", S),
            ("ch/2/note/60", S),
            ("ch/2/poly/60", S),
            ("ch/2/program", S),
            ("ch/2/aftertouch", S),
            ("ch/2/mode/123", E),
            ("clock", E),
            ("transport", E),
            ("transport", E),
            ("mtc", E),
            ("reset", E),
        ]
    );
    assert_eq!(got[1].1, Value::Int(0), "note off is velocity 0");
    assert_eq!(got[7].1, Value::String("start".into()));
}

#[test]
fn the_layout_goes_back_out_as_the_same_bytes() {
    let cases: &[(&str, Value, &[u8])] = &[
        ("ch/1/note/60", Value::Int(100), &[0x90, 60, 100]),
        ("ch/1/note/60", Value::Int(0), &[0x80, 60, 0]),
        ("ch/16/cc/7", Value::Int(127), &[0xBF, 7, 127]),
        ("ch/1/cc/7", Value::Float(0.5), &[0xB0, 7, 64]),
        (
            "ch/1/cc14/7",
            Value::Int(100 << 7 | 16),
            &[0xB0, 7, 100, 0xB0, 39, 16],
        ),
        (
            "ch/1/nrpn/130",
            Value::Int(5),
            &[0xB0, 99, 1, 0xB0, 98, 2, 0xB0, 6, 0, 0xB0, 38, 5],
        ),
        ("ch/1/pitchbend", Value::Float(-1.0), &[0xE0, 0, 0]),
        ("ch/1/pitchbend", Value::Float(1.0), &[0xE0, 0x7F, 0x7F]),
        ("ch/1/program", Value::Int(5), &[0xC0, 5]),
        (
            "sysex",
            Value::Bytes(vec![0x7E, 0x7F].into()),
            &[0xF0, 0x7E, 0x7F, 0xF7],
        ),
        ("transport", Value::String("stop".into()), &[0xFC]),
        // The reference's outbound forms (channel 0–15, no `ch`).
        ("2/cc/7", Value::Int(1), &[0xB2, 7, 1]),
        ("0/bend", Value::Int(0), &[0xE0, 0, 0x40]),
    ];
    for (path, value, bytes) in cases {
        let mut out = Vec::new();
        for m in encode(path, value) {
            m.encode(&mut out);
        }
        assert_eq!(&out, bytes, "{path} = {value:?}");
    }
    let note = Value::Map(vec![
        ("note".into(), Value::Int(60)),
        ("velocity".into(), Value::Int(90)),
    ]);
    assert_eq!(encode("3/note", &note), [on(3, 60, 90)]);
    // Not in the layout, or not fitting it: nothing.
    for (path, v) in [
        ("ch/17/cc/7", Value::Int(1)),
        ("ch/0/cc/7", Value::Int(1)),
        ("ch/1/cc/120", Value::Int(1)),
        ("ch/1/cc/7", Value::String("x".into())),
        ("16/cc/7", Value::Int(1)),
        ("lights", Value::Int(1)),
    ] {
        assert!(encode(path, &v).is_empty(), "{path}");
    }
}

fn msg() -> impl Strategy<Value = MidiMsg> {
    let ch = 0u8..16;
    let d = 0u8..128;
    prop_oneof![
        (ch.clone(), d.clone(), d.clone()).prop_map(|(ch, note, velocity)| MidiMsg::NoteOff {
            ch,
            note,
            velocity
        }),
        (ch.clone(), d.clone(), 1u8..128).prop_map(|(ch, note, velocity)| MidiMsg::NoteOn {
            ch,
            note,
            velocity
        }),
        (ch.clone(), d.clone(), d.clone()).prop_map(|(ch, cc, value)| MidiMsg::Control {
            ch,
            cc,
            value
        }),
        (ch.clone(), d.clone()).prop_map(|(ch, program)| MidiMsg::Program { ch, program }),
        (ch.clone(), d.clone()).prop_map(|(ch, value)| MidiMsg::ChannelPressure { ch, value }),
        (ch.clone(), -8192i16..8192).prop_map(|(ch, value)| MidiMsg::PitchBend { ch, value }),
        proptest::collection::vec(d.clone(), 0..20).prop_map(MidiMsg::SysEx),
        (0u16..16384).prop_map(MidiMsg::SongPosition),
        d.prop_map(MidiMsg::SongSelect),
        Just(MidiMsg::Clock),
        Just(MidiMsg::Stop),
        Just(MidiMsg::TuneRequest),
    ]
}

proptest! {
    #[test]
    fn messages_round_trip_through_their_bytes(msgs in proptest::collection::vec(msg(), 0..30)) {
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes);
        }
        let (back, p) = parse(&bytes);
        prop_assert_eq!(back, msgs);
        prop_assert_eq!(p.skipped(), Default::default());
    }

    #[test]
    fn any_chunking_gives_the_same_messages(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(0usize..300, 0..10),
    ) {
        let (whole, _) = parse(&bytes);
        let mut p = Parser::new();
        let mut out = Vec::new();
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= bytes.len()).collect();
        cuts.sort_unstable();
        let mut at = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            p.feed(&bytes[at..c], &mut out);
            at = c;
        }
        prop_assert_eq!(out, whole);
    }

    #[test]
    fn real_time_bytes_inserted_anywhere_leave_the_rest_unchanged(
        msgs in proptest::collection::vec(msg(), 0..20),
        at in proptest::collection::vec(0usize..200, 0..8),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes);
        }
        let mut with = bytes.clone();
        let mut at: Vec<usize> = at.into_iter().filter(|a| *a <= bytes.len()).collect();
        at.sort_unstable_by(|a, b| b.cmp(a));
        for a in &at {
            with.insert(*a, 0xF8);
        }
        let (got, _) = parse(&with);
        let clocks = got.iter().filter(|m| **m == MidiMsg::Clock).count();
        let rest: Vec<MidiMsg> = got.into_iter().filter(|m| *m != MidiMsg::Clock).collect();
        let want: Vec<MidiMsg> = msgs.iter().filter(|m| **m != MidiMsg::Clock).cloned().collect();
        prop_assert_eq!(rest, want);
        prop_assert_eq!(clocks, at.len() + msgs.iter().filter(|m| **m == MidiMsg::Clock).count());
    }
}
