//! The recording file: JSON lines, a header first, then one entry per line, and optionally an
//! end line. The full specification is `docs/recording.md`.

use std::io::{BufRead, Write};

use clasp_proto::{GesturePhase, SignalType, Str, Value};
use serde_json::{Map, Value as Json, json};

use super::value::{Encoded, decode_plain, decode_typed, encode};

/// The `format` of the header line.
pub const FORMAT: &str = "clasp-recording";
/// The version this code writes and the only one it reads.
pub const VERSION: u64 = 1;

/// The first line of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Wall-clock time of the start (time 0), µs since the Unix epoch.
    pub started_at_us: u64,
    /// The pattern recorded.
    pub pattern: String,
    /// The router's URL.
    pub url: String,
    /// The tool that wrote the file, e.g. `clasp 0.1.0`.
    pub tool: String,
    /// The signal types recorded (names as in [`SignalType::name`]; empty: all).
    pub types: Vec<String>,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A param's value when the recording started (always at time 0).
    Initial,
    /// A param changed (SET).
    Set,
    /// An event fired.
    Event,
    /// A stream sample.
    Stream,
    /// A gesture phase.
    Gesture,
    /// A timeline published.
    Timeline,
}

impl EntryKind {
    /// The name written in the file.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Initial => "initial",
            EntryKind::Set => "set",
            EntryKind::Event => "event",
            EntryKind::Stream => "stream",
            EntryKind::Gesture => "gesture",
            EntryKind::Timeline => "timeline",
        }
    }

    /// The kind named `name` in a file.
    pub fn from_name(name: &str) -> Option<EntryKind> {
        Some(match name {
            "initial" => EntryKind::Initial,
            "set" => EntryKind::Set,
            "event" => EntryKind::Event,
            "stream" => EntryKind::Stream,
            "gesture" => EntryKind::Gesture,
            "timeline" => EntryKind::Timeline,
            _ => return None,
        })
    }

    /// The kind of a live update of signal type `t`.
    pub fn of_signal(t: SignalType) -> EntryKind {
        match t {
            SignalType::Param => EntryKind::Set,
            SignalType::Event => EntryKind::Event,
            SignalType::Stream => EntryKind::Stream,
            SignalType::Gesture => EntryKind::Gesture,
            SignalType::Timeline => EntryKind::Timeline,
        }
    }
}

/// One recorded update.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When it was seen, µs after the start.
    pub t_us: u64,
    /// What it is.
    pub kind: EntryKind,
    /// The address.
    pub address: Str,
    /// The value (exactly as received).
    pub value: Value,
    /// The param's revision at the recorded router (params only; informational).
    pub revision: Option<u64>,
    /// Entries with the same bundle number arrived in one BUNDLE; they are consecutive in the
    /// file and played back as one BUNDLE.
    pub bundle: Option<u64>,
    /// Gesture id (gestures only).
    pub gesture_id: Option<u32>,
    /// Gesture phase (gestures only).
    pub phase: Option<GesturePhase>,
}

impl Entry {
    /// An entry with no revision, bundle or gesture fields.
    pub fn new(t_us: u64, kind: EntryKind, address: impl Into<Str>, value: Value) -> Entry {
        Entry {
            t_us,
            kind,
            address: address.into(),
            value,
            revision: None,
            bundle: None,
            gesture_id: None,
            phase: None,
        }
    }

    /// Whether this entry writes a param (initial state or a SET).
    pub fn is_param(&self) -> bool {
        matches!(self.kind, EntryKind::Initial | EntryKind::Set)
    }
}

/// The last line of a complete recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// When recording stopped, µs after the start (the length of the recording).
    pub t_us: u64,
    /// Entries written.
    pub entries: u64,
    /// Updates the recorder missed because it fell behind (0 in a complete recording).
    pub dropped: u64,
}

/// A whole recording, read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// The header.
    pub header: Header,
    /// The entries, in time order.
    pub entries: Vec<Entry>,
    /// The end line, if the recorder got to write it.
    pub end: Option<End>,
}

impl Recording {
    /// The recording's length: the end line's time, else the last entry's.
    pub fn length_us(&self) -> u64 {
        self.end
            .map(|e| e.t_us)
            .or_else(|| self.entries.last().map(|e| e.t_us))
            .unwrap_or(0)
    }
}

