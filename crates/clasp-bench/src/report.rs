//! `report`: medians of repeated runs of our router, the reference router and (for latency) the
//! zero-work echo server, side by side from the JSON lines, then the acceptance targets.

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
    /// Label of the zero-work echo server's lines (latency calibration).
    #[arg(long, default_value = "echo")]
    pub(crate) echo: String,
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
    ("latency_loaded", "p50_us", Better::Lower),
    ("latency_loaded", "p95_us", Better::Lower),
    ("latency_loaded", "p99_us", Better::Lower),
    ("latency_loaded", "max_us", Better::Lower),
    ("latency_loaded", "lost", Better::Lower),
    ("latency_loaded", "load_deliveries_per_sec", Better::Higher),
    ("latency_loaded", "load_delivered_fraction", Better::Higher),
    ("fanout", "deliveries_per_sec", Better::Higher),
    ("fanout", "delivered_fraction", Better::Higher),
    ("fanout", "undelivered", Better::Lower),
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

/// Workloads in table order.
const ORDER: [&str; 5] = [
    "latency",
    "latency_loaded",
    "fanout",
    "throughput",
    "memory",
];

/// Case names the targets refer to.
const IDLE: &str = "latency idle";
const LOADED: &str = "latency loaded";
const FANOUT_100: &str = "fanout N=100";
const MEMORY_10K: &str = "memory N=10000";

/// The case of a line within its workload (fan-out and memory run several sizes).
fn case_of(workload: &str, line: &Value) -> String {
    let n = |k: &str| line.get(k).and_then(Value::as_u64).unwrap_or(0);
    match workload {
        "latency" => IDLE.to_owned(),
        "latency_loaded" => LOADED.to_owned(),
        "fanout" => format!("fanout N={}", n("subscribers")),
        "memory" => format!("memory N={}", n("connections")),
        w => w.to_owned(),
    }
}

pub(crate) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
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

