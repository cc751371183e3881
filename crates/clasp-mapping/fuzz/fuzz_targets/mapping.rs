//! Arbitrary text as a mapping configuration (TOML `[[mapping]]` tables: patterns, templates,
//! transform chains, expressions), then arbitrary updates through the engine built from it.
//! The first line of the input is also parsed as an expression on its own. Invariants:
//!
//! * nothing panics, whatever the configuration or the values;
//! * an update gives a bounded number of writes (chains stop), each to a concrete address
//!   (no wildcard, starting with `/`), never a non-finite float;
//! * every SET the engine writes, when it comes back as the router's echo, gives no write.
#![no_main]

use clasp_mapping::expr::Expr;
use clasp_mapping::{Engine, MappingSpec, WriteKind};
use clasp_proto::{SignalType, Value};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct File {
    mapping: Vec<MappingSpec>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(first) = text.lines().next()
        && let Ok(e) = Expr::parse(first)
    {
        for x in [0.0, -1.0, 1e308, f64::NAN, f64::INFINITY] {
            if let Some(y) = e.eval(x) {
                assert!(y.is_finite());
            }
        }
    }
    let Ok(file) = toml::from_str::<File>(text) else {
        return;
    };
    let Ok(mut engine) = Engine::new(file.mapping) else {
        return;
    };
    let subs = engine.subscriptions();
    let values = [
        Value::Int(0),
        Value::Int(127),
        Value::Float(0.5),
        Value::Float(-1e300),
        Value::Bool(true),
        Value::String("1".into()),
    ];
    // Updates at addresses made from the subscriptions themselves, so rules actually match.
    for (i, pattern) in subs.iter().enumerate() {
        let address = pattern.replace("**", "x/y").replace('*', "7");
        for (j, v) in values.iter().enumerate() {
            let kind = if (i + j) % 3 == 0 {
                SignalType::Event
            } else {
                SignalType::Param
            };
            let writes = engine.on_update(&address, v, kind);
            assert!(writes.len() <= 8 * 8 * 64, "{}", writes.len());
            for w in &writes {
                assert!(w.address.starts_with('/') && !w.address.contains('*'));
                if let Value::Float(f) = w.value {
                    assert!(f.is_finite());
                }
            }
            for w in writes {
                if w.kind == WriteKind::Set {
                    let again = engine.on_update(&w.address, &w.value, SignalType::Param);
                    assert!(again.is_empty(), "the echo of {w:?} gave {again:?}");
                }
            }
        }
    }
});
