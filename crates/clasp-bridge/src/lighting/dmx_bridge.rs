//! The DMX-over-USB bridge for an ENTTEC DMX USB Pro (or a compatible widget) on a serial
//! device: one universe at `/dmx/{universe}/{channel}` and `/dmx/{universe}`. Output (the
//! default): frames sent as label-6 messages, paced (default 40 Hz, only on change) and sent
//! again every second when nothing changes, so fixtures never time out even if the widget
//! restarts. Input (`direction = "input"`, the widget shares one line for both): the widget is
//! told to send every frame it receives (label 8), frames (label 5) are written like network
//! input. At start the widget's parameters are asked for (label 3) and logged. The device is
//! opened again, with back-off, if it goes away.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clasp_mapping::echo::Echoes;
use clasp_proto::SignalType;
use futures_util::FutureExt;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub use super::common::{Direction, InputWrites};
use super::common::{Inputs, Sink, apply_update, next, sleep_until};
use super::enttec::{self, Message, Parser};
use super::merge::{MergeMode, Merger};
use super::pace::{Pacer, Sequence};
use crate::link::{BridgeError, LinkSubscription, RouterLink};
use crate::stats::BridgeStats;
use crate::stream::ByteStream;

/// The kind of widget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interface {
    /// ENTTEC DMX USB Pro framing (0x7E … 0xE7).
    #[default]
    EnttecPro,
    /// ENTTEC Open DMX USB (and other bare FTDI dongles): the host makes the signal (break,
    /// mark after break, 250 kbaud 8N2), output only ([`super::open_dmx`]).
    EnttecOpen,
}

/// One DMX-over-USB bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmxConfig {
    /// The serial device, e.g. `/dev/ttyUSB0`.
    pub device: PathBuf,
    /// The widget.
    #[serde(default)]
    pub interface: Interface,
    /// The universe number in addresses (default 1).
    #[serde(default = "one")]
    pub universe: u16,
    /// The prefix (default `/dmx`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Frames per second at most (default 40).
    #[serde(default = "default_refresh")]
    pub refresh_hz: f64,
    /// An unchanged frame is sent again after this many ms (default 1000).
    #[serde(default = "default_keepalive")]
    pub keepalive_ms: u64,
    /// Output (the default) or input; a widget does one at a time.
    #[serde(default = "output")]
    pub direction: Direction,
    /// What input writes.
    #[serde(default)]
    pub input: InputWrites,
}

fn one() -> u16 {
    1
}

fn default_namespace() -> String {
    "/dmx".into()
}

fn default_refresh() -> f64 {
    40.0
}

fn default_keepalive() -> u64 {
    1000
}

fn output() -> Direction {
    Direction::Output
}

impl DmxConfig {
    /// A bridge of `device` with every other setting at its default.
    pub fn new(device: impl Into<PathBuf>) -> DmxConfig {
        DmxConfig {
            device: device.into(),
            interface: Interface::default(),
            universe: 1,
            namespace: default_namespace(),
            refresh_hz: default_refresh(),
            keepalive_ms: default_keepalive(),
            direction: output(),
            input: InputWrites::default(),
        }
    }

    /// Checks the settings; the namespace.
    pub fn check(&self) -> Result<String, BridgeError> {
        let prefix = clasp_osc::map::normalize_namespace(&self.namespace)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                BridgeError::Config(format!(
                    "DMX namespace `{}` must be an address such as /dmx",
                    self.namespace
                ))
            })?;
        if !(1.0..=44.0).contains(&self.refresh_hz) {
            return Err(BridgeError::Config(format!(
                "DMX refresh_hz {}: use 1–44 (a DMX line carries about 44 full frames a second)",
                self.refresh_hz
            )));
        }
        if self.interface == Interface::EnttecOpen && self.direction != Direction::Output {
            return Err(BridgeError::Config(
                "an Open DMX USB dongle only sends: use direction = \"output\" (or an ENTTEC DMX USB Pro to receive)"
                    .into(),
            ));
        }
        if self.direction == Direction::Both {
            return Err(BridgeError::Config(
                "a DMX USB widget sends or receives, not both: direction = \"output\" or \"input\""
                    .into(),
            ));
        }
        Ok(prefix)
    }
}

