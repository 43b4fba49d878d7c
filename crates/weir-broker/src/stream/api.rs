//! The public stream API of [`Broker`]: streams, append, read, tailing, consumer groups.

use std::sync::Arc;

use weir_proto::limits::{
    MAX_BATCH_MESSAGES, MAX_HEADERS, MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_BYTES, MAX_KEY_BYTES,
};
use weir_store::{Durable, LogConfig, Retention, StoreName};

use super::{
    GroupAssignment, GroupStatus, Groups, NewRecord, ReadFrom, Stream, StreamAppendOutcome,
    StreamBatch, StreamConfig, StreamStats, DEFAULT_SESSION_TIMEOUT_MS, MAX_READ_RECORDS,
    MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS,
};
use crate::broker::wait;
use crate::meta::MetaChange;
use crate::{Broker, BrokerError};

fn stream_base(name: &str) -> Result<StoreName, BrokerError> {
    Ok(StoreName::parse("streams")?.join(name)?)
}

fn stream_not_found(name: &str) -> BrokerError {
    BrokerError::NotFound {
        kind: "stream",
        name: name.to_string(),
    }
}

fn invalid(m: String) -> BrokerError {
    BrokerError::InvalidArgument(m)
}

/// Checks an append batch before anything is stored.
fn check_records(records: &[NewRecord], max_body_bytes: usize) -> Result<(), BrokerError> {
    if records.len() > MAX_BATCH_MESSAGES {
        return Err(BrokerError::TooLarge(format!(
            "batch of {} records exceeds the limit of {MAX_BATCH_MESSAGES}",
            records.len()
        )));
    }
    for (i, r) in records.iter().enumerate() {
        if r.key.as_ref().is_some_and(|k| k.len() > MAX_KEY_BYTES) {
            return Err(invalid(format!(
                "record {i}: key longer than {MAX_KEY_BYTES} bytes"
            )));
        }
        if r.headers.len() > MAX_HEADERS {
            return Err(invalid(format!(
                "record {i}: more than {MAX_HEADERS} headers"
            )));
        }
        for (name, value) in &r.headers {
            if name.is_empty() || name.len() > MAX_HEADER_NAME_BYTES {
                return Err(invalid(format!(
                    "record {i}: header names must be 1..={MAX_HEADER_NAME_BYTES} bytes"
                )));
            }
            if value.len() > MAX_HEADER_VALUE_BYTES {
                return Err(invalid(format!(
                    "record {i}: header {name:?} longer than {MAX_HEADER_VALUE_BYTES} bytes"
                )));
            }
        }
        if r.body.len() > max_body_bytes {
            return Err(BrokerError::TooLarge(format!(
                "record {i}: body of {} bytes exceeds the limit of {max_body_bytes}",
                r.body.len()
            )));
        }
    }
    Ok(())
}

impl Broker {
    /// Opens every stream the meta journal knows; removes storage of deleted ones.
    pub(crate) fn open_streams(&self) -> Result<(), BrokerError> {
        let known = self.meta.lock().streams.clone();
        for leftover in self.store.list(&StoreName::parse("streams")?)? {
            if !known.contains_key(&leftover) {
                tracing::info!(stream = %leftover, "removing storage of a deleted stream");
                self.store.remove(&stream_base(&leftover)?)?;
            }
        }
        for (name, config) in known {
            let s = self.open_stream(&name, config)?;
            self.streams.write().insert(name, Arc::new(s));
        }
        Ok(())
    }

    fn open_stream(&self, name: &str, config: StreamConfig) -> Result<Stream, BrokerError> {
        let base = stream_base(name)?;
        let log_config = LogConfig {
            retention: Retention {
                max_age_ms: config.retention_ms,
                max_bytes: config.retention_bytes,
            },
            ..self.options.log
        };
        let partitions = (0..config.partitions)
            .map(|p| {
                Ok(self
                    .store
                    .open_log(&base.join(&format!("p{p}"))?, &log_config)?)
            })
            .collect::<Result<Vec<_>, BrokerError>>()?;
        let journal = self
            .store
            .open_journal(&base.join("groups")?, self.options.log.fsync)?;
        Ok(Stream::new(
            name.to_string(),
            config,
            partitions,
            Groups::open(journal)?,
        ))
    }

