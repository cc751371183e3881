//! The stored form of one param (the value bytes of a record; the address is the key).
//!
//! All integers are big-endian:
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 1     | record version, [`RECORD_VERSION`] (1 is read too)           |
//! | 8     | revision (u64)                                               |
//! | 8     | timestamp (u64, µs since the Unix epoch)                     |
//! | 1     | has-expiry flag: 0 or 1                                      |
//! | 0 / 8 | expires_at (u64), present only when the flag is 1            |
//! | 2     | writer length (u16)                                          |
//! | n     | writer, UTF-8                                                |
//! | 1     | has-attachment flag: 0 or 1 (version 2 only)                 |
//! | 1 + k | attachment kind: length (u8), UTF-8 (only when the flag is 1)|
//! | 4 + m | attachment bytes: length (u32), bytes (only when flag is 1)  |
//! | rest  | the value, one tagged value of the CLASP binary encoding     |
//!
//! Decoding checks every length and flag and refuses trailing bytes; it never panics.

use clasp_proto::codec::binary::{decode_value, encode_value};

use crate::{StoredAttachment, StoredParam};

/// The version byte every record written starts with.
pub(crate) const RECORD_VERSION: u8 = 2;

/// Appends the record of `param` to `out`. On error `out` may hold a partial record; the
/// message says what does not fit (the caller adds the address).
pub(crate) fn encode(param: &StoredParam, out: &mut Vec<u8>) -> Result<(), String> {
    let writer_len = u16::try_from(param.writer.len()).map_err(|_| {
        format!(
            "the writer session id is {} bytes long; the limit is 65535",
            param.writer.len()
        )
    })?;
    out.reserve(1 + 8 + 8 + 1 + 8 + 2 + param.writer.len() + 16);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&param.revision.to_be_bytes());
    out.extend_from_slice(&param.timestamp.to_be_bytes());
    match param.expires_at {
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&at.to_be_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&writer_len.to_be_bytes());
    out.extend_from_slice(param.writer.as_bytes());
    match &param.attachment {
        None => out.push(0),
        Some(a) => {
            let kind_len = u8::try_from(a.kind.len()).map_err(|_| {
                format!(
                    "the attachment kind is {} bytes long; the limit is 255",
                    a.kind.len()
                )
            })?;
            let len = u32::try_from(a.bytes.len()).map_err(|_| {
                format!(
                    "the attachment is {} bytes long; the limit is 4 GiB",
                    a.bytes.len()
                )
            })?;
            out.push(1);
            out.push(kind_len);
            out.extend_from_slice(a.kind.as_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&a.bytes);
        }
    }
    encode_value(&param.value, out).map_err(|e| format!("the value cannot be encoded: {e}"))
}

/// A bounds-checked reader over a record.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(format!(
                "truncated at byte {}: {field} needs {n} bytes, {} left",
                self.pos,
                self.buf.len() - self.pos
            )),
        }
    }

    fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16, String> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &str) -> Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, field)?);
        Ok(u32::from_be_bytes(a))
    }

    fn u64(&mut self, field: &str) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(a))
    }
}

