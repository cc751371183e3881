//! MQTT topic names and filters ↔ CLASP addresses and patterns.
//!
//! With namespace `ns` (empty by default, or e.g. `/mqtt`), topic `a/b` is address `ns/a/b`
//! both ways. CLASP addresses cannot hold an empty segment (`/a//b`) or `*`, and CLASP glob
//! patterns cannot hold `{` or `}`, so a level of a topic is written into its address
//! segment with these escapes (`%` is the escape character):
//!
//! | in the MQTT level | in the CLASP segment |
//! | --- | --- |
//! | the whole level empty (`/a`, `a//b`, `a/`) | `%` (the whole segment) |
//! | `%` | `%25` |
//! | `*` | `%2A` |
//! | `{` | `%7B` |
//! | `}` | `%7D` |
//!
//! Everything else is copied as it is, so a topic without empty levels and without these four
//! characters keeps the address it always had (`a/b` → `ns/a/b`). `/TopicA` is `ns/%/TopicA`,
//! `a/` is `ns/a/%`, `100%` is `ns/100%25`. The mapping is injective and [`Topics::topic`]
//! reverses it exactly: it gives the topic of an address that [`Topics::address`] makes, and
//! `None` for any other address (outside the namespace, with an empty segment, a raw `*`,
//! `{`, `}`, a `%` not part of one of the escapes above, or that would give a topic with `+`,
//! `#` or U+0000, or an empty topic).
//!
//! In filters, a whole `+` level becomes `*` and a whole trailing `#` becomes `**`; since
//! MQTT's `a/#` also matches `a` itself, it maps to the two patterns `ns/a` and `ns/a/**`
//! (a bare `#` is `ns/**`). Other levels are escaped as in addresses (and, in a pattern with
//! a wildcard, `?`, `[`, `]` and `\` are escaped for the CLASP glob), so a filter's patterns
//! match exactly the addresses of the topics the filter matches (`+` matches an escaped empty
//! level too). MQTT's rule that a filter starting with a wildcard does not match topics
//! starting with `$` (MQTT 3.1.1 and 5 §4.7.2) cannot be written as a CLASP pattern: the
//! patterns match those addresses, and [`Filter::matches`] excludes them.
//!
//! A shared subscription `$share/{group}/{filter}` (MQTT 5 §4.8.2) is parsed into the
//! filter's patterns and [`Filter::share`]; which member gets a message is up to the caller.
//!
//! What cannot map, and is refused:
//! * what is not a valid MQTT topic name or filter: empty names and filters, `+` or `#` in a
//!   topic name, `+` or `#` sharing a level with other characters or `#` before the last
//!   level in a filter, U+0000 anywhere (MQTT-1.5.4-2), a malformed `$share/` filter;
//! * a topic whose address would be longer than 65,535 bytes (what a CLASP string holds: only
//!   possible for topics near MQTT's own 65,535-byte limit, with a namespace or escapes);
//! * a filter whose pattern would be longer than 65,535 bytes or have more than 256 segments,
//!   namespace included (the CLASP pattern limits).

use std::borrow::Cow;

use clasp_proto::address::validate_address;
use clasp_proto::pattern::{MAX_PATTERN_LEN, Pattern, PatternError};
use thiserror::Error;

/// The escape character of addresses (see the module docs).
pub const ESCAPE: char = '%';

/// Longest CLASP address, in bytes (CLASP strings have a 16-bit length).
pub const MAX_ADDRESS_LEN: usize = u16::MAX as usize;

/// Why a topic name, filter or namespace was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// The topic or filter is empty.
    #[error("empty topic")]
    Empty,
    /// A topic name (not a filter) contains `+` or `#`.
    #[error("wildcards `+` and `#` are not allowed in a topic name: {0}")]
    WildcardInName(String),
    /// `+` or `#` share a level with other characters, or `#` is not the last level.
    #[error("`+` and `#` must each be a whole level, and `#` the last one: {0}")]
    MisplacedWildcard(String),
    /// The name contains U+0000, which no MQTT string may hold.
    #[error("U+0000 is not allowed in topics: {0}")]
    Nul(String),
    /// A malformed shared subscription: `$share/` without a group name, with `+` or `#` in
    /// it, or without a filter after it.
    #[error("malformed shared subscription: {0}")]
    Shared(String),
    /// The address or pattern would exceed the CLASP limit of 65,535 bytes.
    #[error("the CLASP address or pattern would be {0} bytes, over 65,535")]
    TooLong(usize),
    /// The pattern would have more than 256 segments (the CLASP limit).
    #[error("the CLASP pattern would have {0} segments, over 256")]
    TooDeep(usize),
    /// The resulting pattern is not valid CLASP (not expected: the mapping escapes what
    /// CLASP refuses).
    #[error("not a valid CLASP address or pattern: {0}")]
    Clasp(String),
    /// The namespace is neither empty nor a plain absolute path without a trailing `/`.
    #[error("namespace must be empty or like `/mqtt` (no wildcards, no trailing `/`): {0}")]
    Namespace(String),
}

