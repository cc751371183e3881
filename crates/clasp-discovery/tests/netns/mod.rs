//! Two network namespaces joined by a veth pair, for tests of what crosses a LAN: shared by
//! the LAN discovery tests here and the `clasp relay` / `clasp discover` test in clasp-cli.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Network namespaces deleted on drop.
pub struct Netns {
    /// The namespaces, deleted on drop.
    pub names: Vec<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "cdisc-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Two namespaces joined by veth0 (A, .1) <-> veth1 (B, .2).
pub fn lan_pair() -> Result<(Netns, String, String), String> {
    let a = unique("a");
    let b = unique("b");
    ip(&["netns", "add", &a])?;
    let mut guard = Netns {
        names: vec![a.clone()],
    };
    ip(&["netns", "add", &b])?;
    guard.names.push(b.clone());
    ip(&[
        "-n", &a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", &b,
    ])?;
    for (ns, dev, v4, v6) in [
        (&a, "veth0", "10.77.0.1/24", "fd77::1/64"),
        (&b, "veth1", "10.77.0.2/24", "fd77::2/64"),
    ] {
        ip(&["-n", ns, "addr", "add", v4, "brd", "+", "dev", dev])?;
        ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"])?;
        ip(&["-n", ns, "link", "set", dev, "multicast", "on"])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // The limited broadcast 255.255.255.255 needs a route out of the namespace.
        ip(&["-n", ns, "route", "add", "default", "dev", dev])?;
    }
    Ok((guard, a, b))
}

/// A child process killed (and reaped) on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of `child`'s stdout, read on a thread.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("[child] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn wait_for_line(rx: &mpsc::Receiver<String>, prefix: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(prefix) => return l,
            Ok(_) => {}
            Err(e) => panic!("no `{prefix}` line from the child: {e}"),
        }
    }
}

pub fn wait_exit(child: &mut ChildGuard, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "child did not exit in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}
