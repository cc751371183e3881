#![allow(clippy::unwrap_used)]
//! Tests of the subscription index against the brute-force matcher `Pattern::matches`.

use std::collections::{HashMap, HashSet};

use clasp_proto::pattern::Pattern;
use clasp_router_core::index::SubscriptionIndex;
use proptest::prelude::*;

fn pat(s: &str) -> Pattern {
    Pattern::compile(s).unwrap()
}

/// The index's matches for `address`, checked for duplicates, as a set.
fn index_set<K: Copy + Eq + std::hash::Hash + std::fmt::Debug>(
    index: &SubscriptionIndex<K>,
    address: &str,
) -> HashSet<K> {
    let found = index.matches(address);
    let set: HashSet<K> = found.iter().copied().collect();
    assert_eq!(
        set.len(),
        found.len(),
        "duplicates for {address:?}: {found:?}"
    );
    set
}

/// The keys of `model` whose pattern matches `address`.
fn brute_set<K: Copy + Eq + std::hash::Hash>(
    model: &HashMap<K, Pattern>,
    address: &str,
) -> HashSet<K> {
    model
        .iter()
        .filter(|(_, p)| p.matches(address))
        .map(|(k, _)| *k)
        .collect()
}

/// Segments patterns are built from: literals, `*`, `**`, globs, escapes, plain `?`/`[`. (Valid
/// patterns have no empty segment except a trailing one.)
const PATTERN_SEGMENTS: &[&str] = &[
    "a", "b", "ab", "*", "**", "**", "a*", "*b", "?b", "[ab]", "[!a]", "a**", "?", "\\*", "a?",
    "***",
];

/// Segments addresses are built from.
const ADDRESS_SEGMENTS: &[&str] = &["a", "b", "ab", "ba", "", "c", "*", "?", "aab", "bb", "[ab]"];

fn pattern_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("/".to_owned()),
        20 => (
            prop::collection::vec(prop::sample::select(PATTERN_SEGMENTS), 1..=5),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(segs, trailing)| {
                let slash = if trailing { "/" } else { "" };
                format!("/{}{slash}", segs.join("/"))
            }),
    ]
}

fn address_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["/", "/", "/", "", "//"][..]),
        prop::collection::vec(prop::sample::select(ADDRESS_SEGMENTS), 0..=6),
    )
        .prop_map(|(prefix, segs)| format!("{prefix}{}", segs.join("/")))
}

/// Addresses likely to match `pattern`: the text itself and wildcard-substituted variants.
fn derived_addresses(pattern: &str) -> Vec<String> {
    let mut out = vec![pattern.to_owned()];
    for (multi, star) in [("a", "a"), ("", "b"), ("a/b/ab", ""), ("b/", "ab")] {
        let s = pattern
            .replace("**", multi)
            .replace('*', star)
            .replace("?b", "ab")
            .replace("[ab]", "b")
            .replace("[!a]", "c")
            .replace('?', "a")
            .replace('\\', "");
        out.push(s.clone());
        out.push(format!("{s}/"));
        out.push(format!("{s}/a"));
        out.push(s.trim_start_matches('/').to_owned());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2500))]

    #[test]
    fn index_agrees_with_brute_force(
        inserts in prop::collection::vec((0u8..40, pattern_text()), 0..40),
        removals in prop::collection::vec(0u8..48, 0..20),
        addresses in prop::collection::vec(address_text(), 1..30),
    ) {
        let mut index = SubscriptionIndex::new();
        let mut model: HashMap<u8, Pattern> = HashMap::new();
        for (key, text) in &inserts {
            let p = Pattern::compile(text);
            prop_assert!(p.is_ok(), "{:?}: {:?}", text, p);
            let p = p.unwrap();
            index.insert(*key, p.clone());
            model.insert(*key, p);
        }
        for key in &removals {
            prop_assert_eq!(index.remove(*key), model.remove(key).is_some());
        }
        prop_assert_eq!(index.len(), model.len());
        prop_assert_eq!(index.is_empty(), model.is_empty());
        for (key, p) in &model {
            prop_assert_eq!(index.get(*key), Some(p));
        }

        let mut all: Vec<String> = addresses;
        all.extend(["/", "", "//", "a", "/a", "/a/"].map(String::from));
        for (_, text) in &inserts {
            all.extend(derived_addresses(text));
        }
        for address in &all {
            prop_assert_eq!(
                index_set(&index, address),
                brute_set(&model, address),
                "address {:?}, patterns {:?}", address, model
            );
        }

        for key in model.keys() {
            prop_assert!(index.remove(*key));
        }
        prop_assert!(index.is_empty());
        prop_assert_eq!(index.node_count(), 0);
    }
}

#[test]
fn replace_remove_len() {
    let mut index = SubscriptionIndex::new();
    assert!(index.is_empty() && index.is_empty());
    assert!(!index.remove(1u32));
    assert!(index.matches("/a").is_empty());

    index.insert(1, pat("/a/b"));
    index.insert(2, pat("/a/*"));
    index.insert(3, pat("/a/b"));
    assert_eq!(index.len(), 3);
    assert!(!index.is_empty());
    assert_eq!(index_set(&index, "/a/b"), HashSet::from([1, 2, 3]));

    // Replacing moves key 1 from the exact map into the trie and key 2 the other way.
    index.insert(1, pat("/x/**"));
    index.insert(2, pat("/x/y"));
    assert_eq!(index.len(), 3);
    assert_eq!(index.get(1).map(Pattern::as_str), Some("/x/**"));
    assert_eq!(index_set(&index, "/a/b"), HashSet::from([3]));
    assert_eq!(index_set(&index, "/x/y"), HashSet::from([1, 2]));
    assert_eq!(index_set(&index, "/x/z/w"), HashSet::from([1]));

    // Replacing with the same pattern keeps a single entry.
    index.insert(1, pat("/x/**"));
    assert_eq!(index.matches("/x/y/z"), vec![1]);

    assert!(!index.remove(4));
    assert!(index.remove(1));
    assert!(!index.remove(1));
    assert_eq!(index.get(1), None);
    assert!(index.matches("/x/z/w").is_empty());
    assert!(index.remove(2) && index.remove(3));
    assert!(index.is_empty());
    assert_eq!(index.node_count(), 0);

    // Debug and Default.
    let mut other: SubscriptionIndex<u32> = SubscriptionIndex::default();
    other.insert(7, pat("/d/*"));
    assert!(format!("{other:?}").contains("/d/*"));
}

