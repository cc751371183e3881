//! Router-side address pattern matching.
//!
//! A [`Pattern`] is compiled from a string that must itself be a valid address
//! (see [`validate_address`]). There are two kinds:
//!
//! * **Exact** patterns contain no `*`. They match an address iff the two strings are byte-equal;
//!   `?`, `[`, `\` and braces have no special meaning in them.
//! * **Glob** patterns contain at least one `*`. They are split into `/`-separated segments, and
//!   each segment is one of:
//!   * `**` alone: a multi-segment wildcard. At the start or in the middle it matches zero or more
//!     whole segments (`/a/**/z` matches `/a/z` and `/a/b/c/z`). As the last segment it matches
//!     one or more segments of any content, empty ones included: `/a/**` matches `/a/`, `/a/b`
//!     and `/a/b/c` but not `/a`, and `/**` matches every address that starts with `/`.
//!   * a segment without any of `*`, `?`, `[`, `\`: a literal, compared byte by byte;
//!   * otherwise a single-segment glob where `*` matches any run of characters (possibly empty),
//!     `?` exactly one character, `[abc]`, `[a-z]`, `[!x]` / `[^x]` one character of (or not of)
//!     a class, and `\x` the character `x` literally. Inside a class, a `]` right after the
//!     opening `[` (or `[!`) is literal, `\` escapes the next character, and a `-` first or
//!     last is literal.
//!
//!   `**` glued to other characters in a segment (`/a**`, `/a/**b`) is a deliberate choice of
//!   ours: it behaves exactly like a single `*` and never crosses a `/`. Braces (`{`, `}`) are
//!   rejected anywhere in a glob pattern, as the reference implementation does.
//!
//! No wildcard ever matches a `/`. Matching uses greedy two-pointer backtracking, both over
//! segments (for `**`) and over characters (for `*`), so it runs in O(n·m) time and constant
//! stack whatever the input.
//!
//! Addresses given to [`Pattern::matches`] are not validated: any string is accepted and simply
//! matches or not.

use std::fmt;

use thiserror::Error;

use crate::address::{AddressError, bounded, validate_address};

/// Longest accepted pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 65_535;

/// Largest accepted number of segments in a pattern (the `/`-separated parts after the leading
/// `/`; a trailing `/` counts as one empty segment).
pub const MAX_PATTERN_SEGMENTS: usize = 256;

/// Why a pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    /// The pattern is not a valid address.
    #[error("invalid address: {0}")]
    InvalidAddress(#[from] AddressError),
    /// A `[` has no closing `]` within its segment.
    #[error("invalid pattern: unterminated character class at byte {position}: {pattern}")]
    UnterminatedClass {
        /// Byte offset of the opening `[`.
        position: usize,
        /// The pattern (at most 200 characters, then `…`).
        pattern: String,
    },
    /// A segment ends with a lone `\`.
    #[error("invalid pattern: trailing '\\' at byte {position}: {pattern}")]
    TrailingEscape {
        /// Byte offset of the `\`.
        position: usize,
        /// The pattern (at most 200 characters, then `…`).
        pattern: String,
    },
    /// A glob pattern contains `{` or `}`; brace alternatives are not supported.
    #[error("invalid pattern: braces are not supported (byte {position}): {pattern}")]
    Braces {
        /// Byte offset of the first `{` or `}`.
        position: usize,
        /// The pattern (at most 200 characters, then `…`).
        pattern: String,
    },
    /// The pattern is longer than [`MAX_PATTERN_LEN`] bytes.
    #[error("invalid pattern: {len} bytes long, the limit is {MAX_PATTERN_LEN}")]
    TooLong {
        /// Length of the pattern in bytes.
        len: usize,
    },
    /// The pattern has more than [`MAX_PATTERN_SEGMENTS`] segments.
    #[error("invalid pattern: {count} segments, the limit is {MAX_PATTERN_SEGMENTS}")]
    TooManySegments {
        /// Number of segments in the pattern.
        count: usize,
    },
}

/// A compiled address pattern (see the [module docs](self) for the syntax).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    source: String,
    exact: bool,
    segments: Vec<PatternSegment>,
}

