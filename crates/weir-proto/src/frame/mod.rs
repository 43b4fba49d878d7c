//! The native protocol's sans-IO codec (specified in `docs/protocol.md`).
//!
//! A connection opens with an 8-byte [`Hello`] (`WEIR` + version + reserved); the server answers
//! with a [`Payload::HelloOk`] frame or an [`Payload::Error`] frame and closes. After that both
//! sides exchange frames:
//!
//! ```text
//! +----------+------+-------+------------+---------+
//! | len: u32 | type | flags | request id | payload |
//! |  4 bytes |  u8  |  u8   |  u64 (BE)  | len-10  |
//! +----------+------+-------+------------+---------+
//! ```
//!
//! When the server requires authentication (`HelloOk::auth_required`, protocol version 2), the
//! client's first request is [`Payload::Authenticate`]; the server refuses anything else as
//! `unauthorized` until a token is accepted.
//!
//! `len` counts every byte after itself and is checked against
//! [`MAX_FRAME_BYTES`](crate::limits::MAX_FRAME_BYTES) before anything is buffered. Request ids
//! let requests pipeline; answers may come back in any order.
//!
//! The caller owns the buffers: [`Frame::encode`] appends to a `BytesMut`, [`Frame::decode`] reads
//! a `&[u8]` and says how many bytes it consumed, or that it needs more.
//!
//! ```
//! use bytes::BytesMut;
//! use weir_proto::frame::{Frame, Payload};
//!
//! let mut buf = BytesMut::new();
//! Frame::new(7, Payload::Ping).encode(&mut buf).unwrap();
//! let (frame, used) = Frame::decode(&buf).unwrap().unwrap();
//! assert_eq!((frame.request_id, frame.payload, used), (7, Payload::Ping, buf.len()));
//! ```

mod codec;
mod handshake;
mod queue;
mod stream;
mod task;
mod topic;
mod types;
mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v3;
#[cfg(test)]
mod tests_v3_limits;

use bytes::{BufMut, BytesMut};

pub use handshake::Hello;
pub use stream::{
    GroupAssignment, GroupInfo, GroupMember, OutRecord, PartitionCommit, PartitionInfo,
    PartitionLag, PartitionOffset, ReadFrom, StreamInfo, StreamOptions, StreamRecord,
};
pub use task::{TaskAttempt, TaskInfo, TaskState, TaskSubmit};
pub use topic::{SubscriptionStart, Target, TopicInfo, TopicOptions};
pub use types::{
    Delivery, ErrorFrame, HelloOk, OutMessage, PublishResult, QueueInfo, QueueOptions,
};
pub use wire::{DecodeError, DecodeReason, EncodeError};

use crate::limits::MAX_FRAME_BYTES;
use wire::{Reader, Writer};

/// The four bytes that open every connection.
pub const MAGIC: [u8; 4] = *b"WEIR";
/// The protocol version this crate speaks best. Version 2 added [`Payload::Authenticate`] and
/// [`HelloOk::auth_required`]; version 3 added topics, streams and tasks.
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest protocol version this crate still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// Size of the client's handshake, in bytes.
pub const HELLO_BYTES: usize = 8;
/// Size of the length prefix, in bytes.
pub const LENGTH_BYTES: usize = 4;
/// Size of the frame header after the length prefix: type, flags, request id.
pub const HEADER_BYTES: usize = 1 + 1 + 8;
/// Longest receipt, in bytes.
pub const MAX_RECEIPT_BYTES: usize = 64;
/// Longest error message, in bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;
/// Most outstanding credits one subscription may hold.
pub const MAX_CREDITS: u32 = 10_000;
/// Longest token in an [`Payload::Authenticate`] frame, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;
/// The first protocol version with [`Payload::Authenticate`] and [`HelloOk::auth_required`].
pub const AUTH_PROTOCOL_VERSION: u16 = 2;
/// The first protocol version with topics (and [`Target::Subscription`]), streams with consumer
/// groups, and tasks. Its `HelloOk` is laid out as version 2's.
pub const TOPICS_PROTOCOL_VERSION: u16 = 3;

const _: () = assert!(LENGTH_BYTES + HEADER_BYTES < MAX_FRAME_BYTES);
const _: () = assert!(MAX_FRAME_BYTES <= u32::MAX as usize);
const _: () = assert!(MAX_CREDITS as usize >= crate::limits::MAX_RECEIVE_MESSAGES);
const _: () = assert!(MIN_PROTOCOL_VERSION <= AUTH_PROTOCOL_VERSION);
const _: () = assert!(AUTH_PROTOCOL_VERSION < TOPICS_PROTOCOL_VERSION);
const _: () = assert!(TOPICS_PROTOCOL_VERSION <= PROTOCOL_VERSION);
const _: () = assert!(MAX_TOKEN_BYTES <= u16::MAX as usize);

