//! List messages built in chunks that each fit a frame: SNAPSHOT and RESULT.

use bytes::Bytes;

use super::encode::{EResult, flag, put_str, put_value, value_len};
use crate::error::EncodeError;
use crate::message::*;
use crate::value::Value;

/// Builds list frames (a type byte, a u16 count, entries) from entries, starting a new frame
/// whenever the next entry would push the payload past the limit or the count past 65,535.
#[derive(Debug)]
struct ListWriter {
    code: u8,
    max_payload: usize,
    frames: Vec<Bytes>,
    current: Vec<u8>,
    count: u16,
    entry: Vec<u8>,
    /// A frame was sealed (and maybe taken) already.
    sealed_any: bool,
}

impl ListWriter {
    fn new(code: u8, max_payload: usize) -> Self {
        ListWriter {
            code,
            max_payload: max_payload.min(crate::frame::MAX_PAYLOAD),
            frames: Vec::new(),
            current: Vec::new(),
            count: 0,
            entry: Vec::new(),
            sealed_any: false,
        }
    }

    /// Adds the entry `put` writes. Fails only if the entry alone cannot fit in a frame.
    fn push(&mut self, put: impl FnOnce(&mut Vec<u8>) -> EResult) -> EResult {
        self.entry.clear();
        put(&mut self.entry)?;
        // 3 = type byte + u16 count.
        if 3 + self.entry.len() > self.max_payload {
            return Err(EncodeError::PayloadTooLarge(3 + self.entry.len()));
        }
        let payload_len = self.current.len().saturating_sub(4);
        if self.current.is_empty() {
            self.start();
        } else if payload_len + self.entry.len() > self.max_payload || self.count == u16::MAX {
            self.seal();
            self.start();
        }
        self.current.extend_from_slice(&self.entry);
        self.count += 1;
        Ok(())
    }

    /// Frames sealed so far and the bytes of the one being filled.
    fn pending_bytes(&self) -> usize {
        self.frames.iter().map(Bytes::len).sum::<usize>() + self.current.len()
    }

    /// Takes the frames sealed so far (the one being filled stays).
    fn take_sealed(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.frames)
    }

    fn finish(mut self, always: bool) -> Vec<Bytes> {
        if self.current.is_empty() && !self.sealed_any && always {
            self.start();
        }
        if !self.current.is_empty() {
            self.seal();
        }
        self.frames
    }

    fn start(&mut self) {
        self.current = Vec::with_capacity(1024);
        self.current
            .extend_from_slice(&[crate::frame::MAGIC, crate::frame::VERSION_BINARY, 0, 0]);
        self.current.extend_from_slice(&[self.code, 0, 0]);
        self.count = 0;
    }

    fn seal(&mut self) {
        let mut frame = std::mem::take(&mut self.current);
        let len = (frame.len() - 4) as u16;
        frame[2..4].copy_from_slice(&len.to_be_bytes());
        frame[5..7].copy_from_slice(&self.count.to_be_bytes());
        self.frames.push(Bytes::from(frame));
        self.sealed_any = true;
    }
}

/// Builds SNAPSHOT frames from params, starting a new frame whenever the next param would push
/// the payload past the limit, so no frame is too large and no param is ever left out.
#[derive(Debug)]
pub struct SnapshotWriter(ListWriter);

impl SnapshotWriter {
    /// A writer whose frames carry at most `max_payload` payload bytes (capped at 65,535).
    pub fn new(max_payload: usize) -> Self {
        SnapshotWriter(ListWriter::new(code::SNAPSHOT, max_payload))
    }

    /// Adds a param. Fails only if the param alone cannot fit in a frame.
    pub fn push(&mut self, param: &ParamValue) -> EResult {
        self.0.push(|out| put_param(out, param, 0))
    }

    /// The frames; with `always`, one empty SNAPSHOT when no param was pushed.
    pub fn finish(self, always: bool) -> Vec<Bytes> {
        self.0.finish(always)
    }
}

