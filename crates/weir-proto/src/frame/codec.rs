//! Payload encoders and decoders, one pair per frame type. Decoding enforces every limit of
//! [`crate::limits`]: a frame that decodes is a frame the broker may be handed.

use super::queue::{
    decode_delivery, decode_info, decode_messages, decode_options, decode_receipts,
    encode_delivery, encode_info, encode_messages, encode_options, encode_strings,
};
use super::stream::{
    decode_assignment, decode_group_info, decode_partition, decode_positions, decode_read_from,
    decode_records, decode_stream_info, decode_stream_options, decode_stream_records,
    encode_assignment, encode_group_info, encode_positions, encode_read_from, encode_records,
    encode_stream_info, encode_stream_options, encode_stream_records,
};
use super::task::{
    decode_state, decode_submit, decode_task_id, decode_task_info, encode_state, encode_submit,
    encode_task_info,
};
use super::topic::{
    decode_start, decode_target, decode_topic_info, encode_start, encode_target, encode_topic_info,
};
use super::types::{ErrorFrame, HelloOk, PublishResult};
use super::wire::{DecodeError, DecodeReason, EncodeError, Reader, Writer};
use super::{
    Payload, AUTH_PROTOCOL_VERSION, LENGTH_BYTES, MAX_CREDITS, MAX_ERROR_MESSAGE_BYTES,
    MAX_TOKEN_BYTES,
};
use crate::limits::{
    MAX_BATCH_MESSAGES, MAX_DELAY_MS, MAX_LEASE_MS, MAX_MESSAGE_ID_BYTES, MAX_READ_RECORDS,
    MAX_RECEIVE_MESSAGES, MAX_SESSION_TIMEOUT_MS, MAX_STREAM_PARTITIONS, MAX_WAIT_MS, MIN_LEASE_MS,
    MIN_SESSION_TIMEOUT_MS,
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
        Payload::CreateTopic { topic, options } => {
            w.bytes16("topic", topic.as_bytes())?;
            w.opt_u64(options.dedup_window_ms);
            Ok(())
        }
        Payload::DeleteTopic { topic } | Payload::TopicStats { topic } => {
            w.bytes16("topic", topic.as_bytes())
        }
        Payload::CreateSubscription {
            topic,
            subscription,
            start,
            options,
        } => {
            w.bytes16("topic", topic.as_bytes())?;
            w.bytes16("subscription", subscription.as_bytes())?;
            encode_start(*start, w);
            encode_options(options, w)
        }
        Payload::DeleteSubscription {
            topic,
            subscription,
        } => {
            w.bytes16("topic", topic.as_bytes())?;
            w.bytes16("subscription", subscription.as_bytes())
        }
        Payload::CreateStream { stream, options } => {
            w.bytes16("stream", stream.as_bytes())?;
            encode_stream_options(options, w);
            Ok(())
        }
        Payload::DeleteStream { stream } | Payload::StreamStats { stream } => {
            w.bytes16("stream", stream.as_bytes())
        }
        Payload::Publish { queue, messages } => {
            w.bytes16("queue", queue.as_bytes())?;
            encode_messages(messages, w)
        }
        Payload::PublishTopic { topic, messages } => {
            w.bytes16("topic", topic.as_bytes())?;
            encode_messages(messages, w)
        }
        Payload::Receive {
            target,
            max,
            lease_ms,
            wait_ms,
        } => {
            encode_target(target, w)?;
            w.u32(*max);
            w.opt_u64(*lease_ms);
            w.u64(*wait_ms);
            Ok(())
        }
        Payload::Ack { target, receipts } => {
            encode_target(target, w)?;
            encode_strings("receipts", receipts, w)
        }
        Payload::Nack {
            target,
            receipts,
            delay_ms,
        } => {
            encode_target(target, w)?;
            encode_strings("receipts", receipts, w)?;
            w.opt_u64(*delay_ms);
            Ok(())
        }
        Payload::Extend {
            target,
            receipts,
            lease_ms,
        } => {
            encode_target(target, w)?;
            encode_strings("receipts", receipts, w)?;
            w.u64(*lease_ms);
            Ok(())
        }
        Payload::Subscribe {
            target,
            credits,
            lease_ms,
        } => {
            encode_target(target, w)?;
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
        Payload::Append { stream, records } => {
            w.bytes16("stream", stream.as_bytes())?;
            encode_records(records, w)
        }
        Payload::Read {
            stream,
            partition,
            from,
            max,
            wait_ms,
        } => {
            w.bytes16("stream", stream.as_bytes())?;
            w.u32(*partition);
            encode_read_from(*from, w);
            w.u32(*max);
            w.u64(*wait_ms);
            Ok(())
        }
        Payload::JoinGroup {
            stream,
            group,
            member,
            session_timeout_ms,
        } => {
            encode_names(
                &[("stream", stream), ("group", group), ("member", member)],
                w,
            )?;
            w.opt_u64(*session_timeout_ms);
            Ok(())
        }
        Payload::Heartbeat {
            stream,
            group,
            member,
        }
        | Payload::LeaveGroup {
            stream,
            group,
            member,
        } => encode_names(
            &[("stream", stream), ("group", group), ("member", member)],
            w,
        ),
        Payload::CommitOffsets {
            stream,
            group,
            member,
            generation,
            offsets,
        } => {
            encode_names(&[("stream", stream), ("group", group)], w)?;
            w.opt_str("member", member.as_deref())?;
            w.opt_u64(*generation);
            encode_positions("offsets", offsets, w)
        }
        Payload::GroupStatus { stream, group } => {
            encode_names(&[("stream", stream), ("group", group)], w)
        }
        Payload::SubmitTask(s) => encode_submit(s, w),
        Payload::GetTask { id, wait_ms } => {
            w.bytes16("task id", id.as_bytes())?;
            w.u64(*wait_ms);
            Ok(())
        }
        Payload::CancelTask { id } => w.bytes16("task id", id.as_bytes()),
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
        Payload::TopicInfo(t) => encode_topic_info(t, w),
        Payload::StreamInfo(s) => encode_stream_info(s, w),
        Payload::Appended(positions) => encode_positions("positions", positions, w),
        Payload::Records {
            records,
            next_offset,
        } => {
            w.u64(*next_offset);
            encode_stream_records(records, w)
        }
        Payload::GroupAssignment(a) => encode_assignment(a, w),
        Payload::GroupInfo(g) => encode_group_info(g, w),
        Payload::TaskSubmitted { id, state, created } => {
            w.bytes16("task id", id.as_bytes())?;
            encode_state(*state, w);
            w.bool(*created);
            Ok(())
        }
        Payload::TaskInfo(t) => encode_task_info(t, w),
    }
}

