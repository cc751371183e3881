//! Playing a recording onto a router with its original timing.
//!
//! Every cue's due instant is computed from the instant the pass started (never from the
//! previous send, so sleep errors do not add up). The wait is tokio's timer until
//! [`PlayOptions::precise`] before the due instant (the timer fires on millisecond ticks, up to
//! about a millisecond late), then a thread sleep and a short busy loop on the runtime's
//! thread; the send happens at once. The figures behind the default are in
//! `docs/recording.md`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clasp_proto::{Message, Publish, PublishPayload, Set, SignalType, Str, Value};
use tokio_util::sync::CancellationToken;

use super::format::{Entry, EntryKind, Recording};
use super::lateness::Lateness;
use crate::{Client, Result};

/// How often the progress callback is called during a pass.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How to play a recording.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// Playback speed: 2.0 plays twice as fast (must be more than 0).
    pub speed: f64,
    /// Start again from `from_us` (state restored) after the end, until stopped.
    pub looped: bool,
    /// Start this far into the recording (µs), after restoring the params as they were then.
    pub from_us: u64,
    /// Restore the initial snapshot (the `initial` entries) first.
    pub initial: bool,
    /// How long before a due instant the wait leaves tokio's timer (1 ms ticks) for a precise
    /// wait on the runtime's thread: a sleep, then a busy loop for the last 100 µs (0: the
    /// timer alone).
    pub precise: Duration,
}

impl Default for PlayOptions {
    fn default() -> Self {
        PlayOptions {
            speed: 1.0,
            looped: false,
            from_us: 0,
            initial: true,
            precise: Duration::from_millis(2),
        }
    }
}

/// Where a playback is, for progress lines.
#[derive(Debug)]
pub struct Progress<'a> {
    /// The instant the current pass started (its cues are due from here).
    pub started: Instant,
    /// The pass, from 0 (more than 0 only when looping).
    pub pass: u32,
    /// Cues' entries sent so far, all passes.
    pub sent: u64,
    /// The recording time reached, µs.
    pub position_us: u64,
    /// The recording's length, µs.
    pub length_us: u64,
    /// Lateness so far (one value per cue: a bundle counts once).
    pub lateness: &'a Lateness,
}

/// What a playback did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Entries sent (bundle members each count).
    pub sent: u64,
    /// Params written to restore the state before each pass.
    pub restored: u64,
    /// Passes started.
    pub passes: u32,
    /// Send instant minus due instant, one value per cue.
    pub lateness: Lateness,
    /// Whether `stop` ended it early.
    pub interrupted: bool,
    /// From the first pass's start to the end.
    pub elapsed: Duration,
}

/// One send: an entry, or a bundle's entries (`len` of them from `first`).
#[derive(Debug, Clone, Copy)]
struct Cue {
    t_us: u64,
    first: usize,
    len: usize,
}

/// The params as they were at `from_us`: the initial snapshot (if `initial`) overwritten by
/// every SET before `from_us`, in the order the addresses first appear.
pub fn state_at(rec: &Recording, from_us: u64, initial: bool) -> Vec<(Str, Value)> {
    let mut order: Vec<(Str, Value)> = Vec::new();
    let mut at: HashMap<Str, usize> = HashMap::new();
    for e in &rec.entries {
        let wanted = match e.kind {
            EntryKind::Initial => initial,
            EntryKind::Set => e.t_us < from_us,
            _ => false,
        };
        if e.t_us >= from_us && e.kind != EntryKind::Initial {
            break;
        }
        if !wanted {
            continue;
        }
        match at.get(&e.address) {
            Some(&i) => order[i].1 = e.value.clone(),
            None => {
                at.insert(e.address.clone(), order.len());
                order.push((e.address.clone(), e.value.clone()));
            }
        }
    }
    order
}

/// The cues from `from_us` on: bundle members grouped, `initial` entries left out.
fn cues(rec: &Recording, from_us: u64) -> Vec<Cue> {
    let mut out: Vec<Cue> = Vec::new();
    let mut prev_bundle = None;
    for (i, e) in rec.entries.iter().enumerate() {
        if e.kind == EntryKind::Initial || e.t_us < from_us {
            prev_bundle = None;
            continue;
        }
        match (out.last_mut(), e.bundle) {
            (Some(c), Some(b)) if prev_bundle == Some(b) && c.first + c.len == i => c.len += 1,
            _ => out.push(Cue {
                t_us: e.t_us,
                first: i,
                len: 1,
            }),
        }
        prev_bundle = e.bundle;
    }
    out
}

