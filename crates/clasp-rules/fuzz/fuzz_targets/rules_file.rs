//! Arbitrary bytes as a rules file, read as TOML and as JSON; when one parses, an engine runs
//! it through updates at the addresses it subscribes to, the echoes of its own writes and
//! polls over a few simulated seconds. Invariants:
//!
//! * nothing panics, whatever the file, the values or the times;
//! * every refusal says where (line and column inside the text);
//! * each poll returns a bounded number of writes (chains and cascades stop), each to a
//!   concrete address (starting with `/`, no wildcard, no `{`), never a non-finite float
//!   (the updates given are finite);
//! * the echo of every SET, given back as the engine's own (by id or by value), makes no write;
//! * following the engine's deadlines, it goes quiet or keeps to its timers.
#![no_main]

use std::time::Duration;

use clasp_proto::Value;
use clasp_rules::{Engine, Format, Origin, Output, RuleSet, RulesFile, UpdateKind};
use libfuzzer_sys::fuzz_target;

/// 2024-05-01 00:00 UTC, µs.
const WALL: u64 = 1_714_521_600_000_000;

fn check(outs: &[Output]) {
    assert!(outs.len() <= 100_000, "{} writes", outs.len());
    for o in outs {
        for (_, address, value) in o.write.parts() {
            assert!(
                address.starts_with('/') && !address.contains(['*', '{', '}']),
                "{address}"
            );
            if let Value::Float(f) = value {
                assert!(f.is_finite(), "{o:?}");
            }
        }
    }
}

fn echo(e: &mut Engine, outs: &[Output], now: Duration) {
    for o in outs {
        // As the router does: SETs come back to their writer, PUBLISHes do not.
        for (_, address, value) in o.write.parts().into_iter().filter(|p| p.0) {
            let origin = if o.id.0 % 2 == 0 {
                Origin::Own(o.id)
            } else {
                Origin::Unknown
            };
            e.on_update(address, value, UpdateKind::Param, origin, now);
        }
    }
}

fn drive(set: RuleSet) {
    let mut e = Engine::new(set);
    let subs = e.subscriptions();
    let values = [
        Value::Int(0),
        Value::Float(0.75),
        Value::Int(127),
        Value::Bool(true),
        Value::String("1".into()),
        Value::Float(-1e300),
    ];
    let mut t = Duration::ZERO;
    let step = Duration::from_millis(7);
    let poll = |e: &mut Engine, t: Duration| {
        let outs = e.poll(t, WALL + t.as_micros() as u64);
        check(&outs);
        echo(e, &outs, t);
        // Echoes are not acted on, and nothing else is due at the same time.
        let again = e.poll(t, WALL + t.as_micros() as u64);
        assert!(again.is_empty(), "after echoes: {again:?}");
    };
    for (i, pattern) in subs.iter().take(16).enumerate() {
        let address = pattern.replace("**", "x/y").replace('*', "7");
        for (j, v) in values.iter().enumerate() {
            let kind = if (i + j) % 3 == 0 {
                UpdateKind::Event
            } else {
                UpdateKind::Param
            };
            let origin = if j == 0 {
                Origin::Snapshot
            } else {
                Origin::Other
            };
            e.on_update(&address, v, kind, origin, t);
            poll(&mut e, t);
            t += step;
        }
    }
    // Let timers, delays and ramps run for a while, following the deadlines.
    for _ in 0..200 {
        let Some(d) = e.next_deadline() else { break };
        let next = d
            .max(t)
            .max(t + Duration::from_millis(1))
            .min(t + Duration::from_secs(61));
        t = next;
        poll(&mut e, t);
    }
    let _ = e.stats().prometheus("fuzz");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Toml, Format::Json] {
        match RulesFile::parse(text, format) {
            Ok(set) => drive(set),
            Err(e) => {
                let Some(at) = e.location() else {
                    panic!("no location: {e}");
                };
                assert!(at.line >= 1 && at.column >= 1, "{e}");
                assert!(at.line <= text.split('\n').count(), "{e}");
                let _ = e.to_string();
            }
        }
    }
});
