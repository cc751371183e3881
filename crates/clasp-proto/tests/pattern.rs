//! Tests of address validation and the router's pattern matcher, including property tests
//! against an independent regex-based model of the pattern semantics.
#![allow(clippy::unwrap_used)]

use clasp_proto::address::{AddressError, validate_address};
use clasp_proto::pattern::{self, Pattern, PatternError, PatternSegment};
use proptest::prelude::*;
#[path = "common/pattern_model.rs"]
mod pattern_model;
use pattern_model::model;

fn m(pattern: &str, address: &str) -> bool {
    Pattern::compile(pattern)
        .unwrap_or_else(|e| panic!("{pattern:?} should compile: {e}"))
        .matches(address)
}

#[test]
fn router_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("/a/**", "/a", false),
        ("/a/**", "/a/", true),
        ("/a/**", "/a/b", true),
        ("/a/**", "/a/b/c", true),
        ("/a/*", "/a/", true),
        ("/a/*", "/a/b", true),
        ("/a/*", "/a", false),
        ("/a/*", "/a/b/c", false),
        ("/a/**/z", "/a/z", true),
        ("/a/**/z", "/a/b/z", true),
        ("/a/**/z", "/a/b/c/z", true),
        ("/a/**/z", "/a/b/c", false),
        ("/**/z", "/z", true),
        ("/**/z", "/a/b/z", true),
        ("/**", "/a/b/c", true),
        ("/**", "/a", true),
        ("/**", "/test/nested", true),
        ("/**", "/", true),
        ("/**", "a", false),
        ("/**", "", false),
        (
            "/lights/zone5*/fixture*/brightness",
            "/lights/zone50/fixture1/brightness",
            true,
        ),
        (
            "/lights/zone5*/fixture*/brightness",
            "/lights/zone5/fixture1/brightness",
            true,
        ),
        (
            "/lights/zone5*/fixture*/brightness",
            "/lights/zone6/fixture1/brightness",
            false,
        ),
        ("/zone5*", "/zone5", true),
        ("/zone5*", "/zone50", true),
        ("/a/b.c/*", "/a/bxc/d", false),
        ("/a/b.c/*", "/a/b.c/d", true),
        ("/prefix/**", "/prefix/a", true),
        ("/prefix/**", "/prefix/a/b/c", true),
        ("/a/*/c/**", "/a/b/c/d/e", true),
        ("/a/*/c/**", "/a/b/c", false),
        ("/test/**", "/test", false),
        ("/a/?", "/a/?", true),
        ("/a/?", "/a/b", false),
        ("/a/?/*", "/a/b/c", true),
        ("/a/?/*", "/a/bb/c", false),
        ("/a**", "/abc", true),
        ("/a**", "/a/b", false),
        ("/a/**b", "/a/xb", true),
        ("/a/**b", "/a/x/b", false),
        ("/a/[bc]/*", "/a/c/x", true),
        ("/a/[!bc]/*", "/a/c/x", false),
        ("/a/[^bc]/*", "/a/d/x", true),
        ("/a/\\*/*", "/a/*/x", true),
        ("/a/\\*/*", "/a/b/x", false),
        ("/A/*", "/a/b", false),
        ("/a/b/", "/a/b/", true),
        ("/a/b/", "/a/b", false),
        ("/", "/", true),
        ("/", "/a", false),
    ];
    for &(pattern, address, expected) in cases {
        assert_eq!(m(pattern, address), expected, "{pattern:?} vs {address:?}");
        assert_eq!(pattern::matches(pattern, address), Ok(expected));
    }
}

#[test]
fn compile_errors() {
    assert!(matches!(
        Pattern::compile("/x/{a,b}/*"),
        Err(PatternError::Braces { .. })
    ));
    let e = Pattern::compile("foo").unwrap_err();
    assert!(matches!(
        e,
        PatternError::InvalidAddress(AddressError::MissingLeadingSlash { .. })
    ));
    assert!(e.to_string().contains("address must start with '/'"), "{e}");
    assert!(e.to_string().starts_with("invalid address: "), "{e}");
    let e = Pattern::compile("/a//b").unwrap_err();
    assert!(matches!(
        e,
        PatternError::InvalidAddress(AddressError::EmptySegment { position: 3, .. })
    ));
    assert!(
        e.to_string().contains("empty segment in address: /a//b"),
        "{e}"
    );
    assert!(matches!(
        Pattern::compile(""),
        Err(PatternError::InvalidAddress(AddressError::Empty))
    ));
    assert!(Pattern::compile("/a/b/").is_ok());
    for bad in ["/a/[b*", "/a/*\\", "/a/*{", "/a}/*"] {
        let e = Pattern::compile(bad).unwrap_err();
        assert!(e.to_string().starts_with("invalid pattern: "), "{e}");
    }
    assert_eq!(validate_address("/a b/ü"), Ok(()));
}