/// A DMX bridge with its widget open, ready to [`DmxBridge::run`].
#[derive(Debug)]
pub struct DmxBridge {
    link: RouterLink,
    cfg: DmxConfig,
    prefix: String,
    device: Device,
    sub: Option<LinkSubscription>,
    pacer: Pacer,
    widget: Widget,
}

/// What the widget said of itself (its label-3 reply), once it has.
pub type Widget = Arc<parking_lot::Mutex<Option<enttec::Params>>>;

/// The open widget.
enum Device {
    Pro(ByteStream),
    Open(serialport::TTYPort),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Pro(_) => "EnttecPro",
            Device::Open(_) => "EnttecOpen",
        })
    }
}

fn open_device(cfg: &DmxConfig) -> Result<Device, BridgeError> {
    match cfg.interface {
        Interface::EnttecPro => open(cfg).map(Device::Pro),
        Interface::EnttecOpen => super::open_dmx::open(&cfg.device)
            .map(Device::Open)
            .map_err(|e| {
                BridgeError::Device(format!(
                    "cannot open the Open DMX line {}: {e}",
                    cfg.device.display()
                ))
            }),
    }
}

fn open(cfg: &DmxConfig) -> Result<ByteStream, BridgeError> {
    ByteStream::open(&cfg.device).map_err(|e| {
        BridgeError::Device(format!(
            "cannot open the DMX widget {}: {e}",
            cfg.device.display()
        ))
    })
}

/// What is written to the widget when it is (re)opened: a parameters request, and for input
/// "send every frame you receive".
fn hello(cfg: &DmxConfig) -> Vec<u8> {
    let mut out = Vec::new();
    enttec::encode(enttec::LABEL_GET_PARAMS, &[0, 0], &mut out);
    if cfg.direction.input() {
        enttec::encode(enttec::LABEL_RECEIVE_MODE, &[0], &mut out);
    }
    out
}

impl DmxBridge {
    /// Opens the widget and subscribes (output); what the router holds for the universe goes
    /// out at once.
    pub async fn start(link: RouterLink, cfg: DmxConfig) -> Result<DmxBridge, BridgeError> {
        let prefix = cfg.check()?;
        let device = open_device(&cfg)?;
        let mut pacer = Pacer::new(
            Duration::from_secs_f64(1.0 / cfg.refresh_hz),
            Duration::from_millis(cfg.keepalive_ms.max(100)),
            Sequence::Sacn,
        );
        let sub = if cfg.direction.output() {
            let mut sub = link.subscribe(&format!("{prefix}/**")).await?;
            link.sync().await?;
            let now = Instant::now();
            pacer.add(cfg.universe, now);
            while let Some(Some(u)) = futures_util::StreamExt::next(&mut sub).now_or_never() {
                apply_update(
                    &mut pacer,
                    &prefix,
                    &[cfg.universe],
                    &u.address,
                    &u.value,
                    now,
                );
            }
            Some(sub)
        } else {
            None
        };
        tracing::info!(device = %cfg.device.display(), interface = ?cfg.interface, %prefix, universe = cfg.universe, "DMX bridge running");
        Ok(DmxBridge {
            link,
            cfg,
            prefix,
            device,
            sub,
            pacer,
            widget: Widget::default(),
        })
    }

    /// The widget's parameters, filled in when its reply comes.
    pub fn widget(&self) -> Widget {
        self.widget.clone()
    }

    /// Runs until `stop`.
    pub async fn run(
        self,
        stats: Arc<BridgeStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let DmxBridge {
            link,
            cfg,
            prefix,
            device,
            sub,
            pacer,
            widget,
        } = self;
        match device {
            Device::Pro(device) => {
                run_pro(link, cfg, prefix, device, sub, pacer, widget, stats, stop).await
            }
            Device::Open(port) => {
                super::open_dmx::run(link, cfg, prefix, port, sub, pacer, stats, stop).await
            }
        }
    }
}

