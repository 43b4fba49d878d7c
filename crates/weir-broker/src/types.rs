//! The values that cross the broker's public API.

use std::collections::BTreeMap;

use bytes::Bytes;
use weir_store::Durable;

use crate::QueueConfig;

/// A message to publish.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// Client idempotency key (≤ 128 bytes); the broker makes a unique one when `None`.
    pub id: Option<String>,
    /// Optional key: ordering with `ordered_by_key`.
    pub key: Option<Bytes>,
    /// User headers.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Bytes,
    /// 0..=9, 9 most urgent.
    pub priority: u8,
    /// Delivery delay in milliseconds.
    pub delay_ms: u64,
}

impl NewMessage {
    /// A message with this body and every other field at its default.
    pub fn new(body: impl Into<Bytes>) -> NewMessage {
        NewMessage {
            body: body.into(),
            ..NewMessage::default()
        }
    }
}

/// The fate of one published message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The message id (the client's, or the one the broker made).
    pub id: String,
    /// Whether the id was seen within the dedup window, so nothing was stored.
    pub duplicate: bool,
}

/// The result of [`crate::Broker::publish`]: await `durable` before confirming to the producer.
#[derive(Debug)]
pub struct PublishOutcome {
    /// One per message, in order.
    pub messages: Vec<Published>,
    /// Resolves once every stored message of the batch is durable (then they are receivable).
    pub durable: Durable,
}

/// A message handed to a consumer under a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The message id.
    pub id: String,
    /// The receipt for ack / nack / extend of this delivery (≤ 64 ASCII bytes).
    pub receipt: String,
    /// The message key.
    pub key: Option<Bytes>,
    /// User headers.
    pub headers: BTreeMap<String, String>,
    /// The body (shares the log's buffer where the store allows).
    pub body: Bytes,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// When the message was published, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// The message priority.
    pub priority: u8,
    /// When this delivery's lease ends, in milliseconds since the Unix epoch.
    pub lease_deadline_ms: u64,
}

/// The result of ack, nack or extend.
#[derive(Debug)]
pub struct ReceiptOutcome {
    /// How many receipts took effect (acked, nacked or extended).
    pub done: usize,
    /// Receipts that were unknown, stale or expired.
    pub invalid: Vec<String>,
    /// Resolves once the change is durable.
    pub durable: Durable,
}

/// A queue's configuration and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueStats {
    /// The queue name.
    pub name: String,
    /// Its configuration.
    pub config: QueueConfig,
    /// Messages waiting to be received now (including ones waiting for their key's turn).
    pub ready: u64,
    /// Messages under a lease.
    pub in_flight: u64,
    /// Messages whose delay (or backoff) has not passed yet.
    pub delayed: u64,
    /// Every message held.
    pub total: u64,
    /// Body bytes held.
    pub bytes: u64,
    /// Messages stored since the broker opened.
    pub published_total: u64,
    /// Deliveries since the broker opened.
    pub delivered_total: u64,
    /// Acks since the broker opened.
    pub acked_total: u64,
    /// Nacks since the broker opened.
    pub nacked_total: u64,
    /// Messages moved to the dead-letter queue since the broker opened.
    pub dead_lettered_total: u64,
    /// Messages refused by back pressure since the broker opened.
    pub refused_total: u64,
    /// Duplicate publishes since the broker opened.
    pub duplicates_total: u64,
    /// Deliveries with attempt > 1 since the broker opened.
    pub redelivered_total: u64,
    /// Leases that expired since the broker opened.
    pub expired_leases_total: u64,
    /// Bytes the queue's message log occupies in the store.
    pub disk_bytes: u64,
    /// Whether the queue is above 70 % of one of its bounds.
    pub above_warning: bool,
}

/// Something noteworthy that happened inside the broker (drained by [`crate::Broker::events`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A queue crossed 70 % of a bound (`above: true`) or fell back below it (`above: false`).
    BoundWarning {
        /// The queue.
        queue: String,
        /// Which bound: "max_depth", "max_bytes" or "max_latency_ms".
        bound: &'static str,
        /// Crossed upwards or downwards.
        above: bool,
        /// The current value (messages, bytes or predicted milliseconds).
        value: u64,
        /// The bound.
        limit: u64,
    },
}

/// What one [`crate::Broker::tick`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Leases that expired.
    pub expired_leases: u64,
    /// Delayed messages that became ready.
    pub promoted: u64,
    /// Messages moved to dead-letter queues.
    pub dead_lettered: u64,
    /// Journal snapshots written.
    pub snapshots: u64,
    /// Bytes of message logs given back.
    pub reclaimed_bytes: u64,
}