/// Plays `rec` onto the router of `client` until the end (or, looping, until `stop`), calling
/// `progress` when each pass starts and about once a second. A lost connection ends it with
/// the client's error.
pub async fn play(
    client: &Client,
    rec: &Recording,
    opts: &PlayOptions,
    stop: &CancellationToken,
    mut progress: impl FnMut(&Progress<'_>),
) -> Result<Report> {
    let speed = if opts.speed.is_finite() && opts.speed > 0.0 {
        opts.speed
    } else {
        1.0
    };
    let scaled = |us: u64| Duration::from_nanos((us as f64 * 1000.0 / speed).round() as u64);
    let state = state_at(rec, opts.from_us, opts.initial);
    let cues = cues(rec, opts.from_us);
    let length_us = rec.length_us();
    let mut report = Report {
        sent: 0,
        restored: 0,
        passes: 0,
        lateness: Lateness::new(),
        interrupted: false,
        elapsed: Duration::ZERO,
    };
    let mut first_start = None;
    'passes: loop {
        for (address, value) in &state {
            client.set(address, value.clone()).await?;
        }
        if !state.is_empty() {
            // The router handles a session's messages in order: once the PONG is back, every
            // SET above is applied.
            client.ping().await?;
            report.restored += state.len() as u64;
        }
        let started = Instant::now();
        let first = *first_start.get_or_insert(started);
        let mut ticks = Ticks {
            started,
            pass: report.passes,
            next: started + PROGRESS_EVERY,
            position_us: opts.from_us,
            length_us,
        };
        report.passes += 1;
        ticks.show(&mut progress, &report, opts.from_us);
        for cue in &cues {
            let due = started + scaled(cue.t_us - opts.from_us);
            if !wait_until(due, opts.precise, stop, &mut ticks, &mut progress, &report).await {
                report.interrupted = true;
                break 'passes;
            }
            send(client, &rec.entries[cue.first..cue.first + cue.len]).await?;
            report
                .lateness
                .record(Instant::now().saturating_duration_since(due));
            report.sent += cue.len as u64;
            ticks.position_us = cue.t_us;
            if Instant::now() >= ticks.next {
                ticks.show(&mut progress, &report, cue.t_us);
            }
        }
        if !opts.looped || stop.is_cancelled() {
            report.interrupted = stop.is_cancelled();
            report.elapsed = first.elapsed();
            break;
        }
        // The next pass begins when this one's recording time is over.
        let end = started + scaled(length_us.saturating_sub(opts.from_us));
        if !wait_until(
            end,
            Duration::ZERO,
            stop,
            &mut ticks,
            &mut progress,
            &report,
        )
        .await
        {
            report.interrupted = true;
            break;
        }
    }
    if let Some(first) = first_start {
        report.elapsed = first.elapsed();
    }
    Ok(report)
}

/// The progress callback's clock.
struct Ticks {
    started: Instant,
    pass: u32,
    next: Instant,
    position_us: u64,
    length_us: u64,
}