#[test]
fn all_literal_glob_patterns_match_their_one_address() {
    let mut index = SubscriptionIndex::new();
    index.insert(1u8, pat("/a/\\*"));
    index.insert(2, pat("/a/*"));
    index.insert(3, pat("/a/[*]"));
    assert_eq!(index_set(&index, "/a/*"), HashSet::from([1, 2, 3]));
    assert_eq!(index_set(&index, "/a/b"), HashSet::from([2]));
    assert!(index.remove(1));
    assert_eq!(index_set(&index, "/a/*"), HashSet::from([2, 3]));
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pattern(&mut self) -> String {
        const SEGS: &[&str] = &[
            "a", "b", "c", "*", "**", "a*", "?b", "[ab]", "zone1", "x*y", "fixture",
        ];
        let n = 1 + self.below(6);
        let mut s = String::new();
        for _ in 0..n {
            s.push('/');
            s.push_str(SEGS[self.below(SEGS.len())]);
            if self.below(4) == 0 {
                s.push_str(&self.below(10).to_string());
            }
        }
        if self.below(8) == 0 {
            s.push('/');
        }
        s
    }
}

#[test]
fn ten_thousand_inserts_and_removes_leave_nothing_behind() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut index = SubscriptionIndex::new();
    let mut model = HashMap::new();
    for key in 0..10_000u32 {
        let p = pat(&rng.pattern());
        index.insert(key, p.clone());
        model.insert(key, p);
    }
    // Some replacements on the way.
    for _ in 0..1_000 {
        let key = rng.below(10_000) as u32;
        let p = pat(&rng.pattern());
        index.insert(key, p.clone());
        model.insert(key, p);
    }
    assert_eq!(index.len(), 10_000);
    assert!(index.node_count() > 0);
    for _ in 0..200 {
        let address = rng.pattern().replace('*', "a").replace('?', "b");
        assert_eq!(index_set(&index, &address), brute_set(&model, &address));
    }

    let mut keys: Vec<u32> = (0..10_000).collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i + 1));
    }
    for (n, key) in keys.iter().enumerate() {
        assert!(index.remove(*key));
        model.remove(key);
        if n % 2_500 == 0 {
            let address = rng.pattern().replace('*', "c");
            assert_eq!(index_set(&index, &address), brute_set(&model, &address));
        }
    }
    assert!(index.is_empty());
    assert_eq!(index.len(), 0);
    assert_eq!(index.node_count(), 0);
}

#[test]
fn lighting_rig() {
    let patterns = [
        "/lights/zone50/fixture5/brightness",
        "/lights/zone50/*/brightness",
        "/lights/**",
        "/lights/zone5*/fixture*/brightness",
        "/**",
        "/zone*/x",
    ];
    let mut index = SubscriptionIndex::new();
    let mut model = HashMap::new();
    for (key, text) in patterns.iter().enumerate() {
        index.insert(key, pat(text));
        model.insert(key, pat(text));
    }
    let mut counts = [0usize; 6];
    for zone in 0..100 {
        for fixture in 0..10 {
            let address = format!("/lights/zone{zone}/fixture{fixture}/brightness");
            let found = index_set(&index, &address);
            assert_eq!(found, brute_set(&model, &address), "{address}");
            for key in found {
                counts[key] += 1;
            }
        }
    }
    assert_eq!(counts, [1, 10, 1000, 110, 1000, 0]);
    assert_eq!(index_set(&index, "/zone7/x"), HashSet::from([4, 5]));
    assert_eq!(index_set(&index, "/lights"), HashSet::from([4]));
    assert_eq!(index_set(&index, "/lights/"), HashSet::from([2, 4]));
    assert!(
        index
            .matches("lights/zone50/fixture5/brightness")
            .is_empty()
    );
}

#[test]
fn many_multi_segment_wildcards_against_a_long_address() {
    let mut index = SubscriptionIndex::new();
    let mut model = HashMap::new();
    for i in 0..50usize {
        let text = match i % 5 {
            0 => format!("/**/a/**/a/**/a/**/b{}", i % 7),
            1 => "/**/a/**/a/**/a/**/a/**".to_owned(),
            2 => format!("/a/**/*/**/a*/**/?/**/z{i}"),
            3 => format!("/**/a/**/[ab]/**/a/**/**/a/**/b{}/**", i % 3),
            _ => format!("/**/a/**/b/**/a/**/a/**/c{i}"),
        };
        index.insert(i, pat(&text));
        model.insert(i, pat(&text));
    }
    for tail in ["a", "b0", "b1", "z2", "c4"] {
        let mut address = "/a".repeat(499);
        address.push('/');
        address.push_str(tail);
        assert_eq!(index_set(&index, &address), brute_set(&model, &address));
    }
    let address = "/a".repeat(500);
    let found = index_set(&index, &address);
    assert_eq!(found, brute_set(&model, &address));
    assert!(!found.is_empty());
}

#[test]
fn index_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SubscriptionIndex<(u32, u32)>>();
}
