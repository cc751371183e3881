//! MQTT topic names and filters ↔ CLASP addresses and patterns.
//!
//! With namespace `ns` (empty by default, or e.g. `/mqtt`), topic `a/b` is address `ns/a/b`
//! both ways; CLASP addresses outside the namespace have no topic. In filters, a whole `+`
//! level becomes `*` and a whole trailing `#` becomes `**`; since MQTT's `a/#` also matches
//! `a` itself, it maps to the two patterns `ns/a` and `ns/a/**`.
//!
//! Refused: empty topics and filters, wildcards in topic names, `+`/`#` mixed with other
//! characters in a level, `#` before the last level, `*` anywhere (CLASP addresses cannot hold
//! it), braces in a wildcard filter (the CLASP matcher rejects them), shared subscriptions
//! (`$share/...`), and names whose address is not a valid CLASP address (an MQTT topic with a
//! leading `/` or an empty level, `a//b`, makes an empty CLASP segment).

use clasp_proto::address::validate_address;
use clasp_proto::pattern::Pattern;
use thiserror::Error;

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
    /// The name contains `*`, which CLASP addresses cannot hold, or a NUL character.
    #[error("`*` and NUL are not allowed in topics (CLASP addresses cannot hold them): {0}")]
    ReservedCharacter(String),
    /// A shared subscription (`$share/...`).
    #[error("shared subscriptions are not supported: {0}")]
    Shared(String),
    /// The resulting address or pattern is not valid CLASP.
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
}

impl Filter {
    /// Whether the filter matches CLASP `address`.
    pub fn matches(&self, address: &str) -> bool {
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
        if topic.contains(['*', '\0']) {
            return Err(TopicError::ReservedCharacter(clip(topic)));
        }
        let address = format!("{}/{topic}", self.namespace);
        validate_address(&address).map_err(|e| TopicError::Clasp(e.to_string()))?;
        Ok(address)
    }

    /// The MQTT topic of CLASP `address`, if it lies inside the namespace.
    pub fn topic<'a>(&self, address: &'a str) -> Option<&'a str> {
        let rest = address.strip_prefix(self.namespace.as_str())?;
        let topic = rest.strip_prefix('/')?;
        (!topic.is_empty()).then_some(topic)
    }

    /// The CLASP patterns of MQTT topic filter `filter`.
    pub fn filter(&self, filter: &str) -> Result<Filter, TopicError> {
        if filter.is_empty() {
            return Err(TopicError::Empty);
        }
        if filter.starts_with("$share/") {
            return Err(TopicError::Shared(clip(filter)));
        }
        if filter.contains(['*', '\0']) {
            return Err(TopicError::ReservedCharacter(clip(filter)));
        }
        let levels: Vec<&str> = filter.split('/').collect();
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
        // Two spellings of the same levels: `raw` for a pattern without `*` (an exact pattern,
        // where nothing is special) and `esc` for a glob, where `?`, `[`, `]` and `\\` are
        // escaped to stay literal.
        let mut raw = self.namespace.clone();
        let mut esc = self.namespace.clone();
        let body = if multi { &levels[..last] } else { &levels[..] };
        for level in body {
            raw.push('/');
            esc.push('/');
            if *level == "+" {
                raw.push('*');
                esc.push('*');
                continue;
            }
            raw.push_str(level);
            for c in level.chars() {
                if matches!(c, '?' | '[' | ']' | '\\') {
                    esc.push('\\');
                }
                esc.push(c);
            }
        }
        let mut patterns = Vec::with_capacity(2);
        if multi && !body.is_empty() {
            // `a/#` also matches `a` (the parent level); a bare `#` has no parent topic.
            patterns.push(compile(if glob { &esc } else { &raw }, filter)?);
        }
        if multi {
            esc.push_str("/**");
        }
        patterns.push(compile(if glob || multi { &esc } else { &raw }, filter)?);
        Ok(Filter { patterns })
    }
}