    fn stream(&self, name: &str) -> Result<Arc<Stream>, BrokerError> {
        BrokerError::check_name(name)?;
        self.streams
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| stream_not_found(name))
    }

    /// Retention, group session expiry and group snapshots for every stream.
    pub(crate) fn tick_streams(&self, now_ms: u64) {
        let streams: Vec<Arc<Stream>> = self.streams.read().values().cloned().collect();
        for s in streams {
            s.tick(now_ms);
            let mut groups = s.groups.lock();
            groups.expire(now_ms);
            if let Err(e) = groups.maybe_snapshot(self.options.snapshot_every_bytes) {
                tracing::warn!(stream = %s.name, error = %e, "group snapshot failed");
            }
        }
    }

    /// Creates a stream or updates its retention (the partition count cannot change: 409).
    /// Returns its stats and whether it was created. Durable before it returns.
    pub fn create_stream(
        &self,
        name: &str,
        config: StreamConfig,
    ) -> Result<(StreamStats, bool), BrokerError> {
        BrokerError::check_name(name)?;
        config.validate()?;
        let mut meta = self.meta.lock();
        let existing = meta.streams.get(name).copied();
        if let Some(old) = existing {
            if old.partitions != config.partitions {
                return Err(BrokerError::Conflict(format!(
                    "stream {name} has {} partitions; the count cannot change",
                    old.partitions
                )));
            }
        } else {
            self.store.remove(&stream_base(name)?)?;
        }
        wait(meta.change(vec![MetaChange::PutStream(name.to_string(), config)])?)?;
        match existing {
            None => {
                let s = self.open_stream(name, config)?;
                self.streams.write().insert(name.to_string(), Arc::new(s));
            }
            Some(_) => *self.stream(name)?.config.write() = config,
        }
        drop(meta);
        Ok((self.stream(name)?.stats(), existing.is_none()))
    }

    /// Deletes a stream, its records and its consumer groups.
    pub fn delete_stream(&self, name: &str) -> Result<(), BrokerError> {
        BrokerError::check_name(name)?;
        let mut meta = self.meta.lock();
        if !meta.streams.contains_key(name) {
            return Err(stream_not_found(name));
        }
        wait(meta.change(vec![MetaChange::DeleteStream(name.to_string())])?)?;
        let s = self.streams.write().remove(name);
        drop(s);
        self.store.remove(&stream_base(name)?)?;
        Ok(())
    }

    /// A stream's configuration, partitions and groups.
    pub fn stream_stats(&self, name: &str) -> Result<StreamStats, BrokerError> {
        Ok(self.stream(name)?.stats())
    }

    /// Every stream's stats, by name.
    pub fn list_streams(&self) -> Vec<StreamStats> {
        let streams: Vec<Arc<Stream>> = self.streams.read().values().cloned().collect();
        let mut out: Vec<StreamStats> = streams.iter().map(|s| s.stats()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Appends records; each key picks its partition ([`super::partition_for_key`]). Returns
    /// `(partition, offset)` per record; await `durable` before confirming.
    pub fn append_stream(
        &self,
        name: &str,
        records: Vec<NewRecord>,
    ) -> Result<StreamAppendOutcome, BrokerError> {
        let s = self.stream(name)?;
        check_records(&records, self.options.max_body_bytes)?;
        if records.is_empty() {
            return Ok(StreamAppendOutcome {
                positions: Vec::new(),
                durable: Durable::ready(Ok(())),
            });
        }
        s.append(self.clock.now_ms(), &records)
    }

    /// Reads up to `max` (1..=[`MAX_READ_RECORDS`]) durable records of a partition, by offset or
    /// timestamp. Never waits; see [`Broker::wait_stream`].
    pub fn read_stream(
        &self,
        name: &str,
        partition: u32,
        from: ReadFrom,
        max: usize,
    ) -> Result<StreamBatch, BrokerError> {
        if !(1..=MAX_READ_RECORDS).contains(&max) {
            return Err(invalid(format!("max {max} outside 1..={MAX_READ_RECORDS}")));
        }
        self.stream(name)?.read(partition, from, max)
    }

    /// Resolves once the partition holds a readable record at `offset` (for tailing reads).
    pub fn wait_stream(
        &self,
        name: &str,
        partition: u32,
        offset: u64,
    ) -> Result<Durable, BrokerError> {
        Ok(self.stream(name)?.log(partition)?.wait_durable(offset))
    }

    /// Joins a consumer group (or refreshes the session of a member already in it) and returns
    /// the member's partitions; `true` when it was not a member.
    pub fn join_group(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        session_timeout_ms: Option<u64>,
    ) -> Result<(GroupAssignment, bool), BrokerError> {
        let s = self.stream(stream)?;
        BrokerError::check_name(group)?;
        BrokerError::check_name(member)?;
        let timeout = session_timeout_ms.unwrap_or(DEFAULT_SESSION_TIMEOUT_MS);
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&timeout) {
            return Err(invalid(format!(
                "session_timeout_ms must be within {MIN_SESSION_TIMEOUT_MS}..={MAX_SESSION_TIMEOUT_MS}"
            )));
        }
        let n = s.partitions.len() as u32;
        let now = self.clock.now_ms();
        let out = s.groups.lock().join(group, member, timeout, n, now);
        out
    }

    /// Keeps a member's session alive and returns its current partitions; 404 once the session
    /// ended (the member must join again).
    pub fn heartbeat(
        &self,
        stream: &str,
        group: &str,
        member: &str,
    ) -> Result<GroupAssignment, BrokerError> {
        let s = self.stream(stream)?;
        BrokerError::check_name(group)?;
        BrokerError::check_name(member)?;
        let n = s.partitions.len() as u32;
        let now = self.clock.now_ms();
        let out = s.groups.lock().heartbeat(group, member, n, now);
        out
    }

    /// Leaves a group; the member's partitions go to the others at once.
    pub fn leave_group(&self, stream: &str, group: &str, member: &str) -> Result<(), BrokerError> {
        let s = self.stream(stream)?;
        BrokerError::check_name(group)?;
        BrokerError::check_name(member)?;
        let now = self.clock.now_ms();
        let out = s.groups.lock().leave(group, member, now);
        out
    }

    /// Commits offsets for a group (each the next offset to process). With `member`, the member
    /// must own every partition (and be at `generation` when given), else 409. Await `durable`.
    pub fn commit_offsets(
        &self,
        stream: &str,
        group: &str,
        member: Option<(&str, Option<u64>)>,
        offsets: &[(u32, u64)],
    ) -> Result<Durable, BrokerError> {
        let s = self.stream(stream)?;
        BrokerError::check_name(group)?;
        if let Some((m, _)) = member {
            BrokerError::check_name(m)?;
        }
        if offsets.is_empty() || offsets.len() > s.partitions.len() {
            return Err(invalid(format!(
                "offsets must name 1..={} partitions",
                s.partitions.len()
            )));
        }
        for (p, o) in offsets {
            let end = s.log(*p)?.stats().next_offset;
            if *o > end {
                return Err(invalid(format!(
                    "offset {o} is past the end of partition {p} ({end})"
                )));
            }
        }
        let now = self.clock.now_ms();
        let out = s.groups.lock().commit(group, member, offsets, now);
        out
    }

    /// A group's members, generation, and per-partition owner, committed offset and lag.
    pub fn group_status(&self, stream: &str, group: &str) -> Result<GroupStatus, BrokerError> {
        let s = self.stream(stream)?;
        BrokerError::check_name(group)?;
        let bounds: Vec<(u64, u64)> = s
            .partitions
            .iter()
            .map(|l| {
                let st = l.stats();
                (st.start_offset, st.durable_offset)
            })
            .collect();
        let now = self.clock.now_ms();
        let out = s.groups.lock().status(group, &bounds, now);
        out
    }

    /// Deletes a group and its committed offsets. Durable before it returns.
    pub fn delete_group(&self, stream: &str, group: &str) -> Result<(), BrokerError> {
        let s = self.stream(stream)?;
        BrokerError::check_name(group)?;
        let d = s.groups.lock().delete(group)?;
        wait(d)
    }
}