/// One element of a compiled [`Pattern`], as returned by [`Pattern::segments`].
///
/// Every element except [`MultiSegment`](Self::MultiSegment) matches exactly one address
/// segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PatternSegment {
    /// A segment matching exactly this text (escapes already resolved).
    Literal(String),
    /// Any single segment, empty included: a whole-segment `*`, or the first half of a
    /// trailing `**`.
    AnySegment,
    /// A single segment matching a glob.
    Glob(SegmentGlob),
    /// Zero or more whole segments: a leading or interior `**`, or the second half of a
    /// trailing `**` (which compiles to `[AnySegment, MultiSegment]`).
    MultiSegment,
}

impl PatternSegment {
    /// Whether this single-segment element matches `seg`; `MultiSegment` is handled by the
    /// caller and never reaches here in the matcher.
    fn matches_one(&self, seg: &str) -> bool {
        match self {
            Self::Literal(lit) => lit == seg,
            Self::AnySegment | Self::MultiSegment => true,
            Self::Glob(glob) => glob.matches_unchecked(seg),
        }
    }
}

/// A glob that matches within one segment: `*`, `?`, character classes and `\` escapes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentGlob {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Token {
    /// This character.
    Char(char),
    /// `?`: any one character.
    AnyChar,
    /// `[...]`: one character of (or, negated, not of) the class.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `*` (or a run of them): any run of characters.
    Star,
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Self::Char(want) => *want == c,
            Self::AnyChar | Self::Star => true,
            Self::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

impl SegmentGlob {
    /// The glob's source text, as written in the pattern.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the glob matches `segment` in full. A string containing `/` never matches.
    pub fn matches(&self, segment: &str) -> bool {
        !segment.contains('/') && self.matches_unchecked(segment)
    }

