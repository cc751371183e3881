//! The engine as a whole: loops stopped and counted, echoes of its own writes, cooldowns,
//! hot reload, counters.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use clasp_proto::Value;
use clasp_rules::{Engine, Format, Origin, RulesFile, UpdateKind, Write};
use common::*;

const PING_PONG: &str = r#"
[[rule]]
id = "a-to-b"
trigger = { type = "change", pattern = "/a" }
actions = [{ type = "set_from_trigger", address = "/b", transform = [{ type = "expression", expr = "x + 1" }] }]

[[rule]]
id = "b-to-a"
trigger = { type = "change", pattern = "/b" }
actions = [{ type = "set_from_trigger", address = "/a", transform = [{ type = "expression", expr = "x + 1" }] }]
"#;

/// Gives every SET back to the engine as the router would, with `origin` made from it.
fn echo_all(
    e: &mut Engine,
    outs: &[clasp_rules::Output],
    t: u64,
    origin: impl Fn(clasp_rules::WriteId) -> Origin,
) {
    for o in outs {
        for (param, address, value) in o.write.parts() {
            if param {
                e.on_update(address, value, UpdateKind::Param, origin(o.id), ms(t));
            }
        }
    }
}

#[test]
fn a_sets_b_sets_a_stops_and_is_counted() {
    let mut e = engine(PING_PONG);
    set(&mut e, "/a", 1.0, 0);
    let outs = poll(&mut e, 0);
    assert_eq!(
        sets(&outs),
        [
            ("/b".to_owned(), Value::Float(2.0)),
            ("/a".to_owned(), Value::Float(3.0)),
        ]
    );
    assert_eq!(e.rule_stats("a-to-b").unwrap().suppressed_loop, 1);
    assert_eq!(e.rule_stats("b-to-a").unwrap().suppressed_loop, 0);
    // The router's echoes of both writes, recognised by id or by value: nothing more.
    echo_all(&mut e, &outs, 1, Origin::Own);
    assert!(poll(&mut e, 1).is_empty());
    set(&mut e, "/a", 10.0, 2);
    let outs = poll(&mut e, 2);
    assert_eq!(outs.len(), 2);
    echo_all(&mut e, &outs, 3, |_| Origin::Unknown);
    assert!(poll(&mut e, 3).is_empty());
    let stats = e.stats();
    assert_eq!(stats.echoes, 4);
    assert_eq!(stats.awaiting_echo, 0);
    assert_eq!(e.rule_stats("a-to-b").unwrap().suppressed_loop, 2);
    assert_eq!(e.rule_stats("a-to-b").unwrap().firings, 2);
}

#[test]
fn echoes_mistaken_for_outside_writes_change_nothing_when_the_value_is_held() {
    let mut e = engine(PING_PONG);
    set(&mut e, "/a", 1.0, 0);
    let outs = poll(&mut e, 0);
    // A host that says every echo is someone else's: /b = 2 and /a = 3 are what the engine
    // already holds, so they are no change.
    echo_all(&mut e, &outs, 1, |_| Origin::Other);
    assert!(poll(&mut e, 1).is_empty());
}

#[test]
fn an_event_like_one_the_engine_published_is_not_taken_for_an_echo() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "relay"
        trigger = { type = "event", pattern = "/in" }
        actions = [{ type = "publish", address = "/out", value = 1 }]

        [[rule]]
        id = "count"
        trigger = { type = "event", pattern = "/out" }
        actions = [{ type = "publish", address = "/counted" }]
        "#,
    );
    publish(&mut e, "/in", Value::Null, 0);
    assert_eq!(poll(&mut e, 0).len(), 2);
    // Someone else publishes the same event: the router never echoes a PUBLISH to its
    // sender, so this is not the engine's own.
    e.on_update(
        "/out",
        &Value::Int(1),
        UpdateKind::Event,
        Origin::Unknown,
        ms(1),
    );
    assert_eq!(
        flat(&poll(&mut e, 1)),
        [("publish", "/counted".to_owned(), Value::Null)]
    );
}

#[test]
fn chains_through_published_events_stop_too() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "ping"
        trigger = { type = "event", pattern = "/ping" }
        actions = [{ type = "publish", address = "/pong" }]

        [[rule]]
        id = "pong"
        trigger = { type = "event", pattern = "/pong" }
        actions = [{ type = "publish", address = "/ping" }]
        "#,
    );
    publish(&mut e, "/ping", Value::Null, 0);
    assert_eq!(
        flat(&poll(&mut e, 0)),
        [
            ("publish", "/pong".to_owned(), Value::Null),
            ("publish", "/ping".to_owned(), Value::Null),
        ]
    );
    assert_eq!(e.rule_stats("ping").unwrap().suppressed_loop, 1);
}

