//! The ERROR code catalogue (protocol.md §5.6).
//!
//! Ranges: 1xx protocol, 2xx address, 3xx permission, 4xx state, 5xx server. The reference router
//! also uses 403, 404, 429 and 503 in an HTTP-like sense; those are part of the catalogue because
//! clients have seen them. Codes outside the catalogue survive a round trip as [`ErrorCode::Other`].

use std::fmt;

/// A CLASP error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 100: the frame could not be parsed.
    InvalidFrame,
    /// 101: the payload is not a valid message, or not allowed here (e.g. a second HELLO).
    InvalidMessage,
    /// 102: unsupported protocol version or frame feature.
    UnsupportedVersion,
    /// 200: the address is not valid.
    InvalidAddress,
    /// 201: nothing is stored at the address.
    AddressNotFound,
    /// 202: the subscription pattern does not compile.
    InvalidPattern,
    /// 300: authentication required, or the token is unknown or malformed.
    Unauthorized,
    /// 301: the session's scopes do not allow the operation.
    Forbidden,
    /// 302: the token has expired.
    TokenExpired,
    /// 400: the state store rejected a write (revision conflict, lock, capacity).
    StateRejected,
    /// 401: the param is locked by another session.
    LockHeld,
    /// 402: the value is not acceptable.
    InvalidValue,
    /// 403: a bundle was rejected as a whole.
    BundleRejected,
    /// 404: a P2P signal names a session that does not exist.
    TargetNotFound,
    /// 409: the expected revision does not match.
    RevisionConflict,
    /// 413: the frame or message exceeds a size limit.
    TooLarge,
    /// 429: a rate or count limit was exceeded.
    RateLimited,
    /// 500: internal error or misconfiguration.
    Internal,
    /// 501: the service is not available.
    ServiceUnavailable,
    /// 502: an operation timed out.
    Timeout,
    /// 503: the receiver cannot keep up; messages are being dropped.
    Overloaded,
    /// Any other code.
    Other(u16),
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::InvalidFrame => 100,
            ErrorCode::InvalidMessage => 101,
            ErrorCode::UnsupportedVersion => 102,
            ErrorCode::InvalidAddress => 200,
            ErrorCode::AddressNotFound => 201,
            ErrorCode::InvalidPattern => 202,
            ErrorCode::Unauthorized => 300,
            ErrorCode::Forbidden => 301,
            ErrorCode::TokenExpired => 302,
            ErrorCode::StateRejected => 400,
            ErrorCode::LockHeld => 401,
            ErrorCode::InvalidValue => 402,
            ErrorCode::BundleRejected => 403,
            ErrorCode::TargetNotFound => 404,
            ErrorCode::RevisionConflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::ServiceUnavailable => 501,
            ErrorCode::Timeout => 502,
            ErrorCode::Overloaded => 503,
            ErrorCode::Other(c) => c,
        }
    }

    /// The catalogue entry for a numeric code ([`ErrorCode::Other`] if it has none).
    pub fn from_code(code: u16) -> ErrorCode {
        match code {
            100 => ErrorCode::InvalidFrame,
            101 => ErrorCode::InvalidMessage,
            102 => ErrorCode::UnsupportedVersion,
            200 => ErrorCode::InvalidAddress,
            201 => ErrorCode::AddressNotFound,
            202 => ErrorCode::InvalidPattern,
            300 => ErrorCode::Unauthorized,
            301 => ErrorCode::Forbidden,
            302 => ErrorCode::TokenExpired,
            400 => ErrorCode::StateRejected,
            401 => ErrorCode::LockHeld,
            402 => ErrorCode::InvalidValue,
            403 => ErrorCode::BundleRejected,
            404 => ErrorCode::TargetNotFound,
            409 => ErrorCode::RevisionConflict,
            413 => ErrorCode::TooLarge,
            429 => ErrorCode::RateLimited,
            500 => ErrorCode::Internal,
            501 => ErrorCode::ServiceUnavailable,
            502 => ErrorCode::Timeout,
            503 => ErrorCode::Overloaded,
            c => ErrorCode::Other(c),
        }
    }

    /// The category of the code, from its hundreds digit.
    pub fn category(self) -> &'static str {
        match self.code() / 100 {
            1 => "protocol",
            2 => "address",
            3 => "permission",
            4 => "state",
            5 => "server",
            _ => "other",
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(code: u16) -> Self {
        ErrorCode::from_code(code)
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> Self {
        code.code()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in 0..=u16::MAX {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
    }

    #[test]
    fn catalogue_entries_are_named() {
        assert_eq!(ErrorCode::from_code(301), ErrorCode::Forbidden);
        assert_eq!(ErrorCode::from_code(429), ErrorCode::RateLimited);
        assert_eq!(ErrorCode::from_code(201), ErrorCode::AddressNotFound);
        assert_eq!(ErrorCode::from_code(777), ErrorCode::Other(777));
        assert_eq!(ErrorCode::Forbidden.category(), "permission");
    }
}
