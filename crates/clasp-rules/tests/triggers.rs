//! Every trigger kind, driven by an injected clock.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use clasp_proto::Value;
use clasp_rules::{Origin, UpdateKind};
use common::*;

#[test]
fn change_fires_on_every_change_of_a_matching_param_only() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "copy"
        trigger = { type = "change", pattern = "/in/{ch}/level" }
        actions = [{ type = "set_from_trigger", address = "/out/{ch}" }]
        "#,
    );
    assert_eq!(e.subscriptions(), ["/in/*/level"]);
    set(&mut e, "/in/1/level", 0.5, 0);
    set(&mut e, "/in/2/level", 0.7, 1);
    // The same value again is no change.
    set(&mut e, "/in/2/level", 0.7, 2);
    // Other addresses, and events, do not fire it.
    set(&mut e, "/in/2/other", 0.1, 3);
    publish(&mut e, "/in/3/level", 0.9, 4);
    assert_eq!(
        sets(&poll(&mut e, 5)),
        [
            ("/out/1".to_owned(), Value::Float(0.5)),
            ("/out/2".to_owned(), Value::Float(0.7)),
        ]
    );
    assert_eq!(e.rule_stats("copy").unwrap().firings, 2);
}

#[test]
fn change_with_events_fires_on_events_too() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "any"
        trigger = { type = "change", pattern = "/btn/**", events = true }
        actions = [{ type = "publish", address = "/seen" }]
        "#,
    );
    publish(&mut e, "/btn/a/press", true, 0);
    publish(&mut e, "/btn/a/press", true, 1);
    set(&mut e, "/btn/b", 1, 2);
    assert_eq!(poll(&mut e, 3).len(), 3);
}

#[test]
fn the_snapshot_is_recorded_and_fires_nothing() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "copy"
        trigger = { type = "change", pattern = "/a" }
        actions = [{ type = "set_from_trigger", address = "/b" }]
        "#,
    );
    e.on_update(
        "/a",
        &Value::Int(3),
        UpdateKind::Param,
        Origin::Snapshot,
        ms(0),
    );
    assert!(poll(&mut e, 1).is_empty());
    assert_eq!(e.value("/a"), Some(&Value::Int(3)));
    // The same value from someone else is not a change either.
    set(&mut e, "/a", 3, 2);
    assert!(poll(&mut e, 3).is_empty());
    set(&mut e, "/a", 4, 4);
    assert_eq!(sets(&poll(&mut e, 5)), [("/b".to_owned(), Value::Int(4))]);
}

const THRESHOLD: &str = r#"
[[rule]]
id = "hot"
trigger = { type = "threshold", address = "/temp", above = 30.0, hysteresis = 2.0 }
actions = [{ type = "publish", address = "/alarm", value = "hot" }]

[[rule]]
id = "cold"
trigger = { type = "threshold", address = "/temp", below = 10.0, hysteresis = 1.0 }
actions = [{ type = "publish", address = "/alarm", value = "cold" }]
"#;

fn alarms(e: &mut clasp_rules::Engine, temps: &[f64]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, t) in temps.iter().enumerate() {
        set(e, "/temp", *t, i as u64);
        for (_, _, v) in flat(&poll(e, i as u64)) {
            out.push(format!("{}@{t}", v.as_str().unwrap()));
        }
    }
    out
}

#[test]
fn threshold_above_with_hysteresis() {
    let mut e = engine(THRESHOLD);
    // The first value only tells which side it is on.
    let got = alarms(
        &mut e,
        &[20.0, 31.0, 32.0, 29.0, 31.0, 27.9, 30.5, 30.0, 35.0],
    );
    assert_eq!(got, ["hot@31", "hot@30.5"]);
}

#[test]
fn threshold_below_with_hysteresis() {
    let mut e = engine(THRESHOLD);
    let got = alarms(&mut e, &[20.0, 9.0, 8.0, 10.5, 9.5, 11.1, 9.9]);
    assert_eq!(got, ["cold@9", "cold@9.9"]);
}

#[test]
fn threshold_starting_past_the_line_waits_for_the_way_back() {
    let mut e = engine(THRESHOLD);
    let got = alarms(&mut e, &[35.0, 36.0, 29.0, 27.0, 31.0]);
    assert_eq!(got, ["hot@31"]);
}

#[test]
fn threshold_with_a_non_number_counts_an_error() {
    let mut e = engine(THRESHOLD);
    set(&mut e, "/temp", "warm", 0);
    assert!(poll(&mut e, 1).is_empty());
    let s = e.rule_stats("hot").unwrap();
    assert_eq!(s.errors, 1);
    assert!(s.last_error.as_deref().unwrap().contains("holds a string"));
}

#[test]
fn event_trigger_fires_on_events_not_params() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "scene"
        trigger = { type = "event", pattern = "/scene/{name}/go" }
        actions = [{ type = "set", address = "/scene/current", value = "{name}" },
                   { type = "set", address = "/scene/{name}/active", value = true }]
        "#,
    );
    publish(&mut e, "/scene/night/go", Value::Null, 0);
    set(&mut e, "/scene/day/go", 1, 1);
    assert_eq!(
        sets(&poll(&mut e, 2)),
        [
            // Values are literal: captures fill addresses only.
            ("/scene/current".to_owned(), Value::from("{name}")),
            ("/scene/night/active".to_owned(), Value::Bool(true)),
        ]
    );
}

