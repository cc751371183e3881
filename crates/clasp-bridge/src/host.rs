//! Running bridges by configuration: the `[[bridge]]` tables (`kind = "midi"`, …), each
//! started on a router link and reporting its counters for status lines and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::http::{HttpBridge, HttpBridgeConfig, HttpStats};
use crate::lighting::artnet_bridge::{ArtNetBridge, ArtNetConfig};
use crate::lighting::dmx_bridge::{DmxBridge, DmxConfig};
use crate::lighting::sacn_bridge::{SacnBridge, SacnConfig};
use crate::link::{BridgeError, RouterLink};
use crate::mapper::MapperStats;
use crate::midi::{MidiBridge, MidiConfig, MidiStats};
use crate::mqtt::{MqttBridge, MqttBridgeConfig, MqttStats};
use crate::osc::bridge::OscStats;
use crate::osc::{OscBridge, OscBridgeConfig};
use crate::socketio::{SocketIoBridge, SocketIoConfig};
use crate::stats::BridgeStats;
use crate::ws::{WsBridge, WsBridgeConfig, WsMode, WsStats};

/// One `[[bridge]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BridgeSpec {
    /// A MIDI device as a raw byte stream (see [`crate::midi`]).
    Midi(MidiConfig),
    /// OSC apps over UDP (see [`crate::osc`]).
    Osc(OscBridgeConfig),
    /// A REST and Server-Sent Events API (see [`crate::http`]).
    Http(HttpBridgeConfig),
    /// An external MQTT broker (see [`crate::mqtt`]).
    Mqtt(MqttBridgeConfig),
    /// A Socket.IO server, as its client (see [`crate::socketio`]).
    Socketio(SocketIoConfig),
    /// WebSocket JSON peers, as a server or a client (see [`crate::ws`]).
    #[serde(rename = "websocket")]
    Ws(WsBridgeConfig),
    /// Art-Net universes (see [`crate::lighting::artnet_bridge`]).
    Artnet(ArtNetConfig),
    /// sACN (E1.31) universes (see [`crate::lighting::sacn_bridge`]).
    Sacn(SacnConfig),
    /// A DMX USB widget (see [`crate::lighting::dmx_bridge`]).
    Dmx(DmxConfig),
}

impl BridgeSpec {
    /// A short name for logs and status lines, e.g. `midi nano`.
    pub fn label(&self) -> String {
        match self {
            BridgeSpec::Midi(c) => format!("midi {}", c.name),
            BridgeSpec::Osc(c) => format!("osc {}", c.listen),
            BridgeSpec::Http(c) => format!("http {}", c.listen),
            BridgeSpec::Mqtt(c) => format!("mqtt {}", c.broker),
            BridgeSpec::Socketio(c) => format!("socketio {}", c.url),
            BridgeSpec::Artnet(c) => format!("artnet {}", c.bind),
            BridgeSpec::Sacn(c) => format!("sacn {}", c.bind),
            BridgeSpec::Dmx(c) => format!("dmx {}", c.device.display()),
            BridgeSpec::Ws(c) => match (&c.listen, &c.url) {
                (Some(l), _) if c.mode == WsMode::Server => format!("websocket {l}"),
                (_, Some(u)) => format!("websocket {u}"),
                _ => "websocket".into(),
            },
        }
    }

    /// Checks what can be checked before anything is opened.
    pub fn check(&self) -> Result<(), BridgeError> {
        match self {
            BridgeSpec::Midi(c) => c.prefix().map(drop),
            BridgeSpec::Osc(c) => c.prefix().map(drop),
            BridgeSpec::Http(_) => Ok(()),
            BridgeSpec::Mqtt(c) => c.check().map(drop),
            BridgeSpec::Socketio(c) => c.check().map(drop),
            BridgeSpec::Ws(c) => c.check().map(drop),
            BridgeSpec::Artnet(c) => c.check().map(drop),
            BridgeSpec::Sacn(c) => c.check().map(drop),
            BridgeSpec::Dmx(c) => c.check().map(drop),
        }
    }
}

/// What a running bridge reports.
pub trait Counters: Send + Sync + std::fmt::Debug {
    /// One status line (without the bridge's label).
    fn status(&self) -> String;
    /// Counters for `/metrics`: (name suffix, help, value); names become
    /// `clasp_bridge_<suffix>{bridge="<label>"}`.
    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)>;
}

impl Counters for BridgeStats {
    fn status(&self) -> String {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} messages in, {} out, {} skipped, {} errors, {} reconnects",
            g(&self.messages_in),
            g(&self.messages_out),
            g(&self.skipped),
            g(&self.errors),
            g(&self.reconnects)
        )
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        metrics(
            g(&self.messages_in),
            g(&self.messages_out),
            g(&self.errors),
            g(&self.skipped),
            g(&self.reconnects),
        )
    }
}

/// The five counters every bridge reports in `/metrics`.
fn metrics(
    messages_in: u64,
    messages_out: u64,
    errors: u64,
    skipped: u64,
    reconnects: u64,
) -> Vec<(&'static str, &'static str, u64)> {
    vec![
        (
            "messages_in_total",
            "Messages the bridge read from its device or peer.",
            messages_in,
        ),
        (
            "messages_out_total",
            "Messages the bridge wrote to its device or peer.",
            messages_out,
        ),
        (
            "errors_total",
            "Router writes of the bridge that failed, and its failed connection attempts (a broker or app refusing it, TLS failures).",
            errors,
        ),
        (
            "skipped_total",
            "Input the bridge could not read (counted and skipped).",
            skipped,
        ),
        (
            "reconnects_total",
            "Times the bridge reopened its device or reconnected.",
            reconnects,
        ),
    ]
}

