//! Properties: the parser never panics, whatever the text; engines built from generated
//! files never panic and stop; cron expressions round-trip through their normal form and
//! their next firings move forward, match, and skip no matching minute.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use clasp_proto::Value;
use clasp_rules::cron::Cron;
use clasp_rules::{Engine, Format, Origin, RulesFile, UpdateKind};
use proptest::prelude::*;

/// Pieces of rules files, to get past the syntax more often than random text does.
const PIECES: &[&str] = &[
    "[[rule]]\n",
    "id = \"r\"\n",
    "id = \"s\"\n",
    "cooldown = \"1s\"\n",
    "trigger = { type = \"change\", pattern = \"/a/{x}\" }\n",
    "trigger = { type = \"threshold\", address = \"/t\", above = 0.5, hysteresis = 0.1 }\n",
    "trigger = { type = \"event\", pattern = \"/**\" }\n",
    "trigger = { type = \"interval\", every = \"10ms\" }\n",
    "trigger = { type = \"schedule\", cron = \"*/5 * * * *\" }\n",
    "conditions = [{ address = \"/a/{x}\", op = \"gt\", value = 1 }]\n",
    "actions = [{ type = \"set\", address = \"/b/{x}\", value = 1 }]\n",
    "actions = [{ type = \"set_from_trigger\", address = \"/a/b\", transform = [{ type = \"expression\", expr = \"x + 1\" }] }]\n",
    "actions = [{ type = \"ramp\", address = \"/t\", to = 1, over = \"50ms\" }, { type = \"delay\", for = \"5ms\" }, { type = \"publish\", address = \"/a/c\" }]\n",
    "actions = [{ type = \"bundle\", actions = [{ type = \"set\", address = \"/t\", value = 0.7 }] }]\n",
    "[settings]\nmax_chain = 4\n",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "=",
    ",",
    "\n",
    "type",
    "rule",
    "/",
    "{x}",
    "1e999",
    "-",
    "é",
];

fn pieces() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..24).prop_map(|v| v.concat())
}

const TRIGGERS: &[&str] = &[
    "{ type = \"change\", pattern = \"/a/{x}\" }",
    "{ type = \"change\", pattern = \"/a/*\", events = true }",
    "{ type = \"threshold\", address = \"/t\", above = 0.5, hysteresis = 0.1 }",
    "{ type = \"threshold\", address = \"/a/{x}\", below = 0.5 }",
    "{ type = \"event\", pattern = \"/**\" }",
    "{ type = \"interval\", every = \"7ms\" }",
    "{ type = \"schedule\", cron = \"* * * * *\" }",
];

const ACTIONS: &[&str] = &[
    "{ type = \"set\", address = \"/a/b\", value = 1 }",
    "{ type = \"set\", address = \"/t\", value = 0.9 }",
    "{ type = \"publish\", address = \"/e\", value = \"x\" }",
    "{ type = \"set_from_trigger\", address = \"/a/c\", transform = [{ type = \"expression\", expr = \"x + 1\" }] }",
    "{ type = \"set_from_trigger\", transform = [{ type = \"smooth\", factor = 0.5 }] }",
    "{ type = \"ramp\", address = \"/t\", to = 1, over = \"30ms\", step = \"5ms\" }",
    "{ type = \"ramp\", address = \"/a/b\", from = 0.0, to = 0.2, over = \"15ms\" }",
    "{ type = \"delay\", for = \"4ms\" }",
    "{ type = \"bundle\", actions = [{ type = \"set\", address = \"/t\", value = 0.1 }, { type = \"publish\", address = \"/a/z\" }] }",
];

/// Well-formed files of up to six rules whose triggers and actions feed each other.
fn rule_files() -> impl Strategy<Value = String> {
    let rule = (
        0..TRIGGERS.len(),
        prop::collection::vec(0..ACTIONS.len(), 1..5),
        any::<bool>(),
        any::<bool>(),
    );
    prop::collection::vec(rule, 1..7).prop_map(|rules| {
        let mut text = String::new();
        for (i, (t, actions, cooldown, condition)) in rules.into_iter().enumerate() {
            text.push_str(&format!(
                "[[rule]]\nid = \"r{i}\"\ntrigger = {}\n",
                TRIGGERS[t]
            ));
            if cooldown {
                text.push_str("cooldown = \"5ms\"\n");
            }
            if condition {
                text.push_str("conditions = [{ address = \"/t\", op = \"lt\", value = 0.95 }]\n");
            }
            let mut list: Vec<&str> = actions.iter().map(|a| ACTIONS[*a]).collect();
            if list.last() == Some(&ACTIONS[7]) {
                list.push(ACTIONS[2]);
            }
            text.push_str(&format!("actions = [{}]\n\n", list.join(", ")));
        }
        text
    })
}

