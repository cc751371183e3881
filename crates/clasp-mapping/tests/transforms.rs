//! Transforms and curves one by one, and the inverses feedback relies on.
#![allow(clippy::unwrap_used, missing_docs)]

use clasp_mapping::curve::CurveType;
use clasp_mapping::transform::{StepState, Transform};
use clasp_proto::Value;
use proptest::prelude::*;

fn run(t: Transform, v: Value) -> Option<Value> {
    t.prepare().unwrap().apply(v, &mut StepState::default())
}

fn f(t: Transform, x: f64) -> f64 {
    run(t, Value::Float(x)).unwrap().as_f64().unwrap()
}

#[test]
fn numeric_steps() {
    let scale = Transform::Scale {
        from_min: 0.0,
        from_max: 127.0,
        to_min: -1.0,
        to_max: 1.0,
        clamp: true,
    };
    assert_eq!(f(scale.clone(), 127.0), 1.0);
    assert_eq!(f(scale, 500.0), 1.0, "clamped");
    assert_eq!(f(Transform::Invert { min: 0.0, max: 1.0 }, 0.25), 0.75);
    assert_eq!(f(Transform::Quantize { steps: 4.0 }, 0.3), 0.25);
    assert_eq!(f(Transform::DeadZone { threshold: 0.1 }, 0.05), 0.0);
    assert_eq!(f(Transform::Round { decimals: 2 }, 0.12345), 0.12);
    assert_eq!(f(Transform::Power { exponent: 2.0 }, 3.0), 9.0);
    assert_eq!(f(Transform::Log { base: Some(10.0) }, 100.0), 2.0);
    assert_eq!(f(Transform::Modulo { divisor: 3.0 }, 7.0), 1.0);
    assert_eq!(
        f(
            Transform::Expression {
                expr: "sin(value * PI / 2) + x".into()
            },
            1.0
        ),
        2.0
    );
    // The reference truncated: 0.7 stays 0.7 as a float, and rounds to 1 as an int.
    assert_eq!(
        run(Transform::ToFloat, Value::Float(0.7)),
        Some(Value::Float(0.7))
    );
    assert_eq!(
        run(Transform::ToInt, Value::Float(0.7)),
        Some(Value::Int(1))
    );
    // Non-numbers pass numeric steps unchanged.
    let s = Value::String("go".into());
    assert_eq!(run(Transform::Negate, s.clone()), Some(s));
}

#[test]
fn lookups_thresholds_and_types() {
    let lookup: Transform = toml::from_str(
        r#"type = "lookup"
table = { "0" = "off", "1" = "on" }
default = "?""#,
    )
    .unwrap();
    assert_eq!(
        run(lookup.clone(), Value::Int(1)),
        Some(Value::String("on".into()))
    );
    assert_eq!(
        run(lookup.clone(), Value::Float(0.0)),
        Some(Value::String("off".into()))
    );
    assert_eq!(
        run(lookup.clone(), Value::Int(7)),
        Some(Value::String("?".into()))
    );
    let back = lookup.inverse().unwrap();
    assert_eq!(
        run(back, Value::String("on".into())),
        Some(Value::String("1".into()))
    );
    let t: Transform =
        toml::from_str("type = \"threshold\"\nvalue = 0.5\nmode = \"below\"").unwrap();
    assert_eq!(f(t, 0.2), 1.0);
    let to_bool: Transform = toml::from_str("type = \"map_type\"\nto_type = \"bool\"").unwrap();
    assert_eq!(
        run(to_bool.clone(), Value::String("TRUE".into())),
        Some(Value::Bool(true))
    );
    assert_eq!(run(to_bool, Value::Int(0)), Some(Value::Bool(false)));
    let to_int: Transform = toml::from_str("type = \"map_type\"\nto_type = \"int\"").unwrap();
    assert_eq!(
        run(to_int, Value::String(" 42 ".into())),
        Some(Value::Int(42))
    );
}

#[test]
fn fourteen_bit_halves() {
    let msb: Transform = toml::from_str("type = \"split14\"\npart = \"msb\"").unwrap();
    let lsb: Transform = toml::from_str("type = \"split14\"\npart = \"lsb\"").unwrap();
    assert_eq!(run(msb.clone(), Value::Int(16383)), Some(Value::Int(127)));
    assert_eq!(run(lsb.clone(), Value::Int(0x2001)), Some(Value::Int(1)));
    assert_eq!(
        run(msb.inverse().unwrap(), Value::Int(64)),
        Some(Value::Float(8192.0))
    );
    assert!(lsb.inverse().is_err());
}

