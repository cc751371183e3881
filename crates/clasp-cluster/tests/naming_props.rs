//! Property tests of the address ↔ NATS name mapping: one to one, only characters JetStream
//! keys and NATS subjects accept, one token per segment; and of the pattern filters: a
//! filter covers every address its pattern matches, and an exact one nothing more.
#![allow(clippy::unwrap_used, missing_docs)]

use clasp_cluster::interest::{interest, nats_matches};
use clasp_cluster::naming::{decode_tokens, encode_tokens};
use clasp_proto::pattern::Pattern;
use proptest::prelude::*;

/// Any valid address: segments of any characters but `/`, only the last one may be empty.
fn address() -> impl Strategy<Value = String> {
    (prop::collection::vec("[^/]{1,8}", 0..5), prop::bool::ANY).prop_map(|(segs, trailing)| {
        let mut a = format!("/{}", segs.join("/"));
        if trailing && !segs.is_empty() {
            a.push('/');
        }
        a
    })
}

/// Addresses from a small alphabet, so patterns built from it often match.
fn small_address() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "x1", "x", "a.b", "é"]),
        1..5,
    )
    .prop_map(|s| format!("/{}", s.join("/")))
}

fn small_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "x1", "*", "**", "x*", "?", "a.b", "[ab]"]),
        1..5,
    )
    .prop_map(|s| format!("/{}", s.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn names_round_trip(a in address()) {
        let name = encode_tokens(&a).unwrap();
        prop_assert_eq!(decode_tokens(&name).unwrap(), a.clone());
        prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b)), "{}", name);
        prop_assert!(!name.starts_with('.') && !name.ends_with('.'));
        prop_assert_eq!(name.split('.').count(), a[1..].split('/').count());
    }

    #[test]
    fn every_name_that_decodes_is_the_name_of_its_address(n in "[A-Za-z0-9=./_-]{0,12}|(=[0-9A-Fa-f/.]{1,2}){1,4}") {
        // One key per address: a key written any other way (an escaped plain byte, an
        // escaped `/`) is not ours.
        if let Ok(a) = decode_tokens(&n) {
            prop_assert_eq!(encode_tokens(&a).unwrap(), n);
        }
    }

    #[test]
    fn different_addresses_different_names(a in address(), b in address()) {
        prop_assume!(a != b);
        prop_assert_ne!(encode_tokens(&a).unwrap(), encode_tokens(&b).unwrap());
    }

    #[test]
    fn filters_cover_their_patterns(p in small_pattern(), a in small_address()) {
        let Ok(pattern) = Pattern::compile(&p) else { return Ok(()) };
        let i = interest(&pattern).unwrap();
        let subject = encode_tokens(&a).unwrap();
        let on_nats = nats_matches(&i.filter, &subject);
        if pattern.matches(&a) {
            prop_assert!(on_nats, "{} matches {} but filter {} misses {}", p, a, i.filter, subject);
        }
        if i.exact && on_nats {
            prop_assert!(pattern.matches(&a), "exact filter {} of {} lets {} through", i.filter, p, a);
        }
    }
}
