//! [`TaskError`]: everything a task or schedule call can fail with, mapped onto the stable wire
//! codes of [`weir_proto::ErrorCode`].

use weir_broker::BrokerError;
use weir_proto::ErrorCode;
use weir_store::StoreError;

/// Everything a [`crate::TaskService`] or [`crate::Scheduler`] call can fail with. Causes are
/// kept, never flattened.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// An argument is out of range or malformed (400).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The task, workflow or schedule does not exist (404).
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// "task", "workflow" or "schedule".
        kind: &'static str,
        /// Its id or name.
        id: String,
    },
    /// The call conflicts with the current state (409), e.g. cancelling a running task or a
    /// unique key already held.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bound is reached (503): too many tracked tasks or schedules.
    #[error("busy: {0}")]
    Busy(String),
    /// The broker refused or failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The tasks' own journal failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl TaskError {
    /// The stable error code for HTTP and the native protocol.
    pub fn code(&self) -> ErrorCode {
        match self {
            TaskError::InvalidArgument(_) => ErrorCode::BadRequest,
            TaskError::NotFound { .. } => ErrorCode::NotFound,
            TaskError::Conflict(_) => ErrorCode::Conflict,
            TaskError::Busy(_) => ErrorCode::Busy,
            TaskError::Broker(e) => e.code(),
            TaskError::Store(e) if e.is_retryable() => ErrorCode::Busy,
            TaskError::Store(_) => ErrorCode::Internal,
        }
    }

    /// The retry hint for a busy refusal, in milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            TaskError::Busy(_) => Some(1000),
            TaskError::Broker(e) => e.retry_after_ms(),
            TaskError::Store(e) if e.is_retryable() => Some(1000),
            _ => None,
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: &str) -> TaskError {
        TaskError::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}
