//! What a param's JetStream key holds: its value and who wrote it when, and the lock on it if
//! one is held. The revision is not stored: it is the KV revision of the entry.
//!
//! Layout (version 1), all integers big-endian:
//!
//! | Bytes | Field |
//! |---|---|
//! | 2 | `C1`: magic and version |
//! | 1 | flags: bit 0, a lock follows the timestamp |
//! | 2 + n | writer, UTF-8 |
//! | 8 | wall-clock time of the write, µs since the Unix epoch |
//! | (2 + n) + (2 + m) + 8 | lock: holder session, holder's router, lease end (ms since the epoch) |
//! | rest | the value, in the binary codec's value encoding (protocol.md §2.3) |
//!
//! Decoding checks every length against what is left and refuses trailing bytes after the
//! value, so a damaged entry is reported, never half read.

use clasp_proto::Value;
use clasp_proto::codec::binary::{decode_value, encode_value};
use thiserror::Error;

const MAGIC: [u8; 2] = *b"C1";
const FLAG_LOCK: u8 = 1;

/// A param as the cluster stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The value.
    pub value: Value,
    /// The session that wrote it.
    pub writer: String,
    /// When, in µs since the Unix epoch.
    pub timestamp: u64,
    /// The lock on the param, if any.
    pub lock: Option<Lock>,
}

/// A lock held on a param by a session of some router, until its lease ends unless renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The holding session.
    pub holder: String,
    /// The router the holder is connected to.
    pub router: String,
    /// The lease's end, in ms since the Unix epoch.
    pub until_ms: u64,
}

/// Why a stored entry cannot be read or a record written.
#[derive(Debug, Error)]
pub enum RecordError {
    /// Not a record of this layout (or a later version).
    #[error("not a CLASP param record (magic {0:02X?})")]
    Magic([u8; 2]),
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
        out.push(if self.lock.is_some() { FLAG_LOCK } else { 0 });
        put_str(&self.writer, "writer", &mut out)?;
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        if let Some(l) = &self.lock {
            put_str(&l.holder, "lock holder", &mut out)?;
            put_str(&l.router, "lock router", &mut out)?;
            out.extend_from_slice(&l.until_ms.to_be_bytes());
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
        let writer = r.str("writer")?;
        let timestamp = r.u64()?;
        let lock = if flags & FLAG_LOCK != 0 {
            Some(Lock {
                holder: r.str("lock holder")?,
                router: r.str("lock router")?,
                until_ms: r.u64()?,
            })
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
            lock,
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
    fn round_trip_with_and_without_a_lock() {
        let mut r = Record {
            value: Value::Float(0.5),
            writer: "s-1".into(),
            timestamp: 1_700_000_000_000_000,
            lock: None,
        };
        assert_eq!(Record::decode(&r.encode().unwrap()).unwrap(), r);
        r.lock = Some(Lock {
            holder: "s-1".into(),
            router: "r-a".into(),
            until_ms: 42,
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
