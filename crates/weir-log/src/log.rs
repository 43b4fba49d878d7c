//! [`FileLog`]: the segmented, group-committed [`Log`] implementation.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::{oneshot, watch};
use weir_store::{
    Appended, Durable, Log, LogConfig, LogStats, Offset, Reclaimed, Record, StoreError,
    StoredRecord, WaitDurable,
};

use crate::index::{self, IndexEntry};
use crate::pass::disk_full;
use crate::record;
use crate::recovery;
use crate::segment::{self, Segment, INDEX_EXT, LOG_EXT};
use crate::writer::{Pool, PoolShared};

/// Smallest segment size honoured; smaller configured values are raised to it.
pub const MIN_SEGMENT_BYTES: u64 = 4 * 1024;
/// Largest segment size honoured (record positions are `u32` in the index).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// Largest record payload honoured, whatever `max_record_bytes` says.
pub const MAX_RECORD_BYTES: u32 = 1 << 30;
/// Number of remembered read positions (sequential readers skip the index).
pub(crate) const READ_HINTS: usize = 4;
/// Longest a deferred append waits for an ordinary append or a flush to write it along.
pub const DEFERRED_WRITE_DELAY: Duration = Duration::from_millis(50);

const _: () = assert!(MAX_SEGMENT_BYTES <= u32::MAX as u64);
const _: () = assert!((MAX_RECORD_BYTES as usize) <= record::MAX_PAYLOAD_BYTES / 2);

/// What waiters watch: how far the log is durable, and whether it failed.
#[derive(Clone, Debug, Default)]
pub(crate) struct DurableState {
    /// One past the last durable offset (readable).
    pub(crate) durable: u64,
    /// One past the last offset known fsync'd (what `flush` waits for).
    pub(crate) synced: u64,
    /// The failure that poisoned the log.
    pub(crate) failed: Option<StoreError>,
    /// How many times a failed write (a full disk) took offsets back: a waiter for an offset
    /// that was taken back fails (retryable) instead of waiting for the offset's reuse.
    pub(crate) rollbacks: u64,
}

/// Bytes queued for the writer, contiguous in one segment.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Base offset of the segment they go to.
    pub(crate) base: u64,
    /// Byte position in that segment.
    pub(crate) position: u64,
    /// Offset of the first frame in `bytes` (chunks start at frame boundaries).
    pub(crate) offset: u64,
    /// The frames.
    pub(crate) bytes: Vec<u8>,
    /// The segment is new: seal the current one (with this index) and create its file first.
    pub(crate) roll: Option<Vec<IndexEntry>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Hint {
    pub(crate) base: u64,
    pub(crate) offset: u64,
    pub(crate) position: u64,
}

/// Mutable state of a log, under one short lock (no I/O is done while holding it).
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) next_offset: u64,
    pub(crate) durable_offset: u64,
    pub(crate) synced_offset: u64,
    pub(crate) low_water: u64,
    pub(crate) total_bytes: u64,
    pub(crate) pending: Vec<Chunk>,
    pub(crate) pending_bytes: u64,
    pub(crate) scheduled: bool,
    /// Whether `pending` holds bytes a pass must write now: an append someone waits on, or a
    /// flush. False while only deferred appends are pending (a timer writes those).
    pub(crate) urgent: bool,
    pub(crate) timer_armed: bool,
    pub(crate) flush_requested: bool,
    pub(crate) failed: Option<StoreError>,
    pub(crate) hints: [Option<Hint>; READ_HINTS],
    pub(crate) hint_next: usize,
    pub(crate) spare: Vec<Vec<u8>>,
    /// Appenders waiting for durability, in offset order: (one past their batch, notifier).
    /// Each is woken exactly once, by the pass that makes its batch durable (no herd).
    pub(crate) waiters: VecDeque<(u64, oneshot::Sender<Result<(), StoreError>>)>,
    /// How many waiters the last pass released: the appends a pass may expect back soon (see
    /// `LogShared::gather` in `pass.rs`).
    pub(crate) last_released: usize,
    /// While a pass gathers, the number of waiters it waits for (0: no pass is gathering).
    pub(crate) gather_target: usize,
    /// Running average of this log's fdatasync durations.
    pub(crate) sync_avg: Duration,
}

/// State only the (single) writer pass of a log touches.
#[derive(Debug)]
pub(crate) struct WriterState {
    /// The segment being written and its file.
    pub(crate) current: Option<(u64, Arc<File>)>,
    /// Bytes written to `current` since its last fdatasync.
    pub(crate) dirty: bool,
    /// When the log was last fsync'd.
    pub(crate) last_sync: Instant,
}