fn compile(p: &str, filter: &str) -> Result<Pattern, TopicError> {
    if p.contains('*') && p.contains(['{', '}']) {
        return Err(TopicError::Clasp(format!(
            "braces are not supported in wildcard filters: {}",
            clip(filter)
        )));
    }
    Pattern::compile(p).map_err(|e| TopicError::Clasp(e.to_string()))
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
        assert_eq!(t.topic("/a/b"), Some("a/b"));
        assert!(t.address("a/+").is_err());
        assert!(t.address("a/#").is_err());
        assert!(t.address("").is_err());
        assert!(t.address("/a").is_err(), "empty CLASP segment");
        assert!(t.address("a*").is_err());
        let m = Topics::new("/mqtt").unwrap();
        assert_eq!(m.address("a/b").unwrap(), "/mqtt/a/b");
        assert_eq!(m.topic("/mqtt/a/b"), Some("a/b"));
        assert_eq!(m.topic("/mqttx/a"), None);
        assert_eq!(m.topic("/other/a"), None);
        assert_eq!(m.topic("/mqtt"), None);
        assert!(Topics::new("mqtt").is_err());
        assert!(Topics::new("/mqtt/").is_err());
        assert!(Topics::new("/m/*").is_err());
    }

    #[test]
    fn filters() {
        let t = Topics::new("").unwrap();
        assert_eq!(pats(&t, "a/b"), ["/a/b"]);
        assert_eq!(pats(&t, "a/+/c"), ["/a/*/c"]);
        assert_eq!(pats(&t, "a/#"), ["/a", "/a/**"]);
        assert_eq!(pats(&t, "#"), ["/**"]);
        assert_eq!(pats(&t, "+/x?"), ["/*/x\\?"]);
        let m = Topics::new("/mqtt").unwrap();
        assert_eq!(pats(&m, "#"), ["/mqtt/**"]);
        assert_eq!(pats(&m, "a/#"), ["/mqtt/a", "/mqtt/a/**"]);
        for bad in ["", "a/#/b", "a+/b", "a/b#", "$share/g/a", "a/*", "+/{x}"] {
            assert!(t.filter(bad).is_err(), "{bad}");
        }
        let f = t.filter("a/#").unwrap();
        assert!(f.matches("/a") && f.matches("/a/b/c") && !f.matches("/ab"));
        let f = t.filter("+/x?").unwrap();
        assert!(f.matches("/q/x?") && !f.matches("/q/xy"));
    }

    proptest! {
        /// A topic's address matches exactly the filters MQTT says match the topic.
        #[test]
        fn wildcards_match_like_mqtt(
            topic in prop::collection::vec("[a-c?\\[]{1,2}", 1..5),
            filter in prop::collection::vec(prop_oneof!["[a-c?\\[]{1,2}", Just("+".to_owned())], 1..5),
            hash in any::<bool>(),
            ns in prop_oneof![Just(""), Just("/mqtt")],
        ) {
            let t = Topics::new(ns).unwrap();
            let name = topic.join("/");
            let mut f = filter.join("/");
            if hash { f.push_str("/#"); }
            let compiled = t.filter(&f);
            prop_assume!(compiled.is_ok());
            let compiled = compiled.unwrap();
            let address = t.address(&name).unwrap();
            prop_assert_eq!(t.topic(&address), Some(name.as_str()));
            let mqtt = mqtt_matches(&f, &name);
            prop_assert_eq!(compiled.matches(&address), mqtt, "{} vs {}", f, name);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}", ns in prop_oneof![Just(""), Just("/n")]) {
            let t = Topics::new(ns).unwrap();
            let _ = t.filter(&s);
            if let Ok(a) = t.address(&s) {
                prop_assert_eq!(t.topic(&a), Some(s.as_str()));
            }
        }
    }

    /// MQTT 3.1.1 §4.7 matching, written plainly for the comparison.
    fn mqtt_matches(filter: &str, topic: &str) -> bool {
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