/// One frame: the request id it belongs to and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Chosen by the client for each request and echoed on its answer; for pushed deliveries, the
    /// id of the subscribe request. Id 0 is reserved for connection-level frames.
    pub request_id: u64,
    /// The frame's type and fields.
    pub payload: Payload,
}

/// Every frame type. Types `0x01`–`0x7f` are sent by clients (except `Pong`), `0x80`–`0xff` by
/// the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// `0x01` liveness probe; the server answers `Pong` with the same request id.
    Ping,
    /// `0x02` answer to `Ping` (either side may ping).
    Pong,
    /// `0x03` (protocol version 2) present a token; answered by `Ok`, or by an `unauthorized`
    /// error. When the server's `HelloOk` says `auth_required`, every other request before a
    /// successful `Authenticate` is refused as `unauthorized`.
    Authenticate {
        /// The secret, at most [`MAX_TOKEN_BYTES`] bytes of UTF-8.
        token: String,
    },
    /// `0x10` create a queue or update its settings; answered by `QueueInfo`.
    CreateQueue {
        /// Queue name.
        queue: String,
        /// Settings to apply.
        options: Box<QueueOptions>,
    },
    /// `0x11` delete a queue; answered by `Ok`.
    DeleteQueue {
        /// Queue name.
        queue: String,
    },
    /// `0x12` a queue's counters; answered by `QueueInfo`.
    QueueStats {
        /// Queue name.
        queue: String,
    },
    /// `0x13` (v3) create a topic or update its settings; answered by `TopicInfo`.
    CreateTopic {
        /// Topic name.
        topic: String,
        /// Settings to apply.
        options: TopicOptions,
    },
    /// `0x14` (v3) delete a topic and its subscriptions; answered by `Ok`.
    DeleteTopic {
        /// Topic name.
        topic: String,
    },
    /// `0x15` (v3) a topic's counters and every subscription's; answered by `TopicInfo`.
    TopicStats {
        /// Topic name.
        topic: String,
    },
    /// `0x16` (v3) create a subscription (and its dead-letter queue) or update its settings;
    /// answered by `QueueInfo` (named after the subscription).
    CreateSubscription {
        /// Topic name.
        topic: String,
        /// Subscription name.
        subscription: String,
        /// Where a new subscription starts (ignored when it exists).
        start: SubscriptionStart,
        /// The subscription's queue settings (PUT semantics, as `CreateQueue`).
        options: Box<QueueOptions>,
    },
    /// `0x17` (v3) delete a subscription; answered by `Ok`.
    DeleteSubscription {
        /// Topic name.
        topic: String,
        /// Subscription name.
        subscription: String,
    },
    /// `0x18` (v3) create a stream or update its retention; answered by `StreamInfo`.
    CreateStream {
        /// Stream name.
        stream: String,
        /// Settings to apply.
        options: StreamOptions,
    },
    /// `0x19` (v3) delete a stream, its records and its groups; answered by `Ok`.
    DeleteStream {
        /// Stream name.
        stream: String,
    },
    /// `0x1a` (v3) a stream's settings, partitions and groups; answered by `StreamInfo`.
    StreamStats {
        /// Stream name.
        stream: String,
    },
    /// `0x20` publish a batch (all or nothing); answered by `Published` once durable.
    Publish {
        /// Queue name.
        queue: String,
        /// The messages, at most `MAX_BATCH_MESSAGES`.
        messages: Vec<OutMessage>,
    },
    /// `0x21` (queue) / `0x41` (subscription) pull up to `max` messages, waiting up to
    /// `wait_ms`; answered by `Deliveries`.
    Receive {
        /// The queue or subscription.
        target: Target,
        /// 1–1000.
        max: u32,
        /// Lease for these deliveries (default: the queue's).
        lease_ms: Option<u64>,
        /// Long-poll wait, 0–20000 ms.
        wait_ms: u64,
    },
    /// `0x22` (queue) / `0x42` (subscription) acknowledge deliveries; answered by
    /// `ReceiptsDone`.
    Ack {
        /// The queue or subscription.
        target: Target,
        /// Receipts to ack.
        receipts: Vec<String>,
    },
    /// `0x23` (queue) / `0x43` (subscription) give deliveries back, after `delay_ms` or the
    /// queue's backoff; answered by `ReceiptsDone`.
    Nack {
        /// The queue or subscription.
        target: Target,
        /// Receipts to nack.
        receipts: Vec<String>,
        /// Redelivery delay; `None` applies the queue's backoff.
        delay_ms: Option<u64>,
    },
    /// `0x24` (queue) / `0x44` (subscription) extend leases to `lease_ms` from now; answered by
    /// `ReceiptsDone`.
    Extend {
        /// The queue or subscription.
        target: Target,
        /// Receipts to extend.
        receipts: Vec<String>,
        /// New lease from now.
        lease_ms: u64,
    },
    /// `0x30` (queue) / `0x50` (topic subscription) subscribe: answered by `Ok`, then
    /// `Deliveries` pushed with this request id while the subscription holds credits (one credit
    /// per delivery).
    Subscribe {
        /// The queue or topic subscription.
        target: Target,
        /// Initial credits (prefetch), 0–`MAX_CREDITS`.
        credits: u32,
        /// Lease for deliveries (default: the queue's).
        lease_ms: Option<u64>,
    },
    /// `0x31` grant more credits to a subscription; not answered unless it fails.
    GrantCredits {
        /// The subscribe request's id.
        subscription: u64,
        /// Credits to add, 1–`MAX_CREDITS` (the total is capped at `MAX_CREDITS`).
        credits: u32,
    },
    /// `0x32` end a subscription; answered by `Ok`. Its unacked deliveries keep their leases.
    Unsubscribe {
        /// The subscribe request's id.
        subscription: u64,
    },
    /// `0x40` (v3) publish a batch to a topic (all or nothing; every subscription gets it);
    /// answered by `Published` once durable.
    PublishTopic {
        /// Topic name.
        topic: String,
        /// The messages, at most `MAX_BATCH_MESSAGES`.
        messages: Vec<OutMessage>,
    },
    /// `0x60` (v3) append records (atomic per partition); answered by `Appended` once durable.
    Append {
        /// Stream name.
        stream: String,
        /// The records, at most `MAX_BATCH_MESSAGES`.
        records: Vec<OutRecord>,
    },
    /// `0x61` (v3) read up to `max` records of a partition, waiting up to `wait_ms` for the first
    /// (long poll); answered by `Records`. Reads consume nothing.
    Read {
        /// Stream name.
        stream: String,
        /// The partition.
        partition: u32,
        /// Where to start.
        from: ReadFrom,
        /// 1–1000.
        max: u32,
        /// Long-poll wait, 0–20000 ms.
        wait_ms: u64,
    },
    /// `0x62` (v3) join a consumer group, or refresh the session of a member already in it;
    /// answered by `GroupAssignment`.
    JoinGroup {
        /// Stream name.
        stream: String,
        /// Group name.
        group: String,
        /// Member id (a name).
        member: String,
        /// The session ends when no heartbeat came for this long (100–300000 ms; default
        /// 10000).
        session_timeout_ms: Option<u64>,
    },
    /// `0x63` (v3) keep a member's session alive; answered by `GroupAssignment`, or
    /// `not_found` once the session ended (join again).
    Heartbeat {
        /// Stream name.
        stream: String,
        /// Group name.
        group: String,
        /// Member id.
        member: String,
    },
    /// `0x64` (v3) leave a group (its partitions move at once); answered by `Ok`.
    LeaveGroup {
        /// Stream name.
        stream: String,
        /// Group name.
        group: String,
        /// Member id.
        member: String,
    },
    /// `0x65` (v3) commit offsets (each the next record to process); answered by `Ok` once
    /// durable. With `member`, it must own every partition (and be at `generation` when given),
    /// else `conflict`.
    CommitOffsets {
        /// Stream name.
        stream: String,
        /// Group name.
        group: String,
        /// The committing member, fenced by ownership.
        member: Option<String>,
        /// The generation the member's assignment came from (only with `member`).
        generation: Option<u64>,
        /// The offsets, 1 to the stream's partition count.
        offsets: Vec<PartitionOffset>,
    },
    /// `0x66` (v3) a group's members, generation and lag per partition; answered by
    /// `GroupInfo`.
    GroupStatus {
        /// Stream name.
        stream: String,
        /// Group name.
        group: String,
    },
    /// `0x70` (v3) submit a task (idempotent by id); answered by `TaskSubmitted` once its
    /// record and its message are durable.
    SubmitTask(Box<TaskSubmit>),
    /// `0x71` (v3) a task's record, waiting up to `wait_ms` for a final state; answered by
    /// `TaskInfo`.
    GetTask {
        /// The task id (1–128 bytes).
        id: String,
        /// Wait for a final state, 0–20000 ms.
        wait_ms: u64,
    },
    /// `0x72` (v3) cancel a queued or retrying task (`conflict` when running or final);
    /// answered by `TaskInfo`.
    CancelTask {
        /// The task id (1–128 bytes).
        id: String,
    },
    /// `0x80` the server's answer to a good handshake.
    HelloOk(HelloOk),
    /// `0x81` a request (or, with id 0, the connection) failed.
    Error(ErrorFrame),
    /// `0x82` success without data.
    Ok,
    /// `0x83` a queue's counters and settings.
    QueueInfo(Box<QueueInfo>),
    /// `0x84` a publish is durable: one result per message, in order.
    Published(Vec<PublishResult>),
    /// `0x85` leased messages, answering `Receive` or pushed to a subscription.
    Deliveries(Vec<Delivery>),
    /// `0x86` the outcome of ack / nack / extend.
    ReceiptsDone {
        /// Receipts that took effect.
        done: u32,
        /// Receipts unknown or expired.
        invalid: Vec<String>,
    },
    /// `0x87` (v3) a topic's counters and subscriptions.
    TopicInfo(Box<TopicInfo>),
    /// `0x88` (v3) a stream's settings, partitions and groups.
    StreamInfo(Box<StreamInfo>),
    /// `0x89` (v3) an append is durable: where each record went, in order.
    Appended(Vec<PartitionOffset>),
    /// `0x8a` (v3) records read from a partition.
    Records {
        /// Records in offset order (possibly none).
        records: Vec<StreamRecord>,
        /// Where the next read continues.
        next_offset: u64,
    },
    /// `0x8b` (v3) a member's partitions and their committed offsets.
    GroupAssignment(GroupAssignment),
    /// `0x8c` (v3) a group's members and lag.
    GroupInfo(GroupInfo),
    /// `0x8d` (v3) a task submission is durable.
    TaskSubmitted {
        /// The task id.
        id: String,
        /// Its state now.
        state: TaskState,
        /// False when the id was known: nothing new was submitted.
        created: bool,
    },
    /// `0x8e` (v3) a task's record.
    TaskInfo(Box<TaskInfo>),
}

