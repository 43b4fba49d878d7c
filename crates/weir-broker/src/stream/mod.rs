//! Streams: partitioned append-only logs (`streams/<s>/p<N>`) with retention by age and size,
//! reads by offset or timestamp, and consumer groups (`group.rs`, journal `streams/<s>/groups`).
//!
//! A record's partition is `xxh3_64(key) % partitions` (XXH3, 64-bit, seed 0, over the key's
//! bytes): stable across restarts, versions and machines. Records without a key are spread
//! round-robin. Within a partition order is strict; timestamps never decrease (a clock that steps
//! back is clamped to the partition's last timestamp), so seeking by time is exact.

mod api;
mod batch;
mod group;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use weir_store::{Durable, Log, StoreError};

use crate::codec::{put_varint, Reader};
use crate::BrokerError;

pub(crate) use group::Groups;
pub use group::{
    GroupAssignment, GroupStatus, MemberStatus, PartitionLag, DEFAULT_SESSION_TIMEOUT_MS,
    MAX_GROUPS, MAX_MEMBERS, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS,
};

/// Most partitions a stream may have.
pub const MAX_PARTITIONS: u32 = 256;
/// Most records one read returns.
pub const MAX_READ_RECORDS: usize = 1000;
/// About the most payload bytes one read returns (at least one record is always returned).
pub const MAX_READ_BYTES: usize = 8 * 1024 * 1024;

/// A stream's configuration. `partitions` is fixed at creation; retention may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Number of partitions (1..=[`MAX_PARTITIONS`], default 1).
    pub partitions: u32,
    /// Delete whole segments whose newest record is older than this many milliseconds.
    pub retention_ms: Option<u64>,
    /// Delete the oldest whole segments of a partition while it is larger than this.
    pub retention_bytes: Option<u64>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
        }
    }
}

fn put_opt(out: &mut Vec<u8>, v: Option<u64>) {
    put_varint(out, v.map_or(0, |v| v.saturating_add(1)));
}

impl StreamConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), BrokerError> {
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(BrokerError::InvalidArgument(format!(
                "partitions must be within 1..={MAX_PARTITIONS}"
            )));
        }
        if self.retention_ms == Some(0) || self.retention_bytes == Some(0) {
            return Err(BrokerError::InvalidArgument(
                "retention_ms and retention_bytes must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(1); // version
        put_varint(out, u64::from(self.partitions));
        put_opt(out, self.retention_ms);
        put_opt(out, self.retention_bytes);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<StreamConfig, StoreError> {
        let version = r.u8()?;
        if version != 1 {
            return Err(r.error(format!("unknown stream config version {version}")));
        }
        Ok(StreamConfig {
            partitions: r.varint_u32()?,
            retention_ms: r.varint()?.checked_sub(1),
            retention_bytes: r.varint()?.checked_sub(1),
        })
    }
}

/// The partition of a key among `partitions`: `xxh3_64(key) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    // The remainder is below `partitions`, a u32: the cast cannot truncate.
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(partitions.max(1))) as u32
}

/// A record to append to a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Picks the partition; `None` spreads records round-robin.
    pub key: Option<Bytes>,
    /// User headers.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Bytes,
}

/// A record read from a stream partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// Its offset in the partition.
    pub offset: u64,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Its key.
    pub key: Option<Bytes>,
    /// User headers.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Bytes,
}

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// At this offset (below the partition's start: at its start).
    Offset(u64),
    /// At the first record whose timestamp is at or after this time (ms since the epoch).
    Timestamp(u64),
}

/// The result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamBatch {
    /// Records in offset order (possibly none).
    pub records: Vec<StreamRecord>,
    /// Where the next read continues.
    pub next_offset: u64,
}

/// The result of an append: await `durable` before confirming.
#[derive(Debug)]
pub struct StreamAppendOutcome {
    /// `(partition, offset)` of every record, in request order.
    pub positions: Vec<(u32, u64)>,
    /// Resolves once every record is durable (then readable).
    pub durable: Durable,
}

/// One partition's bounds and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionStats {
    /// The partition number.
    pub partition: u32,
    /// The lowest offset retained.
    pub start_offset: u64,
    /// One past the highest durable (readable) offset.
    pub end_offset: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Segments on disk.
    pub segments: u64,
}

/// A stream's configuration, partitions and consumer groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStats {
    /// The stream name.
    pub name: String,
    /// Its configuration.
    pub config: StreamConfig,
    /// Every partition.
    pub partitions: Vec<PartitionStats>,
    /// Names of its consumer groups.
    pub groups: Vec<String>,
}

/// A stream bound to its partition logs and group journal.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) name: String,
    pub(crate) config: RwLock<StreamConfig>,
    pub(crate) partitions: Vec<Arc<dyn Log>>,
    /// Per partition, the last timestamp appended; the lock also orders appends.
    last_ts: Vec<Mutex<u64>>,
    round_robin: AtomicU64,
    /// The size limit the logs were opened with (the store applies it exactly).
    opened_retention_bytes: Option<u64>,
    pub(crate) groups: Mutex<Groups>,
}

impl Stream {
    pub(crate) fn new(
        name: String,
        config: StreamConfig,
        partitions: Vec<Arc<dyn Log>>,
        groups: Groups,
    ) -> Stream {
        let last_ts = partitions.iter().map(|_| Mutex::new(0)).collect();
        Stream {
            name,
            config: RwLock::new(config),
            partitions,
            last_ts,
            round_robin: AtomicU64::new(0),
            opened_retention_bytes: config.retention_bytes,
            groups: Mutex::new(groups),
        }
    }

