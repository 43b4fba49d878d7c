//! Stream calls of [`Client`] (protocol version 3): streams, appends, reads by offset or time,
//! and the consumer-group calls under [`crate::GroupConsumer`]; plus [`Record`], what an append
//! sends.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use weir_proto::frame::{OutRecord, Payload};
use weir_proto::limits::MAX_WAIT_MS;

use crate::client::{millis, unexpected};
use crate::topics::expect_ok;
use crate::{
    Client, ClientError, GroupAssignment, GroupInfo, PartitionOffset, ReadFrom, StreamInfo,
    StreamOptions, StreamRecord,
};

/// A record to append to a stream, built fluently.
///
/// ```
/// use weir_client::Record;
///
/// let r = Record::new("clicked").key("user-7").header("page", "/home");
/// assert_eq!(r.body_len(), 7);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    inner: OutRecord,
}

impl Record {
    /// A record with this body, no key (records without a key are spread round-robin).
    pub fn new(body: impl Into<Bytes>) -> Record {
        Record {
            inner: OutRecord {
                body: body.into(),
                ..OutRecord::default()
            },
        }
    }

    /// Sets the key (≤ 1024 bytes): it picks the partition, `xxh3_64(key) % partitions`.
    pub fn key(mut self, key: impl Into<Bytes>) -> Record {
        self.inner.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Record {
        self.inner.headers.insert(name.into(), value.into());
        self
    }

    /// Replaces every header.
    pub fn headers(mut self, headers: BTreeMap<String, String>) -> Record {
        self.inner.headers = headers;
        self
    }

    /// The body's size in bytes.
    pub fn body_len(&self) -> usize {
        self.inner.body.len()
    }

    /// Bytes the record takes on the wire.
    pub fn encoded_len(&self) -> usize {
        self.inner.encoded_len()
    }

    pub(crate) fn into_wire(self) -> OutRecord {
        self.inner
    }
}

impl From<OutRecord> for Record {
    fn from(inner: OutRecord) -> Record {
        Record { inner }
    }
}

/// The answer to a read: records in offset order and where the next read continues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordBatch {
    /// The records (possibly none: nothing arrived within the wait).
    pub records: Vec<StreamRecord>,
    /// The offset the next read of this partition starts at.
    pub next_offset: u64,
}

impl Client {
    /// Creates a stream (`options.partitions`, default 1, fixed once created) or updates the
    /// retention given in `options` of an existing one (another partition count is `conflict`).
    pub async fn create_stream(
        &self,
        stream: &str,
        options: StreamOptions,
    ) -> Result<StreamInfo, ClientError> {
        let payload = Payload::CreateStream {
            stream: stream.to_string(),
            options,
        };
        match self.connection().request(payload).await? {
            Payload::StreamInfo(info) => Ok(*info),
            other => Err(unexpected("StreamInfo", &other)),
        }
    }

    /// Deletes a stream, its records and its consumer groups.
    pub async fn delete_stream(&self, stream: &str) -> Result<(), ClientError> {
        let payload = Payload::DeleteStream {
            stream: stream.to_string(),
        };
        expect_ok(self.connection().request(payload).await?)
    }

    /// A stream's settings, each partition's bounds, and its groups.
    pub async fn stream_stats(&self, stream: &str) -> Result<StreamInfo, ClientError> {
        let payload = Payload::StreamStats {
            stream: stream.to_string(),
        };
        match self.connection().request(payload).await? {
            Payload::StreamInfo(info) => Ok(*info),
            other => Err(unexpected("StreamInfo", &other)),
        }
    }

    /// Appends records (atomic per partition) and returns, once they are durable, where each
    /// went. [`Client::stream_producer`] batches single records for you.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), weir_client::ClientError> {
    /// use std::time::Duration;
    /// use weir_client::{Client, ReadFrom, Record, StreamOptions};
    ///
    /// let client = Client::connect("127.0.0.1:7400").await?;
    /// let options = StreamOptions { partitions: Some(3), ..StreamOptions::default() };
    /// client.create_stream("clicks", options).await?;
    /// let at = client.append("clicks", vec![Record::new("click").key("user-7")]).await?;
    /// let batch = client
    ///     .read_stream("clicks", at[0].partition, ReadFrom::Offset(at[0].offset), 10, Duration::ZERO)
    ///     .await?;
    /// assert_eq!(batch.records[0].body, "click");
    /// # Ok(()) }
    /// ```
    pub async fn append(
        &self,
        stream: &str,
        records: Vec<Record>,
    ) -> Result<Vec<PartitionOffset>, ClientError> {
        let payload = Payload::Append {
            stream: stream.to_string(),
            records: records.into_iter().map(Record::into_wire).collect(),
        };
        match self.connection().request(payload).await? {
            Payload::Appended(positions) => Ok(positions),
            other => Err(unexpected("Appended", &other)),
        }
    }

