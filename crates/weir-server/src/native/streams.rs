//! Stream and consumer-group requests (protocol version 3), driven as `http/streams.rs` drives
//! the broker: create / delete / stats, append (inline, answered once durable), tailing reads
//! (long poll on the partition's durable end), join / heartbeat / leave, commit (inline) and
//! group status.

use std::time::Duration;

use weir_broker::{
    Broker, BrokerError, GroupAssignment, GroupStatus, NewRecord, StreamConfig, StreamRecord,
    StreamStats,
};
use weir_proto::frame::{self, OutRecord, PartitionCommit, PartitionOffset, Payload, ReadFrom};
use weir_proto::limits::{
    MAX_FRAME_BYTES, MAX_GROUP_MEMBERS, MAX_READ_RECORDS, MAX_SESSION_TIMEOUT_MS,
    MAX_STREAM_GROUPS, MAX_STREAM_PARTITIONS, MIN_SESSION_TIMEOUT_MS,
};
use weir_store::Durable;

use super::conn::Shared;
use super::handler::{blocking, Failure};

// The wire's bounds are the broker's: a value one accepts, the other does too.
const _: () = assert!(MAX_STREAM_PARTITIONS == weir_broker::MAX_PARTITIONS);
const _: () = assert!(MAX_READ_RECORDS == weir_broker::MAX_READ_RECORDS);
const _: () = assert!(MIN_SESSION_TIMEOUT_MS == weir_broker::MIN_SESSION_TIMEOUT_MS);
const _: () = assert!(MAX_SESSION_TIMEOUT_MS == weir_broker::MAX_SESSION_TIMEOUT_MS);
const _: () = assert!(weir_broker::MAX_GROUPS <= MAX_STREAM_GROUPS);
const _: () = assert!(weir_broker::MAX_MEMBERS <= MAX_GROUP_MEMBERS);

/// Room left in a `Records` frame for its header, count and `next_offset`.
const FRAME_MARGIN_BYTES: usize = 64 * 1024;

/// Starts an append: the records are handed to the broker now; the answer (`Appended`) is sent
/// once `Durable` resolves.
pub(super) fn start_append(
    broker: &Broker,
    stream: &str,
    records: Vec<OutRecord>,
) -> Result<(Durable, Payload), BrokerError> {
    let records = records
        .into_iter()
        .map(|r| NewRecord {
            key: r.key,
            headers: r.headers,
            body: r.body,
        })
        .collect();
    let outcome = broker.append_stream(stream, records)?;
    let positions = outcome
        .positions
        .into_iter()
        .map(|(partition, offset)| PartitionOffset { partition, offset })
        .collect();
    Ok((outcome.durable, Payload::Appended(positions)))
}

/// Answers a stream or group request (appends and commits are handled inline, elsewhere).
pub(super) async fn answer(shared: &Shared, request: Payload) -> Result<Payload, Failure> {
    let broker = shared.broker.clone();
    match request {
        Payload::CreateStream { stream, options } => {
            blocking(move || {
                let mut config = match broker.stream_stats(&stream) {
                    Ok(s) => s.config,
                    Err(BrokerError::NotFound { .. }) => StreamConfig::default(),
                    Err(e) => return Err(e),
                };
                if let Some(p) = options.partitions {
                    config.partitions = p;
                }
                if options.retention_ms.is_some() {
                    config.retention_ms = options.retention_ms;
                }
                if options.retention_bytes.is_some() {
                    config.retention_bytes = options.retention_bytes;
                }
                let (stats, created) = broker.create_stream(&stream, config)?;
                Ok(Payload::StreamInfo(Box::new(stream_info(stats, created))))
            })
            .await
        }
        Payload::DeleteStream { stream } => {
            blocking(move || broker.delete_stream(&stream).map(|()| Payload::Ok)).await
        }
        Payload::StreamStats { stream } => broker
            .stream_stats(&stream)
            .map(|s| Payload::StreamInfo(Box::new(stream_info(s, false))))
            .map_err(Failure::from),
        Payload::Read {
            stream,
            partition,
            from,
            max,
            wait_ms,
        } => read(shared, &stream, partition, from, max as usize, wait_ms).await,
        Payload::JoinGroup {
            stream,
            group,
            member,
            session_timeout_ms,
        } => broker
            .join_group(&stream, &group, &member, session_timeout_ms)
            .map(|(a, joined)| Payload::GroupAssignment(assignment(a, joined)))
            .map_err(Failure::from),
        Payload::Heartbeat {
            stream,
            group,
            member,
        } => broker
            .heartbeat(&stream, &group, &member)
            .map(|a| Payload::GroupAssignment(assignment(a, false)))
            .map_err(Failure::from),
        Payload::LeaveGroup {
            stream,
            group,
            member,
        } => broker
            .leave_group(&stream, &group, &member)
            .map(|()| Payload::Ok)
            .map_err(Failure::from),
        Payload::GroupStatus { stream, group } => broker
            .group_status(&stream, &group)
            .map(|g| Payload::GroupInfo(group_info(g)))
            .map_err(Failure::from),
        other => Err(Failure::misrouted(&other)),
    }
}