/// Why a file could not be read: a line number (from 1) and what is wrong there.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be read.
    #[error("line {line}: cannot read: {source}")]
    Io {
        /// The line being read.
        line: usize,
        /// The error.
        source: std::io::Error,
    },
    /// The line is not what the format allows.
    #[error("line {line}: {message}")]
    Invalid {
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The header names a version this code does not read.
    #[error(
        "line {line}: recording format version {found} is not supported (this clasp reads version {VERSION})"
    )]
    UnsupportedVersion {
        /// The header's line.
        line: usize,
        /// The version found.
        found: u64,
    },
}

impl FormatError {
    /// The line the error is about (from 1).
    pub fn line(&self) -> usize {
        match self {
            FormatError::Io { line, .. }
            | FormatError::Invalid { line, .. }
            | FormatError::UnsupportedVersion { line, .. } => *line,
        }
    }
}

/// Writes a recording line by line. Wrap the output in a `BufWriter`; call [`Writer::finish`]
/// to write the end line and flush.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    entries: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the header.
    pub fn new(mut out: W, header: &Header) -> std::io::Result<Writer<W>> {
        let line = json!({
            "format": FORMAT,
            "version": VERSION,
            "started_at_us": header.started_at_us,
            "pattern": header.pattern,
            "url": header.url,
            "tool": header.tool,
            "types": header.types,
        });
        writeln!(out, "{line}")?;
        Ok(Writer { out, entries: 0 })
    }

    /// Writes one entry.
    pub fn entry(&mut self, e: &Entry) -> std::io::Result<()> {
        writeln!(self.out, "{}", entry_json(e))?;
        self.entries += 1;
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Flushes what was written (the file is a valid recording without its end line).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Writes the end line and flushes; returns the output.
    pub fn finish(mut self, t_us: u64, dropped: u64) -> std::io::Result<W> {
        let end = json!({"kind": "end", "t_us": t_us, "entries": self.entries, "dropped": dropped});
        writeln!(self.out, "{end}")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The JSON object of one entry.
pub fn entry_json(e: &Entry) -> Json {
    let mut m = Map::new();
    m.insert("t_us".into(), e.t_us.into());
    m.insert("kind".into(), e.kind.name().into());
    m.insert("address".into(), e.address.to_string().into());
    match encode(&e.value) {
        Encoded::Plain(j) => m.insert("value".into(), j),
        Encoded::Typed(j) => m.insert("typed".into(), j),
    };
    if let Some(r) = e.revision {
        m.insert("revision".into(), r.into());
    }
    if let Some(b) = e.bundle {
        m.insert("bundle".into(), b.into());
    }
    if let Some(g) = e.gesture_id {
        m.insert("gesture_id".into(), g.into());
    }
    if let Some(p) = e.phase {
        m.insert("phase".into(), p.name().into());
    }
    Json::Object(m)
}

/// Reads a whole recording, checking every line.
pub fn read(input: impl BufRead) -> Result<Recording, FormatError> {
    let mut lines = input.lines();
    let first = match lines.next() {
        None => return Err(invalid(1, "the file is empty (no header line)")),
        Some(l) => l.map_err(|source| FormatError::Io { line: 1, source })?,
    };
    let header = parse_header(&first)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut end = None;
    // Bundles seen, to check that each one's entries are consecutive.
    let mut closed_bundles = std::collections::HashSet::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line.map_err(|source| FormatError::Io { line: n, source })?;
        if line.trim().is_empty() {
            continue;
        }
        if end.is_some() {
            return Err(invalid(n, "nothing may follow the end line"));
        }
        let obj = object(&line, n)?;
        if obj.get("kind").and_then(Json::as_str) == Some("end") {
            let e = End {
                t_us: uint(&obj, "t_us", n)?,
                entries: uint(&obj, "entries", n)?,
                dropped: uint(&obj, "dropped", n)?,
            };
            if entries.last().is_some_and(|l| l.t_us > e.t_us) {
                return Err(invalid(n, "the end line is earlier than the last entry"));
            }
            end = Some(e);
            continue;
        }
        let e = parse_entry(&obj, n)?;
        if let Some(prev) = entries.last() {
            if e.t_us < prev.t_us {
                return Err(invalid(
                    n,
                    format!(
                        "t_us {} is earlier than the line before ({})",
                        e.t_us, prev.t_us
                    ),
                ));
            }
            if prev.bundle.is_some() && prev.bundle != e.bundle {
                closed_bundles.insert(prev.bundle);
            }
        }
        if e.bundle.is_some() && closed_bundles.contains(&e.bundle) {
            return Err(invalid(
                n,
                "a bundle's entries must be consecutive (this bundle number was used before)",
            ));
        }
        if e.kind == EntryKind::Initial && e.t_us != 0 {
            return Err(invalid(n, "an `initial` entry must be at t_us 0"));
        }
        entries.push(e);
    }
    Ok(Recording {
        header,
        entries,
        end,
    })
}

fn invalid(line: usize, message: impl Into<String>) -> FormatError {
    FormatError::Invalid {
        line,
        message: message.into(),
    }
}

fn object(line: &str, n: usize) -> Result<Map<String, Json>, FormatError> {
    match serde_json::from_str::<Json>(line) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(invalid(n, "expected a JSON object")),
        Err(e) => Err(invalid(n, format!("not valid JSON: {e}"))),
    }
}

