//! Client errors.

use std::time::Duration;

use clasp_proto::{EncodeError, ErrorCode};

/// Everything a client operation can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a `ws://`, `wss://`, `tcp://` or `quic://` URL with a host (and a port,
    /// for `tcp://` and `quic://`).
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The connection could not be opened (TCP, TLS, QUIC or WebSocket), or closed during the
    /// handshake.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The router's URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No WELCOME arrived within the connect timeout.
    #[error("no answer from {url} within {timeout:?}")]
    ConnectTimeout {
        /// The router's URL.
        url: String,
        /// The timeout in force.
        timeout: Duration,
    },
    /// The router refused the session (for example an authentication failure, code 300-302, or
    /// a full router, code 503).
    #[error("the router refused the session: {message} (error {code})")]
    Rejected {
        /// The code of the router's ERROR.
        code: ErrorCode,
        /// The router's message.
        message: String,
    },
    /// The client is not connected right now (it may be reconnecting).
    #[error("not connected to the router")]
    NotConnected,
    /// The TLS settings are unusable (a trusted certificate that does not parse).
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection was lost before the router answered.
    #[error("the connection was lost before the router answered")]
    Disconnected,
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// The router did not answer within the request timeout.
    #[error("no answer from the router within {0:?}")]
    Timeout(Duration),
    /// Nothing is stored at the address (router error 201).
    #[error("nothing is stored at {0}")]
    NotFound(String),
    /// The expected revision did not match (router error 409 or 400).
    #[error("revision conflict at {address}: {message}")]
    RevisionConflict {
        /// The address written.
        address: String,
        /// The router's message.
        message: String,
    },
    /// Another session holds the lock (router error 401).
    #[error("{address} is locked by another session: {message}")]
    LockHeld {
        /// The address written.
        address: String,
        /// The router's message.
        message: String,
    },
    /// The session's scopes do not allow the operation (router error 301).
    #[error("not allowed: {message}")]
    Forbidden {
        /// The address concerned, when the router named one.
        address: Option<String>,
        /// The router's message.
        message: String,
    },
    /// Any other ERROR from the router.
    #[error("router error {code}: {message}")]
    Router {
        /// The error code.
        code: ErrorCode,
        /// The router's message.
        message: String,
        /// The address concerned, when the router named one.
        address: Option<String>,
    },
    /// An address or pattern is not valid.
    #[error("invalid address or pattern `{address}`: {reason}")]
    InvalidAddress {
        /// The address or pattern given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The message cannot be encoded (for example a payload over 65,535 bytes).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Error {
    /// The router's error code, for errors that came from a router ERROR.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Rejected { code, .. } | Error::Router { code, .. } => Some(*code),
            Error::NotFound(_) => Some(ErrorCode::AddressNotFound),
            Error::LockHeld { .. } => Some(ErrorCode::LockHeld),
            Error::Forbidden { .. } => Some(ErrorCode::Forbidden),
            Error::RevisionConflict { .. } => Some(ErrorCode::RevisionConflict),
            _ => None,
        }
    }

    /// The typed error for a router ERROR.
    pub(crate) fn from_router(e: &clasp_proto::ErrorMessage) -> Error {
        let address = e.address.as_ref().map(|a| a.to_string());
        let message = e.message.to_string();
        let addr = || address.clone().unwrap_or_default();
        match e.code {
            ErrorCode::AddressNotFound => Error::NotFound(addr()),
            ErrorCode::RevisionConflict => Error::RevisionConflict {
                address: addr(),
                message,
            },
            ErrorCode::StateRejected if message.to_ascii_lowercase().contains("revision") => {
                Error::RevisionConflict {
                    address: addr(),
                    message,
                }
            }
            ErrorCode::LockHeld => Error::LockHeld {
                address: addr(),
                message,
            },
            ErrorCode::StateRejected if message.to_ascii_lowercase().contains("lock") => {
                Error::LockHeld {
                    address: addr(),
                    message,
                }
            }
            ErrorCode::Forbidden => Error::Forbidden { address, message },
            code => Error::Router {
                code,
                message,
                address,
            },
        }
    }
}

/// Shorthand for results of client operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
