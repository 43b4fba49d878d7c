//! [`FileLog`]: the segmented, group-committed [`Log`] implementation.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use weir_store::{
    Appended, Durable, FsyncPolicy, Log, LogConfig, LogStats, Offset, Reclaimed, Record,
    StoreError, StoredRecord, WaitDurable,
};

use crate::index::{self, IndexEntry};
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
    pub(crate) timer_armed: bool,
    pub(crate) flush_requested: bool,
    pub(crate) failed: Option<StoreError>,
    pub(crate) hints: [Option<Hint>; READ_HINTS],
    pub(crate) hint_next: usize,
    pub(crate) spare: Vec<Vec<u8>>,
    /// Appenders waiting for durability, in offset order: (one past their batch, notifier).
    /// Each is woken exactly once, by the pass that makes its batch durable (no herd).
    pub(crate) waiters: VecDeque<(u64, oneshot::Sender<Result<(), StoreError>>)>,
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
                timer_armed: false,
                flush_requested: false,
                failed: None,
                hints: [None; READ_HINTS],
                hint_next: 0,
                spare: Vec::new(),
                waiters: VecDeque::new(),
            }),
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
    fn mark_scheduled(st: &mut State) -> bool {
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

    fn append(self: &Arc<Self>, records: &[Record]) -> Result<Appended, StoreError> {
        // Everything that reads the bodies (validation, CRC) and allocates happens before the
        // lock; under it, offsets are assigned and the frames copied into the pending buffer.
        let batch = record::prepare_batch(records, self.config.max_record_bytes)?;
        let batch_bytes = batch.bytes as u64;
        let (tx, rx) = oneshot::channel();
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
            let roll = st
                .segments
                .back()
                .is_some_and(|s| s.size > 0 && s.size + frame_len > seg_bytes);
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
            seg.next_offset = offset + 1;
            st.next_offset = offset + 1;
            st.total_bytes += frame_len;
        }
        st.pending_bytes += batch_bytes;
        let next = st.next_offset;
        st.waiters.push_back((next, tx));
        let enqueue = Self::mark_scheduled(st);
        drop(guard);
        if enqueue {
            self.pool.schedule(self.clone());
        }
        Ok(Appended {
            first_offset: first,
            next_offset: next,
            durable: Durable::from_future(
                async move { rx.await.unwrap_or(Err(StoreError::Closed)) },
            ),
        })
    }

    fn flush(self: &Arc<Self>) -> Durable {
        let mut st = self.state.lock();
        if let Some(e) = &st.failed {
            return Durable::ready(Err(e.clone()));
        }
        let target = st.next_offset;
        if st.synced_offset >= target {
            return Durable::ready(Ok(()));
        }
        st.flush_requested = true;
        let enqueue = Self::mark_scheduled(&mut st);
        drop(st);
        if enqueue {
            self.pool.schedule(self.clone());
        }
        self.wait(move |s| s.synced >= target)
    }

    /// Timer callback for `Interval` logs: fsync if nothing else is running on the log.
    pub(crate) fn on_timer(self: &Arc<Self>) {
        let mut st = self.state.lock();
        st.timer_armed = false;
        if st.failed.is_some() || !Self::mark_scheduled(&mut st) {
            return; // failed, or a pass is running and re-arms the timer if needed
        }
        drop(st);
        self.run_pass();
    }

    /// One writer pass; see [`crate::writer`].
    pub(crate) fn run_pass(self: &Arc<Self>) {
        let (chunks, target, flush) = {
            let mut st = self.state.lock();
            (
                std::mem::take(&mut st.pending),
                st.next_offset,
                std::mem::take(&mut st.flush_requested),
            )
        };
        let mut w = self.writer.lock();
        let mut written = 0u64;
        let mut touched: Vec<(u64, u64, Option<Arc<File>>, bool)> = Vec::new();
        let mut result = Ok(());
        let mut full = None;
        for chunk in &chunks {
            match self.write_chunk(&mut w, chunk) {
                Ok((file, sealed)) => {
                    written += chunk.bytes.len() as u64;
                    let end = chunk.position + chunk.bytes.len() as u64;
                    touched.push((chunk.base, end, file, sealed));
                }
                Err(ChunkError::Full {
                    err,
                    file,
                    base,
                    position,
                    created,
                    sealed,
                }) => {
                    // Cut the segment back to the end of the last whole chunk written and make
                    // that durable; a failure here is a real I/O failure and poisons.
                    let path = self.segment_path(base);
                    result = file
                        .set_len(position)
                        .and_then(|()| file.sync_data())
                        .map_err(|e| {
                            StoreError::io("truncate after a full disk", path.display(), e)
                        });
                    if result.is_ok() {
                        w.dirty = false;
                        w.last_sync = Instant::now();
                        touched.push((base, position, created, sealed));
                        full = Some((base, position, chunk.offset, err));
                    }
                    break;
                }
                Err(ChunkError::Fatal(e)) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Some(f) = full {
            drop(w);
            self.roll_back(touched, f);
            return;
        }
        let due = match self.config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval { ms } => w.last_sync.elapsed() >= Duration::from_millis(ms),
            FsyncPolicy::Never => false,
        };
        if result.is_ok() && w.dirty && (due || flush) {
            if let Some((base, file)) = &w.current {
                result = file.sync_data().map_err(|e| {
                    StoreError::io("fdatasync", self.segment_path(*base).display(), e)
                });
            }
            if result.is_ok() {
                w.dirty = false;
                w.last_sync = Instant::now();
            }
        }
        let clean = !w.dirty;
        let last_sync = w.last_sync;
        drop(w);

        let mut st = self.state.lock();
        if let Err(e) = result {
            let failed = StoreError::Failed {
                name: self.name.clone(),
                cause: e.to_string(),
            };
            tracing::error!(log = %self.name, error = %e, "write failed; log poisoned");
            st.failed = Some(failed.clone());
            st.pending.clear();
            st.pending_bytes = 0;
            st.scheduled = false;
            let waiters = std::mem::take(&mut st.waiters);
            drop(st);
            for (_, tx) in waiters {
                let _ = tx.send(Err(failed.clone())); // a dropped Durable wants no news
            }
            self.durable_tx.send_modify(|s| s.failed = Some(failed));
            return;
        }
        for (base, end, file, sealed_prev) in touched {
            let i = st.segments.partition_point(|s| s.base < base);
            if sealed_prev && i > 0 {
                st.segments[i - 1].sealed = true;
            }
            if let Some(seg) = st.segments.get_mut(i).filter(|s| s.base == base) {
                seg.durable_size = seg.durable_size.max(end);
                if file.is_some() {
                    seg.file = file;
                }
            }
        }
        st.pending_bytes = st.pending_bytes.saturating_sub(written);
        for mut c in chunks {
            if st.spare.len() < 2 && c.bytes.capacity() <= 4 << 20 {
                c.bytes.clear();
                st.spare.push(c.bytes);
            }
        }
        if self.config.fsync == FsyncPolicy::Always {
            debug_assert!(clean, "policy Always syncs every pass");
        }
        st.durable_offset = st.durable_offset.max(target);
        if clean {
            st.synced_offset = st.synced_offset.max(target);
        }
        let (durable, synced) = (st.durable_offset, st.synced_offset);
        let mut done = Vec::new();
        while st.waiters.front().is_some_and(|(t, _)| *t <= durable) {
            if let Some((_, tx)) = st.waiters.pop_front() {
                done.push(tx);
            }
        }
        let more = !st.pending.is_empty() || st.flush_requested;
        let mut arm = None;
        if !more {
            st.scheduled = false;
            if let FsyncPolicy::Interval { ms } = self.config.fsync {
                if !clean && !st.timer_armed {
                    st.timer_armed = true;
                    arm = Some(last_sync + Duration::from_millis(ms));
                }
            }
        }
        drop(st);
        for tx in done {
            let _ = tx.send(Ok(())); // a dropped Durable wants no news
        }
        self.durable_tx.send_modify(|s| {
            s.durable = durable;
            s.synced = synced;
        });
        if more {
            self.pool.schedule(self.clone()); // to the back of the queue: fairness between logs
        } else if let Some(at) = arm {
            self.pool.arm_timer(at, self.clone());
        }
    }

    /// After a write failed for lack of space: every chunk before the failed one is written and
    /// fsync'd, the failed one's segment is cut back to `position` (where `offset` starts) and
    /// fsync'd. Makes `..offset` durable, takes back every offset from `offset` on (appends
    /// already accepted, written or not, fail with a retryable error), and keeps the log
    /// healthy: later appends reuse those offsets.
    fn roll_back(
        self: &Arc<Self>,
        touched: Vec<(u64, u64, Option<Arc<File>>, bool)>,
        (base, position, offset, err): (u64, u64, u64, StoreError),
    ) {
        let mut st = self.state.lock();
        for (b, end, file, sealed_prev) in touched {
            let i = st.segments.partition_point(|s| s.base < b);
            if sealed_prev && i > 0 {
                st.segments[i - 1].sealed = true;
            }
            if let Some(seg) = st.segments.get_mut(i).filter(|s| s.base == b) {
                seg.durable_size = seg.durable_size.max(end);
                if file.is_some() {
                    seg.file = file;
                }
            }
        }
        // Segments created for later chunks were never written (their files do not exist).
        while st.segments.back().is_some_and(|s| s.base > base) {
            if let Some(s) = st.segments.pop_back() {
                st.total_bytes -= s.size;
            }
        }
        if let Some(seg) = st.segments.back_mut().filter(|s| s.base == base) {
            let cut = seg.size.saturating_sub(position);
            seg.size = position;
            seg.durable_size = position;
            seg.next_offset = offset;
            seg.index.retain(|e| u64::from(e.position) < position);
            st.total_bytes -= cut;
        }
        st.pending.clear();
        st.pending_bytes = 0;
        st.flush_requested = false;
        st.scheduled = false;
        st.next_offset = offset;
        st.durable_offset = st.durable_offset.max(offset);
        st.synced_offset = st.synced_offset.max(offset);
        let (durable, synced) = (st.durable_offset, st.synced_offset);
        let mut done = Vec::new();
        let mut refused = Vec::new();
        for (t, tx) in std::mem::take(&mut st.waiters) {
            if t <= durable {
                done.push(tx);
            } else {
                refused.push(tx);
            }
        }
        drop(st);
        tracing::warn!(log = %self.name, error = %err, taken_back_from = offset,
            "disk full: write failed; unwritten appends refused (retryable), log continues");
        let refusal = disk_full(&self.name, &err.to_string());
        for tx in done {
            let _ = tx.send(Ok(()));
        }
        for tx in refused {
            let _ = tx.send(Err(refusal.clone()));
        }
        self.durable_tx.send_modify(|s| {
            s.durable = durable;
            s.synced = synced;
            s.rollbacks += 1;
        });
    }

    /// A roll failed for lack of space: the previous segment (whole, fsync'd) stays current and
    /// the log is cut back to its end.
    fn full_at_roll(
        &self,
        w: &mut WriterState,
        base: u64,
        file: Arc<File>,
        what: &'static str,
        path: &std::path::Path,
        e: std::io::Error,
    ) -> ChunkError {
        let position = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                return StoreError::io("stat segment", self.segment_path(base).display(), e).into()
            }
        };
        w.current = Some((base, file.clone()));
        ChunkError::Full {
            err: StoreError::io(what, path.display(), e),
            file,
            base,
            position,
            created: None,
            sealed: false,
        }
    }

    /// Writes one chunk (rolling first if asked). Returns the new segment's file if one was
    /// created, and whether the previous segment was sealed.
    fn write_chunk(
        &self,
        w: &mut WriterState,
        chunk: &Chunk,
    ) -> Result<(Option<Arc<File>>, bool), ChunkError> {
        let mut created = None;
        let mut sealed = false;
        if let Some(entries) = &chunk.roll {
            if let Some((base, file)) = w.current.take() {
                let path = self.segment_path(base);
                file.sync_data()
                    .map_err(|e| StoreError::io("fdatasync", path.display(), e))?;
                let idx = self.index_path(base);
                let bytes = index::encode(entries);
                let written =
                    File::create(&idx).and_then(|f| f.write_all_at(&bytes, 0).map(|()| f));
                let f = match written {
                    Ok(f) => f,
                    Err(e) if is_disk_full(&e) => {
                        // The segment stays the active one (an .idx of the last segment is
                        // stale by construction and deleted on open); the roll is retried.
                        let _ = std::fs::remove_file(&idx);
                        return Err(self.full_at_roll(w, base, file, "write index", &idx, e));
                    }
                    Err(e) => return Err(StoreError::io("write index", idx.display(), e).into()),
                };
                f.sync_data()
                    .map_err(|e| StoreError::io("fdatasync index", idx.display(), e))?;
                w.current = Some((base, file));
                sealed = true;
            }
            let path = self.segment_path(chunk.base);
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path);
            let file = match opened {
                Ok(f) => f,
                Err(e) if is_disk_full(&e) && w.current.is_some() => {
                    // The previous segment stays the active one (its fresh .idx is rewritten
                    // at the next roll, or deleted as stale on open).
                    let (base, file) = w.current.take().expect("checked");
                    return Err(self.full_at_roll(w, base, file, "create segment", &path, e));
                }
                Err(e) => return Err(StoreError::io("create segment", path.display(), e).into()),
            };
            segment::sync_dir(&self.dir)?;
            let file = Arc::new(file);
            w.current = Some((chunk.base, file.clone()));
            w.dirty = false;
            created = Some(file);
        }
        let Some((base, file)) = &w.current else {
            return Err(StoreError::Failed {
                name: self.name.clone(),
                cause: "no segment file to write to".into(),
            }
            .into());
        };
        debug_assert_eq!(*base, chunk.base, "chunks go to the current segment");
        if !chunk.bytes.is_empty() {
            w.dirty = true;
            if let Err(e) = file.write_all_at(&chunk.bytes, chunk.position) {
                let full = is_disk_full(&e);
                let err = StoreError::io("write", self.segment_path(*base).display(), e);
                return Err(if full {
                    ChunkError::Full {
                        err,
                        file: file.clone(),
                        base: chunk.base,
                        position: chunk.position,
                        created,
                        sealed,
                    }
                } else {
                    ChunkError::Fatal(err)
                });
            }
        }
        Ok((created, sealed))
    }
}

