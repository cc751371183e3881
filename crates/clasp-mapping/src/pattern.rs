//! Address patterns with named captures (`/midi/*/ch/1/cc/{n}`) and the templates that use them
//! (`/mixer/{n}/volume`).
//!
//! A pattern is a CLASP address whose segments are literals, `*` (any one segment), `**` (any
//! number of segments, last only) or `{name}` (any one segment, captured). A template is an
//! address whose segments are literals or `{name}`, or literal text around captures within a
//! segment (`ch{n}`).

use std::collections::BTreeMap;

use crate::MappingError;

/// Captured segments by name.
pub type Captures = BTreeMap<String, String>;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatSeg {
    Literal(String),
    Any,
    Rest,
    Capture(String),
}

/// A source pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segs: Vec<PatSeg>,
}

impl Pattern {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Pattern, MappingError> {
        let bad = |why: String| MappingError::Pattern {
            pattern: text.to_owned(),
            why,
        };
        let Some(rest) = text.strip_prefix('/') else {
            return Err(bad("it must start with `/`".into()));
        };
        let mut segs = Vec::new();
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, s) in parts.iter().enumerate() {
            let seg = match *s {
                "" => return Err(bad("it has an empty segment".into())),
                "*" => PatSeg::Any,
                "**" if i + 1 == parts.len() => PatSeg::Rest,
                "**" => return Err(bad("`**` may only be the last segment".into())),
                s if s.starts_with('{') && s.ends_with('}') => {
                    let name = &s[1..s.len() - 1];
                    check_name(name).map_err(bad)?;
                    if segs.contains(&PatSeg::Capture(name.to_owned())) {
                        return Err(bad(format!("`{{{name}}}` is captured twice")));
                    }
                    PatSeg::Capture(name.to_owned())
                }
                s if s.contains(['{', '}', '*']) => {
                    return Err(bad(format!(
                        "segment `{s}`: `*`, `**` and `{{name}}` must be whole segments"
                    )));
                }
                s => PatSeg::Literal(s.to_owned()),
            };
            segs.push(seg);
        }
        Ok(Pattern {
            text: text.to_owned(),
            segs,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The CLASP subscription pattern that covers it (captures become `*`).
    pub fn subscription(&self) -> String {
        let mut out = String::new();
        for s in &self.segs {
            out.push('/');
            match s {
                PatSeg::Literal(l) => out.push_str(l),
                PatSeg::Any | PatSeg::Capture(_) => out.push('*'),
                PatSeg::Rest => out.push_str("**"),
            }
        }
        out
    }

    /// The names it captures, in order.
    pub fn captures(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            PatSeg::Capture(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// Whether every segment that is not a literal is a named capture (so a template with the
    /// same names can produce every address it matches).
    pub fn fully_captured(&self) -> bool {
        self.segs
            .iter()
            .all(|s| matches!(s, PatSeg::Literal(_) | PatSeg::Capture(_)))
    }

    /// The captures if `address` matches.
    pub fn matches(&self, address: &str) -> Option<Captures> {
        let rest = address.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut caps = Captures::new();
        for (i, seg) in self.segs.iter().enumerate() {
            match seg {
                PatSeg::Rest => return (parts.len() > i).then_some(caps),
                _ if i >= parts.len() => return None,
                PatSeg::Literal(l) if l != parts[i] => return None,
                PatSeg::Literal(_) | PatSeg::Any => {}
                PatSeg::Capture(n) => {
                    caps.insert(n.clone(), parts[i].to_owned());
                }
            }
        }
        (parts.len() == self.segs.len()).then_some(caps)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "capture `{{{name}}}`: names are letters, digits and `_`"
        ))
    }
}

/// A piece of a template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Capture(String),
}

/// A target template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    segs: Vec<Vec<Piece>>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, MappingError> {
        let bad = |why: String| MappingError::Pattern {
            pattern: text.to_owned(),
            why,
        };
        let Some(rest) = text.strip_prefix('/') else {
            return Err(bad("it must start with `/`".into()));
        };
        let mut segs = Vec::new();
        for s in rest.split('/') {
            if s.is_empty() {
                return Err(bad("it has an empty segment".into()));
            }
            if s.contains('*') {
                return Err(bad("a target names one address: no `*` or `**`".into()));
            }
            let mut pieces = Vec::new();
            let mut rest = s;
            while let Some(open) = rest.find('{') {
                if open > 0 {
                    pieces.push(Piece::Text(rest[..open].to_owned()));
                }
                let Some(close) = rest[open..].find('}') else {
                    return Err(bad(format!("segment `{s}` has an unclosed `{{`")));
                };
                let name = &rest[open + 1..open + close];
                check_name(name).map_err(bad)?;
                pieces.push(Piece::Capture(name.to_owned()));
                rest = &rest[open + close + 1..];
            }
            if rest.contains('}') {
                return Err(bad(format!("segment `{s}` has a `}}` without `{{`")));
            }
            if !rest.is_empty() {
                pieces.push(Piece::Text(rest.to_owned()));
            }
            segs.push(pieces);
        }
        Ok(Template {
            text: text.to_owned(),
            segs,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names it uses.
    pub fn captures(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().flatten().filter_map(|p| match p {
            Piece::Capture(n) => Some(n.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The address for `caps` (`None` if one is missing or a value would change the address's
    /// shape: empty, or holding `/`).
    pub fn fill(&self, caps: &Captures) -> Option<String> {
        let mut out = String::new();
        for seg in &self.segs {
            out.push('/');
            for p in seg {
                match p {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Capture(n) => {
                        let v = caps.get(n)?;
                        if v.is_empty() || v.contains('/') {
                            return None;
                        }
                        out.push_str(v);
                    }
                }
            }
        }
        Some(out)
    }

    /// This template read as a pattern: the captures a target address gives back (for the
    /// reverse direction). Only whole-segment captures and literals can be read back.
    pub fn as_pattern(&self) -> Option<Pattern> {
        let simple = self.segs.iter().all(|s| s.len() == 1);
        simple.then(|| Pattern::parse(&self.text).ok()).flatten()
    }
}