#[test]
fn interval_fires_every_period_and_skips_missed_ones() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "tick"
        trigger = { type = "interval", every = "100ms" }
        actions = [{ type = "publish", address = "/tick" }]
        "#,
    );
    assert!(e.subscriptions().is_empty());
    // Before the first poll the engine asks for one at once.
    assert_eq!(e.next_deadline(), Some(ms(0)));
    assert!(poll(&mut e, 1000).is_empty());
    assert_eq!(e.next_deadline(), Some(ms(1100)));
    assert!(poll(&mut e, 1099).is_empty());
    assert_eq!(poll(&mut e, 1100).len(), 1);
    assert_eq!(e.next_deadline(), Some(ms(1200)));
    // Polled 3.5 periods late: one firing, and back on the grid.
    assert_eq!(poll(&mut e, 1550).len(), 1);
    assert_eq!(e.next_deadline(), Some(ms(1600)));
    assert_eq!(e.rule_stats("tick").unwrap().firings, 2);
}

/// Minutes from 2024-05-01 00:00 UTC, in ms.
fn minutes(m: u64) -> u64 {
    m * 60_000
}

#[test]
fn schedule_across_minute_and_hour_boundaries() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "half-past"
        trigger = { type = "schedule", cron = "30 * * * *" }
        actions = [{ type = "publish", address = "/chime" }]

        [[rule]]
        id = "every-20"
        trigger = { type = "schedule", cron = "*/20 * * * *" }
        actions = [{ type = "publish", address = "/tick20" }]
        "#,
    );
    let mut fired = Vec::new();
    // Poll every 10 s over two hours (00:00 to 02:00 UTC).
    for s in (0..=7200).step_by(10) {
        for (_, a, _) in flat(&poll(&mut e, s * 1000)) {
            fired.push((a, s / 60));
        }
    }
    let at = |a: &str| -> Vec<u64> {
        fired
            .iter()
            .filter(|(x, _)| x == a)
            .map(|(_, m)| *m)
            .collect()
    };
    // 00:00 is the first poll's minute: only later minutes fire.
    assert_eq!(at("/chime"), [30, 90]);
    assert_eq!(at("/tick20"), [20, 40, 60, 80, 100, 120]);
}

#[test]
fn schedule_deadline_points_at_the_next_minute_and_a_late_poll_fires_once() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "top-of-hour"
        trigger = { type = "schedule", cron = "0 * * * *" }
        actions = [{ type = "publish", address = "/hour" }]
        "#,
    );
    assert_eq!(e.next_deadline(), Some(ms(0)));
    assert!(poll(&mut e, minutes(59) + 30_000).is_empty());
    // 30 s before 01:00.
    assert_eq!(e.next_deadline(), Some(ms(minutes(60))));
    assert_eq!(poll(&mut e, minutes(60)).len(), 1);
    // A host asleep for three hours fires once, then waits for the next hour.
    assert_eq!(poll(&mut e, minutes(240) + 5_000).len(), 1);
    assert!(poll(&mut e, minutes(240) + 10_000).is_empty());
    assert_eq!(poll(&mut e, minutes(300)).len(), 1);
}

#[test]
fn schedule_reads_the_wall_clock_at_the_configured_offset() {
    let mut e = engine(
        r#"
        [settings]
        utc_offset = "+02:00"

        [[rule]]
        id = "morning"
        trigger = { type = "schedule", cron = "0 7 * * wed" }
        actions = [{ type = "publish", address = "/local" }]

        [[rule]]
        id = "morning-utc"
        trigger = { type = "schedule", cron = "0 7 * * *", utc_offset = "Z" }
        actions = [{ type = "publish", address = "/utc" }]
        "#,
    );
    let mut got = Vec::new();
    for m in (0..=8 * 60).step_by(1) {
        for (_, a, _) in flat(&poll(&mut e, minutes(m))) {
            got.push((a, m));
        }
    }
    // 07:00 at +02:00 is 05:00 UTC.
    assert_eq!(
        got,
        [("/local".to_owned(), 5 * 60), ("/utc".to_owned(), 7 * 60)]
    );
}

#[test]
fn schedule_survives_the_wall_clock_going_back() {
    let mut e = engine(
        r#"
        [[rule]]
        id = "m"
        trigger = { type = "schedule", cron = "* * * * *" }
        actions = [{ type = "publish", address = "/m" }]
        "#,
    );
    assert!(poll(&mut e, 0).is_empty());
    assert_eq!(poll(&mut e, 60_000).len(), 1);
    // The wall clock is set back an hour (the monotonic clock goes on).
    let wall = WALL_2024_05_01 - 3_600_000_000;
    assert!(e.poll(ms(61_000), wall).is_empty());
    assert_eq!(e.poll(ms(121_000), wall + 60_000_000).len(), 1);
}