/// Why a chunk was not written.
enum ChunkError {
    /// The write of the chunk's bytes failed for lack of space (ENOSPC, EDQUOT): nothing of it
    /// is trusted, but the file and the bytes before it are fine; the log can continue.
    Full {
        err: StoreError,
        /// The segment file to cut back, its base offset and the length to keep (where the
        /// failed chunk's first offset starts).
        file: Arc<File>,
        base: u64,
        position: u64,
        /// The roll before it created this file.
        created: Option<Arc<File>>,
        /// The roll before it sealed the previous segment.
        sealed: bool,
    },
    /// Anything else (a failed fsync above all): the log is poisoned.
    Fatal(StoreError),
}

impl From<StoreError> for ChunkError {
    fn from(e: StoreError) -> Self {
        ChunkError::Fatal(e)
    }
}

/// Whether a failed write failed for lack of space (the disk or the user's quota is full).
fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(c) if c == libc::ENOSPC || c == libc::EDQUOT)
}

/// The retryable error given to appends a failed write took back.
fn disk_full(name: &str, what: &str) -> StoreError {
    StoreError::io(
        "write",
        name,
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("no space left on device: {what}; retry later"),
        ),
    )
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
}

impl Log for FileLog {
    fn append(&self, records: &[Record]) -> Result<Appended, StoreError> {
        self.shared.append(records)
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