fn drive(set: clasp_rules::RuleSet) {
    let mut e = Engine::new(set);
    let subs = e.subscriptions();
    let values = [
        Value::Int(0),
        Value::Float(0.9),
        Value::Bool(true),
        Value::from("x"),
    ];
    let mut t = 0u64;
    for (i, pattern) in subs.iter().enumerate() {
        let address = pattern.replace("**", "q/r").replace('*', "7");
        for (j, v) in values.iter().enumerate() {
            t += 3;
            let kind = if (i + j) % 2 == 0 {
                UpdateKind::Param
            } else {
                UpdateKind::Event
            };
            e.on_update(&address, v, kind, Origin::Unknown, Duration::from_millis(t));
            let outs = e.poll(Duration::from_millis(t), t * 1000);
            assert!(outs.len() <= 64 * 256, "{}", outs.len());
        }
    }
    // Timers run out or stay periodic; the engine never asks for a time in the past twice.
    for _ in 0..50 {
        let Some(d) = e.next_deadline() else { break };
        let now = d.max(Duration::from_millis(t));
        t = now.as_millis() as u64 + 1;
        e.poll(Duration::from_millis(t), t * 1000);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = RulesFile::parse(&text, Format::Toml);
        let _ = RulesFile::parse(&text, Format::Json);
    }

    #[test]
    fn well_formed_files_drive_engines_that_stop(text in rule_files()) {
        let parsed = RulesFile::parse(&text, Format::Toml);
        // Only set_from_trigger under a timer is refused.
        if let Err(e) = &parsed {
            prop_assert!(e.to_string().contains("needs a trigger with a value"), "{}\n{}", e, text);
        }
        if let Ok(set) = parsed {
            drive(set);
        }
    }

    #[test]
    fn generated_files_never_panic_and_engines_stop(text in pieces()) {
        if let Ok(set) = RulesFile::parse(&text, Format::Toml) {
            drive(set);
        }
        if let Err(e) = RulesFile::parse(&text, Format::Toml) {
            // Every error has a location inside the text.
            let at = e.location().unwrap();
            prop_assert!(at.line >= 1 && at.line <= text.lines().count().max(1) + 1, "{e}");
        }
    }
}

fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        (lo..=hi).prop_map(|v| v.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1..=hi.max(1)).prop_map(|n| format!("*/{n}")),
        (lo..=hi, lo..=hi, 1..=hi.max(1)).prop_map(|(a, b, n)| format!(
            "{}-{}/{n}",
            a.min(b),
            a.max(b)
        )),
        prop::collection::vec(lo..=hi, 1..4)
            .prop_map(|v| { v.iter().map(u32::to_string).collect::<Vec<_>>().join(",") }),
    ]
}

fn cron_text() -> impl Strategy<Value = String> {
    (
        field(0, 59),
        field(0, 23),
        field(1, 31),
        field(1, 12),
        field(0, 7),
    )
        .prop_map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cron_round_trips_through_its_normal_form(text in cron_text()) {
        if let Ok(c) = Cron::parse(&text) {
            let normal = c.to_string();
            prop_assert_eq!(Cron::parse(&normal), Ok(c), "{} → {}", text, normal);
            prop_assert_eq!(Cron::parse(&normal).unwrap().to_string(), normal);
        }
    }

    #[test]
    fn cron_next_firing_moves_forward_matches_and_skips_nothing(
        text in cron_text(),
        start in 0i64..(200 * 365 * 1440),
    ) {
        let Ok(c) = Cron::parse(&text) else { return Ok(()) };
        let mut t = start;
        for _ in 0..5 {
            let Some(next) = c.next_after(t) else { break };
            prop_assert!(next > t);
            prop_assert!(c.matches(next));
            // No matching minute in between (checked over the first two days of the gap).
            for m in (t + 1)..next.min(t + 2 * 1440) {
                prop_assert!(!c.matches(m), "{} matches {} before {}", text, m, next);
            }
            t = next;
        }
    }

    #[test]
    fn cron_parse_never_panics(text in "[0-9*/,a-z@ -]{0,40}") {
        let _ = Cron::parse(&text);
    }
}
