//! [`GroupConsumer`]: a member of a stream's consumer group. It joins, heartbeats in the
//! background (a third of the session timeout), follows reassignments (and joins again when its
//! session ended), reads its partitions with long polls, commits offsets fenced by its
//! generation, and leaves on [`GroupConsumer::close`] or drop.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use weir_proto::frame::Payload;
use weir_proto::limits::{MAX_READ_RECORDS, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS};

use crate::client::millis;
use crate::conn::Command;
use crate::{
    Client, ClientError, ErrorCode, GroupAssignment, PartitionOffset, ReadFrom, StreamRecord,
};

/// Where a partition nobody committed an offset for starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartAt {
    /// At the oldest record the partition retains.
    #[default]
    Earliest,
    /// At the partition's end when the member gets it: only records appended afterwards.
    Latest,
}

/// How a [`GroupConsumer`] joins and reads.
#[derive(Clone, Debug)]
pub struct GroupConsumerOptions {
    /// The session ends when no heartbeat came for this long (100 ms – 5 min); heartbeats go
    /// every third of it.
    pub session_timeout: Duration,
    /// Most records per batch (1–1000).
    pub max_records: u32,
    /// How long one round of reads waits for a first record (≤ 20 s) before looking again.
    pub poll_wait: Duration,
    /// Where a partition without a committed offset starts.
    pub start: StartAt,
}

impl Default for GroupConsumerOptions {
    fn default() -> Self {
        GroupConsumerOptions {
            session_timeout: Duration::from_secs(10),
            max_records: 100,
            poll_wait: Duration::from_secs(1),
            start: StartAt::Earliest,
        }
    }
}

/// Records of one partition, as [`GroupConsumer::next`] hands them out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupBatch {
    /// The partition.
    pub partition: u32,
    /// The records, in offset order (at least one).
    pub records: Vec<StreamRecord>,
    /// The offset after the last record: commit it once the records are processed.
    pub next_offset: u64,
    /// The group generation under which the partition was read.
    pub generation: u64,
}

/// The member's view of its assignment.
#[derive(Debug, Default)]
struct State {
    generation: u64,
    /// Owned partitions and the next offset to read in each.
    positions: BTreeMap<u32, u64>,
    /// The membership is lost for good (e.g. the stream was deleted).
    failed: Option<ClientError>,
}

/// What the consumer and its heartbeat task share.
#[derive(Debug)]
struct Shared {
    client: Client,
    stream: String,
    group: String,
    member: String,
    options: GroupConsumerOptions,
    state: Mutex<State>,
    /// Woken when the assignment changes (or the membership is lost).
    changed: Notify,
}

impl Shared {
    /// Takes `a` as the current assignment: partitions kept keep their read position (or the
    /// committed offset, if another member committed past it meanwhile); new ones start at their
    /// committed offset, or per `options.start`.
    async fn apply(&self, a: GroupAssignment) -> Result<(), ClientError> {
        let committed: BTreeMap<u32, Option<u64>> = a
            .committed
            .iter()
            .map(|c| (c.partition, c.offset))
            .collect();
        let needs_end = self.options.start == StartAt::Latest && {
            let st = self.state.lock();
            a.partitions.iter().any(|p| {
                !st.positions.contains_key(p) && committed.get(p).copied().flatten().is_none()
            })
        };
        let ends: BTreeMap<u32, u64> = if needs_end {
            let info = self.client.stream_stats(&self.stream).await?;
            info.partition_stats
                .iter()
                .map(|p| (p.partition, p.end_offset))
                .collect()
        } else {
            BTreeMap::new()
        };
        let mut st = self.state.lock();
        let positions: BTreeMap<u32, u64> = a
            .partitions
            .iter()
            .map(|&p| {
                let done = committed.get(&p).copied().flatten();
                let at = match (st.positions.get(&p), done) {
                    (Some(&local), Some(c)) => local.max(c),
                    (Some(&local), None) => local,
                    (None, Some(c)) => c,
                    (None, None) => ends.get(&p).copied().unwrap_or(0),
                };
                (p, at)
            })
            .collect();
        let moved = st.generation != a.generation || !st.positions.keys().eq(positions.keys());
        st.generation = a.generation;
        st.positions = positions;
        drop(st);
        if moved {
            tracing::debug!(
                stream = %self.stream,
                group = %self.group,
                member = %self.member,
                generation = a.generation,
                partitions = ?a.partitions,
                "group assignment"
            );
            self.changed.notify_waiters();
        }
        Ok(())
    }

    /// Heartbeats now; joins again when the session ended.
    async fn refresh(&self) -> Result<(), ClientError> {
        let c = &self.client;
        let a = match c
            .heartbeat_group(&self.stream, &self.group, &self.member)
            .await
        {
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                tracing::info!(member = %self.member, group = %self.group, "group session ended; joining again");
                let timeout = Some(self.options.session_timeout);
                c.join_group(&self.stream, &self.group, &self.member, timeout)
                    .await?
            }
            other => other?,
        };
        self.apply(a).await
    }

    fn fail(&self, e: ClientError) {
        self.state.lock().failed = Some(e);
        self.changed.notify_waiters();
    }

    fn owns(&self, partition: u32) -> bool {
        self.state.lock().positions.contains_key(&partition)
    }
}

