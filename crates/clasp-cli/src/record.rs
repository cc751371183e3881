//! `clasp record`: subscribe to a pattern and write what arrives, with its time, to a recording
//! file (JSON lines, `docs/recording.md`).
//!
//! The params' state when recording starts is written first, as `initial` entries at time 0;
//! then every update as it arrives. Ctrl-C, SIGTERM or `--duration` end it with the file
//! complete (an end line) and flushed. Updates the client had to drop because the writer fell
//! behind are counted on the status line, in the end line, and make the command fail.

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use clasp_client::recording::{Entry, EntryKind, Header, Writer};
use clasp_client::{SignalType, SubscribeOptions, Update};

use crate::play::parse_time;
use crate::tools::{Conn, connect_with, parse_signal_type};

/// How often the status line is printed and the file flushed.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// `clasp record --pattern P --out FILE`.
#[derive(Debug, Args)]
pub(crate) struct RecordArgs {
    /// The pattern to record (`*` one segment, `**` any number).
    #[arg(long, default_value = "/**")]
    pattern: String,
    /// The recording to write (JSON lines; see docs/recording.md).
    #[arg(long, short = 'o', value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Only these signal types (comma-separated: param, event, stream, gesture, timeline)
    /// [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_signal_type)]
    types: Vec<SignalType>,
    /// Stop after this long: seconds (`90`, `2.5`) or `mm:ss` / `hh:mm:ss`.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    duration: Option<Duration>,
    /// Updates buffered between the connection and the file before any is dropped.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1..))]
    buffer: u32,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `clasp record` on its own runtime: two threads, so the connection keeps reading while
/// the file is written.
pub(crate) fn run(args: RecordArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(record(args))
}

/// Microseconds since the Unix epoch, now.
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Turns updates into entries: times, kinds and the file's bundle numbers.
struct Tagger {
    start: Instant,
    /// The client's number of the last update's bundle.
    last_bundle: Option<u64>,
    /// The file's number for it, and its time.
    bundle: Option<(u64, u64)>,
    bundles: u64,
}

impl Tagger {
    fn entry(&mut self, u: Update, initial: bool) -> Entry {
        let mut t_us = if initial {
            0
        } else {
            self.start.elapsed().as_micros() as u64
        };
        let bundle = match u.bundle {
            None => None,
            Some(b) if self.last_bundle == Some(b) => self.bundle.map(|(n, t)| {
                // A bundle's entries share the time of its first.
                t_us = t;
                n
            }),
            Some(_) => {
                self.bundles += 1;
                self.bundle = Some((self.bundles, t_us));
                Some(self.bundles)
            }
        };
        self.last_bundle = u.bundle;
        let kind = if initial && u.kind == SignalType::Param {
            EntryKind::Initial
        } else {
            EntryKind::of_signal(u.kind)
        };
        Entry {
            t_us,
            kind,
            address: u.address,
            value: u.value,
            revision: u.revision,
            bundle,
            gesture_id: u.gesture_id,
            phase: u.phase,
        }
    }
}

/// A future that resolves on Ctrl-C (SIGINT) or SIGTERM, with the handlers installed now.
pub(crate) fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => "interrupted",
                _ = term.recv() => "terminated",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            "interrupted"
        })
    }
}

fn open_out(args: &RecordArgs) -> anyhow::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true);
    if args.force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    o.open(&args.out).with_context(|| {
        let hint = if args.out.exists() && !args.force {
            " (it exists; --force replaces it)"
        } else {
            ""
        };
        format!("cannot create {}{hint}", args.out.display())
    })
}

async fn record(args: RecordArgs) -> anyhow::Result<()> {
    let file = open_out(&args)?;
    // Bundles arrive whole, so a recording keeps them.
    let features = ["param", "event", "stream", "gesture", "bundles"];
    let client = connect_with(&args.conn, "record", None, Some(&features)).await?;
    let result = record_with(&args, file, &client).await;
    client.close().await;
    result
}

