//! Stream and consumer-group wire forms (protocol version 3) with their codecs: stream options
//! and statistics, records to append and records read, read positions, group assignments and
//! group status. Decoding enforces every limit of [`crate::limits`].

use std::collections::BTreeMap;

use bytes::Bytes;

use super::queue::{decode_headers, encode_headers};
use super::types::headers_len;
use super::wire::{DecodeError, EncodeError, Reader, Writer};
use crate::limits::{
    MAX_BATCH_MESSAGES, MAX_BODY_BYTES_CEILING, MAX_GROUP_MEMBERS, MAX_KEY_BYTES, MAX_READ_RECORDS,
    MAX_STREAM_GROUPS, MAX_STREAM_PARTITIONS,
};

type Enc = Result<(), EncodeError>;

/// A stream's settings in `CreateStream`. `None` keeps the default (new stream: 1 partition, no
/// retention) or the current value; the partition count of an existing stream cannot change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Number of partitions, 1–256.
    pub partitions: Option<u32>,
    /// Delete whole segments whose newest record is older than this, in milliseconds (≥ 1).
    pub retention_ms: Option<u64>,
    /// Delete the oldest whole segments of a partition while it is larger than this (≥ 1).
    pub retention_bytes: Option<u64>,
}

/// One partition's bounds and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition number.
    pub partition: u32,
    /// The lowest offset retained.
    pub start_offset: u64,
    /// One past the highest readable offset.
    pub end_offset: u64,
    /// Bytes on disk.
    pub disk_bytes: u64,
    /// Segments on disk.
    pub segments: u64,
}

/// A stream's settings, partitions and consumer groups: the answer to `CreateStream` and
/// `StreamStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's name.
    pub name: String,
    /// True when a create request made the stream.
    pub created: bool,
    /// Its partition count.
    pub partitions: u32,
    /// Retention by age, in milliseconds.
    pub retention_ms: Option<u64>,
    /// Retention by size per partition, in bytes.
    pub retention_bytes: Option<u64>,
    /// Every partition's bounds.
    pub partition_stats: Vec<PartitionInfo>,
    /// Its consumer groups' names.
    pub groups: Vec<String>,
}

/// One record of an `Append` batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutRecord {
    /// Picks the partition (`xxh3_64(key) % partitions`); `None` spreads records round-robin.
    pub key: Option<Bytes>,
    /// String headers (as a message's).
    pub headers: BTreeMap<String, String>,
    /// The body (≤ the server's body limit).
    pub body: Bytes,
}

impl OutRecord {
    /// Bytes this record takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let key = 1 + self.key.as_ref().map_or(0, |k| 2 + k.len());
        key + headers_len(&self.headers) + 4 + self.body.len()
    }
}

/// A position in a stream: a partition and an offset in it (where an appended record went, or a
/// committed offset: the next record to process).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionOffset {
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
}

/// Where a `Read` starts (`u8` kind 0 offset / 1 timestamp, then `u64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// At this offset (below the partition's start: at its start; past its end: an error).
    Offset(u64),
    /// At the first record whose timestamp is at or after this time (ms since the Unix epoch).
    Timestamp(u64),
}

impl Default for ReadFrom {
    fn default() -> Self {
        ReadFrom::Offset(0)
    }
}

/// A record read from a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRecord {
    /// Its offset in the partition.
    pub offset: u64,
    /// When it was appended, in milliseconds since the Unix epoch (never decreasing within a
    /// partition).
    pub timestamp_ms: u64,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its headers.
    pub headers: BTreeMap<String, String>,
    /// Its body.
    pub body: Bytes,
}

impl StreamRecord {
    /// Bytes this record takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let key = 1 + self.key.as_ref().map_or(0, |k| 2 + k.len());
        8 + 8 + key + headers_len(&self.headers) + 4 + self.body.len()
    }
}

