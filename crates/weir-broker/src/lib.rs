//! Weir's broker core: queues as deterministic state machines over [`weir_store`].
//!
//! No sockets, no HTTP, no JSON, no async runtime: time comes from a [`Clock`], storage from an
//! `Arc<dyn weir_store::Store>`, and every method is synchronous and short. Calls that change
//! durable state return a [`weir_store::Durable`] for the caller to await before confirming.
//!
//! # Storage layout
//! - `meta` (journal): every queue's [`QueueConfig`] and whether it is a dead-letter queue.
//! - `queues/<q>/messages` (log): one record per message. `record.key` is the message key,
//!   `record.timestamp_ms` its enqueue time, `record.body` the user body untouched (deliveries
//!   share the buffer), the first header the broker's envelope (id, priority, ready-at time),
//!   the other headers the user's (see `envelope.rs`).
//! - `queues/<q>/state` (journal): small state entries — removed (ack, purge, dead-lettered),
//!   delivery attempt counts, requeued (nack: attempt + ready-at) — and, every
//!   [`BrokerOptions::snapshot_every_bytes`] of entries, a snapshot of the queue's index.
//!
//! Recovery loads the snapshot, scans the message log from the offset the snapshot covers, and
//! applies the journal entries. Leases do not survive a restart: messages in flight become ready
//! again with their journaled attempt counts. In [`Broker::tick`] the message log's low-water mark
//! is set to the lowest offset still indexed (once the journal entries that removed the lower ones
//! are durable) and `reclaim` gives whole segments of acknowledged messages back.
//!
//! # Dedup and durability
//! The dedup table (`dedup.rs`: id hash → expiry and the original's offset) only vouches for
//! what is durable:
//! - a duplicate is confirmed with the durability of its original's append, never before: if
//!   the original is still only written, the duplicate's `durable` resolves when the original's
//!   does (and fails if it fails). An append the log takes back (a full disk) drops its dedup
//!   and index entries before the offsets are reused, so a retry is stored anew;
//! - a snapshot keeps only the entries whose original is below the log's durable end (the same
//!   `covered` bound as the index); the others are found again by the recovery scan of the log
//!   — or, if a crash took their original back, they are gone, and a retry is stored;
//! - an entry past the last durable snapshot's `covered` offset exists only in the message log,
//!   so the log's low-water mark never moves past the lowest such offset while any of those
//!   entries is inside its window (`Dedup::hold`). Reclamation therefore lags by at most the
//!   dedup window (default 5 min) or until the next snapshot, whichever comes first; a queue
//!   without client-supplied ids is not held back at all.
//!
//! # Structure
//! The state machine (`core.rs`: index, ready / delayed / in-flight sets, key lines, dedup,
//! back pressure) knows messages only by offset; `queue.rs` binds one to a log and a journal. A
//! topic subscription can reuse the same machine over the topic's shared log with a journal of its
//! own, so bodies are stored once per topic.
//!
//! # Memory
//! The index keeps a 24-byte entry per message (never the body) in 64-slot chunks, plus its place
//! in one ordered set. Measured with a counting allocator (`memory_tests.rs`, 200 000 messages):
//! **44 bytes per queued message** for a plain message; **78 bytes** for a keyed message in an
//! `ordered_by_key` queue with a client-supplied id inside the dedup window (a 16-byte xxh3-128
//! hash → expiry). See `index.rs` for the accounting.
//!
//! # Semantics in brief
//! Higher priority first, FIFO (by publish order) among ready messages of equal priority; only
//! durable messages are delivered. A receipt is valid until its lease ends and only for its
//! delivery. A nack without a delay applies full-jitter backoff; after `max_attempts` deliveries
//! the message moves to the dead-letter queue with `x-weir-dead-reason` and
//! `x-weir-original-queue` headers. A dead-letter queue has no dead-letter queue: its messages are
//! redelivered without limit. Back pressure refuses whole batches ([`BrokerError::Busy`]).

mod broker;
mod clock;
mod codec;
mod config;
mod core;
mod dedup;
mod envelope;
mod error;
mod events;
mod index;
mod journal;
#[cfg(test)]
mod memory_tests;
mod meta;
mod pressure;
mod queue;
mod receipt;
mod recovery;
mod rng;
mod shared;
mod stream;
mod topic;
mod topic_api;
mod types;
mod validate;

pub use broker::{Broker, DEAD_REASON_HEADER, ORIGINAL_QUEUE_HEADER};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    BrokerOptions, QueueConfig, MAX_ATTEMPTS_CEILING, MAX_BACKOFF_MS, MAX_DEDUP_WINDOW_MS,
};
pub use error::{BrokerError, NameRefused};
pub use stream::{
    partition_for_key, GroupAssignment, GroupStatus, MemberStatus, NewRecord, PartitionLag,
    PartitionStats, ReadFrom, StreamAppendOutcome, StreamBatch, StreamConfig, StreamRecord,
    StreamStats, DEFAULT_SESSION_TIMEOUT_MS, MAX_GROUPS, MAX_MEMBERS, MAX_PARTITIONS,
    MAX_READ_BYTES, MAX_READ_RECORDS, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS,
};
pub use topic::{SubscriptionStart, TopicConfig, TopicStats};
pub use types::{
    BrokerEvent, Delivery, NewMessage, PublishOutcome, Published, QueueStats, ReceiptOutcome,
    TickReport,
};

/// `Broker` is shared across tokio tasks.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Broker>();
};
