//! An independent reference model of the router's pattern semantics: the pattern translated to an
//! anchored regex. Shared by the property tests and the `matcher` fuzz target. It understands the
//! character classes the generators emit (`[xy]`, `[!x]`, `[^x]`, `[x-y]` over alphanumerics).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use regex::Regex;

// ---------------------------------------------------------------------------------------------
// Reference model: translate the pattern to an anchored regex, independently of the crate.

/// `None` when the pattern must fail to compile.
pub fn model(p: &str) -> Option<Regex> {
    if !p.starts_with('/') || p.contains("//") {
        return None;
    }
    if !p.contains('*') {
        return Some(Regex::new(&format!("^{}$", regex::escape(p))).unwrap());
    }
    if p.contains(['{', '}']) {
        return None;
    }
    let segs: Vec<&str> = p[1..].split('/').collect();
    let mut re = String::from("(?s)^");
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if *seg == "**" {
            // Interior/leading: zero or more whole segments. Trailing: one or more segments
            // of any content, i.e. a slash followed by anything.
            re.push_str(if last { "/.*" } else { "(?:/[^/]*)*" });
        } else {
            re.push('/');
            re.push_str(&segment_model(seg)?);
        }
    }
    re.push('$');
    Some(Regex::new(&re).unwrap())
}

/// Regex for one single-segment glob; `None` for a compile error.
pub fn segment_model(seg: &str) -> Option<String> {
    let chars: Vec<char> = seg.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '\\' => {
                i += 1;
                out.push_str(&regex::escape(&chars.get(i)?.to_string()));
            }
            '[' => {
                // Only the simple classes the generator emits: [xy], [!x], [^x], [x-y].
                let close = i + 2 + chars[i + 2..].iter().position(|&c| c == ']')?;
                let mut body: &[char] = &chars[i + 1..close];
                let negated = matches!(body[0], '!' | '^');
                if negated {
                    body = &body[1..];
                }
                let body: String = body.iter().collect();
                assert!(body.chars().all(|c| c.is_alphanumeric() || c == '-'));
                if negated {
                    out.push_str(&format!("[^/{body}]"));
                } else {
                    out.push_str(&format!("[{body}]"));
                }
                i = close;
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    Some(out)
}