    pub(crate) fn log(&self, partition: u32) -> Result<&Arc<dyn Log>, BrokerError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| BrokerError::NotFound {
                kind: "partition",
                name: format!("{}/{partition}", self.name),
            })
    }

    /// Appends a validated batch: one append per partition touched, request order kept within
    /// each partition, the records of one partition stored as one batch record (`batch.rs`).
    /// Atomic per partition; should a later partition refuse (busy), the
    /// partitions appended before it keep their records and the call reports the error.
    pub(crate) fn append(
        &self,
        now_ms: u64,
        records: &[NewRecord],
    ) -> Result<StreamAppendOutcome, BrokerError> {
        let n = self.partitions.len() as u32;
        let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let p = match &r.key {
                Some(k) => partition_for_key(k, n),
                // The remainder is below n: the cast cannot truncate.
                None => (self.round_robin.fetch_add(1, Ordering::Relaxed) % u64::from(n)) as u32,
            };
            by_partition.entry(p).or_default().push(i);
        }
        let mut positions = vec![(0u32, 0u64); records.len()];
        let mut durables = Vec::with_capacity(by_partition.len());
        for (p, idx) in by_partition {
            let log = self.log(p)?;
            let mut last = self.last_ts[p as usize].lock();
            let ts = now_ms.max(*last);
            let group: Vec<&NewRecord> = idx.iter().map(|i| &records[*i]).collect();
            let (stored, spans) = batch::pack(&group, ts);
            let appended = log.append_spanning(&stored, &spans)?;
            *last = ts;
            drop(last);
            for (k, i) in idx.iter().enumerate() {
                positions[*i] = (p, appended.first_offset + k as u64);
            }
            durables.push(appended.durable);
        }
        Ok(StreamAppendOutcome {
            positions,
            durable: Durable::all(durables),
        })
    }

    /// Reads up to `max` durable records of one partition.
    pub(crate) fn read(
        &self,
        partition: u32,
        from: ReadFrom,
        max: usize,
    ) -> Result<StreamBatch, BrokerError> {
        let log = self.log(partition)?;
        let stats = log.stats();
        let offset = match from {
            ReadFrom::Offset(o) if o > stats.next_offset => {
                return Err(BrokerError::InvalidArgument(format!(
                    "offset {o} is past the end of partition {partition} ({})",
                    stats.next_offset
                )))
            }
            ReadFrom::Offset(o) => o,
            ReadFrom::Timestamp(t) => log.offset_for_timestamp(t)?.unwrap_or(stats.durable_offset),
        };
        let mut from = offset.max(stats.start_offset);
        let read = match log.read(from, max, MAX_READ_BYTES) {
            // Retention moved the start between `stats` and the read: start again from it.
            Err(StoreError::OffsetOutOfRange { start, .. }) => {
                from = start;
                log.read(from, max, MAX_READ_BYTES)?
            }
            other => other?,
        };
        let mut records = Vec::with_capacity(max.min(read.len().saturating_mul(64)));
        for r in read {
            let at = r.offset;
            batch::unpack(r, from, max, &mut records).map_err(|e| StoreError::Corrupt {
                file: format!("stream {} partition {partition}", self.name),
                position: at,
                reason: format!("record at offset {at}: {e}"),
            })?;
            if records.len() >= max {
                break;
            }
        }
        let next_offset = records.last().map_or(from, |r| r.offset + 1);
        Ok(StreamBatch {
            records,
            next_offset,
        })
    }

    /// Applies retention (by age exactly, through the low-water mark; by size through the
    /// log's own rule set at open, or, for a limit changed since, an estimate that assumes
    /// records of the partition's mean size) and reclaims. Only whole segments ever go.
    pub(crate) fn tick(&self, now_ms: u64) {
        let config = *self.config.read();
        for (p, log) in self.partitions.iter().enumerate() {
            let stats = log.stats();
            let mut mark = None;
            if let Some(age) = config.retention_ms {
                let cutoff = now_ms.saturating_sub(age);
                match log.offset_for_timestamp(cutoff) {
                    Ok(Some(o)) => mark = Some(o),
                    Ok(None) => mark = Some(stats.durable_offset),
                    Err(e) => {
                        tracing::warn!(stream = %self.name, partition = p, error = %e, "seeking by time failed")
                    }
                }
            }
            let changed = config.retention_bytes != self.opened_retention_bytes;
            if let Some(max) = config
                .retention_bytes
                .filter(|m| changed && stats.bytes > *m)
            {
                // Records to drop, assuming records of the partition's mean size.
                let count = stats.durable_offset.saturating_sub(stats.start_offset);
                let excess = u128::from(stats.bytes - max) * u128::from(count)
                    / u128::from(stats.bytes.max(1));
                let o = stats
                    .start_offset
                    .saturating_add(u64::try_from(excess).unwrap_or(u64::MAX));
                mark = Some(mark.map_or(o, |m: u64| m.max(o)));
            }
            let result = match mark {
                Some(m) => log.set_low_water(m).and_then(|()| log.reclaim(now_ms)),
                None => log.reclaim(now_ms),
            };
            if let Err(e) = result {
                tracing::warn!(stream = %self.name, partition = p, error = %e, "retention failed");
            }
        }
    }

    pub(crate) fn stats(&self) -> StreamStats {
        StreamStats {
            name: self.name.clone(),
            config: *self.config.read(),
            partitions: self
                .partitions
                .iter()
                .enumerate()
                .map(|(p, log)| {
                    let s = log.stats();
                    PartitionStats {
                        // At most MAX_PARTITIONS partitions: the index fits in u32.
                        partition: p as u32,
                        start_offset: s.start_offset,
                        end_offset: s.durable_offset,
                        bytes: s.bytes,
                        segments: s.segments,
                    }
                })
                .collect(),
            groups: self.groups.lock().names(),
        }
    }
}
