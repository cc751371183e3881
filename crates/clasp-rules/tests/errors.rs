//! Bad files are refused with the line and column of the problem and a clear message, in
//! TOML and JSON, for syntax and shape errors and for problems found after reading.
#![allow(clippy::unwrap_used, missing_docs)]

use clasp_rules::{Format, Location, RuleSet, RulesError, RulesFile};

fn err(text: &str, format: Format) -> RulesError {
    match RulesFile::parse(text, format) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// (line, column, the whole message) of the error.
fn at(text: &str, format: Format) -> (usize, usize, String) {
    let e = err(text, format);
    let Location { line, column } = e.location().unwrap();
    (line, column, e.to_string())
}

const GOOD_TOML: &str = r#"
[[rule]]
id = "r"
trigger = { type = "change", pattern = "/a/{x}" }
actions = [{ type = "set", address = "/b/{x}", value = 1 }]
"#;

#[test]
fn the_good_file_parses_in_both_formats() {
    assert_eq!(RulesFile::parse(GOOD_TOML, Format::Toml).unwrap().len(), 1);
    let json = r#"{"rules": [{"id": "r", "trigger": {"type": "change", "pattern": "/a/{x}"},
        "actions": [{"type": "set", "address": "/b/{x}", "value": 1}]}]}"#;
    let set = RulesFile::parse(json, Format::Json).unwrap();
    assert_eq!(set.ids().collect::<Vec<_>>(), ["r"]);
    assert!(RulesFile::parse("", Format::Toml).unwrap().is_empty());
}

#[test]
fn toml_syntax_error() {
    let text = "[[rule]]\nid = \"r\"\ntrigger = { type = \"change\", pattern = }\n";
    let (line, col, msg) = at(text, Format::Toml);
    assert_eq!((line, col), (3, 40), "{msg}");
    assert!(msg.starts_with("line 3, column 40: "), "{msg}");
}

#[test]
fn toml_shape_errors_point_at_the_value() {
    // A wrong type.
    let text = "[[rule]]\nid = \"r\"\ncooldown = 5\n";
    let (line, col, msg) = at(text, Format::Toml);
    assert_eq!((line, col), (3, 12), "{msg}");
    assert!(
        msg.contains("invalid type: integer `5`, expected a string"),
        "{msg}"
    );
    // An unknown field.
    let text = GOOD_TOML.replace("id = \"r\"", "id = \"r\"\ncoldown = \"1s\"");
    let (line, col, msg) = at(&text, Format::Toml);
    assert_eq!((line, col), (4, 1), "{msg}");
    assert!(msg.contains("unknown field `coldown`"), "{msg}");
    // A missing field.
    let text = "[[rule]]\nid = \"r\"\ntrigger = { type = \"event\", pattern = \"/e\" }\n";
    let (line, _, msg) = at(text, Format::Toml);
    assert_eq!(line, 1, "{msg}");
    assert!(msg.contains("missing field `actions`"), "{msg}");
}

#[test]
fn toml_unknown_action_type() {
    let text = GOOD_TOML.replace("{ type = \"set\",", "{ type = \"toggle\",");
    let (line, col, msg) = at(&text, Format::Toml);
    // At the tag itself.
    assert_eq!((line, col), (5, 21), "{msg}");
    assert!(msg.contains("unknown variant `toggle`"), "{msg}");
}

#[test]
fn toml_semantic_errors_are_located() {
    // A bad pattern.
    let text = GOOD_TOML.replace("\"/a/{x}\"", "\"/a//{x}\"");
    let e = err(&text, Format::Toml);
    assert_eq!(
        e.location(),
        Some(Location {
            line: 4,
            column: 40
        })
    );
    assert_eq!(
        e.to_string(),
        "line 4, column 40: rule `r`: trigger.pattern: address pattern `/a//{x}`: it has an empty segment"
    );
    // A capture the trigger does not make.
    let text = GOOD_TOML.replace("\"/b/{x}\"", "\"/b/{y}\"");
    let (line, col, msg) = at(&text, Format::Toml);
    assert_eq!((line, col), (5, 38), "{msg}");
    assert!(
        msg.contains("actions[0].address: `/b/{y}` uses `{y}`, but the trigger captures `{x}`"),
        "{msg}"
    );
}

#[test]
fn toml_bad_transform_is_located_in_the_chain() {
    let text = r#"
[[rule]]
id = "scale"
trigger = { type = "change", pattern = "/in" }

[[rule.actions]]
type = "set_from_trigger"
address = "/out"
transform = [
  { type = "clamp", min = 0.0, max = 1.0 },
  { type = "scale", from_min = 1, from_max = 1, to_min = 0, to_max = 1 },
]
"#;
    let (line, col, msg) = at(text, Format::Toml);
    assert_eq!((line, col), (11, 3), "{msg}");
    assert!(
        msg.ends_with("rule `scale`: actions[0].transform[1]: transform `scale`: the input range is empty (from_min = from_max = 1)"),
        "{msg}"
    );
}

#[test]
fn toml_cron_field_out_of_range() {
    let text = r#"
[[rule]]
id = "nightly"
trigger = { type = "schedule", cron = "0 25 * * *" }
actions = [{ type = "publish", address = "/n" }]
"#;
    let (line, col, msg) = at(text, Format::Toml);
    assert_eq!((line, col), (4, 39), "{msg}");
    assert!(
        msg.ends_with("rule `nightly`: trigger.cron: hour: 25 is out of range (0–23)"),
        "{msg}"
    );
}

