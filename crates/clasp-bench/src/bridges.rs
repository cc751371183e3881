//! Bridge latency and throughput: a `clasp server` running MIDI and OSC bridges in-process
//! (its config written here), driven from this process through a pty (the MIDI device) and
//! UDP sockets (the OSC apps), next to the direct path with no router (the same bytes read
//! and forwarded by a thread here).
//!
//! * `osc`: OSC in → router → OSC out (one OSC bridge writes `/osc/lat/v`, another sends the
//!   change to the app); direct: a UDP datagram from one socket to another.
//! * `midi`: MIDI in (CC on the pty) → router → OSC out (an OSC bridge with namespace `/midi`);
//!   direct: a thread reads the pty and sends the OSC message itself.
//! * `sustained`: OSC messages at a fixed rate through the OSC bridges: delivered and lost.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rosc::{OscMessage, OscPacket, OscType};
use serde::Serialize;

use crate::latency::percentile_us;
use crate::output::{Out, r1, r4};

/// Options of `clasp-bench bridges`.
#[derive(Debug, clap::Args)]
pub(crate) struct BridgeOpts {
    /// The `clasp` binary to run as the router.
    #[arg(long, default_value = "target/release/clasp")]
    clasp: PathBuf,
    /// Latency samples per path.
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Samples sent first and not counted.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Messages per second of the sustained run.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of the sustained run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

#[derive(Serialize)]
struct Latency {
    path: &'static str,
    samples: usize,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    direct_p50_us: f64,
    direct_p99_us: f64,
    lost: usize,
}

#[derive(Serialize)]
struct Sustained {
    rate_per_sec: u64,
    seconds: u64,
    sent: u64,
    delivered: u64,
    lost_fraction: f64,
    achieved_per_sec: f64,
}

pub(crate) struct Router(pub(crate) Child);

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_udp() -> anyhow::Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

pub(crate) fn free_tcp() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn encode(addr: &str, v: i32) -> Vec<u8> {
    let m = OscPacket::Message(OscMessage {
        addr: addr.into(),
        args: vec![OscType::Int(v)],
    });
    rosc::encoder::encode(&m).unwrap_or_default()
}

/// The address and first int argument of an OSC datagram.
fn decode(buf: &[u8]) -> Option<(String, i32)> {
    match rosc::decoder::decode_udp(buf).ok()?.1 {
        OscPacket::Message(m) => match m.args.first() {
            Some(OscType::Int(i)) => Some((m.addr, *i)),
            Some(OscType::Float(f)) => Some((m.addr, *f as i32)),
            _ => None,
        },
        OscPacket::Bundle(_) => None,
    }
}

/// Waits for the OSC message `addr` with `want` on `app` (other messages are skipped).
fn wait_for(app: &UdpSocket, addr: &str, want: i32, buf: &mut [u8]) -> bool {
    loop {
        match app.recv(buf) {
            Ok(n) => {
                if decode(&buf[..n]).is_some_and(|(a, v)| a == addr && v == want) {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
}

pub(crate) fn latency_of(mut lat: Vec<Duration>) -> (f64, f64, f64) {
    lat.sort_unstable();
    (
        r1(percentile_us(&lat, 0.50)),
        r1(percentile_us(&lat, 0.99)),
        r1(percentile_us(&lat, 1.0)),
    )
}

/// `clasp server` on `port` with the bridges of `config`, once it is ready.
pub(crate) fn start_router(
    clasp: &std::path::Path,
    port: u16,
    config: &std::path::Path,
) -> anyhow::Result<Router> {
    let mut child = Command::new(clasp)
        .args([
            "server",
            "--memory",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--rate-limit", "0", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn,clasp=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", clasp.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let router = Router(child);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("ready: ws://") => break,
            Some(_) => {}
            None => bail!("the router exited before it was ready"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(router)
}

pub(crate) fn run(o: &BridgeOpts, out: &Out) -> anyhow::Result<()> {
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
    let pty = nix::pty::openpty(None, None).context("cannot open a pty")?;
    let mut t = tcgetattr(&pty.slave)?;
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t)?;
    let dev = nix::unistd::ttyname(&pty.slave)?;
    let mut midi = std::fs::File::from(pty.master);

    let app = UdpSocket::bind("127.0.0.1:0")?;
    app.set_read_timeout(Some(Duration::from_secs(2)))?;
    let (osc_in, osc_out, midi_out) = (free_udp()?, free_udp()?, free_udp()?);
    let port = free_tcp()?;
    let dir = std::env::temp_dir().join(format!("clasp-bench-bridges-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("bridges.toml");
    let app_addr = app.local_addr()?;
    std::fs::write(
        &config,
        format!(
            r#"
[[bridge]]
kind = "midi"
name = "nano"
port = "{dev}"
input_only = true

[[bridge]]
kind = "osc"
listen = "{osc_in}"

[[bridge]]
kind = "osc"
listen = "{osc_out}"
targets = ["{app_addr}"]

[[bridge]]
kind = "osc"
listen = "{midi_out}"
namespace = "/midi"
targets = ["{app_addr}"]
"#,
            dev = dev.display()
        ),
    )?;
    let router = start_router(&o.clasp, port, &config)?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let mut buf = vec![0u8; 2048];
    let total = o.warmup + o.samples;

    // OSC in → router → OSC out, and the direct datagram.
    let mut lat = Vec::with_capacity(o.samples);
    let mut lost = 0;
    for i in 0..total {
        let v = i as i32;
        let started = Instant::now();
        sender.send_to(&encode("/lat/v", v), osc_in)?;
        if !wait_for(&app, "/lat/v", v, &mut buf) {
            lost += 1;
            continue;
        }
        if i >= o.warmup {
            lat.push(started.elapsed());
        }
    }
    let mut direct = Vec::with_capacity(o.samples);
    for i in 0..total {
        let v = i as i32;
        let started = Instant::now();
        sender.send_to(&encode("/direct", v), app_addr)?;
        if wait_for(&app, "/direct", v, &mut buf) && i >= o.warmup {
            direct.push(started.elapsed());
        }
    }
    let (p50, p99, max) = latency_of(lat);
    let (d50, d99, _) = latency_of(direct);
    out.result(
        "bridges_osc",
        "OSC in → router → OSC out (two OSC bridges inside clasp server), 1 int argument",
        &Latency {
            path: "osc",
            samples: o.samples,
            p50_us: p50,
            p99_us: p99,
            max_us: max,
            direct_p50_us: d50,
            direct_p99_us: d99,
            lost,
        },
    );

    // MIDI CC in → router → OSC out. Each sample a distinct (controller, value) pair.
    let pair = |i: usize| ((i % 120) as u8, ((i / 120) % 128) as u8);
    let mut lat = Vec::with_capacity(o.samples);
    let mut lost = 0;
    let mut last = std::collections::HashMap::new();
    for i in 0..total {
        let (cc, mut value) = pair(i);
        // The same value twice at an address is no change: skip to the next value.
        if last.get(&cc) == Some(&value) {
            value = (value + 1) % 128;
        }
        last.insert(cc, value);
        let addr = format!("/nano/ch/1/cc/{cc}");
        let started = Instant::now();
        midi.write_all(&[0xB0, cc, value])?;
        if !wait_for(&app, &addr, i32::from(value), &mut buf) {
            lost += 1;
            continue;
        }
        if i >= o.warmup {
            lat.push(started.elapsed());
        }
    }
    drop(router);
    // Direct: a thread reads the pty's device side and sends the OSC message itself.
    let mut device = std::fs::File::from(pty.slave);
    let forward = UdpSocket::bind("127.0.0.1:0")?;
    let n = total;
    let thread = std::thread::spawn(move || {
        let mut b = [0u8; 3];
        for _ in 0..n {
            if device.read_exact(&mut b).is_err() {
                return;
            }
            let addr = format!("/nano/ch/1/cc/{}", b[1]);
            let _ = forward.send_to(&encode(&addr, i32::from(b[2])), app_addr);
        }
    });
    let mut direct = Vec::with_capacity(o.samples);
    for i in 0..total {
        let (cc, value) = pair(i);
        let addr = format!("/nano/ch/1/cc/{cc}");
        let started = Instant::now();
        midi.write_all(&[0xB0, cc, value])?;
        if wait_for(&app, &addr, i32::from(value), &mut buf) && i >= o.warmup {
            direct.push(started.elapsed());
        }
    }
    let _ = thread.join();
    let (p50, p99, max) = latency_of(lat);
    let (d50, d99, _) = latency_of(direct);
    out.result(
        "bridges_midi",
        "MIDI CC in (pty) → router → OSC out (MIDI and OSC bridges inside clasp server)",
        &Latency {
            path: "midi",
            samples: o.samples,
            p50_us: p50,
            p99_us: p99,
            max_us: max,
            direct_p50_us: d50,
            direct_p99_us: d99,
            lost,
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Sustained OSC through the bridges of a fresh router: `rate` messages/s for `seconds`.
pub(crate) fn sustained(o: &BridgeOpts, out: &Out) -> anyhow::Result<()> {
    let app = UdpSocket::bind("127.0.0.1:0")?;
    app.set_read_timeout(Some(Duration::from_millis(500)))?;
    let (osc_in, osc_out) = (free_udp()?, free_udp()?);
    let port = free_tcp()?;
    let dir = std::env::temp_dir().join(format!("clasp-bench-sustained-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("bridges.toml");
    std::fs::write(
        &config,
        format!(
            "[[bridge]]\nkind = \"osc\"\nlisten = \"{osc_in}\"\n\n[[bridge]]\nkind = \"osc\"\nlisten = \"{osc_out}\"\ntargets = [\"{}\"]\n",
            app.local_addr()?
        ),
    )?;
    let _router = start_router(&o.clasp, port, &config)?;
    let receiver = app.try_clone()?;
    let counter = std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        let mut got = 0u64;
        while receiver.recv(&mut b).is_ok() {
            got += 1;
        }
        got
    });
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let total = o.rate * o.seconds;
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / o.rate as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // 100 addresses, a new value every time: every message is a change.
        sender.send_to(&encode(&format!("/tp/{}", i % 100), i as i32), osc_in)?;
    }
    let elapsed = started.elapsed();
    let delivered = counter.join().unwrap_or(0);
    out.result(
        "bridges_sustained",
        "Sustained OSC through two OSC bridges inside clasp server",
        &Sustained {
            rate_per_sec: o.rate,
            seconds: o.seconds,
            sent: total,
            delivered,
            lost_fraction: r4(1.0 - delivered as f64 / total as f64),
            achieved_per_sec: r1(total as f64 / elapsed.as_secs_f64()),
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