    /// Reads up to `max` records (1–1000) of a partition from an offset or a time, waiting up to
    /// `wait` (≤ 20 s) for the first one when there is none yet. Reads consume nothing.
    pub async fn read_stream(
        &self,
        stream: &str,
        partition: u32,
        from: ReadFrom,
        max: u32,
        wait: Duration,
    ) -> Result<RecordBatch, ClientError> {
        let payload = Payload::Read {
            stream: stream.to_string(),
            partition,
            from,
            max,
            wait_ms: millis(wait).min(MAX_WAIT_MS),
        };
        match self.connection().request(payload).await? {
            Payload::Records {
                records,
                next_offset,
            } => Ok(RecordBatch {
                records,
                next_offset,
            }),
            other => Err(unexpected("Records", &other)),
        }
    }

    /// Joins a consumer group as `member` (or refreshes its session) and returns its partitions
    /// and their committed offsets. Heartbeat well within `session_timeout` (default 10 s);
    /// [`crate::GroupConsumer`] does all of this for you.
    pub async fn join_group(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        session_timeout: Option<Duration>,
    ) -> Result<GroupAssignment, ClientError> {
        let payload = Payload::JoinGroup {
            stream: stream.to_string(),
            group: group.to_string(),
            member: member.to_string(),
            session_timeout_ms: session_timeout.map(millis),
        };
        self.assignment(payload).await
    }

    /// Keeps `member`'s session alive and returns its current partitions; fails with
    /// [`ErrorCode::NotFound`](crate::ErrorCode) once the session ended (join again).
    pub async fn heartbeat_group(
        &self,
        stream: &str,
        group: &str,
        member: &str,
    ) -> Result<GroupAssignment, ClientError> {
        let payload = Payload::Heartbeat {
            stream: stream.to_string(),
            group: group.to_string(),
            member: member.to_string(),
        };
        self.assignment(payload).await
    }

    async fn assignment(&self, payload: Payload) -> Result<GroupAssignment, ClientError> {
        match self.connection().request(payload).await? {
            Payload::GroupAssignment(a) => Ok(a),
            other => Err(unexpected("GroupAssignment", &other)),
        }
    }

    /// Leaves a group; the member's partitions move to the others at once.
    pub async fn leave_group(
        &self,
        stream: &str,
        group: &str,
        member: &str,
    ) -> Result<(), ClientError> {
        let payload = Payload::LeaveGroup {
            stream: stream.to_string(),
            group: group.to_string(),
            member: member.to_string(),
        };
        expect_ok(self.connection().request(payload).await?)
    }

    /// Commits offsets (each the next record to process), durable on return. With `member`
    /// (and its assignment's generation), the commit is fenced: it fails with
    /// [`ErrorCode::Conflict`](crate::ErrorCode) unless the member owns every partition.
    pub async fn commit_offsets(
        &self,
        stream: &str,
        group: &str,
        member: Option<(&str, Option<u64>)>,
        offsets: Vec<PartitionOffset>,
    ) -> Result<(), ClientError> {
        let payload = Payload::CommitOffsets {
            stream: stream.to_string(),
            group: group.to_string(),
            member: member.map(|(m, _)| m.to_string()),
            generation: member.and_then(|(_, g)| g),
            offsets,
        };
        expect_ok(self.connection().request(payload).await?)
    }

    /// A group's members, generation, and each partition's owner, committed offset and lag.
    pub async fn group_status(&self, stream: &str, group: &str) -> Result<GroupInfo, ClientError> {
        let payload = Payload::GroupStatus {
            stream: stream.to_string(),
            group: group.to_string(),
        };
        match self.connection().request(payload).await? {
            Payload::GroupInfo(info) => Ok(info),
            other => Err(unexpected("GroupInfo", &other)),
        }
    }
}