/// `a / b`, when defined.
fn quotient(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// Every value per (case, metric) and label, from the JSON lines.
#[derive(Default)]
struct Values {
    by: BTreeMap<(String, &'static str), BTreeMap<String, Vec<f64>>>,
}

impl Values {
    fn all(&self, case: &str, metric: &str, label: &str) -> &[f64] {
        self.by
            .get(&(case.to_owned(), metric_key(metric)))
            .and_then(|l| l.get(label))
            .map_or(&[], Vec::as_slice)
    }

    fn median(&self, case: &str, metric: &str, label: &str) -> Option<f64> {
        median(self.all(case, metric, label))
    }
}

/// The `'static` name of a metric in [`METRICS`] (or `""` if unknown).
fn metric_key(metric: &str) -> &'static str {
    METRICS
        .iter()
        .find(|(_, m, _)| *m == metric)
        .map_or("", |(_, m, _)| m)
}

/// One line of the targets block.
struct Target {
    what: &'static str,
    /// The measured figures, as text.
    measured: String,
    /// `None`: not enough data.
    pass: Option<bool>,
}

/// Checks the acceptance targets against the medians of `ours`.
fn targets(v: &Values, o: &ReportOpts) -> Vec<Target> {
    let (ours, reference, echo) = (o.ours.as_str(), o.reference.as_str(), o.echo.as_str());
    let us = |x: f64| format!("{} µs", format_float(x));
    let mut t = Vec::new();

    let idle = (
        v.median(IDLE, "p50_us", ours),
        v.median(IDLE, "p50_us", echo),
    );
    t.push(match idle {
        (Some(a), Some(b)) => {
            let q = quotient(a, b);
            Target {
                what: "idle single-hop p50 <= 1.10 x echo",
                measured: format!(
                    "{ours} {} / {echo} {} = {}",
                    us(a),
                    us(b),
                    q.map_or("-".into(), |q| format!("{q:.2}"))
                ),
                pass: q.map(|q| q <= 1.10),
            }
        }
        _ => missing("idle single-hop p50 <= 1.10 x echo"),
    });

    let load = |label: &str| {
        v.median(LOADED, "load_deliveries_per_sec", label)
            .map_or("-".into(), |x| format!("{}/s", format_float(x.round())))
    };
    for (what, metric) in [
        ("loaded single-hop p50 <= 0.50 x reference", "p50_us"),
        ("loaded single-hop p99 <= 0.50 x reference", "p99_us"),
    ] {
        t.push(
            match (
                v.median(LOADED, metric, ours),
                v.median(LOADED, metric, reference),
            ) {
                (Some(a), Some(b)) => {
                    let q = quotient(a, b);
                    Target {
                        what,
                        measured: format!(
                            "{ours} {} / {reference} {} = {} (load delivered: {ours} {}, {reference} {})",
                            us(a),
                            us(b),
                            q.map_or("-".into(), |q| format!("{q:.2}")),
                            load(ours),
                            load(reference)
                        ),
                        pass: q.map(|q| q <= 0.5),
                    }
                }
                _ => missing(what),
            },
        );
    }

    let what = "fan-out N=100 deliveries/s >= 5 x reference, 100% delivered";
    t.push(
        match (
            v.median(FANOUT_100, "deliveries_per_sec", ours),
            v.median(FANOUT_100, "deliveries_per_sec", reference),
        ) {
            (Some(a), Some(b)) => {
                let q = quotient(a, b);
                // 100% delivered in every round, not just the median one.
                let fractions = v.all(FANOUT_100, "delivered_fraction", ours);
                let undelivered = v.all(FANOUT_100, "undelivered", ours);
                let all_delivered = if undelivered.is_empty() {
                    !fractions.is_empty() && fractions.iter().all(|&f| f >= 1.0)
                } else {
                    undelivered.iter().all(|&u| u == 0.0)
                };
                let worst = fractions.iter().copied().fold(f64::INFINITY, f64::min);
                Target {
                    what,
                    measured: format!(
                        "{ours} {}/s / {reference} {}/s = {}; {ours} delivered {} (lowest of {} rounds)",
                        format_float(a.round()),
                        format_float(b.round()),
                        q.map_or("-".into(), |q| format!("{q:.2}")),
                        if worst.is_finite() {
                            format!("{:.2}%", worst * 100.0)
                        } else {
                            "-".into()
                        },
                        fractions.len()
                    ),
                    pass: q.map(|q| q >= 5.0 && all_delivered),
                }
            }
            _ => missing(what),
        },
    );

    let what = "memory N=10000 <= 8.0 KB per connection";
    t.push(match v.median(MEMORY_10K, "kb_per_connection", ours) {
        Some(kb) => Target {
            what,
            measured: format!("{ours} {} KB", format_float(kb)),
            pass: Some(kb <= 8.0),
        },
        None => missing(what),
    });
    t
}

fn missing(what: &'static str) -> Target {
    Target {
        what,
        measured: "no data".into(),
        pass: None,
    }
}

/// Prints the comparison table and the targets.
pub(crate) fn run(o: &ReportOpts) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&o.input)
        .with_context(|| format!("cannot read {}", o.input.display()))?;
    let mut values = Values::default();
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
                    .by
                    .entry((case.clone(), metric))
                    .or_default()
                    .entry(label.to_owned())
                    .or_default()
                    .push(x);
            }
        }
    }
    cases.sort_by_key(|(w, _)| ORDER.iter().position(|o| o == w).unwrap_or(ORDER.len()));
    let with_echo = values.by.values().any(|l| l.contains_key(&o.echo));

    let mut header = vec![
        "workload".to_owned(),
        "metric".to_owned(),
        "better".to_owned(),
        format!("{} (median)", o.ours),
        format!("{} (median)", o.reference),
        "ratio (>1 = ours better)".to_owned(),
    ];
    if with_echo {
        header.push(format!("{} (median)", o.echo));
        header.push(format!("{} / {}", o.ours, o.echo));
    }
    let mut rows: Vec<Vec<String>> = vec![header];
    let show = |m: Option<(f64, usize)>| {
        m.map_or("-".to_owned(), |(x, n)| {
            format!("{} (n={n})", format_float(x))
        })
    };
    for (workload, case) in &cases {
        for &(_, metric, better) in METRICS.iter().filter(|(w, _, _)| w == workload) {
            if !values.by.contains_key(&(case.clone(), metric)) {
                continue;
            }
            let med = |label: &str| {
                let all = values.all(case, metric, label);
                median(all).map(|m| (m, all.len()))
            };
            let (ours, reference) = (med(&o.ours), med(&o.reference));
            let r = match (ours, reference) {
                (Some((a, _)), Some((b, _))) => {
                    ratio(a, b, better).map_or("-".to_owned(), |r| format!("{r:.2}x"))
                }
                _ => "-".to_owned(),
            };
            let mut row = vec![
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
            ];
            if with_echo {
                let echo = med(&o.echo);
                row.push(show(echo));
                row.push(match (ours, echo) {
                    (Some((a, _)), Some((b, _))) => {
                        quotient(a, b).map_or("-".to_owned(), |q| format!("{q:.2}"))
                    }
                    _ => "-".to_owned(),
                });
            }
            rows.push(row);
        }
    }
    let mut text = String::new();
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
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
    if with_echo {
        let _ = writeln!(
            text,
            "{e}: zero-work server (clasp-bench echo-server), the idle latency floor; {} / {e} is a \
             plain quotient. For latency under load, bench-routers.sh puts the loaded floor in this \
             column instead: the probe on an idle router while a second one carries the load",
            o.ours,
            e = o.echo
        );
    }
    let _ = writeln!(text, "\ntargets ({} medians):", o.ours);
    let list = targets(&values, o);
    let width = list.iter().map(|t| t.what.len()).max().unwrap_or(0);
    for t in &list {
        let verdict = match t.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a ",
        };
        let _ = writeln!(text, "  {verdict}  {:<width$}  {}", t.what, t.measured);
    }
    // A closed stdout (e.g. piped into `head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(ratio(200.0, 100.0, Better::Higher), Some(2.0));
        assert_eq!(ratio(50.0, 100.0, Better::Lower), Some(2.0));
        assert_eq!(ratio(0.0, 100.0, Better::Lower), None);
    }

    fn put(v: &mut Values, case: &str, metric: &'static str, label: &str, xs: &[f64]) {
        v.by.entry((case.to_owned(), metric))
            .or_default()
            .insert(label.to_owned(), xs.to_vec());
    }

    #[test]
    fn targets_pass_and_fail() {
        let o = ReportOpts {
            input: PathBuf::new(),
            ours: "ours".into(),
            reference: "reference".into(),
            echo: "echo".into(),
        };
        let mut v = Values::default();
        put(&mut v, IDLE, "p50_us", "ours", &[50.0, 52.0, 54.0]);
        put(&mut v, IDLE, "p50_us", "echo", &[48.0]);
        put(&mut v, LOADED, "p50_us", "ours", &[40.0]);
        put(&mut v, LOADED, "p50_us", "reference", &[100.0]);
        put(&mut v, LOADED, "p99_us", "ours", &[60.0]);
        put(&mut v, LOADED, "p99_us", "reference", &[100.0]);
        put(&mut v, FANOUT_100, "deliveries_per_sec", "ours", &[6e6]);
        put(
            &mut v,
            FANOUT_100,
            "deliveries_per_sec",
            "reference",
            &[1e6],
        );
        put(
            &mut v,
            FANOUT_100,
            "delivered_fraction",
            "ours",
            &[1.0, 0.99],
        );
        put(&mut v, FANOUT_100, "undelivered", "ours", &[0.0, 1000.0]);
        let got: Vec<Option<bool>> = targets(&v, &o).iter().map(|t| t.pass).collect();
        assert_eq!(
            got,
            [Some(true), Some(true), Some(false), Some(false), None]
        );
    }
}
