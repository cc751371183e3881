//! The MIDI bridge: a device as a raw MIDI byte stream (an ALSA raw MIDI device such as
//! `/dev/snd/midiC1D0`, a serial port set to raw mode, a pseudo-terminal), or a port of the
//! ALSA sequencer (`alsa:NAME`, with the `alsa` feature), joined to the router
//! under `/midi/{name}`, both ways: what the device sends becomes params and events, and
//! changes under its prefix made by anyone else go back to it (motorised faders, LEDs).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clasp_mapping::WriteKind;
use clasp_mapping::echo::Echoes;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::{Decoder, Inbound, MidiMsg, Parser, encode};
use crate::link::{BridgeError, LinkSubscription, RouterLink};
use crate::stream::ByteStream;

/// One MIDI device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidiConfig {
    /// The device's segment in addresses: `/midi/{name}/…`.
    pub name: String,
    /// The byte stream to read and write, or `alsa:NAME` for the ALSA sequencer ports whose
    /// name contains NAME (with the `alsa` feature).
    pub port: PathBuf,
    /// The prefix (default `/midi`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Only read from the device; send nothing back to it.
    #[serde(default)]
    pub input_only: bool,
}

fn default_namespace() -> String {
    "/midi".into()
}

impl MidiConfig {
    /// The address prefix of this device, checked.
    pub fn prefix(&self) -> Result<String, BridgeError> {
        let ok_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok_name {
            return Err(BridgeError::Config(format!(
                "MIDI device name `{}`: use letters, digits, `-`, `_` and `.`",
                self.name
            )));
        }
        let ns = self.namespace.trim_end_matches('/');
        if !ns.starts_with('/') || ns.contains(['*', ' ']) {
            return Err(BridgeError::Config(format!(
                "namespace `{}` must be an address such as /midi",
                self.namespace
            )));
        }
        Ok(format!("{ns}/{}", self.name))
    }
}

/// Counters of a running MIDI bridge.
#[derive(Debug, Default)]
pub struct MidiStats {
    /// MIDI messages read from the device.
    pub messages_in: AtomicU64,
    /// MIDI messages written to the device.
    pub messages_out: AtomicU64,
    /// Router writes made for the device's messages.
    pub writes: AtomicU64,
    /// Bytes the parser skipped (stray data, cut-off messages, oversized SysEx, undefined).
    pub skipped: AtomicU64,
    /// Router updates under the prefix that are not part of the layout.
    pub unmapped: AtomicU64,
    /// Router writes refused or not sent.
    pub errors: AtomicU64,
    /// Times the device was opened again after it went away.
    pub reopened: AtomicU64,
}

/// The device: a byte stream, non-blocking, driven by the runtime's poller (one descriptor for
/// reading and a duplicate for writing: tokio's pipe ends do plain non-blocking `read`/`write`
/// on any pollable descriptor, and raw MIDI devices, ttys and ptys are), or an ALSA sequencer
/// port.
enum Device {
    Raw {
        rx: pipe::Receiver,
        tx: pipe::Sender,
    },
    #[cfg(feature = "alsa")]
    Seq(super::seq::SeqPort),
}

/// The ALSA sequencer port name in `alsa:NAME`.
fn seq_name(port: &std::path::Path) -> Option<&str> {
    port.to_str()?.strip_prefix("alsa:")
}