impl Payload {
    /// The frame type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Payload::Ping => 0x01,
            Payload::Pong => 0x02,
            Payload::Authenticate { .. } => 0x03,
            Payload::CreateQueue { .. } => 0x10,
            Payload::DeleteQueue { .. } => 0x11,
            Payload::QueueStats { .. } => 0x12,
            Payload::CreateTopic { .. } => 0x13,
            Payload::DeleteTopic { .. } => 0x14,
            Payload::TopicStats { .. } => 0x15,
            Payload::CreateSubscription { .. } => 0x16,
            Payload::DeleteSubscription { .. } => 0x17,
            Payload::CreateStream { .. } => 0x18,
            Payload::DeleteStream { .. } => 0x19,
            Payload::StreamStats { .. } => 0x1a,
            Payload::Publish { .. } => 0x20,
            Payload::Receive { target, .. } => target.type_byte(0x21),
            Payload::Ack { target, .. } => target.type_byte(0x22),
            Payload::Nack { target, .. } => target.type_byte(0x23),
            Payload::Extend { target, .. } => target.type_byte(0x24),
            Payload::Subscribe { target, .. } => target.type_byte(0x30),
            Payload::PublishTopic { .. } => 0x40,
            Payload::Append { .. } => 0x60,
            Payload::Read { .. } => 0x61,
            Payload::JoinGroup { .. } => 0x62,
            Payload::Heartbeat { .. } => 0x63,
            Payload::LeaveGroup { .. } => 0x64,
            Payload::CommitOffsets { .. } => 0x65,
            Payload::GroupStatus { .. } => 0x66,
            Payload::SubmitTask(_) => 0x70,
            Payload::GetTask { .. } => 0x71,
            Payload::CancelTask { .. } => 0x72,
            Payload::GrantCredits { .. } => 0x31,
            Payload::Unsubscribe { .. } => 0x32,
            Payload::HelloOk(_) => 0x80,
            Payload::Error(_) => 0x81,
            Payload::Ok => 0x82,
            Payload::QueueInfo(_) => 0x83,
            Payload::Published(_) => 0x84,
            Payload::Deliveries(_) => 0x85,
            Payload::ReceiptsDone { .. } => 0x86,
            Payload::TopicInfo(_) => 0x87,
            Payload::StreamInfo(_) => 0x88,
            Payload::Appended(_) => 0x89,
            Payload::Records { .. } => 0x8a,
            Payload::GroupAssignment(_) => 0x8b,
            Payload::GroupInfo(_) => 0x8c,
            Payload::TaskSubmitted { .. } => 0x8d,
            Payload::TaskInfo(_) => 0x8e,
        }
    }
}

