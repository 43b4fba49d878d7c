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
mod types;
mod wire;

#[cfg(test)]
mod tests;

use bytes::{BufMut, BytesMut};

pub use handshake::Hello;
pub use types::{
    Delivery, ErrorFrame, HelloOk, OutMessage, PublishResult, QueueInfo, QueueOptions,
};
pub use wire::{DecodeError, DecodeReason, EncodeError};

use crate::limits::MAX_FRAME_BYTES;
use wire::{Reader, Writer};

/// The four bytes that open every connection.
pub const MAGIC: [u8; 4] = *b"WEIR";
/// The protocol version this crate speaks best. Version 2 added [`Payload::Authenticate`] and
/// [`HelloOk::auth_required`].
pub const PROTOCOL_VERSION: u16 = 2;
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

const _: () = assert!(LENGTH_BYTES + HEADER_BYTES < MAX_FRAME_BYTES);
const _: () = assert!(MAX_FRAME_BYTES <= u32::MAX as usize);
const _: () = assert!(MAX_CREDITS as usize >= crate::limits::MAX_RECEIVE_MESSAGES);
const _: () = assert!(MIN_PROTOCOL_VERSION <= AUTH_PROTOCOL_VERSION);
const _: () = assert!(AUTH_PROTOCOL_VERSION <= PROTOCOL_VERSION);
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
        options: QueueOptions,
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
    /// `0x20` publish a batch (all or nothing); answered by `Published` once durable.
    Publish {
        /// Queue name.
        queue: String,
        /// The messages, at most `MAX_BATCH_MESSAGES`.
        messages: Vec<OutMessage>,
    },
    /// `0x21` pull up to `max` messages, waiting up to `wait_ms`; answered by `Deliveries`.
    Receive {
        /// Queue name.
        queue: String,
        /// 1–1000.
        max: u32,
        /// Lease for these deliveries (default: the queue's).
        lease_ms: Option<u64>,
        /// Long-poll wait, 0–20000 ms.
        wait_ms: u64,
    },
    /// `0x22` acknowledge deliveries; answered by `ReceiptsDone`.
    Ack {
        /// Queue name.
        queue: String,
        /// Receipts to ack.
        receipts: Vec<String>,
    },
    /// `0x23` give deliveries back, after `delay_ms` or the queue's backoff; answered by
    /// `ReceiptsDone`.
    Nack {
        /// Queue name.
        queue: String,
        /// Receipts to nack.
        receipts: Vec<String>,
        /// Redelivery delay; `None` applies the queue's backoff.
        delay_ms: Option<u64>,
    },
    /// `0x24` extend leases to `lease_ms` from now; answered by `ReceiptsDone`.
    Extend {
        /// Queue name.
        queue: String,
        /// Receipts to extend.
        receipts: Vec<String>,
        /// New lease from now.
        lease_ms: u64,
    },
    /// `0x30` subscribe: answered by `Ok`, then `Deliveries` pushed with this request id while
    /// the subscription holds credits (one credit per delivery).
    Subscribe {
        /// Queue name.
        queue: String,
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
    /// `0x80` the server's answer to a good handshake.
    HelloOk(HelloOk),
    /// `0x81` a request (or, with id 0, the connection) failed.
    Error(ErrorFrame),
    /// `0x82` success without data.
    Ok,
    /// `0x83` a queue's counters and settings.
    QueueInfo(QueueInfo),
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
            Payload::Publish { .. } => 0x20,
            Payload::Receive { .. } => 0x21,
            Payload::Ack { .. } => 0x22,
            Payload::Nack { .. } => 0x23,
            Payload::Extend { .. } => 0x24,
            Payload::Subscribe { .. } => 0x30,
            Payload::GrantCredits { .. } => 0x31,
            Payload::Unsubscribe { .. } => 0x32,
            Payload::HelloOk(_) => 0x80,
            Payload::Error(_) => 0x81,
            Payload::Ok => 0x82,
            Payload::QueueInfo(_) => 0x83,
            Payload::Published(_) => 0x84,
            Payload::Deliveries(_) => 0x85,
            Payload::ReceiptsDone { .. } => 0x86,
        }
    }
}

impl Payload {
    /// The first protocol version in which this frame type exists. [`Frame::decode`] accepts
    /// every type of every version it knows; a peer that negotiated an older version must refuse
    /// a newer type as unknown.
    pub fn since_version(&self) -> u16 {
        match self {
            Payload::Authenticate { .. } => AUTH_PROTOCOL_VERSION,
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
