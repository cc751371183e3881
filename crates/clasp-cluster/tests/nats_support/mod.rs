//! A real `nats-server` (Debian's, installed by `scripts/test.sh`) with JetStream, on
//! 127.0.0.1 at a free port, its store in a temporary directory; killed when dropped.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nats {
    child: Child,
    pub port: u16,
    pub monitor: u16,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server binary, or `None` (the test then says SKIPPED).
pub fn binary() -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "command -v nats-server"])
        .output()
        .ok()?;
    let p = String::from_utf8(out.stdout).ok()?;
    let p = p.trim();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

fn spawn(bin: &std::path::Path, port: u16, monitor: u16, dir: &tempfile::TempDir) -> Child {
    Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", &monitor.to_string(), "-js", "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Nats {
    /// Starts a server, or `None` without `nats-server` on this machine.
    pub fn start() -> Option<Nats> {
        let Some(bin) = binary() else {
            eprintln!("SKIPPED: nats-server is not installed (scripts/test.sh installs it)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let (port, monitor) = (free_port(), free_port());
        let n = Nats {
            child: spawn(&bin, port, monitor, &dir),
            port,
            monitor,
            dir,
        };
        n.wait_ready();
        Some(n)
    }

    /// Waits for the monitoring port's `/healthz` to say 200 (JetStream ready).
    fn wait_ready(&self) {
        let t = Instant::now();
        while !self.healthy() {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn healthy(&self) -> bool {
        self.monitoring("/healthz")
            .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
    }

    /// The raw HTTP answer of the monitoring endpoint `path` (e.g. `/subsz?subs=1`).
    pub fn monitoring(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.monitor)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (`kill -9`) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills the server (`kill -9`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and store, once ready.
    pub fn start_again(&mut self) {
        self.child = spawn(&binary().unwrap(), self.port, self.monitor, &self.dir);
        self.wait_ready();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three (or more) `nats-server` nodes routed into one NATS cluster with JetStream, each on
/// 127.0.0.1 with its own client, route and monitoring ports.
pub struct NatsCluster {
    pub nodes: Vec<Nats>,
}

impl NatsCluster {
    /// Starts `n` routed nodes and waits until each says JetStream is ready; `None` without
    /// `nats-server`.
    pub fn start(n: usize) -> Option<NatsCluster> {
        let bin = binary()?;
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_urls = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let (port, monitor) = (free_port(), free_port());
            let child = Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .args(["-m", &monitor.to_string(), "-js", "-sd"])
                .arg(dir.path())
                .args(["-n", &format!("n{i}"), "--cluster_name", "clasp-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
                .args(["--routes", &route_urls])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            nodes.push(Nats {
                child,
                port,
                monitor,
                dir,
            });
        }
        let t = Instant::now();
        while !nodes.iter().all(Nats::healthy) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the NATS cluster did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(NatsCluster { nodes })
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Nats::url).collect()
    }
}
