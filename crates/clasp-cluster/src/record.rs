//! What a param's JetStream key holds: its value, who wrote it when, and, for a SET that came
//! in a bundle, which bundle (so routers can apply the bundle's SETs together). The revision
//! is not stored: it is the KV revision of the entry.
//!
//! Layout (version 2), all integers big-endian:
//!
//! | Bytes | Field |
//! |---|---|
//! | 2 | `C2`: magic and version (version 1, which had a lock where the bundle marker is, is refused) |
//! | 1 | flags: bit 0, a bundle marker follows; bit 1, an expiry follows the timestamp |
//! | 2 + n | writer, UTF-8 |
//! | 8 | wall-clock time of the write, µs since the Unix epoch |
//! | 8 | expiry (bit 1): when the param expires, µs since the Unix epoch |
//! | 8 + 4 + 2 + k × (4 + m) | bundle marker: bundle id, its number of SETs, then its k signals, each a PUBLISH frame with its length |
//! | rest | the value, in the binary codec's value encoding (protocol.md §2.3) |
//!
//! Decoding checks every length against what is left and refuses trailing bytes after the
//! value, so a damaged entry is reported, never half read.

use clasp_proto::Value;
use clasp_proto::codec::binary::{decode_value, encode_value};
use thiserror::Error;

const MAGIC: [u8; 2] = *b"C2";
const FLAG_BUNDLE: u8 = 1;
const FLAG_EXPIRY: u8 = 2;
/// Signals a bundle marker holds, at most.
pub const MAX_BUNDLE_SIGNALS: usize = 4096;

/// A param as the cluster stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The value.
    pub value: Value,
    /// The session that wrote it.
    pub writer: String,
    /// When, in µs since the Unix epoch.
    pub timestamp: u64,
    /// When the param expires (wall-clock µs since the Unix epoch), if it has a TTL.
    pub expires_at: Option<u64>,
    /// The bundle the write came in, if any.
    pub bundle: Option<BundleMark>,
}

/// Which bundle a write belongs to: every SET of a bundle carries the same marker, so a router
/// that sees one can wait for the rest and apply them together, with the bundle's signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMark {
    /// The bundle's id, unique across the cluster.
    pub id: u64,
    /// How many SETs the bundle holds.
    pub sets: u32,
    /// The bundle's signals: PUBLISH frames in the binary codec.
    pub signals: Vec<bytes::Bytes>,
}

