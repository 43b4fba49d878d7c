//! The storage error type.

use std::io;
use std::sync::Arc;

use crate::Offset;

/// Everything a store can fail with. `Clone` so one failed fsync can be reported to every waiter.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done ("fdatasync", "open segment", ...).
        operation: &'static str,
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Stored bytes failed verification somewhere other than a torn tail.
    #[error("corrupt data in {file} at byte {position}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: String,
        /// Byte position of the damaged record within the file.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A record is larger than the log's `max_record_bytes`.
    #[error("record of {size} bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// The record's payload size.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// An empty batch was appended.
    #[error("empty batch")]
    EmptyBatch,
    /// A record carries more headers than the store's format holds.
    #[error("record with {count} headers exceeds the limit of {max}")]
    TooManyHeaders {
        /// Headers in the record.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// [`crate::Log::append_spanning`] was given a different number of spans than records.
    #[error("{records} records but {spans} spans")]
    SpanCountMismatch {
        /// Records given.
        records: usize,
        /// Spans given.
        spans: usize,
    },
    /// [`crate::Log::append_spanning`] was given a span outside `1..=MAX_RECORD_SPAN`.
    #[error("a record may span 1..={max} offsets, not {span}")]
    InvalidSpan {
        /// The span asked for.
        span: u32,
        /// The limit ([`crate::MAX_RECORD_SPAN`]).
        max: u32,
    },
    /// A name is not a valid store name.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A read asked for offsets that are no longer (or never were) retained.
    #[error("offset {requested} is outside the log ({start}..{next})")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: Offset,
        /// The log's start offset.
        start: Offset,
        /// The log's next offset.
        next: Offset,
    },
    /// Too many bytes are waiting to be written; retry later.
    #[error(
        "{pending_bytes} bytes are waiting to be written (limit {max_pending_bytes}); retry later"
    )]
    Busy {
        /// Bytes pending.
        pending_bytes: u64,
        /// The limit.
        max_pending_bytes: u64,
    },
    /// An earlier write or fsync failed; the log refuses further appends until reopened, since
    /// the page cache can no longer be trusted (see "fsyncgate").
    #[error("log {name} failed earlier and is read-only until reopened: {cause}")]
    Failed {
        /// The log's name.
        name: String,
        /// The first failure.
        cause: String,
    },
    /// The log or store was closed.
    #[error("closed")]
    Closed,
}

impl StoreError {
    /// Wraps an I/O error with the operation and path.
    pub fn io(operation: &'static str, path: impl std::fmt::Display, source: io::Error) -> Self {
        StoreError::Io {
            operation,
            path: path.to_string(),
            source: Arc::new(source),
        }
    }

    /// Whether retrying the same call later may succeed (back pressure, a full disk).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Busy { .. } => true,
            StoreError::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}