/// Builds RESULT frames from signal definitions (without their meta, as RESULT carries none),
/// chunked like [`SnapshotWriter`]: a query whose answer does not fit one frame gets several.
#[derive(Debug)]
pub struct ResultWriter(ListWriter);

impl ResultWriter {
    /// A writer whose frames carry at most `max_payload` payload bytes (capped at 65,535).
    pub fn new(max_payload: usize) -> Self {
        ResultWriter(ListWriter::new(code::RESULT, max_payload))
    }

    /// Adds a signal. Fails only if the signal alone cannot fit in a frame.
    pub fn push(&mut self, signal: &SignalDef) -> EResult {
        self.0.push(|out| put_signal_def(out, signal, false))
    }

    /// Bytes of the frames built so far (sealed or not).
    pub fn pending_bytes(&self) -> usize {
        self.0.pending_bytes()
    }

    /// Takes the frames that are complete, so they can be sent before the rest is built.
    pub fn take_sealed(&mut self) -> Vec<Bytes> {
        self.0.take_sealed()
    }

    /// The remaining frames; with `always`, one empty RESULT when no signal was pushed at all.
    pub fn finish(self, always: bool) -> Vec<Bytes> {
        self.0.finish(always)
    }
}

/// Appends one SNAPSHOT param entry.
/// The payload bytes a SNAPSHOT frame spends before its entries (type byte and count).
pub const SNAPSHOT_HEADER_LEN: usize = 3;

/// The bytes one param takes in a SNAPSHOT payload as [`SnapshotWriter`] writes it (address,
/// value, revision, and the writer and timestamp when present); `None` if the value nests too
/// deep to encode.
pub fn snapshot_entry_len(
    address: &str,
    value: &Value,
    writer: Option<&str>,
    timestamp: bool,
) -> Option<usize> {
    Some(
        2 + address.len()
            + 1
            + value_len(value, 0)?
            + 8
            + 1
            + writer.map_or(0, |w| 2 + w.len())
            + if timestamp { 8 } else { 0 },
    )
}

pub(crate) fn put_param(out: &mut Vec<u8>, p: &ParamValue, depth: usize) -> EResult {
    put_str(out, &p.address, "address")?;
    put_value(out, &p.value, depth)?;
    out.extend_from_slice(&p.revision.to_be_bytes());
    out.push(flag(p.writer.is_some(), 0x01) | flag(p.timestamp.is_some(), 0x02));
    if let Some(w) = &p.writer {
        put_str(out, w, "writer")?;
    }
    if let Some(ts) = p.timestamp {
        out.extend_from_slice(&ts.to_be_bytes());
    }
    Ok(())
}

pub(super) fn put_signal_def(out: &mut Vec<u8>, s: &SignalDef, with_meta: bool) -> EResult {
    put_str(out, &s.address, "signal address")?;
    out.push(s.signal.code());
    let meta = s.meta.as_ref().filter(|_| with_meta);
    out.push(
        flag(s.datatype.is_some(), 0x01)
            | flag(s.access.is_some(), 0x02)
            | flag(meta.is_some(), 0x04),
    );
    if let Some(d) = &s.datatype {
        put_str(out, d, "datatype")?;
    }
    if let Some(a) = &s.access {
        put_str(out, a, "access")?;
    }
    if let Some(m) = meta {
        out.push(
            flag(m.unit.is_some(), 0x01)
                | flag(m.range.is_some(), 0x02)
                | flag(m.default.is_some(), 0x04)
                | flag(m.description.is_some(), 0x08),
        );
        if let Some(u) = &m.unit {
            put_str(out, u, "unit")?;
        }
        if let Some((lo, hi)) = m.range {
            out.extend_from_slice(&lo.to_be_bytes());
            out.extend_from_slice(&hi.to_be_bytes());
        }
        if let Some(d) = &m.default {
            put_value(out, d, 0)?;
        }
        if let Some(d) = &m.description {
            put_str(out, d, "description")?;
        }
    }
    Ok(())
}
