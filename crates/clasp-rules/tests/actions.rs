//! Every action kind and conditions: sets, publishes, values from the trigger through
//! clasp-mapping transforms, ramps over time, delays, bundles.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use clasp_proto::Value;
use clasp_rules::{BundleItem, Write};
use common::*;

#[test]
fn set_and_publish_in_order_with_captures() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "door"
        trigger = { type = "change", pattern = "/door/{room}/open" }
        actions = [
          { type = "set", address = "/lights/{room}/on", value = true },
          { type = "publish", address = "/log/{room}", value = ["door", 1, 2.5] },
          { type = "publish", address = "/ping" },
        ]
        "#,
    );
    set(&mut e, "/door/kitchen/open", true, 0);
    let outs = poll(&mut e, 1);
    assert_eq!(
        flat(&outs),
        [
            ("set", "/lights/kitchen/on".to_owned(), Value::Bool(true)),
            (
                "publish",
                "/log/kitchen".to_owned(),
                Value::Array(vec!["door".into(), Value::Int(1), Value::Float(2.5)])
            ),
            ("publish", "/ping".to_owned(), Value::Null),
        ]
    );
    assert!(outs.iter().all(|o| &*o.rule == "door"));
    // Every write has its own id.
    assert!(outs[0].id != outs[1].id && outs[1].id != outs[2].id);
}

#[test]
fn set_from_trigger_through_mapping_transforms() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "fader"
        trigger = { type = "change", pattern = "/midi/{dev}/cc/{n}" }
        actions = [{ type = "set_from_trigger", address = "/mixer/{dev}/{n}/gain", transform = [
          { type = "scale", from_min = 0, from_max = 127, to_min = 0.0, to_max = 1.0 },
          { type = "round", decimals = 2 },
        ] }]

        [[rule]]
        id = "clamp-in-place"
        trigger = { type = "change", pattern = "/limit/*" }
        actions = [{ type = "set_from_trigger", transform = [{ type = "clamp", min = 0.0, max = 1.0 }] }]
        "#,
    );
    set(&mut e, "/midi/nano/cc/7", 64, 0);
    set(&mut e, "/limit/x", 3.0, 1);
    assert_eq!(
        sets(&poll(&mut e, 2)),
        [
            ("/mixer/nano/7/gain".to_owned(), Value::Float(0.5)),
            // No address: back to the trigger's own address.
            ("/limit/x".to_owned(), Value::Float(1.0)),
        ]
    );
    // Its own write came back through the engine: a change, but the rule is already in
    // the chain, so it stops there.
    assert_eq!(e.rule_stats("clamp-in-place").unwrap().suppressed_loop, 1);
}

#[test]
fn a_transform_that_gives_no_value_is_an_error_and_a_deadband_drops_quietly() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "sqrt"
        trigger = { type = "change", pattern = "/x" }
        actions = [{ type = "set_from_trigger", address = "/y", transform = [{ type = "expression", expr = "sqrt(x)" }] }]

        [[rule]]
        id = "band"
        trigger = { type = "change", pattern = "/x" }
        actions = [{ type = "set_from_trigger", address = "/z", transform = [{ type = "deadband", threshold = 0.5 }] }]
        "#,
    );
    set(&mut e, "/x", 4.0, 0);
    set(&mut e, "/x", -1.0, 1);
    set(&mut e, "/x", -1.2, 2);
    let got = sets(&poll(&mut e, 3));
    assert_eq!(
        got,
        [
            ("/y".to_owned(), Value::Float(2.0)),
            ("/z".to_owned(), Value::Float(4.0)),
            ("/z".to_owned(), Value::Float(-1.0)),
        ]
    );
    let s = e.rule_stats("sqrt").unwrap();
    assert_eq!((s.firings, s.errors), (3, 2));
    assert!(s.last_error.as_deref().unwrap().contains("`expression`"));
    assert_eq!(e.rule_stats("band").unwrap().errors, 0);
}

