//! Payload encoders and decoders, one pair per frame type. Decoding enforces every limit of
//! [`crate::limits`]: a frame that decodes is a frame the broker may be handed.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::types::{
    Delivery, ErrorFrame, HelloOk, OutMessage, PublishResult, QueueInfo, QueueOptions,
};
use super::wire::{DecodeError, DecodeReason, EncodeError, Reader, Writer};
use super::{
    Payload, AUTH_PROTOCOL_VERSION, LENGTH_BYTES, MAX_CREDITS, MAX_ERROR_MESSAGE_BYTES,
    MAX_RECEIPT_BYTES, MAX_TOKEN_BYTES,
};
use crate::limits::{
    MAX_BATCH_MESSAGES, MAX_BODY_BYTES_CEILING, MAX_DELAY_MS, MAX_HEADERS, MAX_HEADER_NAME_BYTES,
    MAX_HEADER_VALUE_BYTES, MAX_KEY_BYTES, MAX_LEASE_MS, MAX_MESSAGE_ID_BYTES, MAX_PRIORITY,
    MAX_RECEIVE_MESSAGES, MAX_WAIT_MS, MIN_LEASE_MS,
};
use crate::ErrorCode;

type Enc = Result<(), EncodeError>;

pub(super) fn encode_payload(p: &Payload, w: &mut Writer<'_>) -> Enc {
    match p {
        Payload::Ping | Payload::Pong | Payload::Ok => Ok(()),
        Payload::Authenticate { token } => w.bytes16("token", token.as_bytes()),
        Payload::CreateQueue { queue, options } => {
            w.bytes16("queue", queue.as_bytes())?;
            encode_options(options, w)
        }
        Payload::DeleteQueue { queue } | Payload::QueueStats { queue } => {
            w.bytes16("queue", queue.as_bytes())
        }
        Payload::Publish { queue, messages } => {
            w.bytes16("queue", queue.as_bytes())?;
            w.count32("messages", messages.len())?;
            messages.iter().try_for_each(|m| encode_message(m, w))
        }
        Payload::Receive {
            queue,
            max,
            lease_ms,
            wait_ms,
        } => {
            w.bytes16("queue", queue.as_bytes())?;
            w.u32(*max);
            w.opt_u64(*lease_ms);
            w.u64(*wait_ms);
            Ok(())
        }
        Payload::Ack { queue, receipts } => {
            w.bytes16("queue", queue.as_bytes())?;
            encode_strings("receipts", receipts, w)
        }
        Payload::Nack {
            queue,
            receipts,
            delay_ms,
        } => {
            w.bytes16("queue", queue.as_bytes())?;
            encode_strings("receipts", receipts, w)?;
            w.opt_u64(*delay_ms);
            Ok(())
        }
        Payload::Extend {
            queue,
            receipts,
            lease_ms,
        } => {
            w.bytes16("queue", queue.as_bytes())?;
            encode_strings("receipts", receipts, w)?;
            w.u64(*lease_ms);
            Ok(())
        }
        Payload::Subscribe {
            queue,
            credits,
            lease_ms,
        } => {
            w.bytes16("queue", queue.as_bytes())?;
            w.u32(*credits);
            w.opt_u64(*lease_ms);
            Ok(())
        }
        Payload::GrantCredits {
            subscription,
            credits,
        } => {
            w.u64(*subscription);
            w.u32(*credits);
            Ok(())
        }
        Payload::Unsubscribe { subscription } => {
            w.u64(*subscription);
            Ok(())
        }
        Payload::HelloOk(h) => {
            w.u16(h.version);
            w.u32(h.max_frame_bytes);
            w.u32(h.max_batch_messages);
            w.u32(h.max_body_bytes);
            w.u32(h.max_in_flight);
            w.u32(h.max_credits);
            // The field exists from version 2 on; a version-1 HelloOk has no room for it.
            if h.version >= AUTH_PROTOCOL_VERSION {
                w.bool(h.auth_required);
            }
            Ok(())
        }
        Payload::Error(e) => {
            w.u16(e.code.wire());
            w.u64(e.retry_after_ms);
            w.bytes16("error message", e.message.as_bytes())
        }
        Payload::QueueInfo(q) => encode_info(q, w),
        Payload::Published(results) => {
            w.count32("results", results.len())?;
            for r in results {
                w.bytes16("message id", r.id.as_bytes())?;
                w.bool(r.duplicate);
            }
            Ok(())
        }
        Payload::Deliveries(ds) => {
            w.count32("deliveries", ds.len())?;
            ds.iter().try_for_each(|d| encode_delivery(d, w))
        }
        Payload::ReceiptsDone { done, invalid } => {
            w.u32(*done);
            encode_strings("invalid receipts", invalid, w)
        }
    }
}