/// Everything of one open log; shared by its handles and, while work is queued, the writer pool.
#[derive(Debug)]
pub(crate) struct LogShared {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) state: Mutex<State>,
    pub(crate) writer: Mutex<WriterState>,
    pub(crate) durable_tx: watch::Sender<DurableState>,
    pub(crate) pool: Arc<PoolShared>,
    /// Signalled when a gathering pass has what it waits for (or a flush wants it to stop).
    pub(crate) gathered: Condvar,
}

/// A log stored in segment files under one directory. Get one from
/// [`crate::FileStore`] (`Store::open_log`); all methods are `&self` and thread-safe.
#[derive(Debug, Clone)]
pub struct FileLog {
    shared: Arc<LogShared>,
    _pool: Arc<Pool>,
}

fn effective(config: &LogConfig) -> LogConfig {
    LogConfig {
        segment_bytes: config
            .segment_bytes
            .clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
        max_record_bytes: config.max_record_bytes.min(MAX_RECORD_BYTES),
        ..*config
    }
}

impl LogShared {
    /// Recovers the log in `dir` and returns it ready for appends.
    pub(crate) fn open(
        name: String,
        dir: PathBuf,
        config: &LogConfig,
        pool: Arc<PoolShared>,
    ) -> Result<Arc<LogShared>, StoreError> {
        let rec = recovery::recover(&dir)?;
        let total_bytes = rec.segments.iter().map(|s| s.size).sum();
        let current = rec.segments.back().and_then(|s| {
            s.file.clone().map(|f| (s.base, f)) // recovery opens every segment's file
        });
        let next = rec.next_offset;
        Ok(Arc::new(LogShared {
            name,
            dir,
            config: effective(config),
            state: Mutex::new(State {
                segments: rec.segments,
                next_offset: next,
                durable_offset: next,
                synced_offset: next,
                low_water: 0,
                total_bytes,
                pending: Vec::new(),
                pending_bytes: 0,
                scheduled: false,
                urgent: false,
                timer_armed: false,
                flush_requested: false,
                failed: None,
                hints: [None; READ_HINTS],
                hint_next: 0,
                spare: Vec::new(),
                waiters: VecDeque::new(),
                last_released: 0,
                gather_target: 0,
                sync_avg: Duration::ZERO,
            }),
            gathered: Condvar::new(),
            writer: Mutex::new(WriterState {
                current,
                dirty: false,
                last_sync: Instant::now(),
            }),
            durable_tx: watch::Sender::new(DurableState {
                durable: next,
                synced: next,
                failed: None,
                rollbacks: 0,
            }),
            pool,
        }))
    }

    pub(crate) fn segment_path(&self, base: u64) -> PathBuf {
        segment::path(&self.dir, base, LOG_EXT)
    }

    pub(crate) fn index_path(&self, base: u64) -> PathBuf {
        segment::path(&self.dir, base, INDEX_EXT)
    }

    /// Marks the log scheduled and returns whether the caller must queue it.
    pub(crate) fn mark_scheduled(st: &mut State) -> bool {
        !std::mem::replace(&mut st.scheduled, true)
    }

    fn wait(&self, pred: impl Fn(&DurableState) -> bool + Send + Sync + 'static) -> Durable {
        let mut rx = self.durable_tx.subscribe();
        let rollbacks = rx.borrow().rollbacks;
        let name = self.name.clone();
        Durable::from_future(async move {
            let state = rx
                .wait_for(|s| pred(s) || s.failed.is_some() || s.rollbacks != rollbacks)
                .await
                .map_err(|_| StoreError::Closed)?;
            if pred(&state) {
                return Ok(());
            }
            match &state.failed {
                Some(e) => Err(e.clone()),
                None => Err(disk_full(
                    &name,
                    "appends were taken back after a failed write",
                )),
            }
        })
    }

    /// [`Log::append`] (without `spans`: one offset each) and [`Log::append_spanning`].
    pub(crate) fn append(
        self: &Arc<Self>,
        records: &[Record],
        spans: Option<&[u32]>,
    ) -> Result<Appended, StoreError> {
        let (tx, rx) = oneshot::channel();
        let (first, next) = self.append_with(records, spans, Some(tx))?;
        Ok(Appended {
            first_offset: first,
            next_offset: next,
            durable: Durable::from_future(
                async move { rx.await.unwrap_or(Err(StoreError::Closed)) },
            ),
        })
    }

    /// Appends records nobody waits on: no pass is started for them; they are written with the
    /// next pass that an ordinary append or a flush starts (sharing its fdatasync), or by a
    /// timer [`DEFERRED_WRITE_DELAY`] later. Returns (first offset, one past the last).
    pub(crate) fn append_deferred(
        self: &Arc<Self>,
        records: &[Record],
    ) -> Result<(u64, u64), StoreError> {
        self.append_with(records, None, None)
    }

