//! `mqtt-report`: the rounds and medians of `mqtt` results side by side.

use super::*;

/// Options of `mqtt-report`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MqttReportOpts {
    /// JSON lines written by `mqtt --json --label L --round R`.
    #[arg(long)]
    pub(crate) input: std::path::PathBuf,
    /// Labels in column order; the first is compared with each other one [default: in the
    /// order they first appear].
    #[arg(long, value_delimiter = ',')]
    pub(crate) labels: Vec<String>,
}

/// The metrics of the summary, in order, and whether higher is better.
const REPORT_METRICS: &[(&str, bool)] = &[
    ("deliveries_per_sec", true),
    ("sent_per_sec", true),
    ("p50_us", false),
    ("p99_us", false),
    ("lost", false),
    ("lost_fraction", false),
    ("disconnected", false),
    ("broker_cpu_pct", false),
    ("client_cpu_pct", false),
    ("client_cpu_ns_per_delivery", false),
    ("other_cpu_pct", false),
];

/// Per-round table, then medians and spread (min–max) per workload, metric and label, with the
/// ratio of the first label's median to each other one's.
pub(crate) fn report(o: &MqttReportOpts) -> anyhow::Result<()> {
    use std::fmt::Write as _;

    use serde_json::Value;

    use crate::output::format_float;
    use crate::report::median;

    let text = std::fs::read_to_string(&o.input)
        .with_context(|| format!("cannot read {}", o.input.display()))?;
    let mut lines = Vec::new();
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(l)
            .with_context(|| format!("{} line {}: not JSON", o.input.display(), i + 1))?;
        if v.get("workload")
            .and_then(Value::as_str)
            .is_some_and(|w| w.starts_with("mqtt_"))
        {
            lines.push(v);
        }
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let mut labels: Vec<String> = o.labels.clone();
    let mut workloads: Vec<String> = Vec::new();
    for v in &lines {
        let (l, w) = (s(v, "label"), s(v, "workload"));
        if !labels.contains(&l) {
            labels.push(l);
        }
        if !workloads.contains(&w) {
            workloads.push(w);
        }
    }
    let cell = |x: Option<f64>| x.map_or("-".to_owned(), format_float);
    let mut out = String::new();
    let table = |rows: Vec<Vec<String>>, out: &mut String| {
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for (i, r) in rows.iter().enumerate() {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if i == 0 {
                let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "|-{}-|", sep.join("-|-"));
            }
        }
    };
    for w in &workloads {
        let of_w: Vec<&Value> = lines.iter().filter(|v| s(v, "workload") == *w).collect();
        let first = of_w[0];
        let _ = writeln!(
            out,
            "\n{w}: {} subscribers, {} B payloads, {}",
            cell(f(first, "subscribers")),
            cell(f(first, "size")),
            match f(first, "rate") {
                Some(r) => format!("paced at {} messages/s", format_float(r)),
                None => format!("windowed ({} messages)", cell(f(first, "window"))),
            }
        );
        let _ = writeln!(out, "\nrounds:\n");
        let mut rows = vec![
            [
                "round",
                "label",
                "deliveries/s",
                "sent/s",
                "p50 µs",
                "p99 µs",
                "lost",
                "disconnected",
                "publisher blocked",
                "broker CPU %",
                "client CPU %",
                "other CPU %",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for v in &of_w {
            rows.push(vec![
                cell(f(v, "round")),
                s(v, "label"),
                cell(f(v, "deliveries_per_sec")),
                cell(f(v, "sent_per_sec")),
                cell(f(v, "p50_us")),
                cell(f(v, "p99_us")),
                cell(f(v, "lost")),
                cell(f(v, "disconnected")),
                match v.get("publisher_blocked").and_then(Value::as_bool) {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "no".to_owned(),
                    None => "-".to_owned(),
                },
                cell(f(v, "broker_cpu_pct")),
                cell(f(v, "client_cpu_pct")),
                cell(f(v, "other_cpu_pct")),
            ]);
        }
        table(rows, &mut out);
        let _ = writeln!(out, "\nmedians [min–max] (n rounds):\n");
        let mut header = vec!["metric".to_owned(), "better".to_owned()];
        header.extend(labels.iter().cloned());
        for l in labels.iter().skip(1) {
            header.push(format!("{} / {l}", labels[0]));
        }
        let mut rows = vec![header];
        for &(m, higher) in REPORT_METRICS {
            let mut row = vec![
                m.to_owned(),
                if higher { "higher" } else { "lower" }.to_owned(),
            ];
            let mut meds = Vec::new();
            let mut any = false;
            for l in &labels {
                let xs: Vec<f64> = of_w
                    .iter()
                    .filter(|v| s(v, "label") == *l)
                    .filter_map(|v| f(v, m))
                    .collect();
                let med = median(&xs);
                meds.push(med);
                any |= med.is_some();
                row.push(match med {
                    Some(md) => {
                        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        format!(
                            "{} [{}–{}] (n={})",
                            format_float(md),
                            format_float(lo),
                            format_float(hi),
                            xs.len()
                        )
                    }
                    None => "-".to_owned(),
                });
            }
            if !any {
                continue;
            }
            for m in meds.iter().skip(1) {
                row.push(match (meds[0], m) {
                    (Some(a), Some(b)) if *b != 0.0 => format!("{:.2}", a / b),
                    _ => "-".to_owned(),
                });
            }
            rows.push(row);
        }
        table(rows, &mut out);
    }
    print!("{out}");
    Ok(())
}
