//! The mapping engine through its public API: configurations as users write them (TOML), the
//! writes it asks for, feedback, chains, and the loops it must not make.
#![allow(clippy::unwrap_used, missing_docs)]

use clasp_mapping::{Engine, MappingSpec, Write, WriteKind, describe};
use clasp_proto::{SignalType, Value};

#[derive(serde::Deserialize)]
struct File {
    mapping: Vec<MappingSpec>,
}

fn engine(toml_text: &str) -> Engine {
    let f: File = toml::from_str(toml_text).unwrap();
    Engine::new(f.mapping).unwrap()
}

fn load_error(toml_text: &str) -> String {
    let f: File = toml::from_str(toml_text).unwrap();
    describe(&Engine::new(f.mapping).unwrap_err())
}

fn set(e: &mut Engine, address: &str, v: Value) -> Vec<Write> {
    e.on_update(address, &v, SignalType::Param)
}

fn addrs(ws: &[Write]) -> Vec<(&str, &Value)> {
    ws.iter().map(|w| (w.address.as_str(), &w.value)).collect()
}

const MIDI_TO_MIXER: &str = r#"
[[mapping]]
from = "/midi/{dev}/ch/1/cc/{n}"
to = "/mixer/{dev}/{n}/volume"
transform = [{ type = "scale", from_min = 0, from_max = 127, to_min = 0.0, to_max = 1.0 }]
both_ways = true
"#;

#[test]
fn captures_carry_into_the_target_and_values_are_scaled() {
    let mut e = engine(MIDI_TO_MIXER);
    assert_eq!(
        e.subscriptions(),
        ["/midi/*/ch/1/cc/*", "/mixer/*/*/volume"]
    );
    let w = set(&mut e, "/midi/nano/ch/1/cc/7", Value::Int(127));
    assert_eq!(addrs(&w), [("/mixer/nano/7/volume", &Value::Float(1.0))]);
    assert_eq!((w[0].kind, w[0].feedback), (WriteKind::Set, false));
    // Other channels and shapes do not match.
    assert!(set(&mut e, "/midi/nano/ch/2/cc/7", Value::Int(1)).is_empty());
    assert!(set(&mut e, "/midi/nano/ch/1/cc/7/x", Value::Int(1)).is_empty());
}

#[test]
fn feedback_goes_back_through_the_inverse_and_keeps_the_source_type() {
    let mut e = engine(MIDI_TO_MIXER);
    set(&mut e, "/midi/nano/ch/1/cc/7", Value::Int(0));
    // The echo of our own write is ignored.
    assert!(set(&mut e, "/mixer/nano/7/volume", Value::Float(0.0)).is_empty());
    // Someone else moves the mixer: the fader gets it back, as a CC integer.
    let w = set(&mut e, "/mixer/nano/7/volume", Value::Float(0.5));
    assert_eq!(addrs(&w), [("/midi/nano/ch/1/cc/7", &Value::Int(64))]);
    assert!(w[0].feedback);
    // The fader's echo is ours too; the mixer is not written again.
    assert!(set(&mut e, "/midi/nano/ch/1/cc/7", Value::Int(64)).is_empty());
}

#[test]
fn a_value_the_target_already_holds_is_not_written_again() {
    let mut e = engine(MIDI_TO_MIXER);
    set(&mut e, "/mixer/nano/7/volume", Value::Float(1.0));
    assert!(set(&mut e, "/midi/nano/ch/1/cc/7", Value::Int(127)).is_empty());
}

#[test]
fn an_app_that_echoes_every_value_makes_no_loop() {
    // The app (another party) writes the mixer back after every change it receives, slightly
    // changed by its own rounding: the exchange settles instead of ping-ponging.
    let mut e = engine(MIDI_TO_MIXER);
    let mut pending = set(&mut e, "/midi/nano/ch/1/cc/7", Value::Int(100));
    let mut rounds = 0;
    while let Some(w) = pending.pop() {
        rounds += 1;
        assert!(rounds < 10, "a loop");
        // Our own echo first, as the router sends it...
        assert!(set(&mut e, &w.address, w.value.clone()).is_empty());
        // ...then the app's rounded copy, as someone else's write.
        if w.address.starts_with("/mixer") {
            let f = w.value.as_f64().unwrap();
            let rounded = Value::Float((f * 100.0).round() / 100.0);
            pending.extend(set(&mut e, &w.address, rounded));
        }
    }
    assert!(rounds <= 3, "{rounds}");
}

#[test]
fn chains_run_through_every_rule_once() {
    let mut e = engine(
        r#"
[[mapping]]
from = "/a"
to = "/b"
transform = [{ type = "scale", from_min = 0, from_max = 1, to_min = 0, to_max = 10 }]

[[mapping]]
from = "/b"
to = "/c"
transform = [{ type = "expression", expr = "x + 1" }]

[[mapping]]
from = "/c"
to = "/a"
"#,
    );
    // A → B → C → A: the write to A goes out (its source was another rule), then stops,
    // because A already holds what C would write back... or the depth bound stops it.
    let w = set(&mut e, "/a", Value::Float(0.5));
    assert_eq!(
        addrs(&w)[..2],
        [("/b", &Value::Float(5.0)), ("/c", &Value::Float(6.0))]
    );
    assert!(w.len() <= 8);
}