    /// Assigns offsets and copies the frames into the pending buffer. With a notifier the batch
    /// is urgent: a pass is scheduled and the notifier told when the batch is durable; without
    /// one, a timer is armed unless a pass or a timer is already coming.
    fn append_with(
        self: &Arc<Self>,
        records: &[Record],
        spans: Option<&[u32]>,
        notify: Option<oneshot::Sender<Result<(), StoreError>>>,
    ) -> Result<(u64, u64), StoreError> {
        // Everything that reads the bodies (validation, CRC) and allocates happens before the
        // lock; under it, offsets are assigned and the frames copied into the pending buffer.
        let batch = record::prepare_batch(records, spans, self.config.max_record_bytes)?;
        let batch_bytes = batch.bytes as u64;
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        if st.pending_bytes > 0 && st.pending_bytes + batch_bytes > self.config.max_pending_bytes {
            return Err(StoreError::Busy {
                pending_bytes: st.pending_bytes,
                max_pending_bytes: self.config.max_pending_bytes,
            });
        }
        let first = st.next_offset;
        let seg_bytes = self.config.segment_bytes;
        for (r, p) in records.iter().zip(batch.frames()) {
            let offset = st.next_offset;
            let frame_len = p.frame_len as u64;
            let span = u64::from(p.span);
            // Roll when the frame would overfill the segment, or when its span would carry the
            // segment's relative offsets (u32 in the index) past u32::MAX.
            let roll = st.segments.back().is_some_and(|s| {
                s.size > 0
                    && (s.size + frame_len > seg_bytes
                        || offset + span - s.base > u64::from(u32::MAX))
            });
            if roll {
                let sealed_index = st.segments.back().map(|s| s.index.clone());
                st.segments.push_back(Segment {
                    base: offset,
                    file: None,
                    index: Vec::new(),
                    size: 0,
                    durable_size: 0,
                    next_offset: offset,
                    max_ts: 0,
                    sealed: false,
                });
                let spare = st.spare.pop().unwrap_or_default();
                st.pending.push(Chunk {
                    base: offset,
                    position: 0,
                    offset,
                    bytes: spare,
                    roll: Some(sealed_index.unwrap_or_default()),
                });
            }
            // Invariant: a log always has at least one segment (recovery creates the first,
            // reclaim never removes the last).
            let Some(seg) = st.segments.back_mut() else {
                unreachable!("a log has at least one segment")
            };
            let position = seg.size;
            let chunk = pending_chunk(&mut st.pending, &mut st.spare, seg.base, position, offset);
            record::write_frame(&mut chunk.bytes, r, p, offset);
            seg.max_ts = seg.max_ts.max(r.timestamp_ms);
            if index::wants_entry(seg.last_entry_position(), position) {
                seg.index.push(IndexEntry {
                    rel_offset: (offset - seg.base) as u32,
                    position: position as u32,
                    max_ts: seg.max_ts,
                });
            }
            seg.size += frame_len;
            seg.next_offset = offset + span;
            st.next_offset = offset + span;
            st.total_bytes += frame_len;
        }
        st.pending_bytes += batch_bytes;
        let next = st.next_offset;
        let Some(tx) = notify else {
            // Deferred: a scheduled pass writes it anyway; otherwise a timer will.
            let arm = !st.scheduled && !std::mem::replace(&mut st.timer_armed, true);
            drop(guard);
            if arm {
                let at = Instant::now() + DEFERRED_WRITE_DELAY;
                self.pool.arm_timer(at, self.clone());
            }
            return Ok((first, next));
        };
        st.waiters.push_back((next, tx));
        st.urgent = true;
        let gathered = st.gather_target != 0
            && (st.waiters.len() >= st.gather_target
                || st.pending_bytes >= crate::pass::GATHER_MAX_BYTES);
        let enqueue = Self::mark_scheduled(st);
        drop(guard);
        if gathered {
            self.gathered.notify_one();
        }
        if enqueue {
            self.pool.schedule(self.clone());
        }
        Ok((first, next))
    }

    pub(crate) fn flush(self: &Arc<Self>) -> Durable {
        let mut st = self.state.lock();
        if let Some(e) = &st.failed {
            return Durable::ready(Err(e.clone()));
        }
        let target = st.next_offset;
        if st.synced_offset >= target {
            return Durable::ready(Ok(()));
        }
        st.flush_requested = true;
        let gathering = st.gather_target != 0;
        let enqueue = Self::mark_scheduled(&mut st);
        drop(st);
        if gathering {
            self.gathered.notify_one(); // a flush does not wait for more appends
        }
        if enqueue {
            self.pool.schedule(self.clone());
        }
        self.wait(move |s| s.synced >= target)
    }
}

