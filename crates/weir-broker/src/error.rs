//! The broker's error type, mapped onto the stable wire codes of [`weir_proto::ErrorCode`].

use weir_proto::{ErrorCode, NameError};
use weir_store::StoreError;

/// A refused object name and the reason.
#[derive(Debug, thiserror::Error)]
#[error("invalid name {name:?}: {source}")]
pub struct NameRefused {
    /// The refused name.
    pub name: String,
    /// Why it was refused.
    #[source]
    pub source: NameError,
}

/// Everything a broker call can fail with. Causes are kept (`#[source]`), never flattened.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// An object name is not `[A-Za-z0-9_.-]{1,128}` or starts with `.`.
    #[error(transparent)]
    InvalidName(#[from] NameRefused),
    /// An argument is out of range or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The named object does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// What kind of object ("queue", ...).
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The call conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A body, header set or batch exceeds a limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Refused for back pressure; nothing of the call was applied. Retry after the hint.
    #[error("busy: {reason} (retry after {retry_after_ms} ms)")]
    Busy {
        /// Which bound refused.
        reason: String,
        /// Suggested wait before retrying, in milliseconds (≥ 1000).
        retry_after_ms: u64,
    },
    /// The storage layer failed.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

impl BrokerError {
    /// The stable error code for HTTP and the native protocol.
    pub fn code(&self) -> ErrorCode {
        match self {
            BrokerError::InvalidName(_) | BrokerError::InvalidArgument(_) => ErrorCode::BadRequest,
            BrokerError::NotFound { .. } => ErrorCode::NotFound,
            BrokerError::Conflict(_) => ErrorCode::Conflict,
            BrokerError::TooLarge(_) => ErrorCode::TooLarge,
            BrokerError::Busy { .. } => ErrorCode::Busy,
            BrokerError::Storage(e) if e.is_retryable() => ErrorCode::Busy,
            BrokerError::Storage(StoreError::RecordTooLarge { .. }) => ErrorCode::TooLarge,
            BrokerError::Storage(_) => ErrorCode::Internal,
        }
    }

    /// The retry hint for a busy refusal, in milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            BrokerError::Busy { retry_after_ms, .. } => Some(*retry_after_ms),
            BrokerError::Storage(e) if e.is_retryable() => Some(1000),
            _ => None,
        }
    }

    /// Checks an object name, mapping a refusal to [`BrokerError::InvalidName`].
    pub(crate) fn check_name(name: &str) -> Result<(), BrokerError> {
        weir_proto::validate_name(name).map_err(|source| {
            BrokerError::InvalidName(NameRefused {
                name: name.to_string(),
                source,
            })
        })
    }

    pub(crate) fn queue_not_found(name: &str) -> BrokerError {
        BrokerError::NotFound {
            kind: "queue",
            name: name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_retry_hints() {
        let busy = BrokerError::Busy {
            reason: "depth".into(),
            retry_after_ms: 1500,
        };
        assert_eq!(busy.code(), ErrorCode::Busy);
        assert_eq!(busy.retry_after_ms(), Some(1500));
        assert_eq!(
            BrokerError::check_name("../x").map_err(|e| e.code()),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            BrokerError::queue_not_found("q").code(),
            ErrorCode::NotFound
        );
        assert_eq!(
            BrokerError::TooLarge("x".into()).code(),
            ErrorCode::TooLarge
        );
        assert_eq!(
            BrokerError::InvalidArgument("x".into()).retry_after_ms(),
            None
        );
    }
}