async fn record_with(
    args: &RecordArgs,
    file: File,
    client: &clasp_client::Client,
) -> anyhow::Result<()> {
    let options = SubscribeOptions::new()
        .types(args.types.clone())
        .buffer(args.buffer as usize);
    let mut sub = client.subscribe_with(&args.pattern, options).await?;
    // The router handles a session's messages in order: the subscription's snapshot (the
    // state now) is in before the PONG.
    client.ping().await?;
    let stop = stop_signal()?;
    tokio::pin!(stop);
    let header = Header {
        started_at_us: wall_us(),
        pattern: args.pattern.clone(),
        url: args.conn.url.clone(),
        tool: format!("clasp {}", env!("CARGO_PKG_VERSION")),
        types: args.types.iter().map(|t| t.name().to_owned()).collect(),
    };
    let mut tag = Tagger {
        start: Instant::now(),
        last_bundle: None,
        bundle: None,
        bundles: 0,
    };
    let out = args.out.display();
    let io = |e: std::io::Error| anyhow::Error::new(e).context(format!("cannot write {out}"));
    let mut w = Writer::new(BufWriter::with_capacity(1 << 16, file), &header).map_err(io)?;
    // Everything that came before the PONG is the state at the start.
    while let Some(u) = sub.try_recv() {
        w.entry(&tag.entry(u, true)).map_err(io)?;
    }
    let initial = w.entries();
    w.flush().map_err(io)?;
    eprintln!(
        "recording {} from {} to {out}: {initial} params at the start",
        args.pattern, args.conn.url
    );
    let deadline = args.duration.map(|d| tag.start + d);
    let mut status = tokio::time::interval_at((tag.start + STATUS_EVERY).into(), STATUS_EVERY);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (tag.start, w.entries());
    let ended: Result<&str, &str> = loop {
        tokio::select! {
            u = sub.recv() => match u {
                Some(u) => {
                    w.entry(&tag.entry(u, false)).map_err(io)?;
                    // Whatever else is already here, without going back to the runtime (a
                    // bounded number, so the status line and the signals are still seen).
                    for _ in 0..1024 {
                        let Some(u) = sub.try_recv() else { break };
                        w.entry(&tag.entry(u, false)).map_err(io)?;
                    }
                }
                None => break Err("the connection to the router was lost"),
            },
            why = &mut stop => break Ok(why),
            () = sleep_until_opt(deadline) => break Ok("--duration reached"),
            _ = status.tick() => {
                w.flush().map_err(io)?;
                let now = Instant::now();
                let rate = (w.entries() - last.1) as f64 / (now - last.0).as_secs_f64();
                last = (now, w.entries());
                let dropped = sub.dropped();
                let warn = if dropped > 0 { "  WARNING: updates lost, raise --buffer" } else { "" };
                eprintln!(
                    "recording: {:.1} s, {} entries ({rate:.0}/s), {dropped} dropped{warn}",
                    (now - tag.start).as_secs_f64(),
                    w.entries(),
                );
            }
        }
    };
    // What had arrived before the end is kept.
    while let Some(u) = sub.try_recv() {
        w.entry(&tag.entry(u, false)).map_err(io)?;
    }
    let t_end = tag.start.elapsed();
    let dropped = sub.dropped();
    let entries = w.entries();
    w.finish(t_end.as_micros() as u64, dropped).map_err(io)?;
    let why = match ended {
        Ok(why) => why,
        Err(why) => why,
    };
    let secs = t_end.as_secs_f64();
    eprintln!(
        "{why}: {entries} entries ({initial} initial) in {secs:.1} s ({:.0}/s) written to {out}, \
         {dropped} dropped",
        (entries - initial) as f64 / secs.max(1e-9),
    );
    if let Err(e) = ended {
        bail!("{e}; the recording up to then is complete in {out}");
    }
    if dropped > 0 {
        bail!(
            "{dropped} updates were dropped because writing fell behind (raise --buffer); \
             {out} lacks them"
        );
    }
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