#[test]
fn sixteen_bit_bytes_for_dmx_fine_channels() {
    let coarse: Transform = toml::from_str("type = \"split16\"\npart = \"coarse\"").unwrap();
    let fine: Transform = toml::from_str("type = \"split16\"\npart = \"fine\"").unwrap();
    assert_eq!(
        run(coarse.clone(), Value::Int(0x1234)),
        Some(Value::Int(0x12))
    );
    assert_eq!(
        run(fine.clone(), Value::Int(0x1234)),
        Some(Value::Int(0x34))
    );
    assert_eq!(
        run(coarse.clone(), Value::Float(70000.0)),
        Some(Value::Int(255))
    );
    assert_eq!(run(fine.clone(), Value::Float(-3.0)), Some(Value::Int(0)));
    assert_eq!(
        run(coarse.inverse().unwrap(), Value::Int(2)),
        Some(Value::Float(512.0))
    );
    assert!(fine.inverse().is_err());
}

#[test]
fn stateful_steps() {
    let smooth = Transform::Smooth { factor: 0.5 }.prepare().unwrap();
    let mut st = StepState::default();
    let mut step = |x| {
        smooth
            .apply(Value::Float(x), &mut st)
            .unwrap()
            .as_f64()
            .unwrap()
    };
    assert_eq!((step(0.0), step(1.0), step(1.0)), (0.0, 0.5, 0.75));
    let limit = Transform::RateLimit { max_delta: 0.1 }.prepare().unwrap();
    let mut st = StepState::default();
    let mut step = |x| {
        limit
            .apply(Value::Float(x), &mut st)
            .unwrap()
            .as_f64()
            .unwrap()
    };
    assert_eq!(step(0.0), 0.0);
    assert!((step(1.0) - 0.1).abs() < 1e-12);
}

#[test]
fn bad_numbers_never_leave_a_chain() {
    // ln(0) and 1/0 are not finite: the update is dropped, not sent as NaN.
    let e = Transform::Expression {
        expr: "1 / x".into(),
    };
    assert_eq!(run(e, Value::Float(0.0)), None);
}

#[test]
fn curves_hit_their_ends_and_monotonic_ones_invert() {
    let all = [
        CurveType::Linear,
        CurveType::EaseIn,
        CurveType::EaseOut,
        CurveType::EaseInOut,
        CurveType::CubicIn,
        CurveType::CubicOut,
        CurveType::CubicInOut,
        CurveType::ExpoIn,
        CurveType::ExpoOut,
        CurveType::ExpoInOut,
        CurveType::SineIn,
        CurveType::SineOut,
        CurveType::SineInOut,
        CurveType::CircIn,
        CurveType::CircOut,
        CurveType::CircInOut,
        CurveType::ElasticIn,
        CurveType::ElasticOut,
        CurveType::BounceOut,
        CurveType::BackIn,
        CurveType::BackOut,
        CurveType::Bezier {
            x1: 0.25,
            y1: 0.1,
            x2: 0.25,
            y2: 1.0,
        },
    ];
    for c in all {
        assert!(c.apply(0.0).abs() < 1e-3, "{c:?} at 0");
        assert!((c.apply(1.0) - 1.0).abs() < 1e-3, "{c:?} at 1");
        if c.monotonic() {
            for i in 0..=20 {
                let x = f64::from(i) / 20.0;
                let back = c.invert(c.apply(x));
                assert!((c.apply(back) - c.apply(x)).abs() < 1e-6, "{c:?} at {x}");
            }
        } else {
            assert!(Transform::Curve { curve_type: c }.inverse().is_err());
        }
    }
    let bad = CurveType::Bezier {
        x1: 2.0,
        y1: 0.0,
        x2: 0.5,
        y2: 1.0,
    };
    assert!(Transform::Curve { curve_type: bad }.prepare().is_err());
}

proptest! {
    #[test]
    fn scale_then_its_inverse_gives_the_input_back(
        a in -1e6f64..1e6, b in -1e6f64..1e6, c in -1e6f64..1e6, d in -1e6f64..1e6, x in -1e6f64..1e6,
    ) {
        prop_assume!((a - b).abs() > 1e-3 && (c - d).abs() > 1e-3);
        let t = Transform::Scale { from_min: a, from_max: b, to_min: c, to_max: d, clamp: false };
        let y = f(t.clone(), x);
        let back = f(t.inverse().unwrap(), y);
        prop_assert!((back - x).abs() <= 1e-6 * (1.0 + x.abs()) * (1.0 + (b - a).abs() / (d - c).abs()));
    }

    #[test]
    fn expressions_never_panic(text in "[x0-9a-z+*/^(). -]{0,40}", x in proptest::num::f64::ANY) {
        if let Ok(step) = (Transform::Expression { expr: text }).prepare() {
            let _ = step.apply(Value::Float(x), &mut StepState::default());
        }
    }

    #[test]
    fn curves_stay_finite(x in proptest::num::f64::ANY) {
        for c in [CurveType::ExpoInOut, CurveType::ElasticOut, CurveType::BounceOut, CurveType::CircInOut] {
            prop_assert!(c.apply(x).is_finite());
        }
    }
}