#[test]
fn conditions_all_must_hold_and_unknown_addresses_are_false() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "dusk"
        trigger = { type = "change", pattern = "/room/{r}/motion" }
        conditions = [
          { address = "/house/mode", op = "eq", value = "home" },
          { address = "/room/{r}/lux", op = "lt", value = 50 },
        ]
        actions = [{ type = "set", address = "/room/{r}/light", value = 1.0 }]
        "#,
    );
    assert_eq!(
        e.subscriptions(),
        ["/room/*/motion", "/house/mode", "/room/*/lux"]
    );
    set(&mut e, "/room/a/motion", 1, 0);
    assert!(poll(&mut e, 1).is_empty(), "nothing known yet");
    set(&mut e, "/house/mode", "home", 2);
    set(&mut e, "/room/a/lux", 80, 3);
    set(&mut e, "/room/a/motion", 2, 4);
    assert!(poll(&mut e, 5).is_empty(), "too bright");
    set(&mut e, "/room/a/lux", 20.5, 6);
    set(&mut e, "/room/a/motion", 3, 7);
    set(&mut e, "/room/b/motion", 1, 8);
    assert_eq!(
        sets(&poll(&mut e, 9)),
        [("/room/a/light".to_owned(), Value::Float(1.0))]
    );
    let s = e.rule_stats("dusk").unwrap();
    assert_eq!((s.firings, s.conditions_false), (1, 3));
    // A string where a number is compared: an error, no firing.
    set(&mut e, "/room/a/lux", "dark", 10);
    set(&mut e, "/room/a/motion", 4, 11);
    assert!(poll(&mut e, 12).is_empty());
    assert_eq!(e.rule_stats("dusk").unwrap().errors, 1);
}

const FADE: &str = r#"
[[rule]]
id = "fade"
trigger = { type = "event", pattern = "/go" }
actions = [{ type = "ramp", address = "/level", to = 1.0, over = "100ms", step = "25ms" }]
"#;

#[test]
fn ramp_writes_steps_from_the_current_value_and_ends_on_the_target() {
    let mut e = engine(FADE);
    assert_eq!(e.subscriptions(), ["/go", "/level"]);
    set(&mut e, "/level", 0.2, 0);
    publish(&mut e, "/go", Value::Null, 1000);
    assert!(poll(&mut e, 1000).is_empty());
    let mut got = Vec::new();
    while let Some(t) = e.next_deadline() {
        let t = t.as_millis() as u64;
        for (_, v) in sets(&poll(&mut e, t)) {
            got.push((t, f(&v)));
        }
    }
    let want = [(1025, 0.4), (1050, 0.6), (1075, 0.8), (1100, 1.0)];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((t, x), (wt, wx)) in got.iter().zip(want) {
        assert_eq!(*t, wt);
        assert!((x - wx).abs() < 1e-9, "{got:?}");
    }
    assert_eq!(e.value("/level"), Some(&Value::Float(1.0)));
    assert_eq!(e.stats().ramps, 0);
}

#[test]
fn ramp_with_a_curve_integer_target_and_default_rate() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "dim"
        trigger = { type = "event", pattern = "/go" }
        actions = [{ type = "ramp", address = "/dmx/1", from = 0, to = 255, over = "1s", curve = "quad_in" }]
        "#,
    );
    // `from` given: no subscription needed for the target.
    assert_eq!(e.subscriptions(), ["/go"]);
    publish(&mut e, "/go", Value::Null, 0);
    poll(&mut e, 0);
    let mut got = Vec::new();
    for t in (20..=1000).step_by(20) {
        got.extend(sets(&poll(&mut e, t)).into_iter().map(|(_, v)| (t, v)));
    }
    // 50 steps a second by default; whole numbers, never twice the same.
    assert!(got.iter().all(|(_, v)| matches!(v, Value::Int(_))));
    assert!(got.windows(2).all(|w| w[0].1 != w[1].1));
    assert_eq!(got.last(), Some(&(1000, Value::Int(255))));
    // Quadratic in: a quarter of the way at half the time.
    let half = got.iter().find(|(t, _)| *t == 500).unwrap();
    assert_eq!(half.1, Value::Int(64));
}

