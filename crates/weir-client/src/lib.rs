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
//! - Topics (protocol version 3): [`Client::create_topic`], [`Client::create_subscription`],
//!   [`Client::publish_topic`] and [`Client::topic_producer`] (the same [`Producer`]). A
//!   subscription is consumed like a queue: every consume call takes a [`Target`], a queue name
//!   or [`Target::subscription`].
//! - Streams (version 3): [`Client::create_stream`], [`Client::append`] and [`StreamProducer`]
//!   (batched appends), [`Client::read_stream`] by offset or time with long poll, the consumer
//!   group calls, and [`GroupConsumer`] (joins, heartbeats in the background, reads its
//!   partitions, commits, follows reassignments, leaves on close or drop).
//! - Tasks (version 3): [`Client::submit_task`] (idempotent by a client-chosen id),
//!   [`Client::get_task`] (optionally waiting for a final state), [`Client::cancel_task`].
//!   Arguments and results are `serde_json::Value`s ([`Task`]); the client does not depend on
//!   `weir-tasks`.
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
mod batcher;
mod client;
mod conn;
mod consumer;
mod error;
mod group;
mod message;
mod producer;
mod stream_producer;
mod streams;
mod tasks;
mod tls;
mod topics;

pub use backoff::Backoff;
pub use client::{Client, ConnectOptions, PendingPublish, ReceiptsDone, CONNECT_TIMEOUT};
pub use consumer::{Consumer, ConsumerOptions, Delivery, PendingSettle};
pub use error::ClientError;
pub use group::{GroupBatch, GroupConsumer, GroupConsumerOptions, StartAt};
pub use message::Message;
pub use producer::{Producer, ProducerOptions};
pub use stream_producer::StreamProducer;
pub use streams::{Record, RecordBatch};
pub use tasks::{Task, TaskRequest, TaskSubmitted};
pub use tls::TlsOptions;
pub use weir_proto::frame::{
    Delivery as RawDelivery, GroupAssignment, GroupInfo, GroupMember, PartitionCommit,
    PartitionInfo, PartitionLag, PartitionOffset, PublishResult as Published, QueueInfo,
    QueueOptions, ReadFrom, StreamInfo, StreamOptions, StreamRecord, SubscriptionStart, Target,
    TaskAttempt, TaskState, TopicInfo, TopicOptions,
};
pub use weir_proto::ErrorCode;