impl Ticks {
    fn show(&mut self, progress: &mut impl FnMut(&Progress<'_>), report: &Report, at: u64) {
        self.position_us = at;
        progress(&Progress {
            started: self.started,
            pass: self.pass,
            sent: report.sent,
            position_us: at,
            length_us: self.length_us,
            lateness: &report.lateness,
        });
        self.next = Instant::now() + PROGRESS_EVERY;
    }
}

/// The last stretch of a precise wait that is a busy loop rather than a sleep (a thread's
/// sleep ends up to ~60 µs late on Linux: the default timer slack and the wake-up).
const BUSY: Duration = Duration::from_micros(100);

/// Waits until `due`: tokio's timer until `precise` before it, then on this thread (a sleep,
/// then a busy loop for the last [`BUSY`]). `false` if stopped.
///
/// The last stretch blocks the runtime's thread for at most `precise`; the connection's task
/// gets a turn just before it, so what was sent is written first.
async fn wait_until(
    due: Instant,
    precise: Duration,
    stop: &CancellationToken,
    ticks: &mut Ticks,
    progress: &mut impl FnMut(&Progress<'_>),
    report: &Report,
) -> bool {
    loop {
        let now = Instant::now();
        if now >= due {
            return true;
        }
        if stop.is_cancelled() {
            return false;
        }
        if now >= ticks.next {
            ticks.show(progress, report, ticks.position_us);
        }
        let left = due - now;
        if left > precise {
            let wake = (due - precise).min(ticks.next);
            tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => {}
                () = stop.cancelled() => return false,
            }
            continue;
        }
        // Let the connection's task write what was sent before this thread waits.
        tokio::task::yield_now().await;
        let left = due.saturating_duration_since(Instant::now());
        if left > BUSY {
            std::thread::sleep(left - BUSY);
        }
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        return true;
    }
}

/// Sends one cue: an entry as the signal it was, or a bundle's entries as one BUNDLE.
async fn send(client: &Client, entries: &[Entry]) -> Result<()> {
    if let [e] = entries
        && e.bundle.is_none()
    {
        let a = &*e.address;
        let v = e.value.clone();
        return match e.kind {
            EntryKind::Initial | EntryKind::Set => client.set(a, v).await,
            EntryKind::Event => client.emit(a, v).await,
            EntryKind::Stream => client.stream(a, v).await,
            EntryKind::Gesture => {
                let id = e.gesture_id.unwrap_or_default();
                client.gesture(a, id, e.phase.unwrap_or_default(), v).await
            }
            EntryKind::Timeline => client.timeline(a, v).await,
        };
    }
    let now = client.server_time();
    let messages = entries
        .iter()
        .map(|e| {
            let signal = match e.kind {
                EntryKind::Initial | EntryKind::Set => {
                    return Message::Set(Set {
                        address: e.address.clone(),
                        value: e.value.clone(),
                        ..Set::default()
                    });
                }
                EntryKind::Event => SignalType::Event,
                EntryKind::Stream => SignalType::Stream,
                EntryKind::Gesture => SignalType::Gesture,
                EntryKind::Timeline => SignalType::Timeline,
            };
            Message::Publish(Publish {
                address: e.address.clone(),
                signal,
                payload: PublishPayload::Value(e.value.clone()),
                timestamp: Some(now),
                id: e.gesture_id,
                phase: e.phase.unwrap_or_default(),
                ..Publish::default()
            })
        })
        .collect();
    client.bundle_fire(messages).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::format::Header;

    fn rec(entries: Vec<Entry>) -> Recording {
        Recording {
            header: Header {
                started_at_us: 0,
                pattern: "/**".into(),
                url: String::new(),
                tool: String::new(),
                types: Vec::new(),
            },
            entries,
            end: None,
        }
    }

    fn e(t: u64, kind: EntryKind, a: &str, v: i64, bundle: Option<u64>) -> Entry {
        let mut e = Entry::new(t, kind, a, Value::Int(v));
        e.bundle = bundle;
        e
    }

    #[test]
    fn state_at_a_point_and_cues_after_it() {
        let r = rec(vec![
            e(0, EntryKind::Initial, "/a", 1, None),
            e(0, EntryKind::Initial, "/b", 1, None),
            e(10, EntryKind::Set, "/b", 2, None),
            e(15, EntryKind::Event, "/go", 0, None),
            e(20, EntryKind::Set, "/c", 3, Some(1)),
            e(20, EntryKind::Set, "/a", 4, Some(1)),
            e(30, EntryKind::Set, "/a", 5, None),
        ]);
        let s = |v: Vec<(Str, Value)>| {
            v.into_iter()
                .map(|(a, v)| format!("{a}={}", crate::json::to_json(&v)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(s(state_at(&r, 0, true)), "/a=1 /b=1");
        assert_eq!(s(state_at(&r, 0, false)), "");
        assert_eq!(s(state_at(&r, 25, true)), "/a=4 /b=2 /c=3");
        assert_eq!(s(state_at(&r, 25, false)), "/b=2 /c=3 /a=4");
        let c: Vec<(u64, usize)> = cues(&r, 0).iter().map(|c| (c.t_us, c.len)).collect();
        assert_eq!(c, [(10, 1), (15, 1), (20, 2), (30, 1)]);
        let c: Vec<(u64, usize)> = cues(&r, 20).iter().map(|c| (c.t_us, c.len)).collect();
        assert_eq!(c, [(20, 2), (30, 1)]);
    }
}