/// A committed offset, or none yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionCommit {
    /// The partition.
    pub partition: u32,
    /// The next offset to process; `None` when nothing was committed (start where the
    /// application chooses).
    pub offset: Option<u64>,
}

/// A member's partitions: the answer to `JoinGroup` and `Heartbeat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupAssignment {
    /// True when `JoinGroup` added the member (false: it was a member and is refreshed).
    pub joined: bool,
    /// The group's generation, bumped on every membership change.
    pub generation: u64,
    /// The partitions this member owns, ascending.
    pub partitions: Vec<u32>,
    /// The committed offset of each owned partition.
    pub committed: Vec<PartitionCommit>,
    /// Live members of the group.
    pub members: u32,
    /// The member's session timeout, in milliseconds.
    pub session_timeout_ms: u64,
}

/// A live member of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id.
    pub id: String,
    /// Its partitions.
    pub partitions: Vec<u32>,
    /// When its session ends unless it heartbeats, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// One partition's owner, committed offset and lag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: u32,
    /// The live member owning it (`None` only while the group has no member).
    pub owner: Option<String>,
    /// The committed offset, if any.
    pub committed: Option<u64>,
    /// One past the partition's last readable record.
    pub end_offset: u64,
    /// Records not yet committed.
    pub lag: u64,
}

/// A group's members, generation and lag per partition: the answer to `GroupStatus`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Its generation.
    pub generation: u64,
    /// Live members, by id.
    pub members: Vec<GroupMember>,
    /// Every partition of the stream.
    pub partitions: Vec<PartitionLag>,
}

impl GroupInfo {
    /// Records not yet committed, over every partition.
    pub fn lag(&self) -> u64 {
        self.partitions
            .iter()
            .fold(0u64, |acc, p| acc.saturating_add(p.lag))
    }
}

/// The largest partition number.
const MAX_PARTITION: u64 = MAX_STREAM_PARTITIONS as u64 - 1;

pub(super) fn decode_partition(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    r.u32_in("partition", 0, MAX_PARTITION)
}

fn encode_partitions(what: &'static str, ps: &[u32], w: &mut Writer<'_>) -> Enc {
    w.count32(what, ps.len())?;
    ps.iter().for_each(|p| w.u32(*p));
    Ok(())
}

fn decode_partitions(what: &'static str, r: &mut Reader<'_>) -> Result<Vec<u32>, DecodeError> {
    let n = r.count32(what, MAX_STREAM_PARTITIONS as usize)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(decode_partition(r)?);
    }
    Ok(out)
}

pub(super) fn encode_stream_options(o: &StreamOptions, w: &mut Writer<'_>) {
    w.opt_u64(o.partitions.map(u64::from));
    w.opt_u64(o.retention_ms);
    w.opt_u64(o.retention_bytes);
}

pub(super) fn decode_stream_options(r: &mut Reader<'_>) -> Result<StreamOptions, DecodeError> {
    Ok(StreamOptions {
        partitions: r
            .opt_u64_in("partitions", 1, u64::from(MAX_STREAM_PARTITIONS))?
            // In range 1..=256, checked just above.
            .map(|p| p as u32),
        retention_ms: r.opt_u64_in("retention_ms", 1, u64::MAX)?,
        retention_bytes: r.opt_u64_in("retention_bytes", 1, u64::MAX)?,
    })
}

pub(super) fn encode_stream_info(s: &StreamInfo, w: &mut Writer<'_>) -> Enc {
    w.bytes16("stream", s.name.as_bytes())?;
    w.bool(s.created);
    w.u32(s.partitions);
    w.opt_u64(s.retention_ms);
    w.opt_u64(s.retention_bytes);
    w.count32("partition stats", s.partition_stats.len())?;
    for p in &s.partition_stats {
        w.u32(p.partition);
        w.u64(p.start_offset);
        w.u64(p.end_offset);
        w.u64(p.disk_bytes);
        w.u64(p.segments);
    }
    w.count32("groups", s.groups.len())?;
    s.groups
        .iter()
        .try_for_each(|g| w.bytes16("group", g.as_bytes()))
}

