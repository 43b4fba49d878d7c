//! Every limit that crosses a process boundary, as named constants whose relations are asserted at
//! compile time. Per-queue limits (depth, bytes) are configuration; these are the hard ceilings.

/// Longest object name, in bytes (DESIGN §4).
pub const MAX_NAME_BYTES: usize = 128;
/// Longest client-chosen message id, in bytes (DESIGN §1).
pub const MAX_MESSAGE_ID_BYTES: usize = 128;
/// Longest message key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most headers on one message.
pub const MAX_HEADERS: usize = 64;
/// Longest header name, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 256;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;
/// Default largest message body, in bytes (1 MiB, configurable per server up to the hard ceiling).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Hard ceiling for a message body, in bytes.
pub const MAX_BODY_BYTES_CEILING: usize = 16 * 1024 * 1024;
/// Most messages in one publish, ack, nack or extend batch.
pub const MAX_BATCH_MESSAGES: usize = 1000;
/// Most messages one receive may return (DESIGN §4: `max` 1–1000).
pub const MAX_RECEIVE_MESSAGES: usize = 1000;
/// Longest long-poll wait, in milliseconds (DESIGN §4: `wait_ms` 0–20000).
pub const MAX_WAIT_MS: u64 = 20_000;
/// Highest message priority (DESIGN §1: 0–9, 9 most urgent).
pub const MAX_PRIORITY: u8 = 9;
/// Longest delivery delay, in milliseconds (15 days).
pub const MAX_DELAY_MS: u64 = 15 * 24 * 3600 * 1000;
/// Shortest and longest lease, in milliseconds.
pub const MIN_LEASE_MS: u64 = 100;
/// Longest lease, in milliseconds (12 hours).
pub const MAX_LEASE_MS: u64 = 12 * 3600 * 1000;
/// Largest native-protocol frame, in bytes: a full batch of maximal bodies would not fit, so the
/// batch must also respect this (frames are checked before they are buffered).
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;

/// Most partitions a stream may have.
pub const MAX_STREAM_PARTITIONS: u32 = 256;
/// Most records one stream read returns.
pub const MAX_READ_RECORDS: usize = 1000;
/// Shortest consumer-group session timeout, in milliseconds.
pub const MIN_SESSION_TIMEOUT_MS: u64 = 100;
/// Longest consumer-group session timeout, in milliseconds (5 minutes).
pub const MAX_SESSION_TIMEOUT_MS: u64 = 300_000;
/// Most consumer groups listed for one stream (the broker allows no more per stream).
pub const MAX_STREAM_GROUPS: usize = 1024;
/// Most members listed for one consumer group (the broker allows no more per group).
pub const MAX_GROUP_MEMBERS: usize = 1024;
/// Most subscriptions listed with a topic; a topic with more lists the first ones by name.
pub const MAX_LISTED_SUBSCRIPTIONS: usize = 1024;
/// Longest task name, in bytes.
pub const MAX_TASK_NAME_BYTES: usize = 256;
/// Largest task argument or result document (JSON) carried by the native protocol, in bytes.
pub const MAX_TASK_JSON_BYTES: usize = 8 * 1024 * 1024;
/// Longest free-text task field (an attempt's error, a worker's name, a workflow id), in bytes.
pub const MAX_TASK_TEXT_BYTES: usize = 4096;
/// Most attempts listed in a task's history.
pub const MAX_TASK_HISTORY: usize = 100;

const _: () = assert!(MAX_BODY_BYTES_CEILING + 64 * 1024 <= MAX_FRAME_BYTES);
// A task's arguments and result both fit one frame, with room for the rest of the record.
const _: () = assert!(2 * MAX_TASK_JSON_BYTES + 1024 * 1024 <= MAX_FRAME_BYTES);
const _: () = assert!(MIN_SESSION_TIMEOUT_MS < MAX_SESSION_TIMEOUT_MS);
const _: () = assert!(MAX_STREAM_PARTITIONS >= 1 && MAX_READ_RECORDS >= 1);
const _: () = assert!(DEFAULT_MAX_BODY_BYTES <= MAX_BODY_BYTES_CEILING);
const _: () = assert!(MIN_LEASE_MS < MAX_LEASE_MS);
const _: () = assert!(MAX_RECEIVE_MESSAGES >= 1 && MAX_BATCH_MESSAGES >= 1);
