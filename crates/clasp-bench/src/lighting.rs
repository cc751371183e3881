//! Lighting through the router: a `clasp server` running Art-Net bridges in-process (its config
//! written here), driven from this process over UDP on 127.0.0.1.
//!
//! * `lighting_universes`: `--universes` universes of ArtDmx at `--hz` into an input bridge
//!   (frames written to the router), carried by one mapping rule to an output bridge that sends
//!   them on as ArtDmx to a socket here. Every frame carries its number in slots 1–4, so the
//!   frames that never came out are counted exactly; the router's CPU use over the run is read
//!   from `/proc`.
//! * `lighting_latency`: a client's SET of one channel to the ArtDmx carrying it on the wire,
//!   through an output bridge at the default 44 Hz pacing, the SETs spaced wider than the pacing
//!   period.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::bridges::{free_tcp, free_udp, latency_of, start_router};
use crate::output::{Out, r1};

/// Options of `clasp-bench lighting`.
#[derive(Debug, clap::Args)]
pub(crate) struct LightingOpts {
    /// The `clasp` binary to run as the router.
    #[arg(long, default_value = "target/release/clasp")]
    clasp: PathBuf,
    /// Universes sent.
    #[arg(long, default_value_t = 64)]
    universes: u16,
    /// Frames per second per universe.
    #[arg(long, default_value_t = 44)]
    hz: u32,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// SET-to-wire latency samples.
    #[arg(long, default_value_t = 300)]
    samples: usize,
}

#[derive(Serialize)]
struct Universes {
    universes: u16,
    hz: u32,
    seconds: u64,
    frames_sent: u64,
    frames_out: u64,
    dropped: u64,
    router_cpu_percent: f64,
}

#[derive(Serialize)]
struct Latency {
    samples: usize,
    refresh_hz: u32,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    lost: usize,
}

/// ArtDmx by hand (the bench does not use the bridge's encoder): 512 slots.
fn art_dmx(universe: u16, seq: u8, slots: &[u8; 512]) -> Vec<u8> {
    let mut p = b"Art-Net\0".to_vec();
    p.extend_from_slice(&[0x00, 0x50, 0x00, 0x0E, seq, 0]);
    p.extend_from_slice(&universe.to_le_bytes());
    p.extend_from_slice(&512u16.to_be_bytes());
    p.extend_from_slice(slots);
    p
}

/// (universe, slots) of an ArtDmx datagram.
fn read_dmx(b: &[u8]) -> Option<(u16, &[u8])> {
    (b.len() >= 18 && b[..8] == *b"Art-Net\0" && b[8..10] == [0x00, 0x50])
        .then(|| (u16::from_le_bytes([b[14], b[15]]) & 0x7FFF, &b[18..]))
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Some(ticks / hz)
}