#[test]
fn exactness_and_accessors() {
    let p = Pattern::compile("/a/?").unwrap();
    assert!(p.is_exact());
    assert_eq!(p.as_str(), "/a/?");
    assert_eq!(p.to_string(), "/a/?");
    let g = Pattern::compile("/a/?/*").unwrap();
    assert!(!g.is_exact());
    assert!(matches!(
        g.segments(),
        [
            PatternSegment::Literal(_),
            PatternSegment::Glob(_),
            PatternSegment::AnySegment
        ]
    ));
}

fn lights() -> Vec<String> {
    let mut out = Vec::with_capacity(1000);
    for zone in 0..100 {
        for fixture in 0..10 {
            out.push(format!("/lights/zone{zone}/fixture{fixture}/brightness"));
        }
    }
    out
}

#[test]
fn thousand_addresses() {
    let addrs = lights();
    let count = |p: &str| {
        let p = Pattern::compile(p).unwrap();
        addrs.iter().filter(|a| p.matches(a)).count()
    };
    assert_eq!(count("/lights/zone50/fixture5/brightness"), 1);
    assert_eq!(count("/lights/zone50/*/brightness"), 10);
    assert_eq!(count("/lights/**"), 1000);
    assert_eq!(count("/lights/zone5*/fixture*/brightness"), 110);
}

#[test]
fn pathological_inputs_are_polynomial() {
    // Segment level: 200 segments, `**` between near-miss globs, vs a 1000-segment address
    // that almost matches everywhere but fails at the very end.
    let mut pat = String::new();
    for i in 0..200 {
        pat.push_str(if i % 2 == 0 { "/**" } else { "/*a*a*a*" });
    }
    pat.push_str("/b*");
    let pat = Pattern::compile(&pat).unwrap();
    let addr = "/aaaaaaaaaaaaaaaaaaaa".repeat(1000);
    assert!(!pat.matches(&addr));
    assert!(pat.matches(&format!("{addr}/bb")));

    // Character level: many stars in one segment vs a long segment.
    let seg_pat = format!("/{}b/**", "*a".repeat(2000));
    let seg_pat = Pattern::compile(&seg_pat).unwrap();
    let long = format!("/{}", "a".repeat(20_000));
    assert!(!seg_pat.matches(&format!("{long}/x")));
    assert!(seg_pat.matches(&format!("{long}b/x")));

    // Both at once: every segment a near miss.
    let pat = format!("/{}z", "**/*a*a*a*a*/".repeat(60));
    let pat = Pattern::compile(&pat).unwrap();
    let addr = format!("/{}", "a".repeat(50)).repeat(1000);
    assert!(!pat.matches(&addr));
}

/// A second, naive reference over `Pattern::segments()`, to check that they are faithful.
fn segments_model(pats: &[PatternSegment], segs: &[&str]) -> bool {
    match pats.split_first() {
        None => segs.is_empty(),
        Some((PatternSegment::MultiSegment, rest)) => {
            (0..=segs.len()).any(|k| segments_model(rest, &segs[k..]))
        }
        Some((p, rest)) => {
            let Some((first, tail)) = segs.split_first() else {
                return false;
            };
            let one = match p {
                PatternSegment::Literal(l) => l == first,
                PatternSegment::AnySegment => true,
                PatternSegment::Glob(g) => g.matches(first),
                PatternSegment::MultiSegment => unreachable!(),
            };
            one && segments_model(rest, tail)
        }
    }
}

fn pattern_strategy() -> impl Strategy<Value = String> {
    let atom = prop::sample::select(vec![
        "a", "b", "a", "b", "*", "*", "?", "[ab]", "[!a]", "[^b]", "[a-b]", "\\*", "\\", "é", "**",
        ".", "{",
    ]);
    let glob_segment = prop::collection::vec(atom, 1..4).prop_map(|v| v.concat());
    let segment = prop_oneof![
        6 => glob_segment,
        2 => Just("**".to_string()),
        1 => Just(String::new()),
    ];
    (
        prop::collection::vec(segment, 1..6),
        prop::bool::weighted(0.97),
    )
        .prop_map(|(segs, slash)| {
            let body = segs.join("/");
            if slash { format!("/{body}") } else { body }
        })
}

fn address_strategy() -> impl Strategy<Value = String> {
    let ch = prop::sample::select(vec!['a', 'b', 'a', 'b', '*', '?', '[', ']', '\\', 'é', '.']);
    let segment = prop::collection::vec(ch, 0..4).prop_map(|v| v.into_iter().collect::<String>());
    (
        prop::collection::vec(segment, 1..8),
        prop::bool::weighted(0.95),
    )
        .prop_map(|(segs, slash)| {
            let body = segs.join("/");
            if slash { format!("/{body}") } else { body }
        })
}

