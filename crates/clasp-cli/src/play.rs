//! `clasp play`: send a recording (from `clasp record`) back onto a router with its original
//! timing, and report how late each cue went out.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use clasp_client::ConnectionEvent;
use clasp_client::recording::{self, Lateness, PlayOptions, Progress, Report};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::record::stop_signal;
use crate::tools::{Conn, connect};

/// `clasp play FILE`.
#[derive(Debug, Args)]
pub(crate) struct PlayArgs {
    /// The recording to play.
    file: PathBuf,
    /// Playback speed (2 = twice as fast).
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
    /// Play again and again (each pass restores the starting state first) until Ctrl-C.
    #[arg(long = "loop")]
    looped: bool,
    /// Start this far in (seconds, or `mm:ss`), after restoring every param as it was then.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    from: Option<Duration>,
    /// Do not restore the recording's initial state first.
    #[arg(long)]
    no_initial: bool,
    /// Microseconds before each due instant at which waiting leaves the runtime's timer (1 ms
    /// ticks) for a precise wait (a thread sleep, then a busy loop for the last 100 µs); 0
    /// uses the timer alone.
    #[arg(long, default_value_t = 2000, value_name = "US")]
    precise_us: u64,
    #[command(flatten)]
    conn: Conn,
}

/// A time offset: seconds (`90`, `2.5`), `mm:ss(.f)` or `hh:mm:ss(.f)`.
pub(crate) fn parse_time(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a time (seconds such as 90 or 2.5, or mm:ss, hh:mm:ss)");
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() > 3 {
        return Err(bad());
    }
    let (last, whole) = parts.split_last().ok_or_else(bad)?;
    let mut secs: f64 = last.parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs < 0.0 || (!whole.is_empty() && secs >= 60.0) {
        return Err(bad());
    }
    for (i, p) in whole.iter().rev().enumerate() {
        let n: u64 = p.parse().map_err(|_| bad())?;
        if i == 0 && parts.len() == 3 && n >= 60 {
            return Err(bad());
        }
        secs += n as f64 * 60f64.powi(i as i32 + 1);
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not a speed (a number more than 0)")),
    }
}

/// `mm:ss.f` for progress lines.
fn clock(us: u64) -> String {
    let s = us as f64 / 1e6;
    format!("{:02}:{:04.1}", (s / 60.0) as u64, s % 60.0)
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// The one-line lateness summary.
pub(crate) fn lateness_line(l: &Lateness) -> String {
    format!(
        "lateness p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} late by more than 1 ms",
        ms(l.quantile(0.5)),
        ms(l.quantile(0.99)),
        ms(l.max()),
        l.over_1ms()
    )
}

/// Runs `clasp play` on a single-threaded runtime (the connection's task runs whenever the
/// player waits).
pub(crate) fn run(args: PlayArgs) -> anyhow::Result<()> {
    let path = args.file.display().to_string();
    let f = File::open(&args.file).with_context(|| format!("cannot open {path}"))?;
    let rec = recording::read(BufReader::new(f)).with_context(|| path.clone())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let client = connect(&args.conn, "play", None).await?;
        let result = play(&args, &rec, &client).await;
        client.close().await;
        result
    })
}

async fn play(
    args: &PlayArgs,
    rec: &recording::Recording,
    client: &clasp_client::Client,
) -> anyhow::Result<()> {
    let mut events = client.events();
    let stop = CancellationToken::new();
    let signal = stop_signal()?;
    let on_signal = stop.clone();
    let watcher = tokio::spawn(async move {
        signal.await;
        on_signal.cancel();
    });
    let opts = PlayOptions {
        speed: args.speed,
        looped: args.looped,
        from_us: args.from.map_or(0, |d| d.as_micros() as u64),
        initial: !args.no_initial,
        precise: Duration::from_micros(args.precise_us),
    };
    let length = rec.length_us();
    if opts.from_us > length {
        bail!(
            "--from {} is past the end of the recording ({})",
            clock(opts.from_us),
            clock(length)
        );
    }
    eprintln!(
        "playing {} ({} entries, {}) onto {} at speed {}",
        args.file.display(),
        rec.entries.len(),
        clock(length),
        args.conn.url,
        args.speed
    );
    let show = |p: &Progress<'_>| {
        eprintln!(
            "playing: {} / {}, pass {}, {} sent, {}",
            clock(p.position_us),
            clock(p.length_us),
            p.pass + 1,
            p.sent,
            lateness_line(p.lateness)
        );
    };
    let played = recording::play(client, rec, &opts, &stop, show).await;
    watcher.abort();
    let report = played.context("playback stopped")?;
    // Everything sent has been handled by the router once this round trip is back.
    client.ping().await?;
    let mut refused = Vec::new();
    loop {
        match events.try_recv() {
            Ok(ConnectionEvent::RouterError { code, message, .. }) => {
                refused.push(format!("{code} {message}"));
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                refused.extend((0..n).map(|_| "(not kept: too many events)".to_owned()));
            }
            Err(_) => break,
        }
    }
    print_report(args, &report, &refused)?;
    if let Some(first) = refused.first() {
        bail!(
            "the router refused {} of the messages played (first: {first})",
            refused.len()
        );
    }
    Ok(())
}

fn print_report(args: &PlayArgs, r: &Report, refused: &[String]) -> anyhow::Result<()> {
    let l = &r.lateness;
    eprintln!(
        "{}: {} entries sent ({} cues, {} params restored, {} pass{}) in {:.1} s; {}",
        if r.interrupted { "stopped" } else { "done" },
        r.sent,
        l.count(),
        r.restored,
        r.passes,
        if r.passes == 1 { "" } else { "es" },
        r.elapsed.as_secs_f64(),
        lateness_line(l)
    );
    if args.conn.json {
        let us = |d: Duration| d.as_micros() as u64;
        println!(
            "{}",
            json!({
                "sent": r.sent,
                "cues": l.count(),
                "restored": r.restored,
                "passes": r.passes,
                "interrupted": r.interrupted,
                "elapsed_s": r.elapsed.as_secs_f64(),
                "p50_us": us(l.quantile(0.5)),
                "p99_us": us(l.quantile(0.99)),
                "max_us": us(l.max()),
                "late_over_1ms": l.over_1ms(),
                "refused": refused.len(),
            })
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_seconds_or_clock_form() {
        let ok = |s: &str| parse_time(s).map(|d| d.as_millis());
        assert_eq!(ok("90"), Ok(90_000));
        assert_eq!(ok("2.5"), Ok(2_500));
        assert_eq!(ok("01:30"), Ok(90_000));
        assert_eq!(ok("1:02:03.5"), Ok(3_723_500));
        for bad in ["", "x", "-1", "1:60", "1:60:00", "1:2:3:4", "inf"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(clock(83_400_000), "01:23.4");
    }
}
