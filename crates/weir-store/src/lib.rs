//! The storage contract under Weir's broker.
//!
//! Two kinds of durable object, both named by a [`StoreName`]:
//! - a [`Log`]: an append-only sequence of [`Record`]s with dense `u64` offsets, group-committed
//!   durability, reads by offset or timestamp, and whole-segment reclamation below a low-water mark
//!   or by retention;
//! - a [`Journal`]: small owner state kept as a snapshot plus the entries appended since it.
//!
//! A [`Store`] opens and removes them. `weir-log` is the embedded file implementation;
//! [`memory::MemoryStore`] is the in-memory one for tests and simulation; both must pass
//! [`conformance`].
//!
//! Architecture invariant: this crate does no I/O of its own and knows nothing of queues, sockets,
//! HTTP or JSON.
//!
//! Key rule (the reason [`Log::read`] returns only durable records): a record is never handed to a
//! reader before it is durable under the log's fsync policy, so nothing downstream (a delivery, an
//! ack, a committed offset) can ever refer to an offset that a crash could take back and reuse.

pub mod codec;
pub mod conformance;
mod durable;
mod error;
pub mod faulty;
pub mod memory;
pub mod name;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub use durable::{Durable, WaitDurable};
pub use error::StoreError;
pub use name::StoreName;

/// Checks the spans of [`Log::append_spanning`] against its records.
pub fn check_spans(records: &[Record], spans: &[u32]) -> Result<(), StoreError> {
    if records.len() != spans.len() {
        return Err(StoreError::SpanCountMismatch {
            records: records.len(),
            spans: spans.len(),
        });
    }
    spans.iter().try_for_each(|s| check_span(*s))
}

/// Checks one span: `1..=MAX_RECORD_SPAN`.
pub fn check_span(span: u32) -> Result<(), StoreError> {
    if !(1..=MAX_RECORD_SPAN).contains(&span) {
        return Err(StoreError::InvalidSpan {
            span,
            max: MAX_RECORD_SPAN,
        });
    }
    Ok(())
}

/// A record's position in a [`Log`]: dense, starting at 0, never reused.
pub type Offset = u64;

/// Most offsets one record may occupy ([`Log::append_spanning`]): a batch of that many entries
/// stored as one record (a stream's append). Keeps a segment's relative offsets far from `u32`.
/// Spans are checked with [`check_span`].
pub const MAX_RECORD_SPAN: u32 = 1 << 16;

/// One named header of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header name (UTF-8).
    pub name: String,
    /// Header value (bytes).
    pub value: Bytes,
}

/// What an appender hands to [`Log::append`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    /// Milliseconds since the Unix epoch, chosen by the appender (the broker's clock).
    pub timestamp_ms: u64,
    /// Optional key (partitioning / ordering); opaque to the store.
    pub key: Option<Bytes>,
    /// Headers in order; opaque to the store.
    pub headers: Vec<Header>,
    /// The body; opaque to the store.
    pub body: Bytes,
}

impl Record {
    /// Bytes this record occupies in the store's accounting: key + header names and values + body.
    /// Implementations add their own framing on top; limits are checked against this figure.
    pub fn payload_len(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|h| h.name.len() + h.value.len())
                .sum::<usize>()
            + self.body.len()
    }
}

/// A record read back from a [`Log`], with its offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's offset (the first of its span).
    pub offset: Offset,
    /// How many offsets it occupies: `offset..offset + span`. 1 unless it was appended with
    /// [`Log::append_spanning`].
    pub span: u32,
    /// The record as appended.
    pub record: Record,
}

/// When a log's appends count as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// fdatasync before an append is confirmed; concurrent appends share one fsync (group commit).
    #[default]
    Always,
    /// Written to the OS at once, fsync'd at most every `ms` milliseconds; confirmed once written.
    Interval {
        /// Milliseconds between fsyncs.
        ms: u64,
    },
    /// Written to the OS at once, never fsync'd explicitly; confirmed once written. Survives a
    /// process crash, not a power loss.
    Never,
}

/// Retention rules for a log. `None` means unbounded on that axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Retention {
    /// Delete a whole segment once its newest record is older than this.
    pub max_age_ms: Option<u64>,
    /// Delete the oldest whole segments while the log is larger than this.
    pub max_bytes: Option<u64>,
}