#[test]
fn the_chain_is_carried_through_delays_and_ramps() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "slow-a"
        trigger = { type = "change", pattern = "/a" }
        actions = [{ type = "delay", for = "1s" }, { type = "ramp", address = "/b", from = 0.0, to = 1.0, over = "40ms" }]

        [[rule]]
        id = "b-back"
        trigger = { type = "change", pattern = "/b" }
        actions = [{ type = "set_from_trigger", address = "/a" }]
        "#,
    );
    set(&mut e, "/a", 5, 0);
    let mut writes = 0;
    for t in (0..2000).step_by(10) {
        writes += poll(&mut e, t).len();
    }
    // Two ramp steps, each copied back to /a once; /a never restarts the ramp.
    assert_eq!(writes, 4);
    assert_eq!(e.rule_stats("slow-a").unwrap().firings, 1);
    assert_eq!(e.rule_stats("slow-a").unwrap().suppressed_loop, 2);
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn long_chains_stop_at_max_chain() {
    let mut text = String::from("[settings]\nmax_chain = 3\n");
    for i in 0..6 {
        text.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\ntrigger = {{ type = \"change\", pattern = \"/n/{i}\" }}\nactions = [{{ type = \"set_from_trigger\", address = \"/n/{}\" }}]\n",
            i + 1
        ));
    }
    let mut e = engine(&text);
    set(&mut e, "/n/0", 1, 0);
    let got: Vec<String> = sets(&poll(&mut e, 0)).into_iter().map(|(a, _)| a).collect();
    assert_eq!(got, ["/n/1", "/n/2", "/n/3"]);
    assert_eq!(e.rule_stats("r3").unwrap().suppressed_loop, 1);
}

#[test]
fn cooldown_suppresses_and_counts_per_trigger_address() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "bell"
        cooldown = "2s"
        trigger = { type = "event", pattern = "/door/{d}/bell" }
        actions = [{ type = "publish", address = "/chime/{d}" }]
        "#,
    );
    for t in [0, 500, 1999, 2000, 2500] {
        publish(&mut e, "/door/front/bell", Value::Null, t);
        if t == 500 {
            publish(&mut e, "/door/back/bell", Value::Null, 600);
        }
    }
    let got: Vec<String> = flat(&poll(&mut e, 3000))
        .into_iter()
        .map(|(_, a, _)| a)
        .collect();
    assert_eq!(got, ["/chime/front", "/chime/back", "/chime/front"]);
    let s = e.rule_stats("bell").unwrap();
    assert_eq!((s.firings, s.suppressed_cooldown), (3, 3));
}

#[test]
fn interval_with_cooldown_and_condition() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "heartbeat"
        cooldown = "250ms"
        trigger = { type = "interval", every = "100ms" }
        conditions = [{ address = "/enabled", op = "eq", value = true }]
        actions = [{ type = "publish", address = "/beat" }]
        "#,
    );
    poll(&mut e, 0);
    e.on_update(
        "/enabled",
        &Value::Bool(true),
        UpdateKind::Param,
        Origin::Snapshot,
        ms(0),
    );
    let mut beats = Vec::new();
    for t in (0..=1000).step_by(100) {
        if !poll(&mut e, t).is_empty() {
            beats.push(t);
        }
    }
    assert_eq!(beats, [100, 400, 700, 1000]);
}

#[test]
fn own_echo_of_an_older_write_does_not_hide_a_newer_one() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "go"
        trigger = { type = "event", pattern = "/go" }
        actions = [{ type = "set", address = "/x", value = 1 }, { type = "set", address = "/x", value = 2 }]
        "#,
    );
    publish(&mut e, "/go", Value::Null, 0);
    let outs = poll(&mut e, 0);
    assert_eq!(e.value("/x"), Some(&Value::Int(2)));
    e.on_update(
        "/x",
        &Value::Int(1),
        UpdateKind::Param,
        Origin::Own(outs[0].id),
        ms(1),
    );
    assert_eq!(e.value("/x"), Some(&Value::Int(2)));
    // Someone else wrote /x between: the router ends with our 2, and so does the engine.
    set(&mut e, "/x", 7, 2);
    e.on_update(
        "/x",
        &Value::Int(2),
        UpdateKind::Param,
        Origin::Own(outs[1].id),
        ms(3),
    );
    assert_eq!(e.value("/x"), Some(&Value::Int(2)));
    // An echo unmatched after 10 s is someone else's write.
    publish(&mut e, "/go", Value::Null, 100);
    poll(&mut e, 100);
    poll(&mut e, 20_000);
    assert_eq!(e.stats().awaiting_echo, 0);
}

