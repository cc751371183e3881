//! Helpers shared by the CLI tests: `clasp server` as a child process on 127.0.0.1.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `clasp server`; killed when dropped if it is still running.
pub struct Proc {
    pub child: Child,
    /// `ws://127.0.0.1:PORT/` (or `wss://`), from the server's `ready:` log line.
    pub url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `clasp server --bind 127.0.0.1 --port 0 ARGS` and waits until it is ready.
pub fn start(args: &[&str]) -> Proc {
    start_on(0, args)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `clasp ARGS` with plain `info` logs on a piped standard output and errors on ours.
pub fn clasp(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clasp"));
    c.args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

/// Runs `clasp ARGS` to the end, asserts it succeeded (showing its errors if not) and returns
/// its standard output.
pub fn clasp_ok(args: &[&str]) -> Vec<u8> {
    let out = clasp(args).stderr(Stdio::piped()).output().unwrap();
    assert!(
        out.status.success(),
        "clasp {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Starts `clasp server --bind 127.0.0.1 --port PORT ARGS` and waits until it is ready.
pub fn start_on(port: u16, args: &[&str]) -> Proc {
    let port = port.to_string();
    let mut child = clasp(&["server", "--bind", "127.0.0.1", "--port", &port])
        .args(args)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("server exited before it was ready")
            .unwrap();
        if let Some(i) = line
            .find("ready: ws://")
            .or_else(|| line.find("ready: wss://"))
        {
            let rest = &line[i + "ready: ".len()..];
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, url }
}

/// Sends a signal (`-TERM`, `-KILL`, ...) to the server.
pub fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// A pseudo-terminal in raw mode standing in for a MIDI device: (its far end, the device path).
pub fn pty() -> (std::fs::File, std::os::fd::OwnedFd, std::path::PathBuf) {
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
    let p = nix::pty::openpty(None, None).unwrap();
    let mut t = tcgetattr(&p.slave).unwrap();
    cfmakeraw(&mut t);
    tcsetattr(&p.slave, SetArg::TCSANOW, &t).unwrap();
    let path = nix::unistd::ttyname(&p.slave).unwrap();
    (std::fs::File::from(p.master), p.slave, path)
}
