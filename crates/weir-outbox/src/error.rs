//! The crate's error type.

/// Everything that can go wrong in the outbox crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PostgreSQL call failed.
    #[error("postgresql: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A SQLite call failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An argument was invalid (a table name, a destination, a database URL, a message).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// Weir could not be reached or refused a request for good.
    #[error("weir: {0}")]
    Publish(#[from] crate::publisher::PublishError),
    /// A background task stopped unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(what: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid {
            what,
            message: message.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