/// Heartbeats every third of the session timeout until aborted or the membership is lost.
async fn heartbeat_loop(shared: Arc<Shared>) {
    let every = shared.options.session_timeout / 3;
    loop {
        tokio::time::sleep(every).await;
        match shared.refresh().await {
            Ok(()) => {}
            Err(e @ ClientError::Disconnected { .. }) => return shared.fail(e),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => return shared.fail(e),
            Err(e) => {
                tracing::warn!(member = %shared.member, error = %e, "group heartbeat failed; retrying");
            }
        }
    }
}

/// A member of a stream's consumer group.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::ClientError> {
/// use weir_client::{Client, GroupConsumerOptions};
///
/// let client = Client::connect("127.0.0.1:7400").await?;
/// let mut member = client
///     .group_consumer("clicks", "billing", "worker-1", GroupConsumerOptions::default())
///     .await?;
/// loop {
///     let batch = member.next().await?;
///     for record in &batch.records {
///         println!("{} {:?}", record.offset, record.body);
///     }
///     member.commit(&batch).await?;
/// }
/// # }
/// ```
///
/// Delivery is at least once: a partition's next owner starts at its committed offset, so
/// records read but not committed are read again after a reassignment.
#[derive(Debug)]
pub struct GroupConsumer {
    shared: Arc<Shared>,
    heartbeat: JoinHandle<()>,
    /// Batches read in the same round as the one returned, handed out next.
    buffered: VecDeque<(u64, GroupBatch)>,
    /// Where the next round of reads starts (so every partition gets its turn first).
    rotate: usize,
    closed: bool,
}

