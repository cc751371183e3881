//! The recording file format (`docs/recording.md`): every value kind round-trips exactly,
//! malformed lines and unknown versions are refused with their line number, by the library
//! and by `clasp play`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Cursor;

use clasp_client::recording::value::identical;
use clasp_client::recording::{Entry, EntryKind, FormatError, Header, Recording, Writer, read};
use clasp_client::{GesturePhase, Value};
use proptest::prelude::*;

fn header() -> Header {
    Header {
        started_at_us: 1_700_000_000_000_000,
        pattern: "/**".into(),
        url: "ws://127.0.0.1:7330".into(),
        tool: "test".into(),
        types: vec!["param".into(), "event".into()],
    }
}

fn write(entries: &[Entry], end: Option<(u64, u64)>) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &header()).unwrap();
    for e in entries {
        w.entry(e).unwrap();
    }
    match end {
        Some((t, dropped)) => w.finish(t, dropped).unwrap(),
        None => {
            w.flush().unwrap();
            // Without the end line, as after a crash of the recorder.
            let mut bytes = Vec::new();
            let mut w2 = Writer::new(&mut bytes, &header()).unwrap();
            for e in entries {
                w2.entry(e).unwrap();
            }
            bytes
        }
    }
}

fn parse(text: &str) -> Result<Recording, FormatError> {
    read(Cursor::new(text.as_bytes()))
}

const HEAD: &str = r#"{"format":"clasp-recording","version":1,"started_at_us":1,"pattern":"/**","url":"ws://x","tool":"t"}"#;

#[test]
fn a_written_recording_reads_back() {
    let mut g = Entry::new(20, EntryKind::Gesture, "/pad/1", Value::Array(vec![]));
    g.gesture_id = Some(7);
    g.phase = Some(GesturePhase::Move);
    let mut b1 = Entry::new(30, EntryKind::Set, "/b/1", Value::Int(1));
    b1.bundle = Some(1);
    b1.revision = Some(4);
    let mut b2 = Entry::new(30, EntryKind::Event, "/b/go", Value::Null);
    b2.bundle = Some(1);
    let entries = vec![
        Entry::new(0, EntryKind::Initial, "/a", Value::Float(0.5)),
        Entry::new(10, EntryKind::Stream, "/s", Value::Float(f64::NAN)),
        g,
        b1,
        b2,
    ];
    let bytes = write(&entries, Some((40, 0)));
    let rec = read(Cursor::new(&bytes)).unwrap();
    assert_eq!(rec.header, header());
    assert_eq!(rec.entries.len(), entries.len());
    for (a, b) in rec.entries.iter().zip(&entries) {
        assert!(identical(&a.value, &b.value), "{a:?} vs {b:?}");
        assert_eq!((a.t_us, a.kind, &a.address), (b.t_us, b.kind, &b.address));
        assert_eq!((a.revision, a.bundle), (b.revision, b.bundle));
        assert_eq!((a.gesture_id, a.phase), (b.gesture_id, b.phase));
    }
    assert_eq!(rec.end.map(|e| (e.t_us, e.entries)), Some((40, 5)));
    assert_eq!(rec.length_us(), 40);
    // A file cut short (no end line) is still readable.
    let rec = read(Cursor::new(write(&entries, None))).unwrap();
    assert_eq!((rec.entries.len(), rec.end), (5, None));
}

