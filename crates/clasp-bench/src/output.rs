//! Result lines: a human table on the terminal and, with `--json`, one JSON object per result.

use serde::Serialize;
use serde_json::{Map, Value};

/// Where and how results are printed, and the tags added to every JSON line.
#[derive(Debug, Clone)]
pub(crate) struct Out {
    /// Print JSON lines on stdout (the human tables then go to stderr).
    pub(crate) json: bool,
    /// Free-form tag of the router under test (e.g. `ours`, `reference`).
    pub(crate) label: Option<String>,
    /// Round number, when the same workload is repeated.
    pub(crate) round: Option<u32>,
    /// The router URL.
    pub(crate) url: String,
}

impl Out {
    /// Prints a human-readable line (stdout, or stderr when stdout carries JSON).
    pub(crate) fn human(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// Prints one result: a table of its fields, and a JSON line with `--json`.
    pub(crate) fn result<T: Serialize>(&self, workload: &str, title: &str, r: &T) {
        let Ok(Value::Object(fields)) = serde_json::to_value(r) else {
            return;
        };
        let mut table = format!("\n{title}\n");
        let width = fields.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &fields {
            let shown = match v {
                Value::Number(n) => match n.as_f64() {
                    Some(f) if n.is_f64() => format_float(f),
                    _ => n.to_string(),
                },
                Value::String(s) => s.clone(),
                Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            table.push_str(&format!("  {k:<width$}  {shown}\n"));
        }
        self.human(table.trim_end());
        if self.json {
            let mut line = Map::new();
            line.insert("workload".into(), workload.into());
            if let Some(l) = &self.label {
                line.insert("label".into(), l.as_str().into());
            }
            if let Some(r) = self.round {
                line.insert("round".into(), r.into());
            }
            line.insert("url".into(), self.url.as_str().into());
            line.extend(fields);
            println!("{}", Value::Object(line));
        }
    }
}

/// A float with a sensible number of decimals for a table.
pub(crate) fn format_float(f: f64) -> String {
    if f.fract() == 0.0 || f.abs() >= 1000.0 {
        format!("{f:.0}")
    } else if f.abs() >= 10.0 {
        format!("{f:.1}")
    } else {
        format!("{f:.3}")
    }
}

/// Rounds to one decimal (µs figures, rates).
pub(crate) fn r1(f: f64) -> f64 {
    (f * 10.0).round() / 10.0
}

/// Rounds to four decimals (fractions).
pub(crate) fn r4(f: f64) -> f64 {
    (f * 10_000.0).round() / 10_000.0
}
