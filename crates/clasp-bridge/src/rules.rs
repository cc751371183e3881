//! Runs a rules file ([`clasp_rules`]) against a router: subscribes to what the rules read,
//! records the state found at start without acting on it, feeds every change to the engine,
//! makes the writes it asks for when they are due, and reloads the file when it changes (a
//! file that no longer loads is reported with its line and column, and the rules in force
//! keep running).
//!
//! The engine's own writes come back from the router; they are recognised by address and
//! value ([`Origin::Unknown`]), so a rule never fires on its own echo.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clasp_mapping::{Write as LinkWrite, WriteKind};
use clasp_rules::{BundleItem, Engine, Format, Origin, RuleSet, RulesFile, UpdateKind, Write};
use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::link::{BridgeError, LinkSubscription, RouterLink};

/// How often the file is looked at for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// How often the counters for `/metrics` are refreshed.
const STATS_EVERY: Duration = Duration::from_millis(500);

/// What a running rules host shows: its counters as Prometheus text, and its reloads.
#[derive(Debug, Default)]
pub struct RulesStatus {
    /// The engine's counters (`clasp_rules_…`), refreshed twice a second.
    text: Mutex<String>,
    /// Times the file was loaded again after a change.
    pub reloads: AtomicU64,
    /// Times a changed file could not be loaded (the rules in force kept running).
    pub reload_errors: AtomicU64,
    /// Writes the router refused or that could not be sent.
    pub write_errors: AtomicU64,
}

impl RulesStatus {
    /// Appends the counters to a `/metrics` page.
    pub fn write_metrics(&self, o: &mut String) {
        o.push_str(&self.text.lock());
        let counters = [
            (
                "clasp_rules_reloads_total",
                "Times the rules file was loaded again after a change.",
                &self.reloads,
            ),
            (
                "clasp_rules_reload_errors_total",
                "Times a changed rules file could not be loaded (the rules in force kept running).",
                &self.reload_errors,
            ),
            (
                "clasp_rules_write_errors_total",
                "Rule writes the router refused or that could not be sent.",
                &self.write_errors,
            ),
        ];
        for (name, help, v) in counters {
            clasp_router::server::write_counter(o, name, help, v.load(Ordering::Relaxed));
        }
    }
}

/// Reads and checks the rules file at `path` (TOML, or JSON for `.json`).
pub fn load(path: &Path) -> Result<RuleSet, BridgeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BridgeError::Config(format!("{}: {e}", path.display())))?;
    let format = Format::from_path(path).unwrap_or(Format::Toml);
    RulesFile::parse(&text, format)
        .map_err(|e| BridgeError::Config(format!("{}: {e}", path.display())))
}

