//! Addresses in rules: trigger patterns (clasp-mapping's [`Pattern`]: `*`, `**` last, `{name}`
//! captures) and the templates of targets and conditions ([`Template`], filled with the
//! captures of the trigger).

use clasp_mapping::pattern::{Pattern, Template};

use crate::locate::Seg;
use crate::ruleset::Problem;

/// Longest address, pattern or template accepted in a rules file.
pub(crate) const MAX_ADDRESS: usize = 1024;

/// Parses a trigger pattern.
pub(crate) fn pattern(text: &str, path: Vec<Seg>) -> Result<Pattern, Problem> {
    if text.len() > MAX_ADDRESS {
        return Err(Problem::new(
            path,
            format!("longer than {MAX_ADDRESS} bytes"),
        ));
    }
    Pattern::parse(text).map_err(|e| Problem::new(path, e.to_string()))
}

/// Parses a template whose `{name}`s must all be among `captures` (the trigger's).
pub(crate) fn template(
    text: &str,
    captures: &[String],
    path: Vec<Seg>,
) -> Result<Template, Problem> {
    if text.len() > MAX_ADDRESS {
        return Err(Problem::new(
            path,
            format!("longer than {MAX_ADDRESS} bytes"),
        ));
    }
    let t = Template::parse(text).map_err(|e| Problem::new(path.clone(), e.to_string()))?;
    for name in t.captures() {
        if !captures.iter().any(|c| c == name) {
            let why = if captures.is_empty() {
                "the trigger captures nothing".to_owned()
            } else {
                format!("the trigger captures {}", list(captures))
            };
            return Err(Problem::new(
                path,
                format!("`{text}` uses `{{{name}}}`, but {why}"),
            ));
        }
    }
    Ok(t)
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{{{n}}}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The CLASP subscription pattern covering every address `t` can be filled to: each
/// `{name}` becomes `*` (a segment `ch{n}` becomes the glob `ch*`).
pub(crate) fn template_subscription(t: &Template) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in t.as_str().chars() {
        match c {
            '{' => {
                inside = true;
                out.push('*');
            }
            '}' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_check_their_captures_and_subscribe_with_globs() {
        let caps = vec!["room".to_owned()];
        let t = template("/rooms/{room}/ch{room}x/level", &caps, vec![]).unwrap();
        assert_eq!(template_subscription(&t), "/rooms/*/ch*x/level");
        let e = template("/a/{zone}", &caps, vec![]).unwrap_err();
        assert!(
            e.message
                .contains("uses `{zone}`, but the trigger captures `{room}`")
        );
        let e = template("/a/{zone}", &[], vec![]).unwrap_err();
        assert!(e.message.contains("captures nothing"));
        assert!(template("/a/*", &[], vec![]).is_err());
        assert!(pattern("a/b", vec![]).is_err());
    }
}