pub(super) fn decode_payload(type_byte: u8, r: &mut Reader<'_>) -> Result<Payload, DecodeError> {
    Ok(match type_byte {
        0x01 => Payload::Ping,
        0x02 => Payload::Pong,
        0x03 => Payload::Authenticate {
            token: r.str16("token", 0, MAX_TOKEN_BYTES)?,
        },
        0x10 => Payload::CreateQueue {
            queue: r.name("queue")?,
            options: decode_options(r)?,
        },
        0x11 => Payload::DeleteQueue {
            queue: r.name("queue")?,
        },
        0x12 => Payload::QueueStats {
            queue: r.name("queue")?,
        },
        0x20 => {
            let queue = r.name("queue")?;
            let n = r.count32("messages", MAX_BATCH_MESSAGES)?;
            let mut messages = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                messages.push(decode_message(r)?);
            }
            Payload::Publish { queue, messages }
        }
        0x21 => Payload::Receive {
            queue: r.name("queue")?,
            // Bounded to 1..=1000, so the cast back to u32 is exact.
            max: r.u32_in("max", 1, MAX_RECEIVE_MESSAGES as u64)?,
            lease_ms: r.opt_u64_in("lease_ms", MIN_LEASE_MS, MAX_LEASE_MS)?,
            wait_ms: r.u64_in("wait_ms", 0, MAX_WAIT_MS)?,
        },
        0x22 => Payload::Ack {
            queue: r.name("queue")?,
            receipts: decode_receipts("receipts", r)?,
        },
        0x23 => Payload::Nack {
            queue: r.name("queue")?,
            receipts: decode_receipts("receipts", r)?,
            delay_ms: r.opt_u64_in("delay_ms", 0, MAX_DELAY_MS)?,
        },
        0x24 => Payload::Extend {
            queue: r.name("queue")?,
            receipts: decode_receipts("receipts", r)?,
            lease_ms: r.u64_in("lease_ms", MIN_LEASE_MS, MAX_LEASE_MS)?,
        },
        0x30 => Payload::Subscribe {
            queue: r.name("queue")?,
            credits: r.u32_in("credits", 0, u64::from(MAX_CREDITS))?,
            lease_ms: r.opt_u64_in("lease_ms", MIN_LEASE_MS, MAX_LEASE_MS)?,
        },
        0x31 => Payload::GrantCredits {
            subscription: r.u64("subscription")?,
            credits: r.u32_in("credits", 1, u64::from(MAX_CREDITS))?,
        },
        0x32 => Payload::Unsubscribe {
            subscription: r.u64("subscription")?,
        },
        0x80 => {
            let version = r.u16("version")?;
            Payload::HelloOk(HelloOk {
                version,
                max_frame_bytes: r.u32("max_frame_bytes")?,
                max_batch_messages: r.u32("max_batch_messages")?,
                max_body_bytes: r.u32("max_body_bytes")?,
                max_in_flight: r.u32("max_in_flight")?,
                max_credits: r.u32("max_credits")?,
                // The layout follows the version the HelloOk itself names.
                auth_required: version >= AUTH_PROTOCOL_VERSION && r.bool("auth_required")?,
            })
        }
        0x81 => {
            let at = r.offset();
            let have = r.remaining();
            let raw = r.u16("error code")?;
            let Some(code) = ErrorCode::from_wire(raw) else {
                return Err(DecodeError::new(
                    at,
                    2,
                    have,
                    DecodeReason::OutOfRange {
                        what: "error code",
                        value: u64::from(raw),
                        min: 400,
                        max: 503,
                    },
                ));
            };
            Payload::Error(ErrorFrame {
                code,
                retry_after_ms: r.u64("retry_after_ms")?,
                message: r.str16("error message", 0, MAX_ERROR_MESSAGE_BYTES)?,
            })
        }
        0x82 => Payload::Ok,
        0x83 => Payload::QueueInfo(decode_info(r)?),
        0x84 => {
            let n = r.count32("results", MAX_BATCH_MESSAGES)?;
            let mut results = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                results.push(PublishResult {
                    id: r.str16("message id", 1, MAX_MESSAGE_ID_BYTES)?,
                    duplicate: r.bool("duplicate")?,
                });
            }
            Payload::Published(results)
        }
        0x85 => {
            let n = r.count32("deliveries", MAX_RECEIVE_MESSAGES)?;
            let mut ds = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                ds.push(decode_delivery(r)?);
            }
            Payload::Deliveries(ds)
        }
        0x86 => Payload::ReceiptsDone {
            done: r.u32("done")?,
            invalid: decode_receipts("invalid receipts", r)?,
        },
        other => {
            return Err(DecodeError::new(
                LENGTH_BYTES,
                1,
                1,
                DecodeReason::UnknownFrameType(other),
            ))
        }
    })
}

