//! A CLASP pattern as a NATS subscription filter.
//!
//! Segments map to tokens ([`crate::naming`]), so most of a pattern maps directly: a literal
//! segment is its token, a whole-segment `*` is NATS `*`, and a trailing `**` (one or more
//! segments) is NATS `>`. What NATS cannot say is widened and left to a local match: a glob
//! inside a segment (`/a/fader*`) becomes `*`, and a leading or interior `**` (zero or more
//! segments) ends the filter with `>` (there is always at least one segment after it). The
//! filter then covers at least every address the pattern matches; [`Interest::exact`] says
//! whether it covers nothing more.

use clasp_proto::pattern::{Pattern, PatternSegment};

use crate::naming::{MAX_NAME_LEN, NamingError, encode_tokens};

/// How a pattern is watched on NATS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interest {
    /// The filter's tokens, with NATS `*` and `>`, without any subject prefix.
    pub filter: String,
    /// Whether the filter matches exactly the pattern's addresses; if not, what arrives must be
    /// matched against the pattern before it is delivered.
    pub exact: bool,
}

/// The NATS filter for `pattern`.
pub fn interest(pattern: &Pattern) -> Result<Interest, NamingError> {
    if pattern.is_exact() {
        return Ok(Interest {
            filter: encode_tokens(pattern.as_str())?,
            exact: true,
        });
    }
    let segments = pattern.segments();
    let mut tokens: Vec<String> = Vec::with_capacity(segments.len());
    let mut exact = true;
    let mut i = 0;
    while i < segments.len() {
        match &segments[i] {
            PatternSegment::Literal(s) => {
                let mut t = String::new();
                // A literal segment's token: the tokens of "/s".
                t.push_str(&encode_tokens(&format!("/{s}"))?);
                tokens.push(t);
            }
            PatternSegment::AnySegment => {
                if matches!(segments.get(i + 1), Some(PatternSegment::MultiSegment))
                    && i + 2 == segments.len()
                {
                    // A trailing `**`: one or more segments, NATS's `>` exactly.
                    tokens.push(">".into());
                    break;
                }
                tokens.push("*".into());
            }
            PatternSegment::Glob(_) => {
                tokens.push("*".into());
                exact = false;
            }
            PatternSegment::MultiSegment => {
                tokens.push(">".into());
                exact = false;
                break;
            }
        }
        i += 1;
    }
    let filter = tokens.join(".");
    if filter.len() > MAX_NAME_LEN {
        return Err(NamingError::TooLong {
            len: filter.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(Interest { filter, exact })
}

/// Whether a NATS `filter` (tokens with `*` and `>`) matches `subject` (plain tokens), as the
/// NATS server decides it; used to check the mapping, and to route what arrives on a shared
/// subscription.
pub fn nats_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(p: &str) -> (String, bool) {
        let i = interest(&Pattern::compile(p).unwrap()).unwrap();
        (i.filter, i.exact)
    }

    #[test]
    fn patterns_as_filters() {
        assert_eq!(of("/a/b"), ("a.b".into(), true));
        assert_eq!(of("/a/*/c"), ("a.*.c".into(), true));
        assert_eq!(of("/a/**"), ("a.>".into(), true));
        assert_eq!(of("/**"), (">".into(), true));
        assert_eq!(of("/a/x*"), ("a.*".into(), false));
        assert_eq!(of("/a/**/z"), ("a.>".into(), false));
        assert_eq!(of("/**/z"), (">".into(), false));
        assert_eq!(of("/a.b/*"), ("a=2Eb.*".into(), true));
    }

    #[test]
    fn nats_matching() {
        assert!(nats_matches("a.>", "a.b.c"));
        assert!(!nats_matches("a.>", "a"));
        assert!(nats_matches("a.*.c", "a.b.c"));
        assert!(!nats_matches("a.*", "a.b.c"));
        assert!(nats_matches("a.b", "a.b"));
    }
}