#[test]
fn a_new_ramp_replaces_the_old_and_a_set_stops_it() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "up"
        trigger = { type = "event", pattern = "/up" }
        actions = [{ type = "ramp", address = "/level", to = 1.0, over = "1s" }]

        [[rule]]
        id = "down"
        trigger = { type = "event", pattern = "/down" }
        actions = [{ type = "ramp", address = "/level", to = 0.0, over = "100ms" }]

        [[rule]]
        id = "off"
        trigger = { type = "event", pattern = "/off" }
        actions = [{ type = "set", address = "/level", value = 0.5 }]
        "#,
    );
    set(&mut e, "/level", 0.0, 0);
    publish(&mut e, "/up", Value::Null, 0);
    poll(&mut e, 0);
    let up = sets(&poll(&mut e, 500));
    assert!((f(&up[0].1) - 0.5).abs() < 1e-9);
    publish(&mut e, "/down", Value::Null, 500);
    poll(&mut e, 500);
    assert_eq!(e.stats().ramps, 1);
    let down = sets(&poll(&mut e, 550));
    assert!(
        (f(&down[0].1) - 0.25).abs() < 1e-9,
        "from 0.5, halfway down"
    );
    let end = sets(&poll(&mut e, 600));
    assert_eq!(end, [("/level".to_owned(), Value::Float(0.0))]);
    // No trace of the first ramp.
    assert!(poll(&mut e, 1000).is_empty());
    // A set stops a running ramp.
    publish(&mut e, "/up", Value::Null, 2000);
    poll(&mut e, 2000);
    publish(&mut e, "/off", Value::Null, 2100);
    assert_eq!(
        sets(&poll(&mut e, 2100)),
        [("/level".to_owned(), Value::Float(0.5))]
    );
    assert_eq!(e.stats().ramps, 0);
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn ramp_without_a_number_to_start_from_sets_at_once_and_counts_an_error() {
    let mut e = engine(FADE);
    publish(&mut e, "/go", Value::Null, 0);
    assert_eq!(
        sets(&poll(&mut e, 0)),
        [("/level".to_owned(), Value::Float(1.0))]
    );
    assert_eq!(e.rule_stats("fade").unwrap().errors, 1);
}

#[test]
fn delay_runs_the_following_actions_later_and_a_new_firing_restarts_it() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "motion"
        trigger = { type = "event", pattern = "/room/{r}/motion" }
        actions = [
          { type = "set", address = "/room/{r}/light", value = 1 },
          { type = "delay", for = "5s" },
          { type = "set", address = "/room/{r}/light", value = 0 },
          { type = "publish", address = "/room/{r}/idle" },
        ]
        "#,
    );
    publish(&mut e, "/room/a/motion", true, 0);
    assert_eq!(
        sets(&poll(&mut e, 0)),
        [("/room/a/light".to_owned(), Value::Int(1))]
    );
    assert_eq!(e.next_deadline(), Some(ms(5000)));
    // Motion again at 3 s: the light stays on until 8 s.
    publish(&mut e, "/room/a/motion", true, 3000);
    publish(&mut e, "/room/b/motion", true, 4000);
    assert_eq!(poll(&mut e, 4000).len(), 2);
    assert!(poll(&mut e, 5000).is_empty());
    assert_eq!(e.stats().delays, 2);
    assert_eq!(
        flat(&poll(&mut e, 8000)),
        [
            ("set", "/room/a/light".to_owned(), Value::Int(0)),
            ("publish", "/room/a/idle".to_owned(), Value::Null),
        ]
    );
    assert_eq!(e.next_deadline(), Some(ms(9000)));
    assert_eq!(flat(&poll(&mut e, 9500)).len(), 2);
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn bundle_is_one_output_applied_together() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "scene"
        trigger = { type = "change", pattern = "/scene/{n}" }
        actions = [{ type = "bundle", actions = [
          { type = "set", address = "/a", value = 1 },
          { type = "set_from_trigger", address = "/b/{n}" },
          { type = "publish", address = "/scene-changed", value = "x" },
        ] }]
        "#,
    );
    set(&mut e, "/scene/3", 0.5, 0);
    let outs = poll(&mut e, 0);
    assert_eq!(outs.len(), 1);
    assert!(is_bundle(&outs[0]));
    let Write::Bundle(items) = &outs[0].write else {
        unreachable!()
    };
    assert_eq!(
        items,
        &[
            BundleItem::Set {
                address: "/a".into(),
                value: Value::Int(1)
            },
            BundleItem::Set {
                address: "/b/3".into(),
                value: Value::Float(0.5)
            },
            BundleItem::Publish {
                address: "/scene-changed".into(),
                value: "x".into()
            },
        ]
    );
}

#[test]
fn a_bundle_with_a_failing_item_is_not_sent() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "scene"
        trigger = { type = "change", pattern = "/x" }
        actions = [{ type = "bundle", actions = [
          { type = "set", address = "/a", value = 1 },
          { type = "set_from_trigger", address = "/b", transform = [{ type = "expression", expr = "ln(x)" }] },
        ] }]
        "#,
    );
    set(&mut e, "/x", -5.0, 0);
    assert!(poll(&mut e, 0).is_empty());
    let s = e.rule_stats("scene").unwrap();
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .starts_with("bundle not sent")
    );
}