#[test]
fn unknown_versions_are_refused_on_line_1() {
    let text = HEAD.replace("\"version\":1", "\"version\":2");
    let err = parse(&text).unwrap_err();
    assert!(matches!(
        err,
        FormatError::UnsupportedVersion { found: 2, .. }
    ));
    assert_eq!(err.line(), 1);
    let msg = err.to_string();
    assert!(msg.starts_with("line 1: "), "{msg}");
    assert!(
        msg.contains("version 2") && msg.contains("reads version 1"),
        "{msg}"
    );
    let err = parse(r#"{"format":"something-else","version":1}"#).unwrap_err();
    assert!(err.to_string().contains("not a CLASP recording"), "{err}");
    assert_eq!(parse("").unwrap_err().line(), 1);
}

#[test]
fn malformed_lines_are_named_by_number() {
    let ok = r#"{"t_us":5,"kind":"set","address":"/a","value":1}"#;
    for (bad, want) in [
        (
            r#"{"t_us":6,"kind":"set","address":"/a","value":"#,
            "not valid JSON",
        ),
        ("[1,2]", "expected a JSON object"),
        (
            r#"{"t_us":6,"kind":"dance","address":"/a","value":1}"#,
            "unknown kind `dance`",
        ),
        (
            r#"{"t_us":6,"kind":"set","value":1}"#,
            "`address` must be a string",
        ),
        (
            r#"{"t_us":6,"kind":"set","address":"a b","value":1}"#,
            "bad address",
        ),
        (
            r#"{"t_us":6,"kind":"set","address":"/a"}"#,
            "missing `value`",
        ),
        (
            r#"{"t_us":-1,"kind":"set","address":"/a","value":1}"#,
            "`t_us` must be",
        ),
        (
            r#"{"t_us":4,"kind":"set","address":"/a","value":1}"#,
            "earlier than the line before",
        ),
        (
            r#"{"t_us":6,"kind":"set","address":"/a","typed":{"b":"%"}}"#,
            "base64",
        ),
        (
            r#"{"t_us":6,"kind":"gesture","address":"/a","value":1}"#,
            "gesture_id",
        ),
        (
            r#"{"t_us":6,"kind":"initial","address":"/a","value":1}"#,
            "at t_us 0",
        ),
    ] {
        let text = format!("{HEAD}\n{ok}\n{bad}\n{ok}\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line(), 3, "{bad}: {err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("line 3: ") && msg.contains(want),
            "{bad}: {msg}"
        );
    }
    // A bundle's entries must be consecutive; nothing may follow the end line.
    let b = |t: u64, n: u64| {
        format!(r#"{{"t_us":{t},"kind":"set","address":"/a","value":1,"bundle":{n}}}"#)
    };
    let text = format!("{HEAD}\n{}\n{}\n{}\n", b(1, 1), b(2, 2), b(3, 1));
    assert_eq!(parse(&text).unwrap_err().line(), 4);
    let text = format!(
        "{HEAD}\n{ok}\n{{\"kind\":\"end\",\"t_us\":9,\"entries\":1,\"dropped\":0}}\n{ok}\n"
    );
    assert_eq!(parse(&text).unwrap_err().line(), 4);
}

#[test]
fn clasp_play_names_the_bad_line_and_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, format!("{HEAD}\n{{\"t_us\":1,\"kind\":\"set\"\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clasp"))
        .arg("play")
        .arg(&path)
        .args(["--url", "ws://127.0.0.1:9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.jsonl: line 2: not valid JSON"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::write(&path, HEAD.replace("\"version\":1", "\"version\":7")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clasp"))
        .arg("play")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1: recording format version 7 is not supported"),
        "{err}"
    );
}

/// Every value kind, nested: all f64s (NaN, infinities, -0.0, subnormals), any i64, any
/// string, bytes, arrays, and maps with repeated keys.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        any::<u64>().prop_map(|b| Value::Float(f64::from_bits(b))),
        any::<String>().prop_map(|s| Value::String(s.as_str().into())),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::Bytes(b.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-c]{0,2}", inner), 0..6).prop_map(|kv| {
                Value::Map(
                    kv.into_iter()
                        .map(|(k, v)| (k.as_str().into(), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #[test]
    fn every_value_round_trips_through_the_file(
        values in prop::collection::vec(any_value(), 1..8),
        revision in any::<Option<u64>>(),
    ) {
        let entries: Vec<Entry> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut e = Entry::new(i as u64 * 1000, EntryKind::Set, "/p/v", v.clone());
                e.revision = revision;
                e
            })
            .collect();
        let bytes = write(&entries, Some((1_000_000, 0)));
        let rec = read(Cursor::new(&bytes)).unwrap();
        prop_assert_eq!(rec.entries.len(), values.len());
        for (got, want) in rec.entries.iter().zip(&values) {
            prop_assert!(identical(&got.value, want), "{:?} came back as {:?}", want, got.value);
            prop_assert_eq!(got.revision, revision);
        }
    }
}