impl Payload {
    /// The first protocol version in which this frame type exists. [`Frame::decode`] accepts
    /// every type of every version it knows; a peer that negotiated an older version must refuse
    /// a newer type as unknown.
    pub fn since_version(&self) -> u16 {
        match self.type_byte() {
            0x03 => AUTH_PROTOCOL_VERSION,
            // Topics, streams, tasks and their answers, and the subscription forms of the
            // consume frames.
            0x13..=0x1a | 0x40..=0x7f | 0x87..=0xff => TOPICS_PROTOCOL_VERSION,
            _ => MIN_PROTOCOL_VERSION,
        }
    }
}

/// Reads a frame's length prefix without buffering the frame: `Ok(None)` until 4 bytes are
/// there, then the whole frame's size (prefix included), or an error if it is out of bounds.
pub fn peek_frame_len(src: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = src.get(..LENGTH_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(DecodeError::new(
            0,
            len,
            src.len() - LENGTH_BYTES,
            DecodeReason::FrameTooLarge {
                len,
                max: MAX_FRAME_BYTES,
            },
        ));
    }
    if len < HEADER_BYTES {
        return Err(DecodeError::new(
            0,
            HEADER_BYTES,
            len,
            DecodeReason::FrameTooShort {
                len,
                min: HEADER_BYTES,
            },
        ));
    }
    // Cannot overflow: len <= MAX_FRAME_BYTES, asserted far below usize::MAX above.
    Ok(Some(LENGTH_BYTES + len))
}

