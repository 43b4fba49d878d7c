//! The payload types carried by frames: wire forms of messages, deliveries, queue options and
//! statistics. They are plain data; the server converts them to broker types at its boundary.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::ErrorCode;

/// One message in a [`Payload::Publish`](super::Payload::Publish) batch.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OutMessage {
    /// Client idempotency key (1–128 bytes); the server makes one when absent.
    pub id: Option<String>,
    /// Optional ordering / partitioning key (≤ 1024 bytes).
    pub key: Option<Bytes>,
    /// String headers (≤ 64; names 1–256 bytes, values ≤ 4096 bytes).
    pub headers: BTreeMap<String, String>,
    /// The body (≤ the server's body limit, itself ≤ 16 MiB).
    pub body: Bytes,
    /// 0–9, 9 most urgent.
    pub priority: u8,
    /// Delay before the message becomes receivable, in milliseconds (0 = now).
    pub delay_ms: u64,
}

impl OutMessage {
    /// Bytes this message takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let id = 1 + self.id.as_ref().map_or(0, |id| 2 + id.len());
        let key = 1 + self.key.as_ref().map_or(0, |k| 2 + k.len());
        id + key + headers_len(&self.headers) + 4 + self.body.len() + 1 + 8
    }
}

/// The server's answer for one published message, once it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishResult {
    /// The message id (the client's, or the one the server made).
    pub id: String,
    /// True when the id was seen within the dedup window: confirmed, not stored twice.
    pub duplicate: bool,
}

/// One leased message handed to a consumer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Delivery {
    /// The message id.
    pub id: String,
    /// Opaque receipt (1–64 ASCII bytes) naming this lease, for ack / nack / extend.
    pub receipt: String,
    /// The message key, if any.
    pub key: Option<Bytes>,
    /// String headers.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Bytes,
    /// 1 on first delivery, counting up on each redelivery.
    pub attempt: u32,
    /// When the message was accepted, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// Its priority, 0–9.
    pub priority: u8,
}

impl Delivery {
    /// Bytes this delivery takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let key = 1 + self.key.as_ref().map_or(0, |k| 2 + k.len());
        2 + self.id.len()
            + 2
            + self.receipt.len()
            + key
            + headers_len(&self.headers)
            + 4
            + self.body.len()
            + 4
            + 8
            + 1
    }
}

/// Bytes a header map takes on the wire.
pub(super) fn headers_len(headers: &BTreeMap<String, String>) -> usize {
    headers.iter().fold(2usize, |acc, (k, v)| {
        acc.saturating_add(4 + k.len() + v.len())
    })
}

/// A queue's settings on the wire. In a create request, `None` keeps the server's default (for a
/// new queue) or the current value (for an existing one); in [`QueueInfo`] every field is set.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QueueOptions {
    /// Most messages the queue holds.
    pub max_depth: Option<u64>,
    /// Most body bytes the queue holds.
    pub max_bytes: Option<u64>,
    /// Admission latency target, in milliseconds.
    pub max_latency_ms: Option<u64>,
    /// Default lease, in milliseconds (100 ms – 12 h).
    pub lease_ms: Option<u64>,
    /// Deliveries before a message is dead-lettered.
    pub max_attempts: Option<u32>,
    /// Base of the nack / expiry backoff, in milliseconds.
    pub backoff_base_ms: Option<u64>,
    /// Ceiling of the backoff, in milliseconds.
    pub backoff_max_ms: Option<u64>,
    /// Dead-letter queue name (default `<queue>.dlq`).
    pub dead_letter_queue: Option<String>,
    /// Window in which a repeated message id is a duplicate, in milliseconds.
    pub dedup_window_ms: Option<u64>,
    /// At most one message per key in flight.
    pub ordered_by_key: Option<bool>,
}

/// A queue's counters and settings, the answer to create and stats requests.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// True when a create request made the queue (false: it existed and was updated).
    pub created: bool,
    /// Messages ready for delivery.
    pub ready: u64,
    /// Messages leased to consumers.
    pub in_flight: u64,
    /// Messages waiting for their delay or backoff.
    pub delayed: u64,
    /// All messages held.
    pub total: u64,
    /// Body bytes held.
    pub bytes: u64,
    /// Messages accepted since start.
    pub published_total: u64,
    /// Deliveries made since start.
    pub delivered_total: u64,
    /// Acks since start.
    pub acked_total: u64,
    /// Nacks since start.
    pub nacked_total: u64,
    /// Messages moved to the dead-letter queue since start.
    pub dead_lettered_total: u64,
    /// Batches refused as busy since start.
    pub refused_total: u64,
    /// Duplicate publishes since start.
    pub duplicates_total: u64,
    /// Redeliveries since start.
    pub redelivered_total: u64,
    /// Leases that expired since start.
    pub expired_leases_total: u64,
    /// Bytes the queue takes on disk.
    pub disk_bytes: u64,
    /// The queue's settings (every field `Some`).
    pub config: QueueOptions,
}

/// The server's answer to a good handshake: its version and the limits it enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloOk {
    /// The protocol version both sides now speak.
    pub version: u16,
    /// Largest frame the server accepts, in bytes.
    pub max_frame_bytes: u32,
    /// Most messages or receipts in one batch.
    pub max_batch_messages: u32,
    /// Largest message body, in bytes.
    pub max_body_bytes: u32,
    /// Most requests one connection may have in flight; more are refused as busy.
    pub max_in_flight: u32,
    /// Most outstanding credits one subscription may hold.
    pub max_credits: u32,
    /// Whether every request must follow a successful
    /// [`Payload::Authenticate`](super::Payload::Authenticate). On the wire only from protocol
    /// version 2 on: a version-1 `HelloOk` has no such field (it encodes without it and decodes
    /// as `false`).
    pub auth_required: bool,
}

/// An error answer to one request (or, with request id 0, to the connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// The stable error code.
    pub code: ErrorCode,
    /// When non-zero, retry no sooner than this many milliseconds from now.
    pub retry_after_ms: u64,
    /// Human-readable detail (≤ 4096 bytes of UTF-8).
    pub message: String,
}