#[test]
fn events_stay_events_and_kind_can_be_forced() {
    let mut e = engine(
        r#"
[[mapping]]
from = "/pad/{n}"
to = "/cue/{n}/go"

[[mapping]]
from = "/knob/{n}"
to = "/level/{n}"
kind = "event"
"#,
    );
    let w = e.on_update("/pad/3", &Value::Int(1), SignalType::Event);
    assert_eq!(
        (w[0].address.as_str(), w[0].kind),
        ("/cue/3/go", WriteKind::Event)
    );
    // Events are occurrences: the same one twice goes out twice.
    let w = e.on_update("/pad/3", &Value::Int(1), SignalType::Event);
    assert_eq!(w.len(), 1);
    let w = set(&mut e, "/knob/1", Value::Float(0.2));
    assert_eq!(w[0].kind, WriteKind::Event);
}

#[test]
fn stateful_steps_keep_state_per_address() {
    let mut e = engine(
        r#"
[[mapping]]
from = "/s/{n}"
to = "/t/{n}"
transform = [{ type = "deadband", threshold = 0.1 }]
"#,
    );
    assert_eq!(set(&mut e, "/s/1", Value::Float(0.5)).len(), 1);
    assert!(
        set(&mut e, "/s/1", Value::Float(0.55)).is_empty(),
        "within the band"
    );
    assert_eq!(
        set(&mut e, "/s/2", Value::Float(0.55)).len(),
        1,
        "another address"
    );
    assert_eq!(set(&mut e, "/s/1", Value::Float(0.7)).len(), 1);
}

#[test]
fn bad_mappings_are_refused_with_the_reason() {
    let cases = [
        (
            r#"[[mapping]]
from = "/a/{n}"
to = "/b/{m}""#,
            "mapping 1: `to` uses `{m}`, which `from` does not capture",
        ),
        (
            r#"[[mapping]]
from = "/a/*"
to = "/b"
both_ways = true"#,
            "both ways needs every wildcard of `from` named",
        ),
        (
            r#"[[mapping]]
from = "/a"
to = "/b"
transform = [{ type = "scale", from_min = 1, from_max = 1, to_min = 0, to_max = 1 }]"#,
            "transform 1 (`scale`): the input range is empty",
        ),
        (
            r#"[[mapping]]
from = "/a"
to = "/b"
transform = [{ type = "clamp", min = 2, max = 1 }]"#,
            "min (2) is above max (1)",
        ),
        (
            r#"[[mapping]]
from = "/a"
to = "/b"
both_ways = true
transform = [{ type = "expression", expr = "x * 2" }]"#,
            "an expression has no automatic inverse; give the way back as `inverse = [...]`",
        ),
        (
            r#"[[mapping]]
from = "/a"
to = "/b"
transform = [{ type = "expression", expr = "x * y" }]"#,
            "unknown variable `y`",
        ),
        (
            r#"[[mapping]]
from = "/a/**/b"
to = "/b""#,
            "`**` may only be the last segment",
        ),
        (
            r#"[[mapping]]
from = "/a/{n}"
to = "/a/{n}""#,
            "the mapping would feed itself",
        ),
    ];
    for (text, want) in cases {
        let got = load_error(text);
        assert!(got.contains(want), "{got}\n  wanted: {want}");
    }
}

#[test]
fn an_explicit_inverse_makes_an_expression_both_ways() {
    let mut e = engine(
        r#"
[[mapping]]
from = "/a"
to = "/b"
both_ways = true
transform = [{ type = "expression", expr = "x * 2" }]
inverse = [{ type = "expression", expr = "x / 2" }]
"#,
    );
    assert_eq!(
        addrs(&set(&mut e, "/a", Value::Float(1.5))),
        [("/b", &Value::Float(3.0))]
    );
    set(&mut e, "/b", Value::Float(3.0));
    assert_eq!(
        addrs(&set(&mut e, "/b", Value::Float(4.0))),
        [("/a", &Value::Float(2.0))]
    );
}

#[test]
fn unknown_fields_and_types_are_config_errors() {
    let bad = r#"[[mapping]]
from = "/a"
to = "/b"
transform = [{ type = "scael", from_min = 0 }]"#;
    let e = toml::from_str::<File>(bad).err().unwrap().to_string();
    assert!(e.contains("scael"), "{e}");
    let bad = r#"[[mapping]]
from = "/a"
too = "/b""#;
    assert!(toml::from_str::<File>(bad).is_err());
}

#[test]
fn captures_may_sit_inside_a_target_segment_and_curves_take_bezier_points() {
    let mut e = engine(
        r#"
[[mapping]]
from = "/fader/{n}"
to = "/light/ch{n}/level"
transform = [{ type = "curve", curve_type = { bezier = { x1 = 0.25, y1 = 0.1, x2 = 0.25, y2 = 1.0 } } }]
"#,
    );
    let w = set(&mut e, "/fader/12", Value::Float(1.0));
    assert_eq!(w[0].address, "/light/ch12/level");
    assert!((w[0].value.as_f64().unwrap() - 1.0).abs() < 1e-6);
}