/// Decodes the record stored under `address`. The error says what is wrong (the caller adds
/// the address and the database path).
pub(crate) fn decode(address: &str, bytes: &[u8]) -> Result<StoredParam, String> {
    let mut c = Cursor { buf: bytes, pos: 0 };
    let version = c.u8("record version")?;
    if version != 1 && version != RECORD_VERSION {
        return Err(format!(
            "unknown record version {version} (expected 1 or {RECORD_VERSION})"
        ));
    }
    let revision = c.u64("revision")?;
    let timestamp = c.u64("timestamp")?;
    let expires_at = match c.u8("expiry flag")? {
        0 => None,
        1 => Some(c.u64("expires_at")?),
        other => return Err(format!("bad expiry flag {other} (expected 0 or 1)")),
    };
    let writer_len = c.u16("writer length")?;
    let writer = c.take(usize::from(writer_len), "writer")?;
    let writer = std::str::from_utf8(writer)
        .map_err(|e| format!("writer is not valid UTF-8: {e}"))?
        .to_owned();
    let attachment = if version == 1 {
        None
    } else {
        match c.u8("attachment flag")? {
            0 => None,
            1 => {
                let kind_len = c.u8("attachment kind length")?;
                let kind = c.take(usize::from(kind_len), "attachment kind")?;
                let kind = std::str::from_utf8(kind)
                    .map_err(|e| format!("attachment kind is not valid UTF-8: {e}"))?
                    .to_owned();
                let len = c.u32("attachment length")?;
                let bytes = c.take(len as usize, "attachment")?.to_vec();
                Some(StoredAttachment { kind, bytes })
            }
            other => return Err(format!("bad attachment flag {other} (expected 0 or 1)")),
        }
    };
    let start = c.pos;
    let rest = &bytes[start..];
    let (value, used) =
        decode_value(rest).map_err(|e| format!("bad value at byte {start}: {e}"))?;
    if used != rest.len() {
        return Err(format!(
            "{} unexpected bytes after the value",
            rest.len() - used
        ));
    }
    Ok(StoredParam {
        address: address.to_owned(),
        value,
        revision,
        timestamp,
        writer,
        expires_at,
        attachment,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clasp_proto::Value;
    use proptest::prelude::*;

    fn sample() -> StoredParam {
        StoredParam {
            address: "/a/b".into(),
            value: Value::Map(vec![
                (
                    "x".into(),
                    Value::Array(vec![Value::Int(-3), Value::Float(1.5)]),
                ),
                ("ü".into(), Value::from("日本")),
            ]),
            revision: 42,
            writer: "s-1".into(),
            timestamp: 1_700_000_000_000_000,
            expires_at: Some(1_700_000_060_000_000),
            attachment: Some(StoredAttachment {
                kind: "mqtt".into(),
                bytes: vec![0, 1, 2, 0xFF],
            }),
        }
    }

    #[test]
    fn round_trip() {
        let attachments = [None, sample().attachment];
        for (expires_at, attachment) in [None, Some(7)].into_iter().zip(attachments) {
            let p = StoredParam {
                expires_at,
                attachment,
                ..sample()
            };
            let mut buf = Vec::new();
            encode(&p, &mut buf).unwrap();
            assert_eq!(buf[0], RECORD_VERSION);
            assert_eq!(decode("/a/b", &buf).unwrap(), p);
        }
    }

    #[test]
    fn layout() {
        let p = StoredParam {
            address: "/x".into(),
            value: Value::Bool(true),
            revision: 1,
            writer: "w".into(),
            timestamp: 2,
            expires_at: None,
            attachment: Some(StoredAttachment {
                kind: "k".into(),
                bytes: vec![9, 8],
            }),
        };
        let mut buf = Vec::new();
        encode(&p, &mut buf).unwrap();
        let mut want = vec![2u8];
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(&2u64.to_be_bytes());
        want.push(0);
        want.extend_from_slice(&[0, 1, b'w']);
        want.extend_from_slice(&[1, 1, b'k', 0, 0, 0, 2, 9, 8]);
        want.extend_from_slice(&[clasp_proto::value::tag::BOOL, 1]);
        assert_eq!(buf, want);
    }

    #[test]
    fn version_1_records_are_read() {
        // Written by earlier builds: no attachment field.
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&1u64.to_be_bytes());
        v1.extend_from_slice(&2u64.to_be_bytes());
        v1.push(0);
        v1.extend_from_slice(&[0, 1, b'w']);
        v1.extend_from_slice(&[clasp_proto::value::tag::BOOL, 1]);
        let p = decode("/x", &v1).unwrap();
        assert_eq!(
            (p.revision, p.value, p.attachment),
            (1, Value::Bool(true), None)
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf).unwrap();
        for n in 0..buf.len() {
            assert!(decode("/a/b", &buf[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn bad_fields_are_errors() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf).unwrap();
        let mut v = buf.clone();
        v[0] = 3;
        assert!(decode("/a", &v).unwrap_err().contains("record version 3"));
        // the attachment flag follows writer "s-1" (bytes 28..31)
        let mut v = buf.clone();
        v[31] = 7;
        assert!(decode("/a", &v).unwrap_err().contains("attachment flag"));
        let mut v = buf.clone();
        v[17] = 9;
        assert!(decode("/a", &v).unwrap_err().contains("expiry flag"));
        let mut v = buf.clone();
        v.push(0);
        assert!(decode("/a", &v).unwrap_err().contains("after the value"));
        // writer "s-1" starts at 1 + 8 + 8 + 1 + 8 + 2 = 28
        let mut v = buf.clone();
        v[28] = 0xFF;
        assert!(decode("/a", &v).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn oversized_fields_are_refused() {
        let mut buf = Vec::new();
        let p = StoredParam {
            writer: "w".repeat(70_000),
            ..sample()
        };
        assert!(encode(&p, &mut buf).unwrap_err().contains("writer"));
        let p = StoredParam {
            value: Value::from("v".repeat(70_000)),
            ..sample()
        };
        buf.clear();
        assert!(encode(&p, &mut buf).unwrap_err().contains("value"));
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode("/g", &bytes);
        }

        #[test]
        fn decoding_mutated_records_never_panics(
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut buf = Vec::new();
            encode(&sample(), &mut buf).unwrap();
            let i = pos.index(buf.len());
            buf[i] = byte;
            let _ = decode("/g", &buf);
        }
    }
}
