//! Open DMX USB: an FTDI USB-serial chip behind a line driver and nothing else, so the host
//! makes the DMX-512 signal itself, again and again since the chip keeps nothing: a break
//! (the line held low, here 176 µs; the standard asks at least 92), a mark after break (at
//! least 12 µs), then the start code 0 and 512 slots at 250 kbaud, 8 data bits, 2 stop bits,
//! no parity. Every step blocks and the timing is in microseconds, so a thread of its own
//! drives the line and the bridge hands it the latest frame; a full frame takes about 23 ms,
//! so 44 frames a second is the most a line carries. The port is set up through the
//! `serialport` crate (250,000 baud is not one of the classic termios speeds; Linux takes it
//! through `termios2`), held exclusively, and opened again with back-off if it goes away.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clasp_proto::SignalType;
use serialport::{DataBits, FlowControl, Parity, SerialPort, StopBits, TTYPort};
use tokio_util::sync::CancellationToken;

use super::common::{apply_update, next};
use super::dmx_bridge::DmxConfig;
use super::pace::Pacer;
use super::universe::SLOTS;
use crate::link::{BridgeError, LinkSubscription, RouterLink};
use crate::stats::BridgeStats;

/// The DMX-512 line rate.
pub const BAUD: u32 = 250_000;
/// How long the break holds the line low.
pub const BREAK: Duration = Duration::from_micros(176);
/// The mark after break.
pub const MARK_AFTER_BREAK: Duration = Duration::from_micros(16);

/// Opens `path` as a DMX line: 250 kbaud 8N2, exclusive, writes time out after a second, RTS
/// low (boards that gate the RS-485 driver with RTS need it so; a line without modem control,
/// such as a pty, ignores it).
pub fn open(path: &Path) -> serialport::Result<TTYPort> {
    let mut port = serialport::new(path.to_string_lossy(), BAUD)
        .data_bits(DataBits::Eight)
        .stop_bits(StopBits::Two)
        .parity(Parity::None)
        .flow_control(FlowControl::None)
        .timeout(Duration::from_secs(1))
        .open_native()?;
    let _ = port.write_request_to_send(false);
    Ok(port)
}

/// One frame on the line: break, mark after break, start code 0 and the slots, drained.
fn send(port: &mut TTYPort, packet: &[u8; SLOTS + 1]) -> serialport::Result<()> {
    port.set_break()?;
    std::thread::sleep(BREAK);
    port.clear_break()?;
    std::thread::sleep(MARK_AFTER_BREAK);
    port.write_all(packet)?;
    port.flush()?;
    Ok(())
}

struct Shared {
    frame: parking_lot::Mutex<[u8; SLOTS]>,
    stop: AtomicBool,
}

/// The thread driving an Open DMX line; stopped (and joined) when dropped.
pub struct Line {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line").finish_non_exhaustive()
    }
}

impl Line {
    /// Drives `port` (opened with [`open`]) from now on, `hz` frames a second, all slots 0
    /// until [`Line::set`]; `path` is where the port is opened again if it goes away.
    pub fn start(
        port: TTYPort,
        path: &Path,
        hz: f64,
        stats: Arc<BridgeStats>,
    ) -> std::io::Result<Line> {
        let shared = Arc::new(Shared {
            frame: parking_lot::Mutex::new([0; SLOTS]),
            stop: AtomicBool::new(false),
        });
        let period = Duration::from_secs_f64(1.0 / hz);
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new().name("open-dmx".into()).spawn({
            let shared = shared.clone();
            move || drive(Some(port), &path, period, &shared, &stats)
        })?;
        Ok(Line {
            shared,
            thread: Some(thread),
        })
    }

    /// The frame sent from the next refresh on.
    pub fn set(&self, frame: &[u8; SLOTS]) {
        *self.shared.frame.lock() = *frame;
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps `d` in slices, `false` as soon as the line is stopped.
fn nap(shared: &Shared, d: Duration) -> bool {
    let until = Instant::now() + d;
    while !shared.stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

fn drive(
    mut port: Option<TTYPort>,
    path: &Path,
    period: Duration,
    shared: &Shared,
    stats: &BridgeStats,
) {
    let mut backoff = Duration::from_millis(250);
    let mut packet = [0u8; SLOTS + 1];
    let mut next = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(p) = port.as_mut() else {
            if !nap(shared, backoff) {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            match open(path) {
                Ok(p) => {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(device = %path.display(), "Open DMX line back");
                    backoff = Duration::from_millis(250);
                    port = Some(p);
                    next = Instant::now();
                }
                Err(e) => {
                    tracing::debug!(device = %path.display(), error = %e, "Open DMX line still missing")
                }
            }
            continue;
        };
        packet[1..].copy_from_slice(&*shared.frame.lock());
        match send(p, &packet) {
            Ok(()) => {
                stats.messages_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(device = %path.display(), error = %e, "Open DMX line lost; reopening");
                port = None;
                continue;
            }
        }
        next += period;
        let now = Instant::now();
        if next < now {
            // Behind (a slow line or a stall): start again from now rather than burst.
            next = now;
        } else if !nap(shared, next - now) {
            return;
        }
    }
}

/// The bridge side of an Open DMX line: changes from the router go into the frame the line
/// thread sends at every refresh.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    _link: RouterLink,
    cfg: DmxConfig,
    prefix: String,
    port: TTYPort,
    mut sub: Option<LinkSubscription>,
    mut pacer: Pacer,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    let line = Line::start(port, &cfg.device, cfg.refresh_hz, stats)
        .map_err(|e| BridgeError::Device(format!("cannot start the Open DMX thread: {e}")))?;
    let universe = cfg.universe;
    if let Some(f) = pacer.frame(universe) {
        line.set(f);
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            u = next(&mut sub) => {
                let Some(u) = u else { return Err(BridgeError::Closed) };
                if u.kind != SignalType::Param {
                    continue;
                }
                apply_update(&mut pacer, &prefix, &[universe], &u.address, &u.value, Instant::now());
                if let Some(f) = pacer.frame(universe) {
                    line.set(f);
                }
            }
        }
    }
}