fn uint(m: &Map<String, Json>, key: &str, n: usize) -> Result<u64, FormatError> {
    opt_uint(m, key, n)?.ok_or_else(|| invalid(n, format!("missing `{key}`")))
}

fn opt_uint(m: &Map<String, Json>, key: &str, n: usize) -> Result<Option<u64>, FormatError> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(j) => j
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(n, format!("`{key}` must be a non-negative integer"))),
    }
}

fn string(m: &Map<String, Json>, key: &str, n: usize) -> Result<String, FormatError> {
    m.get(key)
        .and_then(Json::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid(n, format!("`{key}` must be a string")))
}

fn parse_header(line: &str) -> Result<Header, FormatError> {
    let m = object(line, 1)?;
    if m.get("format").and_then(Json::as_str) != Some(FORMAT) {
        return Err(invalid(
            1,
            format!("not a CLASP recording (the header's `format` must be \"{FORMAT}\")"),
        ));
    }
    let version = uint(&m, "version", 1)?;
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion {
            line: 1,
            found: version,
        });
    }
    let types = match m.get("types") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid(1, "`types` must be an array of strings"))?,
        Some(_) => return Err(invalid(1, "`types` must be an array of strings")),
    };
    Ok(Header {
        started_at_us: uint(&m, "started_at_us", 1)?,
        pattern: string(&m, "pattern", 1)?,
        url: string(&m, "url", 1)?,
        tool: string(&m, "tool", 1)?,
        types,
    })
}

fn parse_entry(m: &Map<String, Json>, n: usize) -> Result<Entry, FormatError> {
    let kind_name = string(m, "kind", n)?;
    let kind = EntryKind::from_name(&kind_name).ok_or_else(|| {
        invalid(
            n,
            format!(
                "unknown kind `{kind_name}` (expected initial, set, event, stream, gesture, \
                 timeline or end)"
            ),
        )
    })?;
    let address = string(m, "address", n)?;
    clasp_proto::address::validate_address(&address)
        .map_err(|e| invalid(n, format!("bad address `{address}`: {e}")))?;
    let value = match (m.get("value"), m.get("typed")) {
        (Some(v), None) => decode_plain(v),
        (None, Some(t)) => decode_typed(t).map_err(|e| invalid(n, format!("`typed`: {e}")))?,
        (Some(_), Some(_)) => return Err(invalid(n, "`value` and `typed` are exclusive")),
        (None, None) => return Err(invalid(n, "missing `value` (or `typed`)")),
    };
    let gesture_id = opt_uint(m, "gesture_id", n)?
        .map(|g| u32::try_from(g).map_err(|_| invalid(n, "`gesture_id` must fit 32 bits")))
        .transpose()?;
    let phase = match m.get("phase") {
        None | Some(Json::Null) => None,
        Some(p) => Some(
            p.as_str()
                .and_then(GesturePhase::from_name)
                .ok_or_else(|| invalid(n, "`phase` must be start, move, end or cancel"))?,
        ),
    };
    if kind == EntryKind::Gesture && (gesture_id.is_none() || phase.is_none()) {
        return Err(invalid(n, "a gesture needs `gesture_id` and `phase`"));
    }
    Ok(Entry {
        t_us: uint(m, "t_us", n)?,
        kind,
        address: address.into(),
        value,
        revision: opt_uint(m, "revision", n)?,
        bundle: opt_uint(m, "bundle", n)?,
        gesture_id,
        phase,
    })
}