/// How a log is opened. Implementations may ignore fields that mean nothing to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment once the current one reaches this many bytes.
    pub segment_bytes: u64,
    /// Durability policy.
    pub fsync: FsyncPolicy,
    /// Largest [`Record::payload_len`] accepted; larger appends fail with
    /// [`StoreError::RecordTooLarge`] and change nothing.
    pub max_record_bytes: u32,
    /// Most bytes accepted but not yet written; beyond it appends fail with [`StoreError::Busy`].
    pub max_pending_bytes: u64,
    /// Retention by age and size (low-water reclamation is separate: [`Log::set_low_water`]).
    pub retention: Retention,
}

impl LogConfig {
    /// Default segment size: 64 MiB.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
    /// Default record ceiling: 17 MiB (a 16 MiB body plus its metadata).
    pub const DEFAULT_MAX_RECORD_BYTES: u32 = 17 * 1024 * 1024;
    /// Default pending-bytes ceiling: 64 MiB.
    pub const DEFAULT_MAX_PENDING_BYTES: u64 = 64 * 1024 * 1024;
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            fsync: FsyncPolicy::Always,
            max_record_bytes: Self::DEFAULT_MAX_RECORD_BYTES,
            max_pending_bytes: Self::DEFAULT_MAX_PENDING_BYTES,
            retention: Retention::default(),
        }
    }
}

/// The result of a successful [`Log::append`]: offsets are assigned at once, durability later.
#[derive(Debug)]
pub struct Appended {
    /// Offset of the first record of the batch.
    pub first_offset: Offset,
    /// One past the last record of the batch.
    pub next_offset: Offset,
    /// Resolves once every record of the batch is durable under the log's policy.
    pub durable: Durable,
}

/// A snapshot of a log's bounds and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Lowest offset still readable.
    pub start_offset: Offset,
    /// One past the highest durable offset: reads see `start_offset..durable_offset`.
    pub durable_offset: Offset,
    /// One past the highest offset assigned (durable or not).
    pub next_offset: Offset,
    /// Bytes the log occupies in its medium.
    pub bytes: u64,
    /// Number of segments (1 for implementations without segments).
    pub segments: u64,
}

/// What a reclamation pass removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Reclaimed {
    /// Segments deleted.
    pub segments: u64,
    /// Bytes given back.
    pub bytes: u64,
    /// The log's new start offset.
    pub start_offset: Offset,
}

/// An append-only log of records. All methods take `&self`; implementations are internally
/// synchronised and safe to share across threads.
pub trait Log: Send + Sync + fmt::Debug {
    /// Appends a batch atomically with respect to other appenders: the records get consecutive
    /// offsets in slice order. Returns as soon as offsets are assigned; await
    /// [`Appended::durable`] before confirming to anyone. An empty batch or an oversize record is
    /// an error and changes nothing.
    fn append(&self, records: &[Record]) -> Result<Appended, StoreError>;

    /// Appends a batch as [`Log::append`] does, but record `i` occupies `spans[i]` consecutive
    /// offsets (`1..=`[`MAX_RECORD_SPAN`]; otherwise [`StoreError::InvalidSpan`], and slices of
    /// different lengths are [`StoreError::SpanCountMismatch`]; either changes nothing). The
    /// owner stores a batch of `span` entries of its own as one record — one frame, one
    /// checksum — and still gives each entry an offset. Reads return such a record whole, with
    /// its [`StoredRecord::span`], whichever of its offsets they start at.
    fn append_spanning(&self, records: &[Record], spans: &[u32]) -> Result<Appended, StoreError>;

    /// Reads durable records covering offsets `from..`: the first one returned is the record
    /// holding `from` (which may start before it, if it spans several offsets). At most
    /// `max_records` offsets' worth (a spanning record counts the offsets it covers at or after
    /// `from`) and about `max_bytes` of payload; always at least one record when one is
    /// available, however large. `from` below the start offset is
    /// [`StoreError::OffsetOutOfRange`]; at or past the durable end it returns an empty vector.
    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, StoreError>;

    /// The first durable offset whose record's timestamp is `>= timestamp_ms` (a spanning
    /// record's first offset), or `None` when no
    /// retained record is that new. Timestamps are assumed non-decreasing in offset order; with
    /// out-of-order timestamps the answer is some offset at or before the first qualifying record.
    fn offset_for_timestamp(&self, timestamp_ms: u64) -> Result<Option<Offset>, StoreError>;

    /// Bounds and size.
    fn stats(&self) -> LogStats;