fn encode_strings(what: &'static str, items: &[String], w: &mut Writer<'_>) -> Enc {
    w.count32(what, items.len())?;
    items.iter().try_for_each(|s| w.bytes16(what, s.as_bytes()))
}

fn decode_receipts(what: &'static str, r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = r.count32(what, MAX_BATCH_MESSAGES)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        out.push(r.str16("receipt", 1, MAX_RECEIPT_BYTES)?);
    }
    Ok(out)
}

fn encode_headers(h: &BTreeMap<String, String>, w: &mut Writer<'_>) -> Enc {
    let n = u16::try_from(h.len()).map_err(|_| EncodeError::TooLong {
        what: "headers",
        len: h.len(),
        max: u16::MAX as usize,
    })?;
    w.u16(n);
    for (k, v) in h {
        w.bytes16("header name", k.as_bytes())?;
        w.bytes16("header value", v.as_bytes())?;
    }
    Ok(())
}

fn decode_headers(r: &mut Reader<'_>) -> Result<BTreeMap<String, String>, DecodeError> {
    let at = r.offset();
    let have = r.remaining();
    let count = r.u16("headers")? as usize;
    if count > MAX_HEADERS {
        return Err(DecodeError::new(
            at,
            2,
            have,
            DecodeReason::TooMany {
                what: "headers",
                count,
                max: MAX_HEADERS,
            },
        ));
    }
    let mut h = BTreeMap::new();
    for _ in 0..count {
        let k = r.str16("header name", 1, MAX_HEADER_NAME_BYTES)?;
        let v = r.str16("header value", 0, MAX_HEADER_VALUE_BYTES)?;
        h.insert(k, v);
    }
    Ok(h)
}

fn encode_message(m: &OutMessage, w: &mut Writer<'_>) -> Enc {
    w.opt_bytes16("message id", m.id.as_deref().map(str::as_bytes))?;
    w.opt_bytes16("key", m.key.as_deref())?;
    encode_headers(&m.headers, w)?;
    w.bytes32("body", &m.body)?;
    w.u8(m.priority);
    w.u64(m.delay_ms);
    Ok(())
}

fn decode_message(r: &mut Reader<'_>) -> Result<OutMessage, DecodeError> {
    let id = if r.bool("message id")? {
        Some(r.str16("message id", 1, MAX_MESSAGE_ID_BYTES)?)
    } else {
        None
    };
    Ok(OutMessage {
        id,
        key: r.opt_bytes16("key", MAX_KEY_BYTES)?,
        headers: decode_headers(r)?,
        body: Bytes::copy_from_slice(r.bytes32("body", 0, MAX_BODY_BYTES_CEILING)?),
        priority: r.u8_in("priority", MAX_PRIORITY)?,
        delay_ms: r.u64_in("delay_ms", 0, MAX_DELAY_MS)?,
    })
}

fn encode_delivery(d: &Delivery, w: &mut Writer<'_>) -> Enc {
    w.bytes16("message id", d.id.as_bytes())?;
    w.bytes16("receipt", d.receipt.as_bytes())?;
    w.opt_bytes16("key", d.key.as_deref())?;
    encode_headers(&d.headers, w)?;
    w.bytes32("body", &d.body)?;
    w.u32(d.attempt);
    w.u64(d.enqueued_at_ms);
    w.u8(d.priority);
    Ok(())
}

