//! CLASP addresses as NATS names, one to one.
//!
//! An address `/a/b/c` is the token list `a.b.c`: each segment becomes one token, so NATS's
//! token wildcards line up with CLASP's segment wildcards. A segment keeps the characters
//! `A–Z a–z 0–9 - _` as they are; every other byte of its UTF-8 (`.`, `*`, `>`, `=`, spaces,
//! non-ASCII…) is written `=HH`, two upper-case hex digits. An empty segment (the root `/`,
//! or the end of `/a/`) is the token `=` alone, which no escape can produce. The result uses
//! only characters both JetStream keys (`[-/_=.a-zA-Z0-9]`) and NATS subjects accept, never
//! starts or ends with `.`, and [`decode_tokens`] takes it back exactly; it refuses anything
//! [`encode_tokens`] could not have written (lower-case hex, an escaped plain character), so
//! two different addresses never share a name and no name has two readings.
//!
//! JetStream keys are the tokens as they are ([`key`]); subjects put a prefix of their own in
//! front ([`Subjects`]).

use std::fmt::Write as _;

use thiserror::Error;

/// The longest subject or key this mapping hands to NATS. A NATS control line (subject,
/// reply subject and queue group together) is at most 4 KiB by default; the rest is head room.
pub const MAX_NAME_LEN: usize = 3072;

/// Why an address or name cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamingError {
    /// Not a CLASP address (it must start with `/`).
    #[error("`{0}` is not a CLASP address")]
    NotAnAddress(String),
    /// The mapped name would be longer than NATS allows.
    #[error("the address maps to a NATS name of {len} bytes, more than {max}")]
    TooLong {
        /// The mapped length.
        len: usize,
        /// [`MAX_NAME_LEN`].
        max: usize,
    },
    /// A name this mapping could not have written.
    #[error("`{0}` is not a name of this mapping")]
    NotOurs(String),
    /// A cluster name NATS refuses in bucket and subject names.
    #[error("cluster name `{0}`: use 1–64 of A–Z a–z 0–9 - _")]
    BadClusterName(String),
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// One segment as one token.
fn push_token(segment: &str, out: &mut String) {
    if segment.is_empty() {
        out.push('=');
        return;
    }
    for &b in segment.as_bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
}