pub(crate) fn run(o: &LightingOpts, out: &Out) -> anyhow::Result<()> {
    let receiver = UdpSocket::bind("127.0.0.1:0")?;
    receiver.set_read_timeout(Some(Duration::from_millis(200)))?;
    let lat_receiver = UdpSocket::bind("127.0.0.1:0")?;
    lat_receiver.set_read_timeout(Some(Duration::from_secs(2)))?;
    let (art_in, art_out, art_lat): (SocketAddr, SocketAddr, SocketAddr) =
        (free_udp()?, free_udp()?, free_udp()?);
    let port = free_tcp()?;
    let dir = std::env::temp_dir().join(format!("clasp-bench-lighting-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("lighting.toml");
    let universes: Vec<u16> = (0..o.universes).collect();
    std::fs::write(
        &config,
        format!(
            r#"
[[bridge]]
kind = "artnet"
bind = "{art_in}"
universes = {universes:?}
direction = "input"
input = "frames"
refresh_hz = 200

[[bridge]]
kind = "artnet"
bind = "{art_out}"
namespace = "/show"
universes = {universes:?}
direction = "output"
targets = ["{receiver}"]
refresh_hz = 200

[[bridge]]
kind = "artnet"
bind = "{art_lat}"
namespace = "/lat"
universes = [1]
direction = "output"
targets = ["{lat_receiver}"]

[[mapping]]
from = "/artnet/{{u}}"
to = "/show/{{u}}"
"#,
            receiver = receiver.local_addr()?,
            lat_receiver = lat_receiver.local_addr()?,
        ),
    )?;
    let router = start_router(&o.clasp, port, &config)?;
    let pid = router.0.id();

    // Universes: a sender thread at `hz`, a receiver thread recording every frame number.
    let done = Arc::new(AtomicBool::new(false));
    let rx = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seen: HashMap<u16, BTreeSet<u32>> = HashMap::new();
            let mut buf = [0u8; 1024];
            let mut quiet_since: Option<Instant> = None;
            loop {
                match receiver.recv(&mut buf) {
                    Ok(n) => {
                        quiet_since = None;
                        if let Some((u, slots)) = read_dmx(&buf[..n])
                            && slots.len() >= 4
                        {
                            let frame =
                                u32::from_be_bytes([slots[0], slots[1], slots[2], slots[3]]);
                            seen.entry(u).or_default().insert(frame);
                        }
                    }
                    Err(_) if done.load(Ordering::Relaxed) => {
                        let q = *quiet_since.get_or_insert_with(Instant::now);
                        if q.elapsed() > Duration::from_millis(500) {
                            return seen;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let period = Duration::from_secs_f64(1.0 / f64::from(o.hz));
    let frames = u64::from(o.hz) * o.seconds;
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut slots = [0u8; 512];
    for f in 1..=frames {
        let due = t0 + period * (f as u32);
        for u in 0..o.universes {
            slots[..4].copy_from_slice(&(f as u32).to_be_bytes());
            slots[4] = u as u8;
            sender.send_to(&art_dmx(u, (f % 255 + 1) as u8, &slots), art_in)?;
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid);
    done.store(true, Ordering::Relaxed);
    let seen = rx
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver thread failed"))?;
    let frames_out: u64 = seen
        .values()
        .map(|s| s.iter().filter(|f| (1..=frames as u32).contains(f)).count() as u64)
        .sum();
    let frames_sent = frames * u64::from(o.universes);
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => r1((b - a) / elapsed * 100.0),
        _ => f64::NAN,
    };
    out.result(
        "lighting_universes",
        "ArtDmx in → router (frames) → mapping → ArtDmx out, one clasp server, 512 slots per frame",
        &Universes {
            universes: o.universes,
            hz: o.hz,
            seconds: o.seconds,
            frames_sent,
            frames_out,
            dropped: frames_sent.saturating_sub(frames_out),
            router_cpu_percent: cpu,
        },
    );

    // SET → wire.
    // The client's connection runs on the runtime's own thread between the SETs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let url = format!("ws://127.0.0.1:{port}/");
    let client = rt
        .block_on(clasp_client::Client::connect(&url))
        .context("cannot connect to the router")?;
    let mut lat = Vec::with_capacity(o.samples);
    let mut lost = 0;
    let mut buf = [0u8; 1024];
    for i in 0..o.samples {
        let v = (i % 254 + 1) as i64;
        std::thread::sleep(Duration::from_millis(30));
        let started = Instant::now();
        rt.block_on(client.set("/lat/1/1", v))?;
        let got = loop {
            match lat_receiver.recv(&mut buf) {
                Ok(n) => {
                    if read_dmx(&buf[..n]).is_some_and(|(u, s)| u == 1 && i64::from(s[0]) == v) {
                        break true;
                    }
                }
                Err(_) => break false,
            }
        };
        if got {
            lat.push(started.elapsed());
        } else {
            lost += 1;
        }
    }
    let (p50, p99, max) = latency_of(lat);
    out.result(
        "lighting_latency",
        "a client's SET of one channel → ArtDmx on the wire (output bridge at 44 Hz, SETs 30 ms apart)",
        &Latency {
            samples: o.samples,
            refresh_hz: 44,
            p50_us: p50,
            p99_us: p99,
            max_us: max,
            lost,
        },
    );
    drop(router);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