#[test]
fn hot_reload_keeps_state_of_unchanged_rules_and_drops_removed_ones() {
    let v1 = r#"
        [[rule]]
        id = "keep"
        cooldown = "10s"
        trigger = { type = "event", pattern = "/k" }
        actions = [{ type = "publish", address = "/k-out" }, { type = "delay", for = "1s" }, { type = "publish", address = "/k-later" }]

        [[rule]]
        id = "gone"
        trigger = { type = "event", pattern = "/g" }
        actions = [{ type = "ramp", address = "/g-level", from = 0.0, to = 1.0, over = "1s" },
                   { type = "delay", for = "1s" }, { type = "publish", address = "/g-later" }]

        [[rule]]
        id = "changed"
        trigger = { type = "threshold", address = "/t", above = 1.0 }
        actions = [{ type = "publish", address = "/c" }, { type = "delay", for = "1s" }, { type = "publish", address = "/c-later" }]
        "#;
    let mut e = engine(v1);
    publish(&mut e, "/k", Value::Null, 0);
    publish(&mut e, "/g", Value::Null, 0);
    set(&mut e, "/t", 0.0, 0);
    set(&mut e, "/t", 2.0, 0);
    assert_eq!(poll(&mut e, 0).len(), 2);
    assert_eq!(e.stats().ramps, 1);
    assert_eq!(e.stats().delays, 3);

    let v2 = v1
        .replace(
            "[[rule]]\n        id = \"gone\"",
            "[[rule]]\n        id = \"new\"",
        )
        .replace("/c-later", "/c-after");
    e.replace(RulesFile::parse(&v2, Format::Toml).unwrap());
    let s = e.stats();
    // "gone" took its ramp and delay along; "changed" lost its delay; "new" has no state.
    assert_eq!((s.ramps, s.delays), (0, 1));
    assert_eq!(
        s.rules.iter().map(|(id, _)| &**id).collect::<Vec<_>>(),
        ["keep", "new", "changed"]
    );
    assert_eq!(e.rule_stats("keep").unwrap().firings, 1);
    assert_eq!(e.rule_stats("new").unwrap().firings, 0);
    assert_eq!(e.rule_stats("changed").unwrap().firings, 1);
    let later: Vec<String> = flat(&poll(&mut e, 1000))
        .into_iter()
        .map(|(_, a, _)| a)
        .collect();
    assert_eq!(later, ["/k-later"]);
    // The cooldown carried over.
    publish(&mut e, "/k", Value::Null, 2000);
    assert!(poll(&mut e, 2000).is_empty());
    assert_eq!(e.rule_stats("keep").unwrap().suppressed_cooldown, 1);
    // Same trigger: the threshold state carried over, /t is still past 1.0 and does not
    // fire again before it goes back under.
    set(&mut e, "/t", 3.0, 2001);
    assert!(poll(&mut e, 2001).is_empty());
}

#[test]
fn stats_render_for_metrics() {
    let mut e = engine(PING_PONG);
    set(&mut e, "/a", 1.0, 0);
    poll(&mut e, 0);
    let text = e.stats().prometheus("clasp_rules");
    assert!(text.contains("clasp_rules_updates_total 1\n"), "{text}");
    assert!(text.contains("clasp_rules_outputs_total 2\n"));
    assert!(text.contains("clasp_rules_rule_firings_total{rule=\"a-to-b\"} 1\n"));
    assert!(text.contains("clasp_rules_rule_suppressed_loop_total{rule=\"a-to-b\"} 1\n"));
    assert!(text.contains("# TYPE clasp_rules_rule_errors_total counter\n"));
}

#[test]
fn disabled_rules_do_nothing_and_need_no_subscription() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "off"
        enabled = false
        trigger = { type = "change", pattern = "/a" }
        actions = [{ type = "set", address = "/b", value = 1 }]
        "#,
    );
    assert!(e.subscriptions().is_empty());
    set(&mut e, "/a", 1, 0);
    assert!(poll(&mut e, 0).is_empty());
    assert!(matches!(
        RulesFile::parse("[[rule]]\nid = \"x\"\ntrigger = { type = \"event\", pattern = \"/e\" }\nactions = [{ type = \"set\", address = \"/s\", value = 1 }]", Format::Toml)
            .map(Engine::new)
            .map(|mut e| { e.on_update("/e", &Value::Null, UpdateKind::Event, Origin::Other, ms(0)); e.poll(ms(0), 0) })
            .unwrap()[0]
            .write,
        Write::Set { .. }
    ));
}

#[test]
fn times_near_the_end_of_the_clock_do_not_overflow() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "all"
        trigger = { type = "event", pattern = "/go" }
        actions = [{ type = "ramp", address = "/r", from = 0.0, to = 1.0, over = "1h" },
                   { type = "delay", for = "8000h" }, { type = "publish", address = "/p" }]

        [[rule]]
        id = "tick"
        trigger = { type = "interval", every = "1h" }
        actions = [{ type = "publish", address = "/t" }]

        [[rule]]
        id = "cron"
        trigger = { type = "schedule", cron = "* * * * *" }
        actions = [{ type = "publish", address = "/c" }]
        "#,
    );
    let end = std::time::Duration::MAX - std::time::Duration::from_secs(10);
    e.on_update("/go", &Value::Null, UpdateKind::Event, Origin::Other, end);
    e.poll(end, u64::MAX);
    assert!(e.next_deadline().is_some());
    e.poll(std::time::Duration::MAX, u64::MAX);
}
