//! One writer pass over one log: take everything pending, write it (rolling segments as
//! needed), fdatasync once, then publish the new durable offset and wake the appenders it
//! covers. A full disk takes back what could not be written and keeps the log usable; any other
//! I/O failure poisons the log. The pool that runs passes is [`crate::writer`].
//!
//! Under policy `Always` a pass first *gathers* when appends are concurrent: see
//! [`LogShared::gather`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;
use weir_store::{FsyncPolicy, StoreError};

use crate::index;
use crate::log::{Chunk, LogShared, State, WriterState};
use crate::segment;

/// Shortest pause in arrivals that ends a gathering wait.
const GATHER_MIN_GAP: Duration = Duration::from_micros(50);
/// Longest pause in arrivals a gathering wait sits through.
const GATHER_MAX_GAP: Duration = Duration::from_micros(250);
/// Pending bytes past which a pass stops gathering: writing them takes about as long as an
/// fdatasync's fixed cost, so the pass is bandwidth-bound and waiting would only serialise
/// the appends with the write.
pub(crate) const GATHER_MAX_BYTES: u64 = 256 * 1024;

impl LogShared {
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

    /// Group commit under concurrency. When the last pass released several appenders they are
    /// likely to append again within microseconds, one after the other as they get a CPU. A
    /// pass that started at the first of them would give its fdatasync one or two records and
    /// leave the rest to the next fdatasync, which costs as much: 64 appenders waiting one
    /// append each then split into two groups, each paying a whole fdatasync. So a pass under
    /// `Always` first waits until as many appends wait as the last pass released, or until
    /// none arrived for a quarter of an average fdatasync (clamped to 50–250 µs), or until
    /// [`GATHER_MAX_BYTES`] are pending (the write is then bandwidth-bound: waiting would only
    /// serialise appends and write), and never longer than one average fdatasync; a flush ends
    /// the wait at once. Nothing waits when the last pass released at most one appender (a
    /// lone appender pays no extra latency). The pool thread sleeps meanwhile (other logs use
    /// the other threads).
    fn gather(&self, st: &mut MutexGuard<'_, State>) {
        let gap = (st.sync_avg / 4).clamp(GATHER_MIN_GAP, GATHER_MAX_GAP);
        let cap = st.sync_avg.max(gap);
        self.gather_for(st, gap, cap);
    }

