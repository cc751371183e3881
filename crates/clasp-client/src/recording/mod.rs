//! Recordings of what a router carried (feature `recording`): the file format, and a player
//! that sends a recording back onto a router with its original timing. Used by `clasp record`,
//! `clasp play` and the `playback` benchmark of `clasp-bench`.
//!
//! A recording is JSON lines: a header (`{"format": "clasp-recording", "version": 1, ...}`),
//! then one entry per line (time in µs since the start, kind, address, value exactly, revision,
//! bundle number), then an end line. The specification is `docs/recording.md`.
//!
//! ```no_run
//! # async fn demo(client: clasp_client::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use clasp_client::recording::{PlayOptions, play, read};
//! let file = std::io::BufReader::new(std::fs::File::open("show.jsonl")?);
//! let rec = read(file)?;
//! let stop = clasp_client::recording::CancellationToken::new();
//! let report = play(&client, &rec, &PlayOptions::default(), &stop, |_| {}).await?;
//! println!("p99 late {:?}", report.lateness.quantile(0.99));
//! # Ok(()) }
//! ```

mod format;
mod lateness;
mod player;
pub mod value;

pub use format::{
    End, Entry, EntryKind, FORMAT, FormatError, Header, Recording, VERSION, Writer, entry_json,
    read,
};
pub use lateness::Lateness;
pub use player::{PlayOptions, Progress, Report, play, state_at};
/// What stops a [`play`] (re-exported so callers need not depend on `tokio-util`).
pub use tokio_util::sync::CancellationToken;
