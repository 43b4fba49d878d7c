//! The Rust client for Weir's native protocol (`docs/protocol.md`).
//!
//! - [`Client`]: one TCP connection (authenticated with a token when the server has a token file:
//!   [`Client::connect_with_token`]; over TLS with [`ConnectOptions::tls`] and [`TlsOptions`]),
//!   multiplexed: every call pipelines, answers are matched by request id. Plain calls: queues,
//!   [`Client::publish`] (one batch, returns once durable), [`Client::receive`], ack / nack /
//!   extend.
//! - [`Producer`]: batches messages (size, bytes, linger), retries `busy` with exponential backoff
//!   and full jitter that honours the server's retry-after; `send` resolves once durable.
//! - [`Consumer`]: a push subscription governed by credits (`prefetch`); each [`Delivery`] extends
//!   its own lease while held and returns its credit when settled.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_client::ClientError> {
//! use weir_client::{Client, ConsumerOptions, Message, QueueOptions};
//!
//! let client = Client::connect("127.0.0.1:7400").await?;
//! client.create_queue("jobs", QueueOptions::default()).await?;
//! client.publish("jobs", vec![Message::new("resize img-1")]).await?;
//! let mut consumer = client.subscribe("jobs", ConsumerOptions::default()).await?;
//! if let Some(delivery) = consumer.next().await {
//!     let delivery = delivery?;
//!     assert_eq!(delivery.body_str(), Some("resize img-1"));
//!     delivery.ack().await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: this crate depends on `weir-proto` only among Weir's crates; it knows
//! nothing of the broker or its storage.

mod backoff;
mod client;
mod conn;
mod consumer;
mod error;
mod message;
mod producer;
mod tls;

pub use backoff::Backoff;
pub use client::{Client, ConnectOptions, PendingPublish, ReceiptsDone, CONNECT_TIMEOUT};
pub use consumer::{Consumer, ConsumerOptions, Delivery, PendingSettle};
pub use error::ClientError;
pub use message::Message;
pub use producer::{Producer, ProducerOptions};
pub use tls::TlsOptions;
pub use weir_proto::frame::{
    Delivery as RawDelivery, PublishResult as Published, QueueInfo, QueueOptions,
};
pub use weir_proto::ErrorCode;