    /// Resolves once `durable_offset > offset` (a tailing reader waits here without polling), or
    /// with an error when the log fails or is closed.
    fn wait_durable(&self, offset: Offset) -> WaitDurable;

    /// Declares that no reader needs offsets below `offset` any more. Whole segments entirely below
    /// the mark become reclaimable; the mark never moves backwards (a lower value is ignored).
    fn set_low_water(&self, offset: Offset) -> Result<(), StoreError>;

    /// Deletes whole segments that are below the low-water mark or outside the retention rules,
    /// never the segment being written. `now_ms` is the caller's clock.
    fn reclaim(&self, now_ms: u64) -> Result<Reclaimed, StoreError>;

    /// Makes everything appended so far durable now, whatever the policy.
    fn flush(&self) -> Durable;
}

/// What a [`Journal`] held when it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalContents {
    /// The last snapshot written, if any.
    pub snapshot: Option<Bytes>,
    /// Every entry appended after that snapshot, in order.
    pub entries: Vec<Bytes>,
}

/// Small durable owner state: a snapshot plus a journal of entries appended since.
///
/// The owner replays `snapshot` then `entries` to rebuild its state, and calls
/// [`Journal::snapshot`] with its current state from time to time so that recovery reads a bounded
/// amount. The owner serialises its own calls (appends and snapshots happen under its lock), which
/// is what makes a snapshot consistent with the entries it replaces.
pub trait Journal: Send + Sync + fmt::Debug {
    /// The snapshot and entries found when the journal was opened.
    fn recovered(&self) -> JournalContents;

    /// Appends entries; they become durable together under the journal's fsync policy.
    fn append(&self, entries: &[Bytes]) -> Result<Durable, StoreError>;

    /// Appends entries nobody waits on: they are written (and fsync'd) with the journal's next
    /// [`Journal::append`], sharing its fdatasync, or on their own shortly after when none comes
    /// (the file journal: within 50 ms under `Always`; under `Interval` an interval timer
    /// already armed for later writes them then). Order with other appends is kept. For state a
    /// crash may forget without breaking a guarantee (a delivery's attempt count). The default
    /// writes them like [`Journal::append`] and drops the [`Durable`].
    fn append_deferred(&self, entries: &[Bytes]) -> Result<(), StoreError> {
        self.append(entries).map(drop)
    }

    /// Atomically replaces the snapshot with `state` and drops every entry appended before this
    /// call. Returns once the new snapshot is durable; on error the old snapshot and entries stand.
    fn snapshot(&self, state: Bytes) -> Result<(), StoreError>;

    /// Bytes of entries appended since the last snapshot (owners snapshot when it grows large).
    fn bytes_since_snapshot(&self) -> u64;
}

/// Upper bounds (µs) of the buckets of [`SyncLatency`]; the last bucket is everything above.
pub const SYNC_BUCKETS_US: [u64; 12] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 100_000, 250_000, 1_000_000,
];

/// How long a store's data fsyncs (fdatasync of the logs it writes) took since it opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncLatency {
    /// Per bucket of [`SYNC_BUCKETS_US`], fsyncs that took at most its bound (and more than the
    /// previous one's); not cumulative.
    pub buckets: [u64; SYNC_BUCKETS_US.len()],
    /// Every fsync counted, the ones above the last bound included.
    pub count: u64,
    /// Their total duration, µs.
    pub sum_us: u64,
}

/// Opens, lists and removes logs and journals.
pub trait Store: Send + Sync + fmt::Debug {
    /// Opens (creating if absent) the log `name`, recovering it if it exists.
    fn open_log(&self, name: &StoreName, config: &LogConfig) -> Result<Arc<dyn Log>, StoreError>;

    /// Opens (creating if absent) the journal `name` with the given fsync policy.
    fn open_journal(
        &self,
        name: &StoreName,
        fsync: FsyncPolicy,
    ) -> Result<Arc<dyn Journal>, StoreError>;

    /// Removes a log or journal and everything under `name`; removing what does not exist is Ok.
    /// The caller must have dropped its handles.
    fn remove(&self, name: &StoreName) -> Result<(), StoreError>;

    /// Names of the logs and journals that exist directly under `prefix` (one more component).
    fn list(&self, prefix: &StoreName) -> Result<Vec<String>, StoreError>;

    /// How long its data fsyncs took, for a store that has them (`None` for one in memory).
    fn sync_latency(&self) -> Option<SyncLatency> {
        None
    }
}
