//! Queue wire forms' codecs: receipts, headers, messages, deliveries, queue options and queue
//! statistics (the types are in `types.rs`). Decoding enforces every limit of [`crate::limits`].

use std::collections::BTreeMap;

use bytes::Bytes;

use super::types::{Delivery, OutMessage, QueueInfo, QueueOptions};
use super::wire::{DecodeError, DecodeReason, EncodeError, Reader, Writer};
use super::MAX_RECEIPT_BYTES;
use crate::limits::{
    MAX_BATCH_MESSAGES, MAX_BODY_BYTES_CEILING, MAX_DELAY_MS, MAX_HEADERS, MAX_HEADER_NAME_BYTES,
    MAX_HEADER_VALUE_BYTES, MAX_KEY_BYTES, MAX_LEASE_MS, MAX_MESSAGE_ID_BYTES, MAX_PRIORITY,
    MIN_LEASE_MS,
};

type Enc = Result<(), EncodeError>;

pub(super) fn encode_strings(what: &'static str, items: &[String], w: &mut Writer<'_>) -> Enc {
    w.count32(what, items.len())?;
    items.iter().try_for_each(|s| w.bytes16(what, s.as_bytes()))
}

pub(super) fn decode_receipts(
    what: &'static str,
    r: &mut Reader<'_>,
) -> Result<Vec<String>, DecodeError> {
    let n = r.count32(what, MAX_BATCH_MESSAGES)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        out.push(r.str16("receipt", 1, MAX_RECEIPT_BYTES)?);
    }
    Ok(out)
}

pub(super) fn encode_headers(h: &BTreeMap<String, String>, w: &mut Writer<'_>) -> Enc {
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

pub(super) fn decode_headers(r: &mut Reader<'_>) -> Result<BTreeMap<String, String>, DecodeError> {
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

/// A publish batch: `list<Message>` of at most [`MAX_BATCH_MESSAGES`].
pub(super) fn encode_messages(messages: &[OutMessage], w: &mut Writer<'_>) -> Enc {
    w.count32("messages", messages.len())?;
    messages.iter().try_for_each(|m| encode_message(m, w))
}

pub(super) fn decode_messages(r: &mut Reader<'_>) -> Result<Vec<OutMessage>, DecodeError> {
    let n = r.count32("messages", MAX_BATCH_MESSAGES)?;
    let mut messages = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        messages.push(decode_message(r)?);
    }
    Ok(messages)
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

pub(super) fn encode_delivery(d: &Delivery, w: &mut Writer<'_>) -> Enc {
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

pub(super) fn decode_delivery(r: &mut Reader<'_>) -> Result<Delivery, DecodeError> {
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

pub(super) fn encode_options(o: &QueueOptions, w: &mut Writer<'_>) -> Enc {
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

pub(super) fn decode_options(r: &mut Reader<'_>) -> Result<QueueOptions, DecodeError> {
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

pub(super) fn encode_info(q: &QueueInfo, w: &mut Writer<'_>) -> Enc {
    w.bytes16("queue", q.name.as_bytes())?;
    w.bool(q.created);
    for v in info_counters(q) {
        w.u64(v);
    }
    encode_options(&q.config, w)
}

pub(super) fn decode_info(r: &mut Reader<'_>) -> Result<QueueInfo, DecodeError> {
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