/// Why a stored entry cannot be read or a record written.
#[derive(Debug, Error)]
pub enum RecordError {
    /// Not a record of this layout (or a later version).
    #[error("not a CLASP param record (magic {0:02X?})")]
    Magic([u8; 2]),
    /// Flags this version does not know.
    #[error("param record: unknown flags {0:#04x}")]
    Flags(u8),
    /// Shorter than its lengths say.
    #[error("param record truncated at byte {0}")]
    Truncated(usize),
    /// A name is not UTF-8.
    #[error("param record: {0} is not UTF-8")]
    Utf8(&'static str),
    /// A name longer than 65,535 bytes.
    #[error("param record: {0} too long")]
    TooLong(&'static str),
    /// The value does not decode.
    #[error("param record value: {0}")]
    Value(#[from] clasp_proto::DecodeError),
    /// The value cannot be encoded.
    #[error("param record value: {0}")]
    Encode(#[from] clasp_proto::EncodeError),
    /// More signals in a bundle marker than [`MAX_BUNDLE_SIGNALS`].
    #[error("param record: {0} bundle signals, more than {MAX_BUNDLE_SIGNALS}")]
    TooManySignals(usize),
    /// Bytes after the value.
    #[error("param record: {0} bytes after the value")]
    Trailing(usize),
}

fn put_str(s: &str, what: &'static str, out: &mut Vec<u8>) -> Result<(), RecordError> {
    let n = u16::try_from(s.len()).map_err(|_| RecordError::TooLong(what))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl Record {
    /// The stored form.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(32 + self.writer.len());
        out.extend_from_slice(&MAGIC);
        let mut flags = 0;
        if self.bundle.is_some() {
            flags |= FLAG_BUNDLE;
        }
        if self.expires_at.is_some() {
            flags |= FLAG_EXPIRY;
        }
        out.push(flags);
        put_str(&self.writer, "writer", &mut out)?;
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        if let Some(at) = self.expires_at {
            out.extend_from_slice(&at.to_be_bytes());
        }
        if let Some(b) = &self.bundle {
            if b.signals.len() > MAX_BUNDLE_SIGNALS {
                return Err(RecordError::TooManySignals(b.signals.len()));
            }
            out.extend_from_slice(&b.id.to_be_bytes());
            out.extend_from_slice(&b.sets.to_be_bytes());
            out.extend_from_slice(&(b.signals.len() as u16).to_be_bytes());
            for f in &b.signals {
                let n = u32::try_from(f.len()).map_err(|_| RecordError::TooLong("signal"))?;
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(f);
            }
        }
        encode_value(&self.value, &mut out)?;
        Ok(out)
    }

    /// Reads a stored form.
    pub fn decode(buf: &[u8]) -> Result<Record, RecordError> {
        let mut r = Reader { buf, pos: 0 };
        let magic: [u8; 2] = r
            .take(2)?
            .try_into()
            .map_err(|_| RecordError::Truncated(0))?;
        if magic != MAGIC {
            return Err(RecordError::Magic(magic));
        }
        let flags = r.take(1)?[0];
        if flags & !(FLAG_BUNDLE | FLAG_EXPIRY) != 0 {
            return Err(RecordError::Flags(flags));
        }
        let writer = r.str("writer")?;
        let timestamp = r.u64()?;
        let expires_at = if flags & FLAG_EXPIRY != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        let bundle = if flags & FLAG_BUNDLE != 0 {
            let id = r.u64()?;
            let sets = r.u32()?;
            let k = r.take(2)?;
            let k = usize::from(u16::from_be_bytes([k[0], k[1]]));
            if k > MAX_BUNDLE_SIGNALS {
                return Err(RecordError::TooManySignals(k));
            }
            // Each signal takes at least its length: no allocation beyond what is there.
            let mut signals = Vec::with_capacity(k.min((buf.len() - r.pos) / 4));
            for _ in 0..k {
                let n = r.u32()? as usize;
                signals.push(bytes::Bytes::copy_from_slice(r.take(n)?));
            }
            Some(BundleMark { id, sets, signals })
        } else {
            None
        };
        let (value, used) = decode_value(&buf[r.pos..])?;
        let left = buf.len() - r.pos - used;
        if left > 0 {
            return Err(RecordError::Trailing(left));
        }
        Ok(Record {
            value,
            writer,
            timestamp,
            expires_at,
            bundle,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(RecordError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn str(&mut self, what: &'static str) -> Result<String, RecordError> {
        let n = self.take(2)?;
        let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| RecordError::Utf8(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_a_bundle() {
        let mut r = Record {
            value: Value::Float(0.5),
            writer: "s-1".into(),
            timestamp: 1_700_000_000_000_000,
            expires_at: None,
            bundle: None,
        };
        assert_eq!(Record::decode(&r.encode().unwrap()).unwrap(), r);
        r.expires_at = Some(1_700_000_002_000_000);
        r.bundle = Some(BundleMark {
            id: 7,
            sets: 3,
            signals: vec![bytes::Bytes::from_static(b"abc"), bytes::Bytes::new()],
        });
        let b = r.encode().unwrap();
        assert_eq!(Record::decode(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(Record::decode(&b[..cut]).is_err(), "{cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(
            Record::decode(&long),
            Err(RecordError::Trailing(1))
        ));
        assert!(matches!(Record::decode(b"XX"), Err(RecordError::Magic(_))));
    }
}