/// Translates between MQTT topics and CLASP addresses under one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    namespace: String,
}

/// One MQTT filter as CLASP patterns (one or two, see the module docs).
#[derive(Debug, Clone)]
pub struct Filter {
    /// The CLASP patterns to subscribe to.
    pub patterns: Vec<Pattern>,
    /// The group of a shared subscription (`$share/{group}/...`).
    pub share: Option<String>,
    /// The filter starts with `+` or `#`, so it must not match topics starting with `$`.
    pub wildcard_first: bool,
    /// Where the topic starts in an address: the namespace's length plus one.
    topic_at: usize,
}

impl Filter {
    /// Whether the filter matches CLASP `address`, with MQTT's `$` rule (see the module docs).
    pub fn matches(&self, address: &str) -> bool {
        if self.wildcard_first && address.as_bytes().get(self.topic_at) == Some(&b'$') {
            return false;
        }
        self.patterns.iter().any(|p| p.matches(address))
    }
}

impl Topics {
    /// Topics under `namespace` (`""` for none, or an absolute path such as `/mqtt`).
    pub fn new(namespace: &str) -> Result<Topics, TopicError> {
        if !namespace.is_empty() {
            let bad = validate_address(namespace).is_err()
                || namespace.ends_with('/')
                || namespace.contains(['*', '?', '[', ']', '\\', '{', '}', '+', '#']);
            if bad {
                return Err(TopicError::Namespace(namespace.to_owned()));
            }
        }
        Ok(Topics {
            namespace: namespace.to_owned(),
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The CLASP address of MQTT topic name `topic`.
    pub fn address(&self, topic: &str) -> Result<String, TopicError> {
        if topic.is_empty() {
            return Err(TopicError::Empty);
        }
        if topic.contains(['+', '#']) {
            return Err(TopicError::WildcardInName(clip(topic)));
        }
        if topic.contains('\0') {
            return Err(TopicError::Nul(clip(topic)));
        }
        let mut address = String::with_capacity(self.namespace.len() + 1 + topic.len());
        address.push_str(&self.namespace);
        for level in topic.split('/') {
            address.push('/');
            push_level(&mut address, level, false);
        }
        if address.len() > MAX_ADDRESS_LEN {
            return Err(TopicError::TooLong(address.len()));
        }
        Ok(address)
    }

    /// The MQTT topic of CLASP `address`: `Some` exactly for the addresses
    /// [`Topics::address`] makes (borrowed when nothing is escaped).
    pub fn topic<'a>(&self, address: &'a str) -> Option<Cow<'a, str>> {
        let rest = address.strip_prefix(self.namespace.as_str())?;
        let body = rest.strip_prefix('/')?;
        let plain = !body.is_empty()
            && !body.contains([ESCAPE, '*', '{', '}', '+', '#', '\0'])
            && !body.starts_with('/')
            && !body.ends_with('/')
            && !body.contains("//");
        if plain {
            return Some(Cow::Borrowed(body));
        }
        let mut topic = String::with_capacity(body.len());
        for (i, segment) in body.split('/').enumerate() {
            if i > 0 {
                topic.push('/');
            }
            if segment == "%" {
                continue;
            }
            if segment.is_empty() || segment.contains(['*', '{', '}', '+', '#', '\0']) {
                return None;
            }
            let mut rest = segment;
            while let Some(at) = rest.find(ESCAPE) {
                topic.push_str(&rest[..at]);
                let c = match rest.get(at + 1..at + 3)? {
                    "25" => '%',
                    "2A" => '*',
                    "7B" => '{',
                    "7D" => '}',
                    _ => return None,
                };
                topic.push(c);
                rest = &rest[at + 3..];
            }
            topic.push_str(rest);
        }
        (!topic.is_empty()).then_some(Cow::Owned(topic))
    }

    /// The CLASP patterns of MQTT topic filter `filter` (which may be a shared subscription).
    pub fn filter(&self, filter: &str) -> Result<Filter, TopicError> {
        if filter.is_empty() {
            return Err(TopicError::Empty);
        }
        if filter.contains('\0') {
            return Err(TopicError::Nul(clip(filter)));
        }
        let (share, inner) = match filter.strip_prefix("$share/") {
            Some(rest) => match rest.split_once('/') {
                Some((group, inner))
                    if !group.is_empty() && !group.contains(['+', '#']) && !inner.is_empty() =>
                {
                    (Some(group.to_owned()), inner)
                }
                _ => return Err(TopicError::Shared(clip(filter))),
            },
            None => (None, filter),
        };
        let levels: Vec<&str> = inner.split('/').collect();
        let last = levels.len() - 1;
        let mut glob = false;
        let mut multi = false;
        for (i, level) in levels.iter().enumerate() {
            match *level {
                "+" => glob = true,
                "#" if i == last => multi = true,
                l if l.contains(['+', '#']) => {
                    return Err(TopicError::MisplacedWildcard(clip(filter)));
                }
                _ => {}
            }
        }
        let body = if multi { &levels[..last] } else { &levels[..] };
        // Glob characters are escaped only in a pattern that is a glob (one with a `*`): a
        // CLASP pattern without one is matched literally, backslashes included.
        let build = |escape: bool| {
            let mut pattern = self.namespace.clone();
            for level in body {
                pattern.push('/');
                if *level == "+" {
                    pattern.push('*');
                } else {
                    push_level(&mut pattern, level, escape);
                }
            }
            pattern
        };
        let mut patterns = Vec::with_capacity(2);
        if multi && !body.is_empty() {
            // `a/#` also matches `a` (the parent level); a bare `#` has no parent topic.
            patterns.push(compile(&build(glob))?);
        }
        let mut pattern = build(glob || multi);
        if multi {
            pattern.push_str("/**");
        }
        patterns.push(compile(&pattern)?);
        Ok(Filter {
            patterns,
            share,
            wildcard_first: matches!(levels[0], "+" | "#"),
            topic_at: self.namespace.len() + 1,
        })
    }
}

/// Appends MQTT `level` as a CLASP segment (see the module docs); `glob`: also escape what a
/// CLASP glob pattern treats as special.
fn push_level(out: &mut String, level: &str, glob: bool) {
    if level.is_empty() {
        out.push(ESCAPE);
        return;
    }
    for c in level.chars() {
        match c {
            '%' => out.push_str("%25"),
            '*' => out.push_str("%2A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '?' | '[' | ']' | '\\' if glob => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

fn compile(p: &str) -> Result<Pattern, TopicError> {
    if p.len() > MAX_PATTERN_LEN {
        return Err(TopicError::TooLong(p.len()));
    }
    Pattern::compile(p).map_err(|e| match e {
        PatternError::TooLong { len } => TopicError::TooLong(len),
        PatternError::TooManySegments { count } => TopicError::TooDeep(count),
        e => TopicError::Clasp(e.to_string()),
    })
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn pats(t: &Topics, f: &str) -> Vec<String> {
        t.filter(f)
            .unwrap()
            .patterns
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    #[test]
    fn names_and_addresses() {
        let t = Topics::new("").unwrap();
        assert_eq!(t.address("a/b").unwrap(), "/a/b");
        assert_eq!(t.topic("/a/b").as_deref(), Some("a/b"));
        assert!(matches!(t.topic("/a/b"), Some(Cow::Borrowed(_))));
        assert!(t.address("a/+").is_err());
        assert!(t.address("a/#").is_err());
        assert!(t.address("").is_err());
        assert!(t.address("a\0").is_err());
        for (topic, address) in [
            ("/TopicA", "/%/TopicA"),
            ("a//b", "/a/%/b"),
            ("a/", "/a/%"),
            ("/", "/%/%"),
            ("100%", "/100%25"),
            ("a*", "/a%2A"),
            ("{x}", "/%7Bx%7D"),
            ("%/%25", "/%25/%2525"),
            ("$SYS/é", "/$SYS/é"),
        ] {
            assert_eq!(t.address(topic).unwrap(), address, "{topic}");
            assert_eq!(t.topic(address).as_deref(), Some(topic), "{address}");
        }
        for not_a_topic in [
            "/", "/%", "/a//b", "/a/", "/a*", "/a{", "/%2a", "/%41", "/a%", "/+",
        ] {
            assert_eq!(t.topic(not_a_topic), None, "{not_a_topic}");
        }
        let m = Topics::new("/mqtt").unwrap();
        assert_eq!(m.address("a/b").unwrap(), "/mqtt/a/b");
        assert_eq!(m.topic("/mqtt/a/b").as_deref(), Some("a/b"));
        assert_eq!(m.topic("/mqttx/a"), None);
        assert_eq!(m.topic("/other/a"), None);
        assert_eq!(m.topic("/mqtt"), None);
        assert!(Topics::new("mqtt").is_err());
        assert!(Topics::new("/mqtt/").is_err());
        assert!(Topics::new("/m/*").is_err());
        let long = "x".repeat(65_535);
        assert_eq!(t.address(&long[1..]).unwrap().len(), 65_535);
        assert_eq!(t.address(&long), Err(TopicError::TooLong(65_536)));
    }

    #[test]
    fn filters() {
        let t = Topics::new("").unwrap();
        assert_eq!(pats(&t, "a/b"), ["/a/b"]);
        assert_eq!(pats(&t, "a/+/c"), ["/a/*/c"]);
        assert_eq!(pats(&t, "a/#"), ["/a", "/a/**"]);
        assert_eq!(pats(&t, "#"), ["/**"]);
        assert_eq!(pats(&t, "+/x?"), ["/*/x\\?"]);
        assert_eq!(pats(&t, "+/+"), ["/*/*"]);
        assert_eq!(pats(&t, "/#"), ["/%", "/%/**"]);
        assert_eq!(pats(&t, "+/{x}*"), ["/*/%7Bx%7D%2A"]);
        assert_eq!(pats(&t, "a?/b"), ["/a?/b"]);
        let m = Topics::new("/mqtt").unwrap();
        assert_eq!(pats(&m, "#"), ["/mqtt/**"]);
        assert_eq!(pats(&m, "a/#"), ["/mqtt/a", "/mqtt/a/**"]);
        for bad in [
            "",
            "a/#/b",
            "a+/b",
            "a/b#",
            "a\0",
            "$share/g",
            "$share//a",
            "$share/g+/a",
        ] {
            assert!(t.filter(bad).is_err(), "{bad}");
        }
        let f = t.filter("a/#").unwrap();
        assert!(f.matches("/a") && f.matches("/a/b/c") && !f.matches("/ab"));
        let f = t.filter("+/x?").unwrap();
        assert!(f.matches("/q/x?") && !f.matches("/q/xy"));
        let f = t.filter("+/+").unwrap();
        assert!(f.matches(&t.address("/TopicA").unwrap()));
        let f = t.filter("+").unwrap();
        assert!(!f.matches(&t.address("/TopicA").unwrap()));
        let f = t.filter("a/+").unwrap();
        assert!(f.matches(&t.address("a/").unwrap()));
    }

    #[test]
    fn dollar_topics_and_shared_subscriptions() {
        let m = Topics::new("/mqtt").unwrap();
        let sys = m.address("$SYS/x").unwrap();
        for f in ["#", "+/x", "+/#"] {
            let f = m.filter(f).unwrap();
            assert!(f.wildcard_first && f.patterns.iter().any(|p| p.matches(&sys)));
            assert!(!f.matches(&sys));
        }
        for f in ["$SYS/#", "$SYS/+", "$SYS/x"] {
            assert!(m.filter(f).unwrap().matches(&sys), "{f}");
        }
        let s = m.filter("$share/group/+/x").unwrap();
        assert_eq!(s.share.as_deref(), Some("group"));
        assert!(s.matches("/mqtt/a/x") && !s.matches(&sys));
        assert_eq!(pats(&m, "$share/g/a/#"), ["/mqtt/a", "/mqtt/a/**"]);
        assert_eq!(m.filter("a/b").unwrap().share, None);
        assert_eq!(m.filter("$shared/a").unwrap().share, None);
    }

    #[test]
    fn glob_characters_are_escaped_only_in_glob_patterns() {
        // `?/#` matches the topic `?` itself: its parent pattern is a literal address (no
        // `*`), where a backslash would be taken literally (found by the property test).
        let t = Topics::new("").unwrap();
        let f = t.filter("?/#").unwrap();
        assert_eq!(pats(&t, "?/#"), ["/?", "/\\?/**"]);
        assert!(f.matches(&t.address("?").unwrap()));
        assert!(f.matches(&t.address("?/x").unwrap()));
        assert!(!f.matches(&t.address("a").unwrap()));
        let f = t.filter("[a]/+/#").unwrap();
        assert!(f.matches(&t.address("[a]/b").unwrap()));
        assert!(!f.matches(&t.address("a/b").unwrap()));
    }

    #[test]
    fn clasp_limits() {
        let t = Topics::new("").unwrap();
        assert!(t.filter("a/".repeat(255).trim_end_matches('/')).is_ok());
        assert!(t.filter(&vec!["a"; 256].join("/")).is_ok());
        assert_eq!(
            t.filter(&vec!["a"; 257].join("/")).err(),
            Some(TopicError::TooDeep(257))
        );
        let deep = vec!["+"; 257].join("/");
        assert_eq!(t.filter(&deep).err(), Some(TopicError::TooDeep(257)));
        assert!(matches!(
            t.filter(&"*".repeat(30_000)),
            Err(TopicError::TooLong(_))
        ));
    }

    /// One level of a topic: empty, plain, or with what the mapping escapes or globs treat
    /// specially, `$` and non-ASCII.
    fn level() -> impl Strategy<Value = String> {
        "[ab%*{}$?\\[\\]\\\\é]{0,3}"
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("empty topic", |t| !t.is_empty())
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![3 => level(), 1 => Just("+".to_owned())], 1..5),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(levels, hash, share)| {
                let mut f = levels.join("/");
                if hash {
                    f.push_str("/#");
                }
                if f.is_empty() {
                    f.push('#');
                }
                if share { format!("$share/g/{f}") } else { f }
            })
    }

    fn namespace() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(""), Just("/mqtt")]
    }

    proptest! {
        /// Every topic has an address, which gives the topic back; different topics have
        /// different addresses.
        #[test]
        fn addresses_are_injective_and_reversible(a in topic(), b in topic(), ns in namespace()) {
            let t = Topics::new(ns).unwrap();
            let (x, y) = (t.address(&a).unwrap(), t.address(&b).unwrap());
            prop_assert!(validate_address(&x).is_ok() && !x.contains('*'), "{}", x);
            prop_assert_eq!(t.topic(&x).map(Cow::into_owned), Some(a.clone()));
            prop_assert_eq!(t.topic(&y).map(Cow::into_owned), Some(b.clone()));
            prop_assert_eq!(x == y, a == b);
        }

        /// A filter matches a topic's address exactly when MQTT says the filter matches the
        /// topic.
        #[test]
        fn filters_match_like_mqtt(f in filter(), topic in topic(), ns in namespace()) {
            let t = Topics::new(ns).unwrap();
            let compiled = t.filter(&f).unwrap();
            let address = t.address(&topic).unwrap();
            let inner = f.strip_prefix("$share/g/").unwrap_or(&f);
            let mqtt = mqtt_matches(inner, &topic);
            prop_assert_eq!(compiled.matches(&address), mqtt, "{} vs {}", f, topic);
            if !topic.starts_with('$') {
                // Outside the `$` rule, the patterns alone say the same.
                let by_patterns = compiled.patterns.iter().any(|p| p.matches(&address));
                prop_assert_eq!(by_patterns, mqtt, "{} vs {}", f, topic);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}", ns in namespace()) {
            let t = Topics::new(ns).unwrap();
            let _ = t.filter(&s);
            if let Ok(a) = t.address(&s) {
                prop_assert_eq!(t.topic(&a).map(Cow::into_owned), Some(s.clone()));
            }
            // An address has a topic only if it is that topic's address.
            let address = format!("{ns}/{s}");
            if let Some(topic) = t.topic(&address) {
                prop_assert_eq!(t.address(&topic), Ok(address.clone()));
            }
        }
    }

    /// MQTT 3.1.1 / 5 §4.7 matching, written plainly for the comparison, with the rule that
    /// a filter starting with a wildcard does not match a topic starting with `$`.
    fn mqtt_matches(filter: &str, topic: &str) -> bool {
        if filter.starts_with(['+', '#']) && topic.starts_with('$') {
            return false;
        }
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        for (i, level) in f.iter().enumerate() {
            match *level {
                "#" => return true,
                "+" => {
                    if i >= t.len() {
                        return false;
                    }
                }
                l => {
                    if t.get(i) != Some(&l) {
                        return false;
                    }
                }
            }
        }
        f.len() == t.len()
    }
}
