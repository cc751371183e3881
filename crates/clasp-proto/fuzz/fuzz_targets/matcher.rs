//! The pattern compiler and matcher.
//! * Arbitrary strings: compiling and matching never panic; exact patterns are string equality.
//! * Patterns and addresses built from glob tokens: the matcher agrees with the independent
//!   regex model shared with the property tests.
//! * Pattern inclusion is sound: when one pattern is reported inside another, every address
//!   the first matches is matched by the second.
#![no_main]

use clasp_proto::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/pattern_model.rs"]
mod pattern_model;

const PATTERN_TOKENS: &[&str] = &[
    "/", "/", "a", "b", "ab", "*", "**", "/**", "/*", "?", "[ab]", "[!a]", "[a-b]", "\\*", "é", "{",
];
const ADDRESS_TOKENS: &[&str] = &["/", "/", "a", "b", "ab", "é", "*", "?", "//"];

fn build(tokens: &[&str], bytes: &[u8]) -> String {
    // At most 100 tokens keeps patterns under the 256-segment limit.
    bytes.iter().take(100).map(|b| tokens[*b as usize % tokens.len()]).collect()
}

fuzz_target!(|input: (String, String, Vec<u8>, Vec<Vec<u8>>, Vec<u8>)| {
    let (raw_pattern, raw_address, pattern_bytes, addresses, scope_bytes) = input;

    if let Ok(p) = Pattern::compile(&raw_pattern) {
        let m = p.matches(&raw_address);
        if p.is_exact() {
            assert_eq!(m, raw_pattern == raw_address);
        }
    }

    let pattern = build(PATTERN_TOKENS, &pattern_bytes);
    let compiled = Pattern::compile(&pattern);
    let model = pattern_model::model(&pattern);
    assert_eq!(compiled.is_ok(), model.is_some(), "compile disagrees on {pattern:?}");
    let (Ok(compiled), Some(model)) = (compiled, model) else {
        return;
    };
    let scope = Pattern::compile(&build(PATTERN_TOKENS, &scope_bytes)).ok();
    let inside = scope.as_ref().is_some_and(|s| compiled.is_subset_of(s));
    assert!(compiled.is_subset_of(&compiled), "{pattern:?} not inside itself");
    for a in addresses.iter().take(8) {
        let address = build(ADDRESS_TOKENS, a);
        let m = compiled.matches(&address);
        assert_eq!(m, model.is_match(&address), "{pattern:?} vs {address:?}");
        if inside && m {
            let s = scope.as_ref().map(Pattern::as_str).unwrap_or_default();
            assert!(
                scope.as_ref().is_some_and(|s| s.matches(&address)),
                "{pattern:?} reported inside {s:?}, but {address:?} matches only the first"
            );
        }
    }
});