fn decode_delivery(r: &mut Reader<'_>) -> Result<Delivery, DecodeError> {
    Ok(Delivery {
        id: r.str16("message id", 1, MAX_MESSAGE_ID_BYTES)?,
        receipt: r.str16("receipt", 1, MAX_RECEIPT_BYTES)?,
        key: r.opt_bytes16("key", MAX_KEY_BYTES)?,
        headers: decode_headers(r)?,
        body: Bytes::copy_from_slice(r.bytes32("body", 0, MAX_BODY_BYTES_CEILING)?),
        attempt: r.u32("attempt")?,
        enqueued_at_ms: r.u64("enqueued_at_ms")?,
        priority: r.u8_in("priority", MAX_PRIORITY)?,
    })
}

fn encode_options(o: &QueueOptions, w: &mut Writer<'_>) -> Enc {
    w.opt_u64(o.max_depth);
    w.opt_u64(o.max_bytes);
    w.opt_u64(o.max_latency_ms);
    w.opt_u64(o.lease_ms);
    w.opt_u64(o.max_attempts.map(u64::from));
    w.opt_u64(o.backoff_base_ms);
    w.opt_u64(o.backoff_max_ms);
    w.opt_bytes16(
        "dead_letter_queue",
        o.dead_letter_queue.as_deref().map(str::as_bytes),
    )?;
    w.opt_u64(o.dedup_window_ms);
    match o.ordered_by_key {
        Some(b) => {
            w.bool(true);
            w.bool(b);
        }
        None => w.bool(false),
    }
    Ok(())
}

fn decode_options(r: &mut Reader<'_>) -> Result<QueueOptions, DecodeError> {
    let max_depth = r.opt_u64_in("max_depth", 0, u64::MAX)?;
    let max_bytes = r.opt_u64_in("max_bytes", 0, u64::MAX)?;
    let max_latency_ms = r.opt_u64_in("max_latency_ms", 0, u64::MAX)?;
    let lease_ms = r.opt_u64_in("lease_ms", MIN_LEASE_MS, MAX_LEASE_MS)?;
    let max_attempts = r
        .opt_u64_in("max_attempts", 1, u64::from(u32::MAX))?
        // In range 1..=u32::MAX, checked just above.
        .map(|v| v as u32);
    let backoff_base_ms = r.opt_u64_in("backoff_base_ms", 0, u64::MAX)?;
    let backoff_max_ms = r.opt_u64_in("backoff_max_ms", 0, u64::MAX)?;
    let dead_letter_queue = if r.bool("dead_letter_queue")? {
        Some(r.name("dead_letter_queue")?)
    } else {
        None
    };
    let dedup_window_ms = r.opt_u64_in("dedup_window_ms", 0, u64::MAX)?;
    let ordered_by_key = if r.bool("ordered_by_key")? {
        Some(r.bool("ordered_by_key")?)
    } else {
        None
    };
    Ok(QueueOptions {
        max_depth,
        max_bytes,
        max_latency_ms,
        lease_ms,
        max_attempts,
        backoff_base_ms,
        backoff_max_ms,
        dead_letter_queue,
        dedup_window_ms,
        ordered_by_key,
    })
}

fn info_counters(q: &QueueInfo) -> [u64; 15] {
    [
        q.ready,
        q.in_flight,
        q.delayed,
        q.total,
        q.bytes,
        q.published_total,
        q.delivered_total,
        q.acked_total,
        q.nacked_total,
        q.dead_lettered_total,
        q.refused_total,
        q.duplicates_total,
        q.redelivered_total,
        q.expired_leases_total,
        q.disk_bytes,
    ]
}

fn encode_info(q: &QueueInfo, w: &mut Writer<'_>) -> Enc {
    w.bytes16("queue", q.name.as_bytes())?;
    w.bool(q.created);
    for v in info_counters(q) {
        w.u64(v);
    }
    encode_options(&q.config, w)
}

fn decode_info(r: &mut Reader<'_>) -> Result<QueueInfo, DecodeError> {
    let name = r.name("queue")?;
    let created = r.bool("created")?;
    let mut c = [0u64; 15];
    for v in &mut c {
        *v = r.u64("counter")?;
    }
    let [ready, in_flight, delayed, total, bytes, published_total, delivered_total, acked_total, nacked_total, dead_lettered_total, refused_total, duplicates_total, redelivered_total, expired_leases_total, disk_bytes] =
        c;
    Ok(QueueInfo {
        name,
        created,
        ready,
        in_flight,
        delayed,
        total,
        bytes,
        published_total,
        delivered_total,
        acked_total,
        nacked_total,
        dead_lettered_total,
        refused_total,
        duplicates_total,
        redelivered_total,
        expired_leases_total,
        disk_bytes,
        config: decode_options(r)?,
    })
}