impl Device {
    fn open(port: &std::path::Path) -> Result<Device, String> {
        if let Some(name) = seq_name(port) {
            #[cfg(feature = "alsa")]
            return super::seq::SeqPort::open(name).map(Device::Seq);
            #[cfg(not(feature = "alsa"))]
            return Err(format!(
                "`alsa:{name}`: this build has no ALSA sequencer support (build clasp with \
                 `--features alsa`), or give the raw device, e.g. /dev/snd/midiC1D0"
            ));
        }
        ByteStream::open(port)
            .map(|s| Device::Raw { rx: s.rx, tx: s.tx })
            .map_err(|e| e.to_string())
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Device::Raw { rx, .. } => rx.read(buf).await,
            #[cfg(feature = "alsa")]
            Device::Seq(p) => Ok(p.read(buf).await),
        }
    }

    /// Writes messages (a sequencer port takes them one by one).
    async fn write(&mut self, msgs: &[MidiMsg]) -> std::io::Result<()> {
        match self {
            Device::Raw { tx, .. } => {
                let mut bytes = Vec::new();
                for m in msgs {
                    m.encode(&mut bytes);
                }
                tx.write_all(&bytes).await
            }
            #[cfg(feature = "alsa")]
            Device::Seq(p) => {
                let mut bytes = Vec::new();
                for m in msgs {
                    bytes.clear();
                    m.encode(&mut bytes);
                    p.send(&bytes)?;
                }
                Ok(())
            }
        }
    }

    /// Input dropped before it was read (a sequencer port's queue overflowing).
    fn dropped(&self) -> u64 {
        match self {
            Device::Raw { .. } => 0,
            #[cfg(feature = "alsa")]
            Device::Seq(p) => p.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A MIDI bridge with its device open and its subscription in place, ready to
/// [`MidiBridge::run`].
#[derive(Debug)]
pub struct MidiBridge {
    link: RouterLink,
    cfg: MidiConfig,
    prefix: String,
    device: Device,
    sub: Option<LinkSubscription>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Device")
    }
}

impl MidiBridge {
    /// Opens the device and subscribes to its prefix (unless `input_only`); fails at once if
    /// the device cannot be opened. What the router holds already is not sent to the device:
    /// starting moves nothing.
    pub async fn start(link: RouterLink, cfg: MidiConfig) -> Result<MidiBridge, BridgeError> {
        let prefix = cfg.prefix()?;
        let device = Device::open(&cfg.port).map_err(|e| {
            BridgeError::Device(format!(
                "cannot open MIDI device {}: {e}",
                cfg.port.display()
            ))
        })?;
        let sub = if cfg.input_only {
            None
        } else {
            let mut s = link.subscribe(&format!("{prefix}/**")).await?;
            link.sync().await?;
            while let Some(Some(_)) = s.next().now_or_never() {}
            Some(s)
        };
        tracing::info!(device = %cfg.port.display(), %prefix, "MIDI bridge running");
        Ok(MidiBridge {
            link,
            cfg,
            prefix,
            device,
            sub,
        })
    }

    /// Runs until `stop`; the device is opened again (with back-off) if it goes away.
    pub async fn run(
        self,
        stats: Arc<MidiStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let MidiBridge {
            link,
            cfg,
            prefix,
            mut device,
            mut sub,
        } = self;
        let mut state = State {
            link: &link,
            prefix: &prefix,
            stats: &stats,
            parser: Parser::new(),
            decoder: Decoder::new(),
            echoes: Echoes::new(),
            msgs: Vec::new(),
            ups: Vec::new(),
        };
        let mut buf = vec![0u8; 4096];
        let mut backoff = Duration::from_millis(250);
        let mut dropped_seen = 0;
        loop {
            let wake = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = device.read(&mut buf) => Wake::Read(r),
                u = next(&mut sub) => Wake::Update(u),
            };
            match wake {
                Wake::Read(Ok(n)) if n > 0 => {
                    backoff = Duration::from_millis(250);
                    let dropped = device.dropped();
                    if dropped > dropped_seen {
                        stats
                            .skipped
                            .fetch_add(dropped - dropped_seen, Ordering::Relaxed);
                        dropped_seen = dropped;
                    }
                    state.inbound(&buf[..n]).await;
                }
                Wake::Read(r) => {
                    let why = r.map_or_else(|e| e.to_string(), |_| "end of stream".into());
                    tracing::warn!(device = %cfg.port.display(), %why, "MIDI device lost; reopening");
                    device = loop {
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        if let Ok(d) = Device::open(&cfg.port) {
                            stats.reopened.fetch_add(1, Ordering::Relaxed);
                            dropped_seen = 0;
                            break d;
                        }
                    };
                    state.parser = Parser::new();
                }
                Wake::Update(None) => return Err(BridgeError::Closed),
                Wake::Update(Some(u)) => {
                    if let Err(e) = state.outbound(&mut device, u).await {
                        tracing::warn!(device = %cfg.port.display(), error = %e, "cannot write to the MIDI device");
                    }
                }
            }
        }
    }
}

/// Starts and runs the bridge for `cfg` (see [`MidiBridge`]).
pub async fn run(
    link: RouterLink,
    cfg: MidiConfig,
    stats: Arc<MidiStats>,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    MidiBridge::start(link, cfg).await?.run(stats, stop).await
}

enum Wake {
    Read(std::io::Result<usize>),
    Update(Option<crate::link::Update>),
}

async fn next(sub: &mut Option<LinkSubscription>) -> Option<crate::link::Update> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

struct State<'a> {
    link: &'a RouterLink,
    prefix: &'a str,
    stats: &'a MidiStats,
    parser: Parser,
    decoder: Decoder,
    echoes: Echoes,
    msgs: Vec<MidiMsg>,
    ups: Vec<Inbound>,
}

impl State<'_> {
    /// Bytes from the device: parsed, laid out, written to the router.
    async fn inbound(&mut self, bytes: &[u8]) {
        let before = self.parser.skipped();
        self.parser.feed(bytes, &mut self.msgs);
        let after = self.parser.skipped();
        let skipped = (after.stray - before.stray)
            + (after.truncated - before.truncated)
            + (after.oversized_sysex - before.oversized_sysex)
            + (after.undefined - before.undefined);
        self.stats.skipped.fetch_add(skipped, Ordering::Relaxed);
        self.stats
            .messages_in
            .fetch_add(self.msgs.len() as u64, Ordering::Relaxed);
        for m in self.msgs.drain(..) {
            self.decoder.decode(m, &mut self.ups);
        }
        for up in std::mem::take(&mut self.ups) {
            let w = clasp_mapping::Write {
                address: format!("{}/{}", self.prefix, up.path),
                value: up.value,
                kind: up.kind,
                rule: 0,
                feedback: false,
            };
            if w.kind == WriteKind::Set {
                self.echoes.sent(&w.address, &w.value);
            }
            match self.link.write(&w).await {
                Ok(()) => self.stats.writes.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!(address = %w.address, error = %e, "MIDI write to the router failed");
                    self.stats.errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }

    /// A change under the prefix: unless it is the echo of the device's own, to the device.
    async fn outbound(
        &mut self,
        device: &mut Device,
        u: crate::link::Update,
    ) -> std::io::Result<()> {
        if u.kind == clasp_proto::SignalType::Param && self.echoes.is_echo(&u.address, &u.value) {
            return Ok(());
        }
        let Some(path) = u
            .address
            .strip_prefix(self.prefix)
            .and_then(|p| p.strip_prefix('/'))
        else {
            return Ok(());
        };
        let msgs = encode(path, &u.value);
        if msgs.is_empty() {
            self.stats.unmapped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(address = %u.address, "not part of the MIDI layout; not sent");
            return Ok(());
        }
        device.write(&msgs).await?;
        self.stats
            .messages_out
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