/// A tailing read: with nothing to read it waits up to `wait_ms` for the next record (or the
/// connection's end), then answers what it has.
async fn read(
    shared: &Shared,
    stream: &str,
    partition: u32,
    from: ReadFrom,
    max: usize,
    wait_ms: u64,
) -> Result<Payload, Failure> {
    let broker = &shared.broker;
    let from = match from {
        ReadFrom::Offset(o) => weir_broker::ReadFrom::Offset(o),
        ReadFrom::Timestamp(t) => weir_broker::ReadFrom::Timestamp(t),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut batch = broker.read_stream(stream, partition, from, max)?;
    while batch.records.is_empty() && tokio::time::Instant::now() < deadline {
        let next = batch.next_offset;
        let arrived = broker.wait_stream(stream, partition, next)?;
        tokio::select! {
            r = arrived => r?,
            _ = tokio::time::sleep_until(deadline) => break,
            () = shared.closing.cancelled() => break,
        }
        batch = broker.read_stream(stream, partition, weir_broker::ReadFrom::Offset(next), max)?;
    }
    Ok(records_payload(batch.records, batch.next_offset))
}

/// The records that fit one frame; when some do not (it takes large bodies), the answer stops
/// before them and `next_offset` points at the first one left out.
fn records_payload(records: Vec<StreamRecord>, next_offset: u64) -> Payload {
    let budget = MAX_FRAME_BYTES - FRAME_MARGIN_BYTES;
    let mut size = 0usize;
    let mut out = Vec::with_capacity(records.len());
    let mut next = next_offset;
    for r in records {
        let r = frame::StreamRecord {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            headers: r.headers,
            body: r.body,
        };
        size = size.saturating_add(r.encoded_len());
        if !out.is_empty() && size > budget {
            next = r.offset;
            break;
        }
        out.push(r);
    }
    Payload::Records {
        records: out,
        next_offset: next,
    }
}

fn stream_info(s: StreamStats, created: bool) -> frame::StreamInfo {
    frame::StreamInfo {
        name: s.name,
        created,
        partitions: s.config.partitions,
        retention_ms: s.config.retention_ms,
        retention_bytes: s.config.retention_bytes,
        partition_stats: s
            .partitions
            .iter()
            .map(|p| frame::PartitionInfo {
                partition: p.partition,
                start_offset: p.start_offset,
                end_offset: p.end_offset,
                disk_bytes: p.bytes,
                segments: p.segments,
            })
            .collect(),
        groups: s.groups.into_iter().take(MAX_STREAM_GROUPS).collect(),
    }
}

fn assignment(a: GroupAssignment, joined: bool) -> frame::GroupAssignment {
    frame::GroupAssignment {
        joined,
        generation: a.generation,
        partitions: a.partitions,
        committed: a
            .committed
            .into_iter()
            .map(|(partition, offset)| PartitionCommit { partition, offset })
            .collect(),
        // At most MAX_MEMBERS (asserted above to fit the wire's bound, far below u32::MAX).
        members: u32::try_from(a.members).unwrap_or(u32::MAX),
        session_timeout_ms: a.session_timeout_ms,
    }
}

fn group_info(g: GroupStatus) -> frame::GroupInfo {
    frame::GroupInfo {
        name: g.name,
        generation: g.generation,
        members: g
            .members
            .into_iter()
            .map(|m| frame::GroupMember {
                id: m.id,
                partitions: m.partitions,
                expires_at_ms: m.expires_at_ms,
            })
            .collect(),
        partitions: g
            .partitions
            .into_iter()
            .map(|p| frame::PartitionLag {
                partition: p.partition,
                owner: p.owner,
                committed: p.committed,
                end_offset: p.end_offset,
                lag: p.lag,
            })
            .collect(),
    }
}