fn encode_names(names: &[(&'static str, &String)], w: &mut Writer<'_>) -> Enc {
    names
        .iter()
        .try_for_each(|(what, name)| w.bytes16(what, name.as_bytes()))
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
            options: Box::new(decode_options(r)?),
        },
        0x11 => Payload::DeleteQueue {
            queue: r.name("queue")?,
        },
        0x12 => Payload::QueueStats {
            queue: r.name("queue")?,
        },
        0x13 => Payload::CreateTopic {
            topic: r.name("topic")?,
            options: super::TopicOptions {
                dedup_window_ms: r.opt_u64_in("dedup_window_ms", 0, u64::MAX)?,
            },
        },
        0x14 => Payload::DeleteTopic {
            topic: r.name("topic")?,
        },
        0x15 => Payload::TopicStats {
            topic: r.name("topic")?,
        },
        0x16 => Payload::CreateSubscription {
            topic: r.name("topic")?,
            subscription: r.name("subscription")?,
            start: decode_start(r)?,
            options: Box::new(decode_options(r)?),
        },
        0x17 => Payload::DeleteSubscription {
            topic: r.name("topic")?,
            subscription: r.name("subscription")?,
        },
        0x18 => Payload::CreateStream {
            stream: r.name("stream")?,
            options: decode_stream_options(r)?,
        },
        0x19 => Payload::DeleteStream {
            stream: r.name("stream")?,
        },
        0x1a => Payload::StreamStats {
            stream: r.name("stream")?,
        },
        0x20 => Payload::Publish {
            queue: r.name("queue")?,
            messages: decode_messages(r)?,
        },
        0x40 => Payload::PublishTopic {
            topic: r.name("topic")?,
            messages: decode_messages(r)?,
        },
        0x21 | 0x41 => Payload::Receive {
            target: decode_target(type_byte, r)?,
            // Bounded to 1..=1000, so the cast back to u32 is exact.
            max: r.u32_in("max", 1, MAX_RECEIVE_MESSAGES as u64)?,
            lease_ms: r.opt_u64_in("lease_ms", MIN_LEASE_MS, MAX_LEASE_MS)?,
            wait_ms: r.u64_in("wait_ms", 0, MAX_WAIT_MS)?,
        },
        0x22 | 0x42 => Payload::Ack {
            target: decode_target(type_byte, r)?,
            receipts: decode_receipts("receipts", r)?,
        },
        0x23 | 0x43 => Payload::Nack {
            target: decode_target(type_byte, r)?,
            receipts: decode_receipts("receipts", r)?,
            delay_ms: r.opt_u64_in("delay_ms", 0, MAX_DELAY_MS)?,
        },
        0x24 | 0x44 => Payload::Extend {
            target: decode_target(type_byte, r)?,
            receipts: decode_receipts("receipts", r)?,
            lease_ms: r.u64_in("lease_ms", MIN_LEASE_MS, MAX_LEASE_MS)?,
        },
        0x30 | 0x50 => Payload::Subscribe {
            target: decode_target(type_byte, r)?,
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
        0x60 => Payload::Append {
            stream: r.name("stream")?,
            records: decode_records(r)?,
        },
        0x61 => Payload::Read {
            stream: r.name("stream")?,
            partition: decode_partition(r)?,
            from: decode_read_from(r)?,
            // Bounded to 1..=1000, so the value fits the u32 it was read as.
            max: r.u32_in("max", 1, MAX_READ_RECORDS as u64)?,
            wait_ms: r.u64_in("wait_ms", 0, MAX_WAIT_MS)?,
        },
        0x62 => Payload::JoinGroup {
            stream: r.name("stream")?,
            group: r.name("group")?,
            member: r.name("member")?,
            session_timeout_ms: r.opt_u64_in(
                "session_timeout_ms",
                MIN_SESSION_TIMEOUT_MS,
                MAX_SESSION_TIMEOUT_MS,
            )?,
        },
        0x63 => Payload::Heartbeat {
            stream: r.name("stream")?,
            group: r.name("group")?,
            member: r.name("member")?,
        },
        0x64 => Payload::LeaveGroup {
            stream: r.name("stream")?,
            group: r.name("group")?,
            member: r.name("member")?,
        },
        0x65 => decode_commit(r)?,
        0x66 => Payload::GroupStatus {
            stream: r.name("stream")?,
            group: r.name("group")?,
        },
        0x70 => Payload::SubmitTask(Box::new(decode_submit(r)?)),
        0x71 => Payload::GetTask {
            id: decode_task_id(r)?,
            wait_ms: r.u64_in("wait_ms", 0, MAX_WAIT_MS)?,
        },
        0x72 => Payload::CancelTask {
            id: decode_task_id(r)?,
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
        0x83 => Payload::QueueInfo(Box::new(decode_info(r)?)),
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
        0x87 => Payload::TopicInfo(Box::new(decode_topic_info(r)?)),
        0x88 => Payload::StreamInfo(Box::new(decode_stream_info(r)?)),
        0x89 => Payload::Appended(decode_positions("positions", MAX_BATCH_MESSAGES, r)?),
        0x8a => {
            let next_offset = r.u64("next_offset")?;
            Payload::Records {
                records: decode_stream_records(r)?,
                next_offset,
            }
        }
        0x8b => Payload::GroupAssignment(decode_assignment(r)?),
        0x8c => Payload::GroupInfo(decode_group_info(r)?),
        0x8d => Payload::TaskSubmitted {
            id: decode_task_id(r)?,
            state: decode_state(r)?,
            created: r.bool("created")?,
        },
        0x8e => Payload::TaskInfo(Box::new(decode_task_info(r)?)),
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

/// `CommitOffsets`: a generation only means something with a member.
fn decode_commit(r: &mut Reader<'_>) -> Result<Payload, DecodeError> {
    let stream = r.name("stream")?;
    let group = r.name("group")?;
    let member = r.opt_name("member")?;
    let at = r.offset();
    let have = r.remaining();
    let generation = r.opt_u64_in("generation", 0, u64::MAX)?;
    if generation.is_some() && member.is_none() {
        return Err(DecodeError::new(
            at,
            9,
            have,
            DecodeReason::Inconsistent {
                what: "generation",
                why: "a generation needs a member",
            },
        ));
    }
    Ok(Payload::CommitOffsets {
        stream,
        group,
        member,
        generation,
        offsets: decode_positions("offsets", MAX_STREAM_PARTITIONS as usize, r)?,
    })
}