/// The pending chunk that ends at `position` of the segment `base`: the last one if it does,
/// else a new one (from a spare buffer) starting there with the frame of `offset`.
fn pending_chunk<'a>(
    pending: &'a mut Vec<Chunk>,
    spare: &mut Vec<Vec<u8>>,
    base: u64,
    position: u64,
    offset: u64,
) -> &'a mut Chunk {
    let continues = pending
        .last()
        .is_some_and(|c| c.base == base && c.position + c.bytes.len() as u64 == position);
    if !continues {
        pending.push(Chunk {
            base,
            position,
            offset,
            bytes: spare.pop().unwrap_or_default(),
            roll: None,
        });
    }
    let last = pending.len() - 1; // not empty: checked or pushed just above
    &mut pending[last]
}

impl LogShared {
    fn stats(&self) -> LogStats {
        let st = self.state.lock();
        LogStats {
            start_offset: st.segments.front().map_or(0, |s| s.base),
            durable_offset: st.durable_offset,
            next_offset: st.next_offset,
            bytes: st.total_bytes,
            segments: st.segments.len() as u64,
        }
    }

    fn reclaim(&self, now_ms: u64) -> Result<Reclaimed, StoreError> {
        let retention = self.config.retention;
        let mut st = self.state.lock();
        let mut doomed = Vec::new();
        while st.segments.len() > 1 {
            let s = &st.segments[0];
            if !s.sealed || s.next_offset > st.durable_offset {
                break; // still being written or sealed by the writer
            }
            let below_mark = s.next_offset <= st.low_water;
            let too_old = retention
                .max_age_ms
                .is_some_and(|age| now_ms.saturating_sub(s.max_ts) > age);
            let too_big = retention.max_bytes.is_some_and(|max| st.total_bytes > max);
            if !(below_mark || too_old || too_big) {
                break;
            }
            let size = s.size;
            let base = s.base;
            st.segments.pop_front();
            st.total_bytes -= size;
            doomed.push((base, size));
        }
        let start_offset = st.segments.front().map_or(0, |s| s.base);
        drop(st);
        let mut out = Reclaimed {
            segments: 0,
            bytes: 0,
            start_offset,
        };
        if doomed.is_empty() {
            return Ok(out);
        }
        for (base, size) in doomed {
            // Data file first: a crash between the two leaves an orphan index, removed on open.
            for path in [self.segment_path(base), self.index_path(base)] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("delete segment", path.display(), e)),
                }
            }
            out.segments += 1;
            out.bytes += size;
        }
        segment::sync_dir(&self.dir)?;
        Ok(out)
    }
}

impl FileLog {
    pub(crate) fn new(shared: Arc<LogShared>, pool: Arc<Pool>) -> FileLog {
        FileLog {
            shared,
            _pool: pool,
        }
    }

    /// The directory holding this log's segments.
    pub fn dir(&self) -> &std::path::Path {
        &self.shared.dir
    }

    /// Appends records nobody waits on: they start no writer pass of their own but go out (and
    /// are fsync'd under the log's policy) with the next ordinary append or flush, or after
    /// [`DEFERRED_WRITE_DELAY`] when none comes. Offsets and order are as for
    /// [`Log::append`]; the records become readable once written. Returns (first offset, one past
    /// the last). The journal uses it for state a crash may forget (delivery attempt counts), so
    /// a delivery costs no fdatasync of its own.
    pub fn append_deferred(&self, records: &[Record]) -> Result<(u64, u64), StoreError> {
        self.shared.append_deferred(records)
    }
}

impl Log for FileLog {
    fn append(&self, records: &[Record]) -> Result<Appended, StoreError> {
        self.shared.append(records, None)
    }

    fn append_spanning(&self, records: &[Record], spans: &[u32]) -> Result<Appended, StoreError> {
        self.shared.append(records, Some(spans))
    }

    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.shared.read(from, max_records, max_bytes)
    }

    fn offset_for_timestamp(&self, timestamp_ms: u64) -> Result<Option<Offset>, StoreError> {
        self.shared.offset_for_timestamp(timestamp_ms)
    }

    fn stats(&self) -> LogStats {
        self.shared.stats()
    }

    fn wait_durable(&self, offset: Offset) -> WaitDurable {
        self.shared.wait(move |s| s.durable > offset)
    }

    fn set_low_water(&self, offset: Offset) -> Result<(), StoreError> {
        let mut st = self.shared.state.lock();
        st.low_water = st.low_water.max(offset);
        Ok(())
    }

    fn reclaim(&self, now_ms: u64) -> Result<Reclaimed, StoreError> {
        self.shared.reclaim(now_ms)
    }

    fn flush(&self) -> Durable {
        self.shared.flush()
    }
}