impl Counters for MidiStats {
    fn status(&self) -> String {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} messages in, {} out, {} writes, {} bytes skipped, {} unmapped, {} errors, {} reopens",
            g(&self.messages_in),
            g(&self.messages_out),
            g(&self.writes),
            g(&self.skipped),
            g(&self.unmapped),
            g(&self.errors),
            g(&self.reopened)
        )
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        metrics(
            g(&self.messages_in),
            g(&self.messages_out),
            g(&self.errors),
            g(&self.skipped) + g(&self.unmapped),
            g(&self.reopened),
        )
    }
}

impl Counters for HttpStats {
    fn status(&self) -> String {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let w = &self.webhooks;
        format!(
            "{} requests, {} refused or failed, {} events streamed; webhooks {} sent, {} failed, {} retried, {} dropped",
            g(&self.requests),
            g(&self.errors),
            g(&self.streamed),
            g(&w.sent),
            g(&w.failed),
            g(&w.retried),
            g(&w.dropped)
        )
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let w = &self.webhooks;
        metrics(
            g(&self.requests),
            g(&self.streamed) + g(&w.sent),
            g(&self.errors) + g(&w.failed),
            g(&w.dropped),
            g(&w.retried),
        )
    }
}

impl Counters for MapperStats {
    fn status(&self) -> String {
        let (updates, writes, errors) = self.snapshot();
        format!("{updates} updates in, {writes} writes out, {errors} errors")
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let (updates, writes, errors) = self.snapshot();
        metrics(updates, writes, errors, 0, 0)
    }
}

/// A bridge started by [`start`].
#[derive(Debug, Clone)]
pub struct Hosted {
    /// Its label.
    pub label: String,
    /// Its counters.
    pub counters: Arc<dyn Counters>,
}

/// Starts the bridge `spec` on `link` (its device opened, its subscriptions in place) and
/// runs it on a task until `stop`; errors at start are returned, later ones logged.
pub async fn start(
    spec: BridgeSpec,
    link: RouterLink,
    stop: CancellationToken,
) -> Result<Hosted, BridgeError> {
    let label = spec.label();
    Ok(match spec {
        BridgeSpec::Midi(cfg) => {
            let stats = Arc::new(MidiStats::default());
            let run = MidiBridge::start(link, cfg).await?.run(stats.clone(), stop);
            spawn(label, stats, run)
        }
        BridgeSpec::Osc(cfg) => {
            let stats = Arc::new(OscStats::default());
            let run = OscBridge::start(link, cfg).await?.run(stats.clone(), stop);
            spawn(label, stats, run)
        }
        BridgeSpec::Artnet(cfg) => {
            let stats = Arc::new(BridgeStats::default());
            let run = ArtNetBridge::start(link, cfg)
                .await?
                .run(stats.clone(), stop);
            spawn(label, stats, run)
        }
        BridgeSpec::Dmx(cfg) => {
            let stats = Arc::new(BridgeStats::default());
            let run = DmxBridge::start(link, cfg).await?.run(stats.clone(), stop);
            spawn(label, stats, run)
        }
        BridgeSpec::Sacn(cfg) => {
            let stats = Arc::new(BridgeStats::default());
            let run = SacnBridge::start(link, cfg).await?.run(stats.clone(), stop);
            spawn(label, stats, run)
        }
        BridgeSpec::Mqtt(cfg) => {
            let stats = Arc::new(MqttStats::default());
            let run = MqttBridge::start(link, cfg).await?.run(stats.clone(), stop);
            spawn(label, stats, run)
        }
        BridgeSpec::Socketio(cfg) => {
            let stats = Arc::new(BridgeStats::default());
            let run = SocketIoBridge::start(link, cfg)
                .await?
                .run(stats.clone(), stop);
            spawn(label, stats, run)
        }
        BridgeSpec::Ws(cfg) => {
            let stats = Arc::new(WsStats::default());
            let run = WsBridge::start(link, cfg).await?.run(stats.clone(), stop);
            spawn(label, stats, run)
        }
        BridgeSpec::Http(cfg) => {
            let stats = Arc::new(HttpStats::default());
            let run = HttpBridge::start(link, cfg).await?.run(stats.clone(), stop);
            spawn(label, stats, run)
        }
    })
}

/// Runs a started bridge on a task (its later errors logged) and reports it.
fn spawn<S: Counters + 'static>(
    label: String,
    stats: Arc<S>,
    run: impl std::future::Future<Output = Result<(), BridgeError>> + Send + 'static,
) -> Hosted {
    let l = label.clone();
    tokio::spawn(async move {
        if let Err(e) = run.await {
            tracing::error!(bridge = %l, error = %e, "bridge stopped");
        }
    });
    Hosted {
        label,
        counters: stats,
    }
}

/// Writes every hosted bridge's counters in the Prometheus text format.
pub fn write_metrics(out: &mut String, hosted: &[Hosted]) {
    use std::fmt::Write as _;
    let mut seen = std::collections::BTreeMap::<&'static str, &'static str>::new();
    let mut lines = Vec::new();
    for h in hosted {
        for (name, help, v) in h.counters.metrics() {
            seen.insert(name, help);
            let label = h.label.replace(['\\', '"'], "_");
            lines.push((
                name,
                format!("clasp_bridge_{name}{{bridge=\"{label}\"}} {v}"),
            ));
        }
    }
    for (name, help) in seen {
        let _ = writeln!(
            out,
            "# HELP clasp_bridge_{name} {help}\n# TYPE clasp_bridge_{name} counter"
        );
        for (n, line) in &lines {
            if *n == name {
                let _ = writeln!(out, "{line}");
            }
        }
    }
}