/// The file's modification time, if it can be read.
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The updates of several subscriptions as one stream; it never ends on its own (rules with
/// only timed triggers read nothing and must run on).
type Updates =
    futures_util::stream::SelectAll<futures_util::stream::BoxStream<'static, crate::link::Update>>;

/// Subscribes to `patterns`; the state they find is left in their buffers (see [`prime`]).
async fn subscribe(
    link: &RouterLink,
    patterns: Vec<String>,
) -> Result<Vec<LinkSubscription>, BridgeError> {
    let mut subs = Vec::new();
    for pattern in patterns {
        subs.push(link.subscribe(&pattern).await?);
    }
    // The router answers in order: once the PING is back, every subscription's current
    // state is in its buffer.
    link.sync().await?;
    Ok(subs)
}

/// Records the state `subs` found, acting on none of it, and merges them into one stream.
fn prime(subs: Vec<LinkSubscription>, engine: &mut Engine, now: Duration) -> Updates {
    let mut all: Updates = futures_util::stream::SelectAll::new();
    all.push(futures_util::stream::pending().boxed());
    for mut s in subs {
        while let Some(Some(u)) = s.next().now_or_never() {
            let kind = UpdateKind::from(u.kind);
            engine.on_update(&u.address, &u.value, kind, Origin::Snapshot, now);
        }
        all.push(s.boxed());
    }
    all
}

/// Feeds `u` to the engine as an update from the router.
fn feed(engine: &mut Engine, u: &crate::link::Update, now: Duration) {
    let kind = UpdateKind::from(u.kind);
    engine.on_update(&u.address, &u.value, kind, Origin::Unknown, now);
}

/// Runs the rules of `path` on `link` until `stop` is cancelled or the router closes the
/// rules' session. Fails at once if the file does not load.
pub async fn run(
    link: RouterLink,
    path: PathBuf,
    status: Arc<RulesStatus>,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    let start = Instant::now();
    let set = load(&path)?;
    let mut seen = modified(&path);
    let mut engine = Engine::new(set);
    let subs = subscribe(&link, engine.subscriptions()).await?;
    let mut all = prime(subs, &mut engine, start.elapsed());
    tracing::info!(file = %path.display(), rules = engine.stats().rules.len(), "rules running");
    let mut reload = tokio::time::interval(RELOAD_CHECK);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats_at = Instant::now();
    loop {
        let deadline = engine
            .next_deadline()
            .map(|d| tokio::time::Instant::from_std(start + d));
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            u = all.next() => {
                let Some(u) = u else { return Ok(()) };
                let now = start.elapsed();
                feed(&mut engine, &u, now);
                // Take what else arrived with it before acting.
                while let Some(Some(u)) = all.next().now_or_never() {
                    feed(&mut engine, &u, now);
                }
            }
            _ = sleep_until(deadline) => {}
            _ = reload.tick() => {
                if !link.is_connected() {
                    return Err(BridgeError::Closed);
                }
                let m = modified(&path);
                if m != seen {
                    seen = m;
                    // The new file's subscriptions first: one the rules' token may not make
                    // refuses the file, and the rules in force keep running.
                    let loaded = match load(&path) {
                        Ok(set) => subscribe(&link, set.subscriptions())
                            .await
                            .map(|subs| (set, subs)),
                        Err(e) => Err(e),
                    };
                    match loaded {
                        Ok((set, subs)) => {
                            // What the old subscriptions still hold is acted on first.
                            let now = start.elapsed();
                            while let Some(Some(u)) = all.next().now_or_never() {
                                feed(&mut engine, &u, now);
                            }
                            engine.replace(set);
                            all = prime(subs, &mut engine, now);
                            status.reloads.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(file = %path.display(), "rules reloaded");
                        }
                        Err(e) => {
                            status.reload_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "the changed rules file is refused; the rules in force keep running");
                        }
                    }
                }
            }
        }
        for out in engine.poll(start.elapsed(), wall_us()) {
            if let Err(e) = make(&link, &out.write).await {
                status.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(rule = %out.rule, error = %e, "rule write failed");
            }
        }
        if stats_at.elapsed() >= STATS_EVERY {
            stats_at = Instant::now();
            *status.text.lock() = engine.stats().prometheus("clasp_rules");
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn link_write(set: bool, address: &str, value: &clasp_proto::Value) -> LinkWrite {
    LinkWrite {
        address: address.to_owned(),
        value: value.clone(),
        kind: if set {
            WriteKind::Set
        } else {
            WriteKind::Event
        },
        rule: 0,
        feedback: false,
    }
}

async fn make(link: &RouterLink, w: &Write) -> Result<(), BridgeError> {
    match w {
        Write::Set { address, value } => link.write(&link_write(true, address, value)).await,
        Write::Publish { address, value } => link.write(&link_write(false, address, value)).await,
        Write::Bundle(items) => {
            let writes: Vec<LinkWrite> = items
                .iter()
                .map(BundleItem::parts)
                .map(|(set, a, v)| link_write(set, a, v))
                .collect();
            link.bundle(&writes).await
        }
    }
}