    /// [`LogShared::gather`] with the pause in arrivals that ends the wait and its longest
    /// duration given.
    fn gather_for(&self, st: &mut MutexGuard<'_, State>, gap: Duration, cap: Duration) {
        let want = st.last_released;
        if self.config.fsync != FsyncPolicy::Always
            || want < 2
            || st.waiters.is_empty()
            || st.waiters.len() >= want
            || st.pending_bytes >= GATHER_MAX_BYTES
            || st.flush_requested
            || st.failed.is_some()
        {
            return;
        }
        let deadline = Instant::now() + cap;
        st.gather_target = want;
        let mut seen = st.waiters.len();
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let timed_out = self
                .gathered
                .wait_until(st, (now + gap).min(deadline))
                .timed_out();
            let n = st.waiters.len();
            if n >= want
                || st.pending_bytes >= GATHER_MAX_BYTES
                || st.flush_requested
                || st.failed.is_some()
                || (timed_out && n == seen)
            {
                break;
            }
            seen = n;
        }
        st.gather_target = 0;
    }

    /// One writer pass; see [`crate::writer`].
    pub(crate) fn run_pass(self: &Arc<Self>) {
        let (chunks, target, flush) = {
            let mut st = self.state.lock();
            self.gather(&mut st);
            st.urgent = false; // this pass writes everything pending, deferred appends included
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
        let mut synced_in = None;
        if result.is_ok() && w.dirty && (due || flush) {
            if let Some((base, file)) = &w.current {
                let started = Instant::now();
                result = file.sync_data().map_err(|e| {
                    StoreError::io("fdatasync", self.segment_path(*base).display(), e)
                });
                let took = started.elapsed();
                self.pool.syncs.observe(took);
                synced_in = Some(took);
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
        st.last_released = done.len();
        if let Some(d) = synced_in {
            st.sync_avg = if st.sync_avg.is_zero() {
                d
            } else {
                (st.sync_avg * 7 + d) / 8
            };
        }
        // Only deferred appends pending: a timer writes them, unless an append comes first.
        let more = st.urgent || st.flush_requested;
        let mut arm = None;
        if !more {
            st.scheduled = false;
            let deferred =
                (!st.pending.is_empty()).then(|| Instant::now() + crate::log::DEFERRED_WRITE_DELAY);
            let interval = match self.config.fsync {
                FsyncPolicy::Interval { ms } if !clean => {
                    Some(last_sync + Duration::from_millis(ms))
                }
                _ => None,
            };
            let at = match (deferred, interval) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if at.is_some() && !st.timer_armed {
                st.timer_armed = true;
                arm = at;
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
        st.urgent = false;
        st.scheduled = false;
        st.last_released = 0; // the refused appenders back off: nothing to gather for
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
pub(crate) fn disk_full(name: &str, what: &str) -> StoreError {
    StoreError::io(
        "write",
        name,
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("no space left on device: {what}; retry later"),
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use weir_store::{LogConfig, Record};

    use super::*;
    use crate::writer::Pool;

    fn record() -> Record {
        Record {
            timestamp_ms: 1,
            body: Bytes::from_static(b"x"),
            ..Record::default()
        }
    }

    /// A log whose passes only run when the test calls them: `scheduled` is held true, so
    /// appends never hand the log to the pool. The last pass "released" 8 appenders.
    fn held_log(dir: &std::path::Path, config: &LogConfig) -> (Pool, Arc<LogShared>) {
        let lock = File::create(dir.join(".lock")).expect("lock file");
        let pool = Pool::start(1, lock).expect("pool");
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).expect("mkdir");
        let log =
            LogShared::open("t".into(), log_dir, config, pool.shared().clone()).expect("open");
        let mut st = log.state.lock();
        st.scheduled = true;
        st.last_released = 8;
        drop(st);
        (pool, log)
    }

    const LONG: Duration = Duration::from_secs(20);

    #[test]
    fn gathering_ends_when_the_expected_appends_arrived() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_pool, log) = held_log(tmp.path(), &LogConfig::default());
        let mut durables = vec![log.append(&[record()], None).expect("append").durable];
        let appender = {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..7)
                    .map(|_| {
                        std::thread::sleep(Duration::from_millis(1));
                        log.append(&[record()], None).expect("append").durable
                    })
                    .collect::<Vec<_>>()
            })
        };
        let started = Instant::now();
        let mut st = log.state.lock();
        log.gather_for(&mut st, LONG, LONG);
        assert_eq!(st.waiters.len(), 8, "the pass waited for all eight");
        assert_eq!(st.gather_target, 0);
        drop(st);
        assert!(started.elapsed() < LONG / 2, "and not longer");
        durables.extend(appender.join().expect("appender"));
        log.run_pass();
        assert_eq!(log.state.lock().last_released, 8);
        for d in durables {
            futures::executor::block_on(d).expect("durable");
        }
    }

    #[test]
    fn gathering_ends_at_a_pause_in_arrivals_at_the_cap_or_at_a_flush() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_pool, log) = held_log(tmp.path(), &LogConfig::default());
        let d1 = log.append(&[record()], None).expect("append").durable;

        let started = Instant::now();
        log.gather_for(&mut log.state.lock(), Duration::from_millis(1), LONG);
        assert!(started.elapsed() < LONG / 2, "nothing arrived for a gap");

        let started = Instant::now();
        log.gather_for(&mut log.state.lock(), LONG, Duration::from_millis(1));
        assert!(started.elapsed() < LONG / 2, "the cap");

        let flusher = {
            let log = log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                log.flush()
            })
        };
        let started = Instant::now();
        let mut st = log.state.lock();
        log.gather_for(&mut st, LONG, LONG);
        assert!(st.flush_requested, "a flush ended the wait");
        drop(st);
        assert!(started.elapsed() < LONG / 2);
        let flushed = flusher.join().expect("flusher");
        log.run_pass();
        futures::executor::block_on(d1).expect("durable");
        futures::executor::block_on(flushed).expect("flushed");
    }

    #[test]
    fn gathering_stops_once_enough_bytes_are_pending() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_pool, log) = held_log(tmp.path(), &LogConfig::default());
        let big = Record {
            body: Bytes::from(vec![0u8; GATHER_MAX_BYTES as usize / 2]),
            ..record()
        };
        let d1 = log
            .append(std::slice::from_ref(&big), None)
            .expect("append")
            .durable;
        let appender = {
            let log = log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                log.append(&[big], None).expect("append").durable
            })
        };
        let started = Instant::now();
        let mut st = log.state.lock();
        log.gather_for(&mut st, LONG, LONG);
        assert_eq!(st.waiters.len(), 2, "two appends are enough bytes");
        drop(st);
        assert!(started.elapsed() < LONG / 2);
        let d2 = appender.join().expect("appender");
        log.run_pass();
        futures::executor::block_on(d1).expect("durable");
        futures::executor::block_on(d2).expect("durable");
    }

    #[test]
    fn no_gathering_after_a_lone_appender_or_under_other_policies() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_pool, log) = held_log(tmp.path(), &LogConfig::default());
        log.state.lock().last_released = 1;
        let d = log.append(&[record()], None).expect("append").durable;
        let started = Instant::now();
        log.gather_for(&mut log.state.lock(), LONG, LONG);
        assert!(started.elapsed() < LONG / 2);
        log.run_pass();
        futures::executor::block_on(d).expect("durable");
        assert_eq!(log.state.lock().last_released, 1, "the pass released one");

        let tmp = tempfile::tempdir().expect("tmp");
        let interval = LogConfig {
            fsync: FsyncPolicy::Interval { ms: 5 },
            ..LogConfig::default()
        };
        let (_pool, log) = held_log(tmp.path(), &interval);
        let _d = log.append(&[record()], None).expect("append").durable;
        let started = Instant::now();
        log.gather_for(&mut log.state.lock(), LONG, LONG);
        assert!(started.elapsed() < LONG / 2);
        log.run_pass();
    }
}
