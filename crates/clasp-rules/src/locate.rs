//! Where something is in the text of a rules file: a path of keys and indexes
//! (`rule[2].trigger.pattern`) found again in the TOML or JSON text, and byte offsets turned
//! into lines and columns.
//!
//! Problems found after deserialising (a bad pattern, an unknown capture) carry the path of
//! the value at fault; the text is walked again to find where that value starts.

use std::fmt;

use toml::de::{DeTable, DeValue};

use crate::Format;

/// A position in a text: line and column, both from 1; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A path as written in messages: `actions[1].transform[0]`.
pub(crate) fn show_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The location of byte `offset` of `text` (clamped to the text).
pub(crate) fn location(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The byte offset of (line, column) as serde_json counts them (column in bytes, the last
/// byte read; 0 at the start of a line).
pub(crate) fn json_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    (line_start + column.saturating_sub(1)).min(line_end)
}

/// Where the value at `path` starts in `text` (or the deepest part of the path found).
pub(crate) fn find(text: &str, format: Format, path: &[Seg]) -> Option<Location> {
    let offset = match format {
        Format::Toml => find_toml(text, path),
        Format::Json => find_json(text, path),
    }?;
    Some(location(text, offset))
}

fn find_toml(text: &str, path: &[Seg]) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let start = root.span().start;
    let mut cur = DeValue::Table(root.into_inner());
    let mut at = start;
    for (i, seg) in path.iter().enumerate() {
        let next = match seg {
            // `rules` is an alias of the top-level `rule`.
            Seg::Key("rule") if i == 0 => cur.get("rule").or_else(|| cur.get("rules")),
            Seg::Key(k) => cur.get(*k),
            Seg::Index(n) => cur.get(*n),
        };
        let Some(next) = next else { break };
        at = next.span().start;
        let next = next.get_ref().clone();
        cur = next;
    }
    Some(at)
}

fn find_json(text: &str, path: &[Seg]) -> Option<usize> {
    let mut w = Walker {
        b: text.as_bytes(),
        i: 0,
    };
    w.find(path, true)
}

/// A walk through JSON text already known to be valid.
struct Walker<'a> {
    b: &'a [u8],
    i: usize,
}

impl Walker<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The string at the cursor, unescaped (`\uXXXX` included).
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut raw = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'n' => raw.push(b'\n'),
                        b't' => raw.push(b'\t'),
                        b'r' => raw.push(b'\r'),
                        b'b' => raw.push(8),
                        b'f' => raw.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            let cp = u32::from_str_radix(hex, 16).ok()?;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            raw.extend_from_slice(ch.to_string().as_bytes());
                        }
                        other => raw.push(other),
                    }
                }
                other => raw.push(other),
            }
        }
        Some(String::from_utf8_lossy(&raw).into_owned())
    }

    /// Skips one value (depth bounded by serde_json's own recursion limit).
    fn skip(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            open @ (b'{' | b'[') => {
                self.i += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                self.ws();
                if self.peek()? == close {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.eat(b':')?;
                    }
                    self.skip()?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        c if c == close => {
                            self.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
            }
        }
        Some(())
    }

    /// The offset of the value at `path` from the cursor, or of the deepest part found.
    fn find(&mut self, path: &[Seg], top: bool) -> Option<usize> {
        self.ws();
        let start = self.i;
        let Some((seg, rest)) = path.split_first() else {
            return Some(start);
        };
        match seg {
            Seg::Key(k) => {
                if self.eat(b'{').is_none() {
                    return Some(start);
                }
                self.ws();
                if self.peek() == Some(b'}') {
                    return Some(start);
                }
                loop {
                    let key = self.string()?;
                    self.eat(b':')?;
                    if key == *k || (top && *k == "rule" && key == "rules") {
                        return self.find(rest, false);
                    }
                    self.skip()?;
                    self.ws();
                    if self.peek()? != b',' {
                        return Some(start);
                    }
                    self.i += 1;
                }
            }
            Seg::Index(n) => {
                if self.eat(b'[').is_none() {
                    return Some(start);
                }
                self.ws();
                if self.peek() == Some(b']') {
                    return Some(start);
                }
                for _ in 0..*n {
                    self.skip()?;
                    self.ws();
                    if self.peek()? != b',' {
                        return Some(start);
                    }
                    self.i += 1;
                }
                self.find(rest, false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: [Seg; 4] = [
        Seg::Key("rule"),
        Seg::Index(1),
        Seg::Key("trigger"),
        Seg::Key("pattern"),
    ];

    #[test]
    fn json_paths_are_found() {
        let text = "{\"rules\": [\n  {\"id\": \"a\"},\n  {\"id\": \"b\", \"trigger\": {\"type\": \"change\", \"pattern\": \"/x//y\"}}\n]}";
        let at = find(text, Format::Json, &PATH).unwrap();
        assert_eq!(
            at,
            Location {
                line: 3,
                column: 56
            }
        );
        // A path that goes further than the text: the deepest part found.
        let deeper = [PATH.as_slice(), &[Seg::Key("nope")]].concat();
        assert_eq!(find(text, Format::Json, &deeper), Some(at));
    }

    #[test]
    fn toml_paths_are_found() {
        let text = "[[rule]]\nid = \"a\"\n\n[[rule]]\nid = \"b\"\ntrigger = { type = \"change\", pattern = \"/x//y\" }\n";
        let at = find(text, Format::Toml, &PATH).unwrap();
        assert_eq!(
            at,
            Location {
                line: 6,
                column: 40
            }
        );
    }

    #[test]
    fn offsets_become_lines_and_character_columns() {
        assert_eq!(location("ab\ncé d", 7), Location { line: 2, column: 4 });
        assert_eq!(location("ab", 99), Location { line: 1, column: 3 });
        assert_eq!(json_offset("ab\ncd\nef", 2, 2), 4);
        assert_eq!(json_offset("ab\ncd", 1, 0), 0);
        assert_eq!(json_offset("ab\ncd", 9, 9), 5);
    }
}
