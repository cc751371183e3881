//! A pseudo-terminal as a device (raw mode, as `stty raw` would set a serial port): the test
//! holds the controlling side and hands the terminal's path to a bridge.
#![allow(dead_code, clippy::unwrap_used)]

use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::support::within;

/// The pty's controlling side, as the device's far end: what we write the bridge reads.
pub(crate) struct FarEnd {
    pub(crate) rx: pipe::Receiver,
    pub(crate) tx: pipe::Sender,
    /// Kept open so the device side stays a live terminal.
    _slave: OwnedFd,
}

pub(crate) fn pty() -> (FarEnd, std::path::PathBuf) {
    let p = nix::pty::openpty(None, None).unwrap();
    let mut t = tcgetattr(&p.slave).unwrap();
    cfmakeraw(&mut t);
    tcsetattr(&p.slave, SetArg::TCSANOW, &t).unwrap();
    let path = nix::unistd::ttyname(&p.slave).unwrap();
    fcntl(&p.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let writer = p.master.try_clone().unwrap();
    let far = FarEnd {
        rx: pipe::Receiver::from_owned_fd_unchecked(p.master).unwrap(),
        tx: pipe::Sender::from_owned_fd_unchecked(writer).unwrap(),
        _slave: p.slave,
    };
    (far, path)
}

impl FarEnd {
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.tx.write_all(bytes).await.unwrap();
    }

    /// Exactly `n` bytes.
    pub(crate) async fn recv(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        within("bytes from the bridge", self.rx.read_exact(&mut buf))
            .await
            .unwrap();
        buf
    }
}