/// The tokens of `address`, joined by `.` (see the module docs).
pub fn encode_tokens(address: &str) -> Result<String, NamingError> {
    let rest = address
        .strip_prefix('/')
        .ok_or_else(|| NamingError::NotAnAddress(address.chars().take(64).collect()))?;
    let mut out = String::with_capacity(rest.len() + 8);
    for (i, segment) in rest.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_token(segment, &mut out);
    }
    if out.len() > MAX_NAME_LEN {
        return Err(NamingError::TooLong {
            len: out.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One token back to its segment; `None` if [`push_token`] could not have written it.
fn decode_token(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let t = token.as_bytes();
    if t.is_empty() {
        return None;
    }
    let mut bytes = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'=' {
            let b = hex(*t.get(i + 1)?)? << 4 | hex(*t.get(i + 2)?)?;
            // Only what the encoder escapes: never a plain byte, never the separator `/`
            // (a segment cannot hold one), so every address has one key.
            if plain(b) || b == b'/' {
                return None;
            }
            bytes.push(b);
            i += 3;
        } else if plain(t[i]) {
            bytes.push(t[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The address whose tokens are `name` (the inverse of [`encode_tokens`]).
pub fn decode_tokens(name: &str) -> Result<String, NamingError> {
    let mut address = String::with_capacity(name.len() + 1);
    for token in name.split('.') {
        address.push('/');
        address.push_str(
            &decode_token(token)
                .ok_or_else(|| NamingError::NotOurs(name.chars().take(64).collect()))?,
        );
    }
    Ok(address)
}

/// The JetStream key of a param at `address`.
pub fn key(address: &str) -> Result<String, NamingError> {
    encode_tokens(address)
}

/// The address of the param stored under `key`.
pub fn address_of_key(key: &str) -> Result<String, NamingError> {
    decode_tokens(key)
}

/// Checks a cluster name: it names the KV bucket (`clasp_NAME`) and prefixes every subject,
/// so it takes only what both allow.
pub fn check_cluster_name(name: &str) -> Result<(), NamingError> {
    if (1..=64).contains(&name.len()) && name.bytes().all(plain) {
        Ok(())
    } else {
        Err(NamingError::BadClusterName(name.chars().take(80).collect()))
    }
}

/// The KV bucket holding a cluster's params.
pub fn bucket(cluster: &str) -> String {
    format!("clasp_{cluster}")
}

/// The subjects of one cluster: `clasp.NAME.KIND.TOKENS`, where KIND says what travels (`sig`
/// for events, streams, gestures and timelines; others as the cluster needs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// The subjects of the cluster `name` (checked with [`check_cluster_name`]).
    pub fn new(name: &str) -> Result<Subjects, NamingError> {
        check_cluster_name(name)?;
        Ok(Subjects {
            prefix: format!("clasp.{name}."),
        })
    }

    /// `clasp.NAME.` — everything of this cluster starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject a signal to `address` is published on.
    pub fn signal(&self, address: &str) -> Result<String, NamingError> {
        let tokens = encode_tokens(address)?;
        let s = format!("{}sig.{tokens}", self.prefix);
        if s.len() > MAX_NAME_LEN {
            return Err(NamingError::TooLong {
                len: s.len(),
                max: MAX_NAME_LEN,
            });
        }
        Ok(s)
    }

    /// The address a signal subject carries (`None` for a subject not of this cluster's
    /// signals, or not written by this mapping).
    pub fn signal_address(&self, subject: &str) -> Option<String> {
        let tokens = subject.strip_prefix(&self.prefix)?.strip_prefix("sig.")?;
        decode_tokens(tokens).ok()
    }

    /// A subject of this cluster outside the address space (control traffic): `clasp.NAME.WHAT`.
    pub fn control(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_read_naturally() {
        assert_eq!(
            encode_tokens("/lights/hall/level").unwrap(),
            "lights.hall.level"
        );
        assert_eq!(encode_tokens("/").unwrap(), "=");
        assert_eq!(encode_tokens("/a/").unwrap(), "a.=");
        assert_eq!(encode_tokens("/a.b/c d").unwrap(), "a=2Eb.c=20d");
        assert_eq!(encode_tokens("/*/>/=").unwrap(), "=2A.=3E.=3D");
        assert_eq!(encode_tokens("/é").unwrap(), "=C3=A9");
    }

    #[test]
    fn only_our_names_decode() {
        for bad in [
            "", "a..b", "=2e", "=41", "a=", "a=4", "a b", "a*", ">", "=C3",
        ] {
            assert!(decode_tokens(bad).is_err(), "{bad:?} decoded");
        }
        assert_eq!(decode_tokens("a.=").unwrap(), "/a/");
    }

    #[test]
    fn names_stay_within_nats_limits() {
        let long = format!("/{}", "é".repeat(600));
        assert!(matches!(
            encode_tokens(&long),
            Err(NamingError::TooLong { .. })
        ));
        assert!(encode_tokens("no slash").is_err());
    }

    #[test]
    fn cluster_names_and_subjects() {
        assert!(check_cluster_name("venue-1_a").is_ok());
        for bad in ["", "a.b", "a b", "a*", &"x".repeat(65)] {
            assert!(check_cluster_name(bad).is_err(), "{bad:?}");
        }
        let s = Subjects::new("show").unwrap();
        assert_eq!(s.signal("/a/b").unwrap(), "clasp.show.sig.a.b");
        assert_eq!(
            s.signal_address("clasp.show.sig.a.b").as_deref(),
            Some("/a/b")
        );
        assert_eq!(s.signal_address("clasp.other.sig.a.b"), None);
        assert_eq!(bucket("show"), "clasp_show");
    }
}