    /// Greedy two-pointer matching with backtracking to the last `*` only.
    fn matches_unchecked(&self, s: &str) -> bool {
        let tokens = &self.tokens;
        let mut ti = 0;
        let mut si = 0;
        // (token index after the last `*`, string index that `*` currently stops at)
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = s[si..].chars().next() {
            match tokens.get(ti) {
                Some(Token::Star) => {
                    ti += 1;
                    star = Some((ti, si));
                    continue;
                }
                Some(tok) if tok.matches(c) => {
                    ti += 1;
                    si += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the last `*` absorb one more character and retry after it.
            let Some((star_ti, star_si)) = star else {
                return false;
            };
            let Some(absorbed) = s[star_si..].chars().next() else {
                return false;
            };
            let next_si = star_si + absorbed.len_utf8();
            star = Some((star_ti, next_si));
            ti = star_ti;
            si = next_si;
        }
        tokens[ti..].iter().all(|t| *t == Token::Star)
    }
}

impl Pattern {
    /// Compiles `pattern`, checking that it is a valid address within the size limits.
    pub fn compile(pattern: &str) -> Result<Pattern, PatternError> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong { len: pattern.len() });
        }
        validate_address(pattern)?;
        // `validate_address` guarantees the leading `/`.
        let body = &pattern[1..];
        let count = body.split('/').count();
        if count > MAX_PATTERN_SEGMENTS {
            return Err(PatternError::TooManySegments { count });
        }
        let exact = !pattern.contains('*');
        let segments = if exact {
            body.split('/')
                .map(|s| PatternSegment::Literal(s.to_owned()))
                .collect()
        } else {
            if let Some(position) = pattern.find(['{', '}']) {
                return Err(PatternError::Braces {
                    position,
                    pattern: bounded(pattern),
                });
            }
            compile_glob(pattern, body, count)?
        };
        Ok(Pattern {
            source: pattern.to_owned(),
            exact,
            segments,
        })
    }

    /// The pattern's source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether this is an exact pattern (it contains no `*`).
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// The compiled, normalized segments, leading `/` excluded.
    ///
    /// The pattern matches an address iff the address starts with `/` and the sequence
    /// `address[1..].split('/')` matches these elements in order (each non-`MultiSegment`
    /// element matching one segment, each `MultiSegment` zero or more). Exact patterns yield
    /// only literals. Glob segments made only of literal characters and escapes are reduced to
    /// [`PatternSegment::Literal`], whole-segment `*` (or `***`…) to
    /// [`PatternSegment::AnySegment`], and adjacent `MultiSegment`s are merged.
    pub fn segments(&self) -> &[PatternSegment] {
        &self.segments
    }

    /// Whether every address this pattern matches is also matched by `other` (pattern
    /// inclusion, used to decide whether a subscription stays within a read scope).
    ///
    /// The answer is sound but conservative: `true` is always right; `false` may be returned
    /// for some inclusions that only hold through a union of cases (for instance `/a/x*` is not
    /// shown to be inside `/a/[x]*`). A `*` never covers a `**`: `/a/**` is not inside `/a/*`.
    pub fn is_subset_of(&self, other: &Pattern) -> bool {
        let (p, s) = (&self.segments, &other.segments);
        // memo[i * (s.len() + 1) + j]: None = not computed yet.
        let mut memo = vec![None; (p.len() + 1) * (s.len() + 1)];
        subset(p, s, 0, 0, &mut memo)
    }

    /// Whether `address` matches this pattern. Never panics, whatever the address.
    pub fn matches(&self, address: &str) -> bool {
        if self.exact {
            return self.source == address;
        }
        match address.strip_prefix('/') {
            Some(rest) => match_segments(&self.segments, rest),
            None => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Compiles `pattern` and matches `address` against it.
pub fn matches(pattern: &str, address: &str) -> Result<bool, PatternError> {
    Ok(Pattern::compile(pattern)?.matches(address))
}

/// Compiles the segments of a glob pattern; `body` is `pattern` without its leading `/`.
fn compile_glob(
    pattern: &str,
    body: &str,
    count: usize,
) -> Result<Vec<PatternSegment>, PatternError> {
    let mut out: Vec<PatternSegment> = Vec::with_capacity(count + 1);
    let mut offset = 1; // byte offset of the current segment in `pattern`
    for (i, seg) in body.split('/').enumerate() {
        let last = i + 1 == count;
        if seg == "**" {
            if last {
                out.push(PatternSegment::AnySegment);
            }
            if out.last() != Some(&PatternSegment::MultiSegment) {
                out.push(PatternSegment::MultiSegment);
            }
        } else if !seg.contains(['*', '?', '[', '\\']) {
            out.push(PatternSegment::Literal(seg.to_owned()));
        } else {
            out.push(compile_segment(pattern, seg, offset)?);
        }
        offset += seg.len() + 1;
    }
    Ok(out)
}

/// Compiles one single-segment glob starting at byte `offset` of `pattern`.
fn compile_segment(
    pattern: &str,
    seg: &str,
    offset: usize,
) -> Result<PatternSegment, PatternError> {
    let chars: Vec<(usize, char)> = seg.char_indices().collect();
    let mut tokens = Vec::new();
    let mut j = 0;
    while let Some(&(at, c)) = chars.get(j) {
        j += 1;
        let tok = match c {
            '*' => {
                if tokens.last() == Some(&Token::Star) {
                    continue;
                }
                Token::Star
            }
            '?' => Token::AnyChar,
            '\\' => match chars.get(j) {
                Some(&(_, escaped)) => {
                    j += 1;
                    Token::Char(escaped)
                }
                None => {
                    return Err(PatternError::TrailingEscape {
                        position: offset + at,
                        pattern: bounded(pattern),
                    });
                }
            },
            '[' => match parse_class(&chars, j) {
                Some((tok, next)) => {
                    j = next;
                    tok
                }
                None => {
                    return Err(PatternError::UnterminatedClass {
                        position: offset + at,
                        pattern: bounded(pattern),
                    });
                }
            },
            other => Token::Char(other),
        };
        tokens.push(tok);
    }
    if tokens == [Token::Star] {
        return Ok(PatternSegment::AnySegment);
    }
    let literal: Option<String> = tokens
        .iter()
        .map(|t| match t {
            Token::Char(c) => Some(*c),
            _ => None,
        })
        .collect();
    Ok(match literal {
        Some(text) => PatternSegment::Literal(text),
        None => PatternSegment::Glob(SegmentGlob {
            source: seg.to_owned(),
            tokens,
        }),
    })
}

/// Parses a character class whose body starts at `chars[j]` (just after `[`). Returns the token
/// and the index just past the closing `]`, or `None` if the class is unterminated.
fn parse_class(chars: &[(usize, char)], mut j: usize) -> Option<(Token, usize)> {
    let negated = matches!(chars.get(j), Some((_, '!' | '^')));
    if negated {
        j += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let &(_, c) = chars.get(j)?;
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, j + 1));
        }
        first = false;
        let (lo, next) = class_char(chars, j)?;
        j = next;
        let is_range = matches!(chars.get(j), Some((_, '-')))
            && !matches!(chars.get(j + 1), None | Some((_, ']')));
        if is_range {
            let (hi, next) = class_char(chars, j + 1)?;
            j = next;
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
}

/// Reads one (possibly `\`-escaped) character of a class at `chars[j]`.
fn class_char(chars: &[(usize, char)], j: usize) -> Option<(char, usize)> {
    match chars.get(j)? {
        (_, '\\') => chars.get(j + 1).map(|&(_, c)| (c, j + 2)),
        &(_, c) => Some((c, j + 1)),
    }
}

/// Address cursor value meaning "no segment left" in `rest`.
const fn exhausted(rest: &str) -> usize {
    rest.len() + 1
}

/// The address segment starting at byte `pos` of `rest` and the start of the next one
/// (`exhausted(rest)` when there is none). `pos` must be at most `rest.len()`.
fn segment_at(rest: &str, pos: usize) -> (&str, usize) {
    let tail = rest.get(pos..).unwrap_or("");
    match tail.find('/') {
        Some(k) => (&tail[..k], pos + k + 1),
        None => (tail, exhausted(rest)),
    }
}

/// Matches `rest.split('/')` against `pats`: greedy two-pointer matching with backtracking to
/// the last `MultiSegment` only.
fn match_segments(pats: &[PatternSegment], rest: &str) -> bool {
    let end = exhausted(rest);
    let mut pi = 0;
    let mut pos = 0;
    // (pattern index after the last `MultiSegment`, address position it currently stops at)
    let mut star: Option<(usize, usize)> = None;
    while pos < end {
        let (seg, next) = segment_at(rest, pos);
        match pats.get(pi) {
            Some(PatternSegment::MultiSegment) => {
                pi += 1;
                star = Some((pi, pos));
                continue;
            }
            Some(p) if p.matches_one(seg) => {
                pi += 1;
                pos = next;
                continue;
            }
            _ => {}
        }
        // Mismatch: let the last `MultiSegment` absorb one more segment and retry after it.
        let Some((star_pi, star_pos)) = star else {
            return false;
        };
        let (_, after) = segment_at(rest, star_pos);
        star = Some((star_pi, after));
        pi = star_pi;
        pos = after;
    }
    pats[pi..]
        .iter()
        .all(|p| *p == PatternSegment::MultiSegment)
}

/// Whether every sequence of segments matched by `p[i..]` is matched by `s[j..]` (sound, see
/// [`Pattern::is_subset_of`]). Each (i, j) is decided once (memo), and the recursion depth is
/// at most `p.len() + s.len()` (≤ 2 × 257 elements).
fn subset(
    p: &[PatternSegment],
    s: &[PatternSegment],
    i: usize,
    j: usize,
    memo: &mut [Option<bool>],
) -> bool {
    let key = i * (s.len() + 1) + j;
    if let Some(known) = memo[key] {
        return known;
    }
    let answer = match (p.get(i), s.get(j)) {
        // A `**` of the scope covers nothing more (zero segments) or absorbs the pattern's
        // next element, whatever it is (a `**` of the pattern included).
        (_, Some(PatternSegment::MultiSegment)) => {
            subset(p, s, i, j + 1, memo) || (i < p.len() && subset(p, s, i + 1, j, memo))
        }
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        // The pattern's `**` is zero segments, or one segment of any content followed by the
        // same `**` again: both must be covered, and the scope's single element must then
        // accept any segment.
        (Some(PatternSegment::MultiSegment), Some(b)) => {
            *b == PatternSegment::AnySegment
                && subset(p, s, i + 1, j, memo)
                && subset(p, s, i, j + 1, memo)
        }
        (Some(a), Some(b)) => segment_subset(a, b) && subset(p, s, i + 1, j + 1, memo),
    };
    memo[key] = Some(answer);
    answer
}

/// Whether every segment `a` matches is matched by `b` (both single-segment elements).
fn segment_subset(a: &PatternSegment, b: &PatternSegment) -> bool {
    match (a, b) {
        (_, PatternSegment::AnySegment) => true,
        (PatternSegment::Literal(x), PatternSegment::Literal(y)) => x == y,
        (PatternSegment::Literal(x), PatternSegment::Glob(g)) => g.matches_unchecked(x),
        (PatternSegment::Glob(g), PatternSegment::Glob(h)) => g.as_str() == h.as_str(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<PatternSegment> {
        Pattern::compile(p)
            .map(|p| p.segments().to_vec())
            .unwrap_or_default()
    }

    fn lit(s: &str) -> PatternSegment {
        PatternSegment::Literal(s.into())
    }

    #[test]
    fn compiled_forms() {
        use PatternSegment::{AnySegment, MultiSegment};
        assert_eq!(segs("/"), vec![lit("")]);
        assert_eq!(segs("/a/?"), vec![lit("a"), lit("?")]);
        assert_eq!(segs("/a/b/"), vec![lit("a"), lit("b"), lit("")]);
        assert_eq!(segs("/a/**"), vec![lit("a"), AnySegment, MultiSegment]);
        assert_eq!(segs("/**"), vec![AnySegment, MultiSegment]);
        assert_eq!(segs("/**/**/z"), vec![MultiSegment, lit("z")]);
        assert_eq!(segs("/**/**"), vec![MultiSegment, AnySegment, MultiSegment]);
        assert_eq!(segs("/a/*/***"), vec![lit("a"), AnySegment, AnySegment]);
        assert_eq!(segs("/\\*/*"), vec![lit("*"), AnySegment]);
        let s = segs("/a/b**c");
        let [_, PatternSegment::Glob(g)] = s.as_slice() else {
            panic!("expected a glob: {s:?}");
        };
        assert_eq!(g.as_str(), "b**c");
        assert_eq!(
            g.tokens,
            vec![Token::Char('b'), Token::Star, Token::Char('c')]
        );
        assert!(g.matches("bc") && g.matches("bxyc") && !g.matches("bx/c"));
    }

    #[test]
    fn classes() {
        let m = |p: &str, a: &str| matches(p, a).unwrap_or(false);
        assert!(m("/[a-c]*", "/b") && !m("/[a-c]*", "/d"));
        assert!(m("/[!a]*", "/b") && !m("/[!a]*", "/a") && m("/[^a]*", "/é"));
        assert!(m("/[]]*", "/]") && m("/[!]]*", "/x") && !m("/[!]]*", "/]"));
        assert!(m("/[a-]*", "/-") && m("/[-a]*", "/-") && !m("/[a-]*", "/b"));
        assert!(m("/[\\]x]*", "/]") && m("/[*]", "/*") && !m("/[*]", "/a"));
        assert!(!m("/[z-a]*", "/m"));
    }

    #[test]
    fn errors() {
        let err = |p: &str| Pattern::compile(p).err();
        assert!(matches!(
            err("/a/[b*"),
            Some(PatternError::UnterminatedClass { position: 3, .. })
        ));
        assert!(matches!(
            err("/a/[]*"),
            Some(PatternError::UnterminatedClass { .. })
        ));
        assert!(matches!(
            err("/a/[\\]*"),
            Some(PatternError::UnterminatedClass { .. })
        ));
        assert!(matches!(
            err("/*/b\\"),
            Some(PatternError::TrailingEscape { position: 4, .. })
        ));
        assert!(matches!(
            err("/*/b\\/c"),
            Some(PatternError::TrailingEscape { .. })
        ));
        assert!(matches!(
            err("/*/}"),
            Some(PatternError::Braces { position: 3, .. })
        ));
        // No star: braces, brackets and backslashes are plain text.
        assert!(Pattern::compile("/a/{b}/[c/\\").is_ok());
        let long = format!("/{}", "a".repeat(MAX_PATTERN_LEN));
        assert_eq!(
            err(&long),
            Some(PatternError::TooLong {
                len: MAX_PATTERN_LEN + 1
            })
        );
        let many = "/a".repeat(MAX_PATTERN_SEGMENTS + 1);
        assert_eq!(
            err(&many),
            Some(PatternError::TooManySegments {
                count: MAX_PATTERN_SEGMENTS + 1
            })
        );
        assert!(Pattern::compile(&"/a".repeat(MAX_PATTERN_SEGMENTS)).is_ok());
    }

    #[test]
    fn unicode_and_odd_addresses() {
        let p = Pattern::compile("/é/?/*").ok();
        let m = |a: &str| p.as_ref().is_some_and(|p| p.matches(a));
        assert!(m("/é/ü/x") && !m("/é/üü/x") && !m("é/ü/x") && !m("") && !m("/é//x"));
        let q = Pattern::compile("/a/*/b").ok();
        assert!(q.is_some_and(|q| q.matches("/a//b")));
    }
}
