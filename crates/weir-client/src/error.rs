//! The client's typed errors, carrying the server's [`ErrorCode`] when it answered with one.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use weir_proto::frame::{EncodeError, ErrorFrame};
use weir_proto::ErrorCode;

/// Everything a client call can fail with. Cloneable, so a failed batch can report the same error
/// to every message in it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the address.
    #[error("connection refused at {addr} — is `weir serve` running?")]
    ConnectionRefused {
        /// The address dialled.
        addr: String,
    },
    /// The connection could not be opened for another reason (DNS, timeout, network).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// The cause.
        #[source]
        source: Arc<io::Error>,
    },
    /// The server refused the handshake (wrong version, too many connections, missing or bad
    /// token: [`ErrorCode::Unauthorized`]) or is not Weir.
    #[error("handshake with {addr} failed: {message}")]
    Handshake {
        /// The address dialled.
        addr: String,
        /// The server's code, when it sent one.
        code: Option<ErrorCode>,
        /// What went wrong.
        message: String,
        /// The server's retry hint (for `busy`).
        retry_after: Option<Duration>,
    },
    /// The server answered the request with an error.
    #[error("{code}: {message}")]
    Server {
        /// The stable error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
        /// For `busy`: wait at least this long before retrying.
        retry_after: Option<Duration>,
    },
    /// An ack, nack or extend named a receipt that is unknown, settled or expired.
    #[error("receipt {receipt:?} is no longer valid (unknown, settled or its lease expired)")]
    InvalidReceipt {
        /// The receipt.
        receipt: String,
    },
    /// The connection is gone; requests in flight have an unknown outcome.
    #[error("connection lost: {reason}")]
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The server sent something the protocol does not allow.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The request does not fit the wire (a field or the frame is too large).
    #[error("request cannot be encoded: {0}")]
    Encode(#[from] EncodeError),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TLS options cannot be used (unreadable or invalid CA certificates, a bad server
    /// name). A failed handshake is [`ClientError::Handshake`].
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

impl ClientError {
    /// The server's error code, when the error came from the server: e.g.
    /// [`ErrorCode::Unauthorized`] for a missing or bad token (at connect),
    /// [`ErrorCode::Forbidden`] for a request the token may not make.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            ClientError::Handshake { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether the same request may succeed if retried later (the server said `busy`).
    pub fn is_retryable(&self) -> bool {
        self.code().is_some_and(ErrorCode::is_retryable)
    }

    /// The server's hint of how long to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Server { retry_after, .. }
            | ClientError::Handshake { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn from_frame(e: ErrorFrame) -> ClientError {
        ClientError::Server {
            code: e.code,
            message: e.message,
            retry_after: (e.retry_after_ms > 0).then(|| Duration::from_millis(e.retry_after_ms)),
        }
    }

    pub(crate) fn disconnected(reason: impl Into<String>) -> ClientError {
        ClientError::Disconnected {
            reason: reason.into(),
        }
    }
}
