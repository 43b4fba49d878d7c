//! The transactional outbox for Weir.
//!
//! An application writes its event into an outbox table **in the same database transaction** as
//! its business change ([`pg::enqueue`], [`sqlite::enqueue`]); the [`Relay`] moves committed rows
//! into Weir, in row-id order, with the row id as the message id, and marks them sent only after
//! Weir confirmed them. A crash between "published" and "marked" re-publishes the row under the
//! same id, and Weir's dedup window recognises it: the event leaves the database exactly once.
//!
//! Modules: [`schema`] (table DDL and migrations), [`pg`] / [`sqlite`] (enqueue helpers and the
//! relay's stores), [`publisher`] (HTTP to Weir, back-off), [`relay`] (the loop), [`metrics`],
//! [`cli`] (`weir outbox init|relay`).

pub mod cli;
pub mod enqueue;
pub mod error;
pub mod metrics;
pub mod pg;
pub mod publisher;
pub mod relay;
pub mod schema;
pub mod sqlite;

pub use enqueue::{Destination, Message, OutboxRow};
pub use error::{Error, Result};
pub use metrics::{MetricsSnapshot, RelayMetrics};
pub use relay::{BatchReport, Relay, RelayConfig};
pub use schema::TableName;
