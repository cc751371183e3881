//! MIDI ports of the ALSA sequencer through midir (the `alsa` feature): what software MIDI
//! (a DAW's virtual ports, `aconnect` graphs) and USB devices look like to Linux apps. A port
//! is chosen by a part of its name (`alsa:nanoKONTROL2`); its input arrives as complete
//! messages from midir's thread and is fed to the same byte-stream parser as a raw device.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use midir::{Ignore, MidiIO, MidiInput, MidiInputConnection, MidiOutput, MidiOutputConnection};
use tokio::sync::mpsc;

/// Messages queued from midir's thread at most; past it input is dropped and counted.
const QUEUE: usize = 4096;
/// The client name other ALSA apps see.
const CLIENT: &str = "clasp";

/// An open sequencer port: its input (if it has one) and output (if it has one).
pub(crate) struct SeqPort {
    rx: mpsc::Receiver<Vec<u8>>,
    /// Bytes of a message longer than the reader's buffer, still to hand out.
    pending: Vec<u8>,
    /// Kept open while the port is used.
    input: Option<MidiInputConnection<()>>,
    output: Option<MidiOutputConnection>,
    /// Messages dropped because the queue was full.
    pub(crate) dropped: Arc<AtomicU64>,
}

/// The first port of `io` whose name contains `name`.
fn find<T: MidiIO>(io: &T, name: &str) -> Option<T::Port> {
    io.ports()
        .into_iter()
        .find(|p| io.port_name(p).is_ok_and(|n| n.contains(name)))
}

/// The names of the sequencer's input and output ports.
pub fn list() -> Result<(Vec<String>, Vec<String>), String> {
    let input = MidiInput::new(CLIENT).map_err(|e| format!("ALSA sequencer: {e}"))?;
    let output = MidiOutput::new(CLIENT).map_err(|e| format!("ALSA sequencer: {e}"))?;
    Ok((names(&input), names(&output)))
}

fn names<T: MidiIO>(io: &T) -> Vec<String> {
    io.ports()
        .iter()
        .filter_map(|p| io.port_name(p).ok())
        .collect()
}

impl SeqPort {
    /// Connects to the ports whose name contains `name` (input and output; at least one).
    pub(crate) fn open(name: &str) -> Result<SeqPort, String> {
        let mut input = MidiInput::new(CLIENT).map_err(|e| format!("ALSA sequencer: {e}"))?;
        // SysEx and clock are part of the layout; active sensing is not.
        input.ignore(Ignore::ActiveSense);
        let output = MidiOutput::new(CLIENT).map_err(|e| format!("ALSA sequencer: {e}"))?;
        let in_port = find(&input, name);
        let out_port = find(&output, name);
        if in_port.is_none() && out_port.is_none() {
            let (ins, outs) = list().unwrap_or_default();
            return Err(format!(
                "no ALSA sequencer port named like `{name}` (inputs: {ins:?}; outputs: {outs:?})"
            ));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let input = match in_port {
            Some(p) => {
                let dropped = dropped.clone();
                let conn = input
                    .connect(
                        &p,
                        "clasp-in",
                        move |_, msg, _| {
                            if tx.try_send(msg.to_vec()).is_err() {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        (),
                    )
                    .map_err(|e| format!("ALSA sequencer input `{name}`: {e}"))?;
                Some(conn)
            }
            None => None,
        };
        let output = match out_port {
            Some(p) => Some(
                output
                    .connect(&p, "clasp-out")
                    .map_err(|e| format!("ALSA sequencer output `{name}`: {e}"))?,
            ),
            None => None,
        };
        Ok(SeqPort {
            rx,
            pending: Vec::new(),
            input,
            output,
            dropped,
        })
    }

    /// Bytes of the next input message(s); 0 when the port is gone (or has no input and
    /// never will: then this waits for ever).
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> usize {
        if self.pending.is_empty() {
            if self.input.is_none() {
                return std::future::pending().await;
            }
            match self.rx.recv().await {
                Some(m) => self.pending = m,
                None => return 0,
            }
        }
        let n = self.pending.len().min(buf.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        n
    }

    /// Sends one complete message (nothing when the port has no output).
    pub(crate) fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        match &mut self.output {
            Some(out) => out.send(msg).map_err(std::io::Error::other),
            None => Ok(()),
        }
    }
}