impl GroupConsumer {
    pub(crate) async fn join(
        client: Client,
        stream: &str,
        group: &str,
        member: &str,
        options: GroupConsumerOptions,
    ) -> Result<GroupConsumer, ClientError> {
        let timeout_ms =
            millis(options.session_timeout).clamp(MIN_SESSION_TIMEOUT_MS, MAX_SESSION_TIMEOUT_MS);
        let options = GroupConsumerOptions {
            session_timeout: Duration::from_millis(timeout_ms),
            max_records: options.max_records.clamp(1, MAX_READ_RECORDS as u32),
            ..options
        };
        let a = client
            .join_group(stream, group, member, Some(options.session_timeout))
            .await?;
        let shared = Arc::new(Shared {
            client,
            stream: stream.to_string(),
            group: group.to_string(),
            member: member.to_string(),
            options,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        shared.apply(a).await?;
        let heartbeat = tokio::spawn(heartbeat_loop(shared.clone()));
        Ok(GroupConsumer {
            shared,
            heartbeat,
            buffered: VecDeque::new(),
            rotate: 0,
            closed: false,
        })
    }

    /// The member id.
    pub fn member(&self) -> &str {
        &self.shared.member
    }

    /// The partitions this member owns now, ascending.
    pub fn partitions(&self) -> Vec<u32> {
        self.shared.state.lock().positions.keys().copied().collect()
    }

    /// The group generation of the current assignment.
    pub fn generation(&self) -> u64 {
        self.shared.state.lock().generation
    }

    /// The next batch of records from one of the member's partitions, waiting for records to
    /// arrive (and across reassignments). Fails when the membership is lost for good (the stream
    /// or the connection is gone) or a read fails.
    pub async fn next(&mut self) -> Result<GroupBatch, ClientError> {
        loop {
            while let Some((from, batch)) = self.buffered.pop_front() {
                if let Some(batch) = self.accept(from, batch) {
                    return Ok(batch);
                }
            }
            let shared = self.shared.clone();
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let reads: Vec<(u32, u64)> = {
                let st = self.shared.state.lock();
                if let Some(e) = &st.failed {
                    return Err(e.clone());
                }
                st.positions.iter().map(|(&p, &o)| (p, o)).collect()
            };
            if reads.is_empty() {
                tokio::select! {
                    () = &mut changed => {}
                    () = tokio::time::sleep(self.shared.options.poll_wait) => {}
                }
                continue;
            }
            self.rotate = self.rotate.wrapping_add(1);
            let first = self.rotate % reads.len();
            let mut set = JoinSet::new();
            for &(partition, from) in reads[first..].iter().chain(&reads[..first]) {
                let shared = self.shared.clone();
                set.spawn(async move {
                    let o = &shared.options;
                    let got = shared
                        .client
                        .read_stream(
                            &shared.stream,
                            partition,
                            ReadFrom::Offset(from),
                            o.max_records,
                            o.poll_wait,
                        )
                        .await;
                    (partition, from, got)
                });
            }
            loop {
                tokio::select! {
                    joined = set.join_next() => match joined {
                        // Every read came back empty: read again.
                        None => break,
                        Some(Ok((partition, from, Ok(b)))) if !b.records.is_empty() => {
                            self.keep(partition, from, b.records, b.next_offset);
                            // Take what else is already there; the other reads are dropped
                            // (reads consume nothing).
                            while let Some(Ok((p, f, Ok(b)))) = set.try_join_next() {
                                if !b.records.is_empty() {
                                    self.keep(p, f, b.records, b.next_offset);
                                }
                            }
                            set.abort_all();
                            break;
                        }
                        Some(Ok((_, _, Ok(_)))) => {}
                        Some(Ok((partition, _, Err(e)))) => {
                            set.abort_all();
                            if !self.shared.owns(partition) {
                                // Reassigned meanwhile (e.g. the stream lost the partition's
                                // records to retention): look again with the new assignment.
                                break;
                            }
                            return Err(e);
                        }
                        // A read task ended without an answer (aborted or panicked).
                        Some(Err(_)) => {}
                    },
                    () = &mut changed => {
                        set.abort_all();
                        break;
                    }
                }
            }
        }
    }

    fn keep(&mut self, partition: u32, from: u64, records: Vec<StreamRecord>, next_offset: u64) {
        let batch = GroupBatch {
            partition,
            records,
            next_offset,
            generation: 0,
        };
        self.buffered.push_back((from, batch));
    }

    /// `batch` (read at `from`) if the member still owns its partition at that position; its
    /// records are then handed out, and the next read continues after them.
    fn accept(&self, from: u64, mut batch: GroupBatch) -> Option<GroupBatch> {
        let mut st = self.shared.state.lock();
        let generation = st.generation;
        let at = st.positions.get_mut(&batch.partition)?;
        if *at != from {
            return None;
        }
        *at = batch.next_offset;
        batch.generation = generation;
        Some(batch)
    }

    /// Commits `batch`'s partition up to its `next_offset` (its records are processed).
    pub async fn commit(&self, batch: &GroupBatch) -> Result<(), ClientError> {
        self.commit_offsets(vec![PartitionOffset {
            partition: batch.partition,
            offset: batch.next_offset,
        }])
        .await
    }

    /// Commits, for every partition the member owns, the position after the last record
    /// [`GroupConsumer::next`] handed out.
    pub async fn commit_all(&self) -> Result<(), ClientError> {
        let offsets: Vec<PartitionOffset> = self
            .shared
            .state
            .lock()
            .positions
            .iter()
            .map(|(&partition, &offset)| PartitionOffset { partition, offset })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        self.commit_offsets(offsets).await
    }

    /// Commits `offsets`, fenced by the member and its generation. A stale generation (a
    /// membership change the member has not heard of yet) or an ended session refreshes the
    /// assignment (joining again if needed) and retries once if the member still owns every
    /// partition; a partition no longer owned fails with [`ErrorCode::Conflict`].
    pub async fn commit_offsets(&self, offsets: Vec<PartitionOffset>) -> Result<(), ClientError> {
        let s = &self.shared;
        let generation = s.state.lock().generation;
        let member = Some((s.member.as_str(), Some(generation)));
        let first = s
            .client
            .commit_offsets(&s.stream, &s.group, member, offsets.clone())
            .await;
        match first {
            // Stale generation or ownership (conflict), or a session that ended (not found).
            Err(e) if matches!(e.code(), Some(ErrorCode::Conflict | ErrorCode::NotFound)) => {
                s.refresh().await?;
                if offsets.iter().any(|o| !s.owns(o.partition)) {
                    return Err(e);
                }
                let generation = s.state.lock().generation;
                let member = Some((s.member.as_str(), Some(generation)));
                s.client
                    .commit_offsets(&s.stream, &s.group, member, offsets)
                    .await
            }
            other => other,
        }
    }

    /// Leaves the group (its partitions move to the others at once) and stops heartbeating.
    /// Offsets not committed are not committed.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.closed = true;
        self.heartbeat.abort();
        let s = &self.shared;
        s.client.leave_group(&s.stream, &s.group, &s.member).await
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if !self.closed {
            // Leave without waiting for the answer; if it cannot be sent, the session times out.
            let s = &self.shared;
            let payload = Payload::LeaveGroup {
                stream: s.stream.clone(),
                group: s.group.clone(),
                member: s.member.clone(),
            };
            let _ = s.client.connection().try_command(Command::Fire { payload });
        }
    }
}

impl Client {
    /// Joins `group` of `stream` as `member` and returns a [`GroupConsumer`] that heartbeats,
    /// follows reassignments and reads the member's partitions.
    pub async fn group_consumer(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        options: GroupConsumerOptions,
    ) -> Result<GroupConsumer, ClientError> {
        GroupConsumer::join(self.clone(), stream, group, member, options).await
    }
}