/// The ENTTEC DMX USB Pro: label-6 frames out, label-5 frames in, label-3 parameters.
#[allow(clippy::too_many_arguments)]
async fn run_pro(
    link: RouterLink,
    cfg: DmxConfig,
    prefix: String,
    mut device: ByteStream,
    mut sub: Option<LinkSubscription>,
    mut pacer: Pacer,
    widget: Widget,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    let mut parser = Parser::new();
    let mut msgs: Vec<Message> = Vec::new();
    let mut inputs = Inputs::default();
    let mut echoes = Echoes::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.refresh_hz));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(520);
    let mut backoff = Duration::from_millis(250);
    let mut skipped_seen = 0;
    if let Err(e) = device.tx.write_all(&hello(&cfg)).await {
        tracing::warn!(device = %cfg.device.display(), error = %e, "cannot write to the DMX widget");
    }
    loop {
        let due = pacer.next_due();
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = device.rx.read(&mut buf) => match r {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(250);
                    parser.feed(&buf[..n], &mut msgs);
                    let skipped = parser.skipped();
                    stats.skipped.fetch_add(skipped - skipped_seen, Ordering::Relaxed);
                    skipped_seen = skipped;
                    for m in msgs.drain(..) {
                        stats.messages_in.fetch_add(1, Ordering::Relaxed);
                        on_message(&cfg, &m, &mut inputs, &widget, &stats);
                    }
                }
                r => {
                    let why = r.map_or_else(|e| e.to_string(), |_| "end of stream".into());
                    tracing::warn!(device = %cfg.device.display(), %why, "DMX widget lost; reopening");
                    device = loop {
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        if let Ok(mut d) = open(&cfg) {
                            stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            let _ = d.tx.write_all(&hello(&cfg)).await;
                            break d;
                        }
                    };
                    parser = Parser::new();
                    skipped_seen = 0;
                    // The widget may have restarted and know nothing: send the frame again.
                    pacer.touch(cfg.universe);
                }
            },
            _ = tick.tick(), if cfg.direction.input() => {
                let sink = Sink { link: &link, prefix: &prefix, what: cfg.input, echoes: &mut echoes, pacer: None, stats: &stats };
                inputs.flush(Instant::now(), sink).await;
            }
            u = next(&mut sub) => {
                let Some(u) = u else { return Err(BridgeError::Closed) };
                if u.kind == SignalType::Param && !echoes.is_echo(&u.address, &u.value) {
                    apply_update(&mut pacer, &prefix, &[cfg.universe], &u.address, &u.value, Instant::now());
                }
            }
            _ = sleep_until(due) => {
                for f in pacer.poll(Instant::now()) {
                    out.clear();
                    enttec::encode_dmx(&f.frame, &mut out);
                    match device.tx.write_all(&out).await {
                        Ok(()) => { stats.messages_out.fetch_add(1, Ordering::Relaxed); }
                        Err(e) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(device = %cfg.device.display(), error = %e, "cannot write to the DMX widget");
                        }
                    }
                }
            }
        }
    }
}

/// A message from the widget: a received frame (input), or its parameters (logged).
fn on_message(
    cfg: &DmxConfig,
    m: &Message,
    inputs: &mut Inputs,
    widget: &Widget,
    stats: &BridgeStats,
) {
    match m.label {
        enttec::LABEL_RECEIVED_DMX if cfg.direction.input() => match enttec::received(&m.data) {
            Some(r) if r.start_code == 0 => {
                if r.status != 0 {
                    // The widget lost some of the line: counted, the frame still taken.
                    stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                inputs.input(
                    cfg.universe,
                    [0; 16],
                    r.slots,
                    0,
                    || Merger::artnet(MergeMode::Htp),
                    stats,
                );
            }
            Some(_) => {}
            None => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
        },
        enttec::LABEL_GET_PARAMS => match enttec::params(&m.data) {
            Some(p) => {
                tracing::info!(
                    device = %cfg.device.display(),
                    firmware = format_args!("{}.{}", p.firmware >> 8, p.firmware & 0xFF),
                    break_us = f64::from(p.break_time) * 10.67,
                    mab_us = f64::from(p.mab_time) * 10.67,
                    rate = p.rate,
                    "DMX widget parameters"
                );
                *widget.lock() = Some(p);
            }
            None => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
        },
        _ => {}
    }
}