#[test]
fn toml_other_semantic_errors() {
    let cases: [(&str, &str, &str); 9] = [
        (
            "value = 1 }",
            "value = nan }",
            "actions[0].value: numbers must be finite",
        ),
        ("id = \"r\"", "id = \"r s\"", "rule id `r s`: use letters"),
        (
            "value = 1 }",
            "value = 1 }, { type = \"delay\", for = \"2 s\" }",
            "a delay must be followed",
        ),
        (
            "id = \"r\"",
            "id = \"r\"\ncooldown = \"2x\"",
            "cooldown: `2x`: unknown unit `x`",
        ),
        (
            "{ type = \"change\", pattern = \"/a/{x}\" }",
            "{ type = \"threshold\", address = \"/t\" }",
            "trigger: a threshold needs `above`, `below` or both",
        ),
        (
            "{ type = \"change\", pattern = \"/a/{x}\" }",
            "{ type = \"interval\", every = \"0ms\" }",
            "trigger.every: an interval must be at least 1ms",
        ),
        (
            "{ type = \"set\", address = \"/b/{x}\", value = 1 }",
            "{ type = \"ramp\", address = \"/b/{x}\", to = \"on\", over = \"1s\" }",
            "actions[0].to: a ramp goes to a number",
        ),
        (
            "{ type = \"set\", address = \"/b/{x}\", value = 1 }",
            "{ type = \"bundle\", actions = [{ type = \"delay\", for = \"1s\" }] }",
            "actions[0].actions[0].type: a bundle holds `set`, `publish` and `set_from_trigger` actions, not `delay`",
        ),
        (
            "[[rule]]",
            "[settings]\nmax_chain = 0\n\n[[rule]]",
            "settings.max_chain: `max_chain` must be from 1 to 64 (got 0)",
        ),
    ];
    for (from, to, want) in cases {
        let text = GOOD_TOML.replacen(from, to, 1);
        let e = err(&text, Format::Toml);
        assert!(e.location().is_some(), "{e}");
        assert!(e.to_string().contains(want), "{e}\nwanted: {want}");
    }
}

#[test]
fn duplicate_ids_point_at_the_second() {
    let text = format!("{GOOD_TOML}{GOOD_TOML}");
    let (line, col, msg) = at(&text, Format::Toml);
    assert_eq!((line, col), (8, 6), "{msg}");
    assert!(msg.contains("two rules are called `r`"), "{msg}");
}

#[test]
fn set_from_trigger_needs_a_trigger_value() {
    let text = r#"
[[rule]]
id = "t"
trigger = { type = "interval", every = "1s" }
actions = [{ type = "set_from_trigger", address = "/x" }]
"#;
    let (line, col, msg) = at(text, Format::Toml);
    assert_eq!((line, col), (5, 12), "{msg}");
    assert!(msg.contains("needs a trigger with a value"), "{msg}");
}

const GOOD_JSON: &str = r#"{
  "rule": [
    {
      "id": "r",
      "trigger": {"type": "change", "pattern": "/a/{x}"},
      "actions": [{"type": "set", "address": "/b/{x}", "value": 1}]
    }
  ]
}"#;

#[test]
fn json_syntax_error() {
    let text = GOOD_JSON.replace("\"value\": 1}", "\"value\": }");
    let (line, col, msg) = at(&text, Format::Json);
    assert_eq!((line, col), (6, 65), "{msg}");
    assert!(
        msg.starts_with("line 6, column 65: expected value"),
        "{msg}"
    );
}

#[test]
fn json_shape_error() {
    let text = GOOD_JSON.replace("\"id\": \"r\"", "\"id\": 7");
    let (line, col, msg) = at(&text, Format::Json);
    assert_eq!(line, 4, "{msg}");
    assert_eq!(col, 13, "{msg}");
    assert!(
        msg.contains("invalid type: integer `7`, expected a string"),
        "{msg}"
    );
}

#[test]
fn json_semantic_errors_are_located() {
    let text = GOOD_JSON.replace("\"/a/{x}\"", "\"/a/{x}/**/b\"");
    let e = err(&text, Format::Json);
    assert_eq!(
        e.location(),
        Some(Location {
            line: 5,
            column: 48
        })
    );
    assert!(e.to_string().contains("rule `r`: trigger.pattern: address pattern `/a/{x}/**/b`: `**` may only be the last segment"), "{e}");
    let text = GOOD_JSON.replace(
        "{\"type\": \"set\", \"address\": \"/b/{x}\", \"value\": 1}",
        "{\"type\": \"set\", \"address\": \"/b\", \"value\": 1}, {\"type\": \"ramp\", \"address\": \"/c\", \"to\": 1, \"over\": \"1s\", \"curve\": {\"bezier\": {\"x1\": 2, \"y1\": 0, \"x2\": 0.5, \"y2\": 1}}}",
    );
    let (line, col, msg) = at(&text, Format::Json);
    assert_eq!((line, col), (6, 131), "{msg}");
    assert!(
        msg.contains("actions[1].curve: bezier x1 and x2 must lie in [0, 1]"),
        "{msg}"
    );
}

#[test]
fn errors_without_the_text_name_rule_and_field() {
    let file = RulesFile::read(&GOOD_TOML.replace("/b/{x}", "b"), Format::Toml).unwrap();
    let e = RuleSet::from_file(&file).unwrap_err();
    assert_eq!(e.location(), None);
    assert_eq!(
        e.to_string(),
        "rule `r`: actions[0].address: address pattern `b`: it must start with `/`"
    );
}

#[test]
fn format_from_the_file_name() {
    use std::path::Path;
    assert_eq!(
        Format::from_path(Path::new("/etc/clasp/rules.TOML")),
        Some(Format::Toml)
    );
    assert_eq!(
        Format::from_path(Path::new("rules.json")),
        Some(Format::Json)
    );
    assert_eq!(Format::from_path(Path::new("rules.yaml")), None);
}
