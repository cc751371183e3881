//! UTF-8 validation with a fast path for ASCII, the only `unsafe` code in the workspace.
//!
//! Almost every string on the wire (addresses, session ids, map keys) is short ASCII. For such
//! strings `std::str::from_utf8` takes 5.3-6.0 ns (5-36 bytes) and `<[u8]>::is_ascii` 2.2-3.0 ns
//! on the CI machine class (`cargo bench -p clasp-codec-bench -- utf8`).
//! ASCII is valid UTF-8, so a slice that passes `is_ascii` needs no further check; anything else
//! goes through the standard validator. The property tests check both functions against
//! `std::str::from_utf8` on arbitrary bytes.
#![allow(unsafe_code)]

use bytes::Bytes;

use crate::value::Str;

/// `bytes` as a `&str` if it is valid UTF-8 (exactly `std::str::from_utf8(bytes).ok()`).
#[inline(always)]
pub(crate) fn str_from_utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// `bytes` as a [`Str`] sharing its buffer, if it is valid UTF-8 (exactly
/// `Str::try_from(bytes).ok()`).
#[inline(always)]
pub(crate) fn str_from_bytes(bytes: Bytes) -> Option<Str> {
    if bytes.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        Some(unsafe { Str::from_bytes_unchecked(bytes) })
    } else {
        Str::try_from(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn agrees_with_std(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let std = std::str::from_utf8(&bytes).ok();
            prop_assert_eq!(str_from_utf8(&bytes), std);
            let shared = str_from_bytes(Bytes::from(bytes.clone()));
            prop_assert_eq!(shared.as_deref(), std);
        }

        #[test]
        fn agrees_with_std_on_text(s in "\\PC{0,40}", cut in 0usize..48) {
            let bytes = s.as_bytes();
            let bytes = &bytes[..cut.min(bytes.len())];
            prop_assert_eq!(str_from_utf8(bytes), std::str::from_utf8(bytes).ok());
        }
    }
}