pub(super) fn decode_stream_info(r: &mut Reader<'_>) -> Result<StreamInfo, DecodeError> {
    let name = r.name("stream")?;
    let created = r.bool("created")?;
    let partitions = r.u32_in("partitions", 1, u64::from(MAX_STREAM_PARTITIONS))?;
    let retention_ms = r.opt_u64_in("retention_ms", 1, u64::MAX)?;
    let retention_bytes = r.opt_u64_in("retention_bytes", 1, u64::MAX)?;
    let n = r.count32("partition stats", MAX_STREAM_PARTITIONS as usize)?;
    let mut partition_stats = Vec::with_capacity(n);
    for _ in 0..n {
        partition_stats.push(PartitionInfo {
            partition: decode_partition(r)?,
            start_offset: r.u64("start_offset")?,
            end_offset: r.u64("end_offset")?,
            disk_bytes: r.u64("disk_bytes")?,
            segments: r.u64("segments")?,
        });
    }
    let n = r.count32("groups", MAX_STREAM_GROUPS)?;
    let mut groups = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        groups.push(r.name("group")?);
    }
    Ok(StreamInfo {
        name,
        created,
        partitions,
        retention_ms,
        retention_bytes,
        partition_stats,
        groups,
    })
}

pub(super) fn encode_records(records: &[OutRecord], w: &mut Writer<'_>) -> Enc {
    w.count32("records", records.len())?;
    for rec in records {
        w.opt_bytes16("key", rec.key.as_deref())?;
        encode_headers(&rec.headers, w)?;
        w.bytes32("body", &rec.body)?;
    }
    Ok(())
}

pub(super) fn decode_records(r: &mut Reader<'_>) -> Result<Vec<OutRecord>, DecodeError> {
    let n = r.count32("records", MAX_BATCH_MESSAGES)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        out.push(OutRecord {
            key: r.opt_bytes16("key", MAX_KEY_BYTES)?,
            headers: decode_headers(r)?,
            body: Bytes::copy_from_slice(r.bytes32("body", 0, MAX_BODY_BYTES_CEILING)?),
        });
    }
    Ok(out)
}

/// `list<(u32 partition, u64 offset)>` of at most `max`.
pub(super) fn encode_positions(
    what: &'static str,
    ps: &[PartitionOffset],
    w: &mut Writer<'_>,
) -> Enc {
    w.count32(what, ps.len())?;
    for p in ps {
        w.u32(p.partition);
        w.u64(p.offset);
    }
    Ok(())
}

pub(super) fn decode_positions(
    what: &'static str,
    max: usize,
    r: &mut Reader<'_>,
) -> Result<Vec<PartitionOffset>, DecodeError> {
    let n = r.count32(what, max)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        out.push(PartitionOffset {
            partition: decode_partition(r)?,
            offset: r.u64("offset")?,
        });
    }
    Ok(out)
}

pub(super) fn encode_read_from(from: ReadFrom, w: &mut Writer<'_>) {
    let (kind, value) = match from {
        ReadFrom::Offset(o) => (0, o),
        ReadFrom::Timestamp(t) => (1, t),
    };
    w.u8(kind);
    w.u64(value);
}

pub(super) fn decode_read_from(r: &mut Reader<'_>) -> Result<ReadFrom, DecodeError> {
    let kind = r.u8_in("read from", 1)?;
    let value = r.u64("read position")?;
    Ok(if kind == 0 {
        ReadFrom::Offset(value)
    } else {
        ReadFrom::Timestamp(value)
    })
}

pub(super) fn encode_stream_records(records: &[StreamRecord], w: &mut Writer<'_>) -> Enc {
    w.count32("records", records.len())?;
    for rec in records {
        w.u64(rec.offset);
        w.u64(rec.timestamp_ms);
        w.opt_bytes16("key", rec.key.as_deref())?;
        encode_headers(&rec.headers, w)?;
        w.bytes32("body", &rec.body)?;
    }
    Ok(())
}