impl Frame {
    /// A frame for `request_id`.
    pub fn new(request_id: u64, payload: Payload) -> Frame {
        Frame {
            request_id,
            payload,
        }
    }

    /// An error frame for `request_id`.
    pub fn error(
        request_id: u64,
        code: crate::ErrorCode,
        retry_after_ms: u64,
        message: impl Into<String>,
    ) -> Frame {
        let mut message: String = message.into();
        if message.len() > MAX_ERROR_MESSAGE_BYTES {
            let mut cut = MAX_ERROR_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Frame::new(
            request_id,
            Payload::Error(ErrorFrame {
                code,
                retry_after_ms,
                message,
            }),
        )
    }

    /// Appends the encoded frame to `dst`. On error `dst` is left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = dst.len();
        dst.put_u32(0); // patched below
        dst.put_u8(self.payload.type_byte());
        dst.put_u8(0);
        dst.put_u64(self.request_id);
        let result = codec::encode_payload(&self.payload, &mut Writer { dst: &mut *dst });
        let len = dst.len() - start - LENGTH_BYTES;
        let result = match result {
            Ok(()) if len > MAX_FRAME_BYTES => Err(EncodeError::FrameTooLarge {
                len,
                max: MAX_FRAME_BYTES,
            }),
            other => other,
        };
        match result {
            Ok(()) => {
                // Fits: len <= MAX_FRAME_BYTES <= u32::MAX (asserted above).
                let prefix = (len as u32).to_be_bytes();
                dst[start..start + LENGTH_BYTES].copy_from_slice(&prefix);
                Ok(())
            }
            Err(e) => {
                dst.truncate(start);
                Err(e)
            }
        }
    }

    /// Decodes one frame from the front of `src`: `Ok(None)` when more bytes are needed,
    /// `Ok(Some((frame, consumed)))` when one is complete. The length prefix is checked first, so
    /// an oversized frame is refused before its bytes are awaited.
    pub fn decode(src: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
        let Some(total) = peek_frame_len(src)? else {
            return Ok(None);
        };
        let Some(bytes) = src.get(LENGTH_BYTES..total) else {
            return Ok(None);
        };
        let mut r = Reader::new(bytes, LENGTH_BYTES);
        let type_byte = r.u8("frame type")?;
        let flags = r.u8("flags")?;
        let request_id = r.u64("request id")?;
        let annotate = |mut e: DecodeError| {
            e.request_id = Some(request_id);
            e.skip = Some(total);
            e
        };
        if flags != 0 {
            return Err(annotate(DecodeError::new(
                LENGTH_BYTES + 1,
                1,
                1,
                DecodeReason::ReservedFlags(flags),
            )));
        }
        let payload = codec::decode_payload(type_byte, &mut r).map_err(annotate)?;
        r.finish().map_err(annotate)?;
        Ok(Some((Frame::new(request_id, payload), total)))
    }
}
