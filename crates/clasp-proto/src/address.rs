//! CLASP address validation.
//!
//! An address is a `/`-separated path such as `/lights/zone5/brightness`. A valid address:
//!
//! * is not empty;
//! * starts with `/`;
//! * has no empty interior segment (`/a//b` is rejected).
//!
//! A trailing `/` (`/a/b/`) and the root `/` alone are accepted. Any other character, including
//! spaces and non-ASCII text, is allowed, and comparison is case-sensitive.

use thiserror::Error;

/// Longest piece of offending text (in characters) kept in an error.
const MAX_SHOWN_CHARS: usize = 200;

/// Why an address was rejected by [`validate_address`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    /// The address is the empty string.
    #[error("address is empty")]
    Empty,
    /// The address does not start with `/`.
    #[error("address must start with '/': {address}")]
    MissingLeadingSlash {
        /// The offending address (at most 200 characters, then `…`).
        address: String,
    },
    /// The address contains `//`, i.e. an empty interior segment.
    #[error("empty segment in address: {address}")]
    EmptySegment {
        /// Byte offset at which the empty segment starts (the second `/` of the pair).
        position: usize,
        /// The offending address (at most 200 characters, then `…`).
        address: String,
    },
}

/// Checks that `s` is a well-formed CLASP address (see the [module docs](self)).
pub fn validate_address(s: &str) -> Result<(), AddressError> {
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if !s.starts_with('/') {
        return Err(AddressError::MissingLeadingSlash {
            address: bounded(s),
        });
    }
    if let Some(i) = s.find("//") {
        return Err(AddressError::EmptySegment {
            position: i + 1,
            address: bounded(s),
        });
    }
    Ok(())
}

/// Copies `s` for an error message, keeping at most [`MAX_SHOWN_CHARS`] characters.
pub(crate) fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_addresses() {
        for a in [
            "/",
            "/a",
            "/a/b",
            "/a/b/",
            "/with space/ünïcode",
            "/A/a",
            "/a/*/?",
        ] {
            assert_eq!(validate_address(a), Ok(()), "{a}");
        }
    }

    #[test]
    fn rejects_invalid_addresses() {
        assert_eq!(validate_address(""), Err(AddressError::Empty));
        assert_eq!(
            validate_address("foo"),
            Err(AddressError::MissingLeadingSlash {
                address: "foo".into()
            })
        );
        assert_eq!(
            validate_address("/a//b"),
            Err(AddressError::EmptySegment {
                position: 3,
                address: "/a//b".into()
            })
        );
        assert!(matches!(
            validate_address("//"),
            Err(AddressError::EmptySegment { position: 1, .. })
        ));
        assert!(matches!(
            validate_address("/a/b//"),
            Err(AddressError::EmptySegment { position: 5, .. })
        ));
    }

    #[test]
    fn messages() {
        assert_eq!(AddressError::Empty.to_string(), "address is empty");
        let e = validate_address("foo").err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("address must start with '/': foo"));
        let e = validate_address("/a//b").err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("empty segment in address: /a//b"));
    }

    #[test]
    fn long_text_is_bounded() {
        let long = "é".repeat(1000);
        let Err(AddressError::MissingLeadingSlash { address }) = validate_address(&long) else {
            panic!("expected MissingLeadingSlash");
        };
        assert_eq!(address.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(address.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }
}
