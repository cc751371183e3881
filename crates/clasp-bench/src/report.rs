//! `report`: medians of repeated runs of two routers, side by side, from the JSON lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::output::format_float;

/// Options of `report`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReportOpts {
    /// JSON lines written by the other subcommands with `--json --label L`.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Label of our router's lines.
    #[arg(long, default_value = "ours")]
    pub(crate) ours: String,
    /// Label of the reference router's lines.
    #[arg(long, default_value = "reference")]
    pub(crate) reference: String,
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// The metrics compared, per workload, in table order.
const METRICS: &[(&str, &str, Better)] = &[
    ("latency", "p50_us", Better::Lower),
    ("latency", "p95_us", Better::Lower),
    ("latency", "p99_us", Better::Lower),
    ("latency", "max_us", Better::Lower),
    ("latency", "lost", Better::Lower),
    ("fanout", "deliveries_per_sec", Better::Higher),
    ("fanout", "delivered_fraction", Better::Higher),
    ("fanout", "elapsed_ms", Better::Lower),
    ("fanout", "settled_deliveries_per_sec", Better::Higher),
    ("throughput", "sent_per_sec", Better::Higher),
    ("throughput", "delivered_per_sec", Better::Higher),
    ("throughput", "delivered_fraction", Better::Higher),
    ("throughput", "elapsed_ms", Better::Lower),
    ("throughput", "settled_per_sec", Better::Higher),
    ("throughput", "final_values_ok", Better::Higher),
    ("memory", "kb_per_connection", Better::Lower),
];

/// The case of a line within its workload (fan-out and memory run several sizes).
fn case_of(workload: &str, line: &Value) -> String {
    let n = |k: &str| line.get(k).and_then(Value::as_u64).unwrap_or(0);
    match workload {
        "fanout" => format!("fanout N={}", n("subscribers")),
        "memory" => format!("memory N={}", n("connections")),
        w => w.to_owned(),
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// How many times better ours is than the reference (>1: ours is better).
fn ratio(ours: f64, reference: f64, better: Better) -> Option<f64> {
    let (num, den) = match better {
        Better::Higher => (ours, reference),
        Better::Lower => (reference, ours),
    };
    (den > 0.0 && num.is_finite()).then(|| num / den)
}

/// Prints the comparison table.
pub(crate) fn run(o: &ReportOpts) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&o.input)
        .with_context(|| format!("cannot read {}", o.input.display()))?;
    // (case, metric) -> label -> values; cases keep first-seen order per workload.
    let mut values: BTreeMap<(String, &str), BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut sizes: Option<(u64, u64, u64)> = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", o.input.display(), i + 1))?;
        let (Some(workload), Some(label)) = (
            v.get("workload").and_then(Value::as_str),
            v.get("label").and_then(Value::as_str),
        ) else {
            continue;
        };
        let case = case_of(workload, &v);
        if !cases.iter().any(|(_, c)| *c == case) {
            cases.push((workload.to_owned(), case.clone()));
        }
        if workload == "latency" && sizes.is_none() {
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            sizes = Some((n("size"), n("sent_frame_bytes"), n("delivered_frame_bytes")));
        }
        for &(_, metric, _) in METRICS.iter().filter(|(w, _, _)| *w == workload) {
            if let Some(x) = v.get(metric).and_then(Value::as_f64) {
                values
                    .entry((case.clone(), metric))
                    .or_default()
                    .entry(label.to_owned())
                    .or_default()
                    .push(x);
            }
        }
    }
    // Workloads in the order of METRICS, cases within a workload as first seen.
    let order = ["latency", "fanout", "throughput", "memory"];
    cases.sort_by_key(|(w, _)| order.iter().position(|o| o == w).unwrap_or(order.len()));

    let header = [
        "workload",
        "metric",
        "better",
        &format!("{} (median)", o.ours),
        &format!("{} (median)", o.reference),
        "ratio (>1 = ours better)",
    ]
    .map(str::to_owned);
    let mut rows: Vec<[String; 6]> = vec![header];
    for (workload, case) in &cases {
        for &(_, metric, better) in METRICS.iter().filter(|(w, _, _)| w == workload) {
            let Some(by_label) = values.get_mut(&(case.clone(), metric)) else {
                continue;
            };
            let mut med = |label: &str| {
                by_label
                    .get_mut(label)
                    .and_then(|v| median(v).map(|m| (m, v.len())))
            };
            let ours = med(&o.ours);
            let reference = med(&o.reference);
            let show = |m: Option<(f64, usize)>| {
                m.map_or("-".to_owned(), |(x, n)| {
                    format!("{} (n={n})", format_float(x))
                })
            };
            let r = match (ours, reference) {
                (Some((a, _)), Some((b, _))) => {
                    ratio(a, b, better).map_or("-".to_owned(), |r| format!("{r:.2}x"))
                }
                _ => "-".to_owned(),
            };
            rows.push([
                case.clone(),
                metric.to_owned(),
                match better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                }
                .to_owned(),
                show(ours),
                show(reference),
                r,
            ]);
        }
    }
    let mut text = String::new();
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(text, "| {} |", line.join(" | "));
        if i == 0 {
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(text, "|-{}-|", sep.join("-|-"));
        }
    }
    if let Some((size, sent, delivered)) = sizes {
        let _ = writeln!(
            text,
            "\nmessage: SET, value size {size} B ({}), frame {sent} B as sent, {delivered} B as delivered (latency workload)",
            if size <= 8 { "f64" } else { "string" }
        );
    }
    let _ = writeln!(
        text,
        "ratio: ours/reference for higher-is-better metrics, reference/ours for lower-is-better ones"
    );
    // A closed stdout (e.g. piped into `head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(ratio(200.0, 100.0, Better::Higher), Some(2.0));
        assert_eq!(ratio(50.0, 100.0, Better::Lower), Some(2.0));
        assert_eq!(ratio(0.0, 100.0, Better::Lower), None);
    }
}