pub(super) fn decode_stream_records(r: &mut Reader<'_>) -> Result<Vec<StreamRecord>, DecodeError> {
    let n = r.count32("records", MAX_READ_RECORDS)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        out.push(StreamRecord {
            offset: r.u64("offset")?,
            timestamp_ms: r.u64("timestamp_ms")?,
            key: r.opt_bytes16("key", MAX_KEY_BYTES)?,
            headers: decode_headers(r)?,
            body: Bytes::copy_from_slice(r.bytes32("body", 0, MAX_BODY_BYTES_CEILING)?),
        });
    }
    Ok(out)
}

pub(super) fn encode_assignment(a: &GroupAssignment, w: &mut Writer<'_>) -> Enc {
    w.bool(a.joined);
    w.u64(a.generation);
    encode_partitions("partitions", &a.partitions, w)?;
    w.count32("committed", a.committed.len())?;
    for c in &a.committed {
        w.u32(c.partition);
        w.opt_u64(c.offset);
    }
    w.u32(a.members);
    w.u64(a.session_timeout_ms);
    Ok(())
}

pub(super) fn decode_assignment(r: &mut Reader<'_>) -> Result<GroupAssignment, DecodeError> {
    let joined = r.bool("joined")?;
    let generation = r.u64("generation")?;
    let partitions = decode_partitions("partitions", r)?;
    let n = r.count32("committed", MAX_STREAM_PARTITIONS as usize)?;
    let mut committed = Vec::with_capacity(n);
    for _ in 0..n {
        committed.push(PartitionCommit {
            partition: decode_partition(r)?,
            offset: r.opt_u64_in("committed offset", 0, u64::MAX)?,
        });
    }
    Ok(GroupAssignment {
        joined,
        generation,
        partitions,
        committed,
        members: r.u32_in("members", 0, MAX_GROUP_MEMBERS as u64)?,
        session_timeout_ms: r.u64("session_timeout_ms")?,
    })
}

pub(super) fn encode_group_info(g: &GroupInfo, w: &mut Writer<'_>) -> Enc {
    w.bytes16("group", g.name.as_bytes())?;
    w.u64(g.generation);
    w.count32("members", g.members.len())?;
    for m in &g.members {
        w.bytes16("member", m.id.as_bytes())?;
        encode_partitions("member partitions", &m.partitions, w)?;
        w.u64(m.expires_at_ms);
    }
    w.count32("partitions", g.partitions.len())?;
    for p in &g.partitions {
        w.u32(p.partition);
        w.opt_str("owner", p.owner.as_deref())?;
        w.opt_u64(p.committed);
        w.u64(p.end_offset);
        w.u64(p.lag);
    }
    Ok(())
}

pub(super) fn decode_group_info(r: &mut Reader<'_>) -> Result<GroupInfo, DecodeError> {
    let name = r.name("group")?;
    let generation = r.u64("generation")?;
    let n = r.count32("members", MAX_GROUP_MEMBERS)?;
    let mut members = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        members.push(GroupMember {
            id: r.name("member")?,
            partitions: decode_partitions("member partitions", r)?,
            expires_at_ms: r.u64("expires_at_ms")?,
        });
    }
    let n = r.count32("partitions", MAX_STREAM_PARTITIONS as usize)?;
    let mut partitions = Vec::with_capacity(n);
    for _ in 0..n {
        partitions.push(PartitionLag {
            partition: decode_partition(r)?,
            owner: r.opt_name("owner")?,
            committed: r.opt_u64_in("committed", 0, u64::MAX)?,
            end_offset: r.u64("end_offset")?,
            lag: r.u64("lag")?,
        });
    }
    Ok(GroupInfo {
        name,
        generation,
        members,
        partitions,
    })
}
