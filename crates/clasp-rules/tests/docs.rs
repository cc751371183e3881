//! The examples of `docs/rules.md` and of the crate documentation parse, and say what the
//! text around them says.
#![allow(clippy::unwrap_used, missing_docs)]

use clasp_rules::{Format, RulesFile};

/// The fenced blocks of `lang` in `text`.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").unwrap();
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

#[test]
fn the_examples_of_docs_rules_md_parse() {
    let doc = include_str!("../../../docs/rules.md");
    let toml = blocks(doc, "toml");
    assert_eq!(toml.len(), 1);
    let set = RulesFile::parse(toml[0], Format::Toml).unwrap();
    assert_eq!(
        set.ids().collect::<Vec<_>>(),
        [
            "hall-motion",
            "faders",
            "scene-night",
            "wake-up",
            "heartbeat",
            "too-hot"
        ]
    );
    assert_eq!(
        set.subscriptions(),
        [
            "/room/hall/motion",
            "/house/mode",
            "/room/hall/lux",
            "/lights/hall/level",
            "/midi/*/cc/*",
            "/scene/night",
        ]
    );
    let json = blocks(doc, "json");
    assert_eq!(json.len(), 1);
    assert_eq!(RulesFile::parse(json[0], Format::Json).unwrap().len(), 1);
}

#[test]
fn the_crate_documentation_example_parses() {
    let lib = include_str!("../src/lib.rs");
    let doc: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let toml = blocks(&doc, "toml");
    assert_eq!(toml.len(), 1);
    let set = RulesFile::parse(toml[0], Format::Toml).unwrap();
    assert_eq!(set.ids().collect::<Vec<_>>(), ["hall-lights-on-motion"]);
}
