//! A device that is a byte stream — a raw MIDI device, a serial port (USB-serial DMX widgets),
//! a pseudo-terminal — opened non-blocking and driven by the runtime's poller: one descriptor
//! for reading and a duplicate for writing (tokio's pipe ends do plain non-blocking
//! `read`/`write` on any pollable descriptor, and raw MIDI devices, ttys and ptys are).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tokio::net::unix::pipe;

/// Both ends of an open byte-stream device.
pub(crate) struct ByteStream {
    pub(crate) rx: pipe::Receiver,
    pub(crate) tx: pipe::Sender,
}

impl std::fmt::Debug for ByteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByteStream")
    }
}

impl ByteStream {
    /// Opens `path` for reading and writing; a terminal is put in raw mode (no echo, no line
    /// editing, no byte translated) so binary framing passes untouched.
    pub(crate) fn open(path: &Path) -> std::io::Result<ByteStream> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        raw_if_tty(&file);
        let writer = file.try_clone()?;
        Ok(ByteStream {
            rx: pipe::Receiver::from_file_unchecked(file)?,
            tx: pipe::Sender::from_file_unchecked(writer)?,
        })
    }
}

/// `cfmakeraw` on a terminal; nothing on anything else (`tcgetattr` fails there).
fn raw_if_tty(file: &File) {
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
    if let Ok(mut t) = tcgetattr(file) {
        cfmakeraw(&mut t);
        let _ = tcsetattr(file, SetArg::TCSANOW, &t);
    }
}