fn check_against_models(p: &str, addrs: &[String]) -> Result<(), TestCaseError> {
    let compiled = Pattern::compile(p);
    let Some(re) = model(p) else {
        prop_assert!(compiled.is_err(), "{p:?} should not compile");
        return Ok(());
    };
    let pat = match compiled {
        Ok(pat) => pat,
        Err(e) => return Err(TestCaseError::fail(format!("{p:?} should compile: {e}"))),
    };
    prop_assert_eq!(pat.is_exact(), !p.contains('*'));
    for a in addrs {
        let got = pat.matches(a);
        prop_assert_eq!(
            got,
            re.is_match(a),
            "pattern {:?} address {:?} regex {}",
            p,
            a,
            re
        );
        let by_segments = a.strip_prefix('/').is_some_and(|rest| {
            segments_model(pat.segments(), &rest.split('/').collect::<Vec<_>>())
        });
        prop_assert_eq!(got, by_segments, "segments() of {:?} vs {:?}", p, a);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn agrees_with_regex_model(
        p in pattern_strategy(),
        random in prop::collection::vec(address_strategy(), 4),
    ) {
        let mut addrs = random;
        // Addresses derived from the pattern itself make matches likely.
        addrs.push(p.clone());
        addrs.push(p.replace("**", "a/b"));
        addrs.push(p.replace("**", "").replace('*', "ab"));
        addrs.push(p.replace(['*', '?', '\\'], "a").replace("[ab]", "b").replace("[!a]", "b"));
        addrs.push(format!("{p}/a"));
        check_against_models(&p, &addrs)?;
    }

    #[test]
    fn compile_never_panics(p in "\\PC{0,40}|[/a*?\\[\\]!^\\\\{}-]{0,40}") {
        let _ = Pattern::compile(&p);
    }

    #[test]
    fn matches_never_panics(
        p in "/[/a*?\\[\\]!^\\\\é-]{0,30}",
        a in "\\PC{0,40}|[/a*?é]{0,40}",
    ) {
        if let Ok(pat) = Pattern::compile(&p) {
            let _ = pat.matches(&a);
        }
    }

    #[test]
    fn exact_patterns_are_string_equality(p in "/[a-c?\\[\\]\\\\{}/]{0,12}", a in "/[a-c?\\[\\]\\\\{}/]{0,12}") {
        if let Ok(pat) = Pattern::compile(&p) {
            prop_assert!(pat.is_exact());
            prop_assert_eq!(pat.matches(&a), a == p);
            prop_assert!(pat.matches(&p));
        }
    }
}

#[test]
fn model_sanity() {
    // The regex model encodes the normative table too.
    let re = |p: &str| model(p).unwrap();
    assert!(!re("/a/**").is_match("/a"));
    assert!(re("/a/**").is_match("/a/"));
    assert!(re("/**/z").is_match("/z"));
    assert!(re("/**").is_match("/"));
    assert!(!re("/a/*").is_match("/a/b/c"));
}

/// Small patterns over a tiny alphabet, so that inclusions and matches are frequent.
fn small_pattern() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "a", "b", "a", "*", "*", "**", "**", "a*", "*b", "?", "[ab]", "",
    ]);
    prop::collection::vec(segment, 1..5).prop_map(|v| format!("/{}", v.join("/")))
}

fn small_address() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec!["a", "b", "ab", "ba", "", "c"]);
    prop::collection::vec(segment, 1..6).prop_map(|v| format!("/{}", v.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Soundness of pattern inclusion: when `p` is reported inside `s`, every address `p`
    /// matches is matched by `s`. Every pattern is inside itself and inside `/**`.
    #[test]
    fn subset_is_sound(
        p in small_pattern(),
        s in small_pattern(),
        addrs in prop::collection::vec(small_address(), 40),
    ) {
        let (Ok(pp), Ok(ss)) = (Pattern::compile(&p), Pattern::compile(&s)) else {
            return Ok(());
        };
        prop_assert!(pp.is_subset_of(&pp), "{} not inside itself", p);
        prop_assert!(pp.is_subset_of(&Pattern::compile("/**").unwrap()), "{} not inside /**", p);
        if pp.is_subset_of(&ss) {
            for a in addrs.iter().filter(|a| pp.matches(a)) {
                prop_assert!(ss.matches(a), "{} reported inside {} but {} matches only the first", p, s, a);
            }
        }
    }
}

#[test]
fn subset_cases() {
    let inside = |p: &str, s: &str| {
        Pattern::compile(p)
            .unwrap()
            .is_subset_of(&Pattern::compile(s).unwrap())
    };
    // Scope widening through `**` is refused.
    assert!(!inside("/a/**", "/a/*"));
    assert!(!inside("/**", "/a/**"));
    assert!(!inside("/a/*", "/a/b"));
    assert!(!inside("/a/b/c", "/a/*"));
    assert!(!inside("/a/x*", "/a/y*"));
    // What a scope does cover.
    assert!(inside("/a/b", "/a/*"));
    assert!(inside("/a/*", "/a/**"));
    assert!(inside("/a/**", "/a/**"));
    assert!(inside("/a/b/**", "/a/**"));
    assert!(inside("/a/*/c", "/a/**"));
    assert!(inside("/a/**/c", "/a/**"));
    assert!(inside("/zone*/x", "/**"));
    assert!(inside("/zone1/x", "/zone*/x"));
    assert!(inside("/lights/zone*/level", "/lights/*/level"));
    assert!(inside("/a/b", "/a/b"));
    // An exact pattern is a literal: `?` in it is just a character.
    assert!(inside("/a?", "/a*"));
    assert!(!inside("/a*", "/a?"));
}
