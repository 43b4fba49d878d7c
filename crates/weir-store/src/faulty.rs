//! A fault-injecting in-memory [`Store`] for deterministic simulation.
//!
//! [`FaultyStore`] keeps [`crate::memory`]'s semantics (records and journal entries in memory)
//! but separates **written** from **durable**, like a disk with a page cache:
//!
//! - an append is *written* at once (offsets assigned) and *pending* until a **sync** — the
//!   simulated group-commit fdatasync — makes every pending byte of that object durable at once;
//! - a sync happens when someone polls an append's [`Durable`] (or a [`Log::wait_durable`] /
//!   [`Log::flush`] for a written offset), or when the simulator calls
//!   [`FaultyStore::sync_all`]. So a simulator decides what happens between *write* and *fsync*
//!   simply by not polling yet;
//! - a sync can **fail** (seeded probability, or exactly the Nth one): the object is poisoned
//!   like `weir-log`'s (`StoreError::Failed`; appends refused, reads up to the durable end) until
//!   the next [`FaultyStore::crash`], since after a failed fsync the page cache cannot be trusted;
//! - an append can be refused with a retryable error ([`StoreError::Busy`], or an I/O error of
//!   kind `StorageFull` = disk full) that changes nothing;
//! - a journal snapshot can fail after flushing the entries (the old snapshot and entries stand);
//! - [`FaultyStore::crash`] simulates `kill -9` / power loss: every handle dies
//!   ([`StoreError::Closed`]), every durable byte survives, and of each object's pending
//!   (written, not synced) records a seeded prefix survives — none, some or all, the way a torn
//!   write is cut at the last whole record by recovery. The next `open_*` sees what survived.
//!
//! Every decision comes from one seeded generator, so a simulation that makes the same calls in
//! the same order sees the same faults. [`FaultyStore::counters`] says what was injected.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::memory::{read_records, segment_after};
use crate::{
    Appended, Durable, FsyncPolicy, Journal, JournalContents, Log, LogConfig, LogStats, Offset,
    Reclaimed, Record, Store, StoreError, StoreName, StoredRecord, WaitDurable,
};

/// Records per simulated segment (small, so reclamation happens in short simulations).
const RECORDS_PER_SEGMENT: u64 = 64;

/// Which faults to inject, and how often. Probabilities are in parts per million.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Seed of every decision.
    pub seed: u64,
    /// Chance that a sync (fdatasync) fails and poisons its object.
    pub sync_failure_ppm: u32,
    /// Fail exactly this sync (1-based, counted over the whole store), in addition.
    pub fail_nth_sync: Option<u64>,
    /// Chance that an append is refused with a retryable "disk full" I/O error.
    pub disk_full_ppm: u32,
    /// Chance that an append is refused with [`StoreError::Busy`].
    pub busy_ppm: u32,
    /// Refuse exactly this append (1-based) as "disk full", in addition.
    pub fail_nth_append: Option<u64>,
    /// Chance that a journal snapshot fails (after its entries were flushed).
    pub snapshot_failure_ppm: u32,
}

/// What the store injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Appends attempted (logs and journals).
    pub appends: u64,
    /// Appends refused as disk full.
    pub disk_full: u64,
    /// Appends refused as busy.
    pub busy: u64,
    /// Syncs that had something to make durable.
    pub syncs: u64,
    /// Syncs that failed.
    pub failed_syncs: u64,
    /// Snapshots that failed.
    pub failed_snapshots: u64,
    /// Crashes simulated.
    pub crashes: u64,
    /// Written but not durable records or entries dropped by crashes.
    pub lost_pending: u64,
    /// Written but not durable records or entries that survived crashes anyway.
    pub kept_pending: u64,
}

/// A tiny deterministic generator (SplitMix64): no dependency, same sequence everywhere.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.next() % 1_000_000 < u64::from(ppm)
    }

    /// Uniform in `0..=n`.
    fn upto(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % (n + 1)
        }
    }
}

#[derive(Debug)]
struct Faults {
    plan: FaultPlan,
    rng: SplitMix,
    counters: FaultCounters,
}

impl Faults {
    /// Decides whether the next append is refused.
    fn append(&mut self, name: &str) -> Result<(), StoreError> {
        self.counters.appends += 1;
        if self.plan.fail_nth_append == Some(self.counters.appends)
            || self.rng.chance(self.plan.disk_full_ppm)
        {
            self.counters.disk_full += 1;
            return Err(StoreError::io(
                "write",
                name,
                std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device (injected)",
                ),
            ));
        }
        if self.rng.chance(self.plan.busy_ppm) {
            self.counters.busy += 1;
            return Err(StoreError::Busy {
                pending_bytes: 1,
                max_pending_bytes: 1,
            });
        }
        Ok(())
    }

    /// Decides whether a sync fails.
    fn sync_fails(&mut self) -> bool {
        self.counters.syncs += 1;
        let fail = self.plan.fail_nth_sync == Some(self.counters.syncs)
            || self.rng.chance(self.plan.sync_failure_ppm);
        if fail {
            self.counters.failed_syncs += 1;
        }
        fail
    }

    /// How many of `pending` written-not-durable items survive a crash.
    fn survivors(&mut self, pending: u64) -> u64 {
        let kept = match self.rng.next() % 3 {
            0 => 0,
            1 => pending,
            _ => self.rng.upto(pending),
        };
        self.counters.lost_pending += pending - kept;
        self.counters.kept_pending += kept;
        kept
    }
}

type SharedFaults = Arc<Mutex<Faults>>;

#[derive(Debug, Clone)]
enum Object {
    Log(Arc<FaultyLog>),
    Journal(Arc<FaultyJournal>),
}

/// The fault-injecting store. See the module docs.
#[derive(Debug)]
pub struct FaultyStore {
    faults: SharedFaults,
    objects: Mutex<BTreeMap<StoreName, Object>>,
}

impl FaultyStore {
    /// An empty store injecting the faults of `plan`.
    pub fn new(plan: FaultPlan) -> FaultyStore {
        FaultyStore {
            faults: Arc::new(Mutex::new(Faults {
                plan,
                rng: SplitMix(plan.seed),
                counters: FaultCounters::default(),
            })),
            objects: Mutex::new(BTreeMap::new()),
        }
    }

    /// Changes the plan from now on (the generator keeps its state).
    pub fn set_plan(&self, plan: FaultPlan) {
        self.faults.lock().plan = plan;
    }

    /// What was injected so far.
    pub fn counters(&self) -> FaultCounters {
        self.faults.lock().counters
    }

    /// Syncs every object with pending writes (what the writer threads would do next); failures
    /// poison the objects they hit, as a failed fdatasync would.
    pub fn sync_all(&self) {
        for object in self.objects.lock().values() {
            match object {
                Object::Log(l) => {
                    let _ = l.sync();
                }
                Object::Journal(j) => {
                    let _ = j.entries.sync();
                }
            }
        }
    }

    /// Simulates a crash: every open handle fails with [`StoreError::Closed`] from now on, every
    /// durable byte survives, and a seeded prefix of each object's pending writes survives too.
    /// Poisoning is gone (the next open "recovers" from the surviving bytes).
    pub fn crash(&self) {
        let mut objects = self.objects.lock();
        self.faults.lock().counters.crashes += 1;
        // Lock order everywhere: object (snapshot, then data), then faults.
        for object in objects.values_mut() {
            match object {
                Object::Log(l) => {
                    let data = l.survive();
                    *object = Object::Log(Arc::new(FaultyLog::from_data(
                        l.name.clone(),
                        data,
                        self.faults.clone(),
                    )));
                }
                Object::Journal(j) => {
                    let (snapshot, entries) = {
                        let mut s = j.snapshot.lock();
                        s.closed = true;
                        (s.snapshot.clone(), j.entries.survive())
                    };
                    *object = Object::Journal(Arc::new(FaultyJournal::from_parts(
                        j.entries.name.clone(),
                        snapshot,
                        entries,
                        self.faults.clone(),
                    )));
                }
            }
        }
    }
}

#[derive(Debug)]
struct LogData {
    config: LogConfig,
    /// Records `start..next`; those below `durable` are durable.
    records: std::collections::VecDeque<StoredRecord>,
    start: Offset,
    durable: Offset,
    next: Offset,
    low_water: Offset,
    bytes: u64,
    /// Set by a failed sync: the cause.
    failed: Option<String>,
    /// Set by a crash or a remove: this incarnation is gone.
    closed: bool,
}

impl LogData {
    fn empty(config: LogConfig) -> LogData {
        LogData {
            config,
            records: Default::default(),
            start: 0,
            durable: 0,
            next: 0,
            low_water: 0,
            bytes: 0,
            failed: None,
            closed: false,
        }
    }
}

/// A log of a [`FaultyStore`].
#[derive(Debug)]
pub struct FaultyLog {
    name: String,
    data: Mutex<LogData>,
    durable_tx: watch::Sender<Offset>,
    faults: SharedFaults,
}

impl FaultyLog {
    fn from_data(name: String, data: LogData, faults: SharedFaults) -> FaultyLog {
        let durable = data.durable;
        FaultyLog {
            name,
            data: Mutex::new(data),
            durable_tx: watch::channel(durable).0,
            faults,
        }
    }

    fn new(name: String, config: LogConfig, faults: SharedFaults) -> FaultyLog {
        FaultyLog::from_data(name, LogData::empty(config), faults)
    }

    /// Makes every written record durable (one simulated fdatasync), or poisons the log.
    fn sync(&self) -> Result<(), StoreError> {
        let mut d = self.data.lock();
        self.sync_locked(&mut d)
    }

    fn sync_locked(&self, d: &mut LogData) -> Result<(), StoreError> {
        if d.closed {
            return Err(StoreError::Closed);
        }
        if let Some(cause) = &d.failed {
            return Err(self.failed(cause));
        }
        if d.durable == d.next {
            return Ok(());
        }
        if self.faults.lock().sync_fails() {
            let cause = format!("fdatasync {}: input/output error (injected)", self.name);
            d.failed = Some(cause.clone());
            return Err(self.failed(&cause));
        }
        d.durable = d.next;
        self.durable_tx.send_replace(d.durable);
        Ok(())
    }

    fn failed(&self, cause: &str) -> StoreError {
        StoreError::Failed {
            name: self.name.clone(),
            cause: cause.to_string(),
        }
    }

    /// Resolves once `end` is durable, syncing when it is written but not durable yet.
    fn durable_until(self: &Arc<Self>, end: Offset) -> Durable {
        let log = self.clone();
        Durable::from_future(async move {
            let mut rx = {
                let mut d = log.data.lock();
                if d.closed {
                    return Err(StoreError::Closed);
                }
                if d.durable >= end {
                    return Ok(());
                }
                if d.next >= end {
                    return log.sync_locked(&mut d);
                }
                log.durable_tx.subscribe()
            };
            rx.wait_for(|durable| *durable >= end)
                .await
                .map(|_| ())
                .map_err(|_| StoreError::Closed)
        })
    }

    /// Marks this incarnation closed and returns what a crash leaves of it.
    fn survive(&self) -> LogData {
        let mut d = self.data.lock();
        d.closed = true;
        let pending = d.next - d.durable;
        let kept = self.faults.lock().survivors(pending);
        let mut records = d.records.clone();
        // Whole records only: a spanning record survives entirely or not at all.
        let keep_len =
            records.partition_point(|r| r.offset + u64::from(r.span) <= d.durable + kept);
        records.truncate(keep_len);
        let keep_end = records
            .back()
            .map_or(d.start, |r| r.offset + u64::from(r.span));
        let bytes = records.iter().map(|r| r.record.payload_len() as u64).sum();
        LogData {
            config: d.config,
            records,
            start: d.start,
            durable: keep_end,
            next: keep_end,
            // The mark lives in memory only: the owner sets it again after a restart.
            low_water: 0,
            bytes,
            failed: None,
            closed: false,
        }
    }
}

/// A handle that keeps the log alive and can build durability futures.
#[derive(Debug)]
struct LogHandle(Arc<FaultyLog>);

impl LogHandle {
    /// Appends `records`, record `i` occupying `spans[i]` offsets (1 without `spans`).
    fn append_spans(
        &self,
        records: &[Record],
        spans: Option<&[u32]>,
    ) -> Result<Appended, StoreError> {
        if records.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        let mut d = self.0.data.lock();
        if d.closed {
            return Err(StoreError::Closed);
        }
        if let Some(cause) = &d.failed {
            return Err(self.0.failed(cause));
        }
        for r in records {
            if r.payload_len() > d.config.max_record_bytes as usize {
                return Err(StoreError::RecordTooLarge {
                    size: r.payload_len(),
                    max: d.config.max_record_bytes,
                });
            }
        }
        self.0.faults.lock().append(&self.0.name)?;
        let first = d.next;
        for (i, r) in records.iter().enumerate() {
            // `check_spans` made the lengths equal; without spans every record spans one.
            let span = spans.and_then(|s| s.get(i).copied()).unwrap_or(1);
            let offset = d.next;
            d.bytes += r.payload_len() as u64;
            d.records.push_back(StoredRecord {
                offset,
                span,
                record: r.clone(),
            });
            d.next += u64::from(span);
        }
        let next = d.next;
        drop(d);
        Ok(Appended {
            first_offset: first,
            next_offset: next,
            durable: self.0.durable_until(next),
        })
    }
}

impl Log for LogHandle {
    fn append(&self, records: &[Record]) -> Result<Appended, StoreError> {
        self.append_spans(records, None)
    }

    fn append_spanning(&self, records: &[Record], spans: &[u32]) -> Result<Appended, StoreError> {
        crate::check_spans(records, spans)?;
        self.append_spans(records, Some(spans))
    }

    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let d = self.0.data.lock();
        if d.closed {
            return Err(StoreError::Closed);
        }
        if from < d.start {
            return Err(StoreError::OffsetOutOfRange {
                requested: from,
                start: d.start,
                next: d.next,
            });
        }
        Ok(read_records(
            &d.records,
            from,
            d.durable,
            max_records,
            max_bytes,
        ))
    }

    fn offset_for_timestamp(&self, timestamp_ms: u64) -> Result<Option<Offset>, StoreError> {
        let d = self.0.data.lock();
        Ok(d.records
            .iter()
            .take_while(|r| r.offset < d.durable)
            .find(|r| r.record.timestamp_ms >= timestamp_ms)
            .map(|r| r.offset))
    }

    fn stats(&self) -> LogStats {
        let d = self.0.data.lock();
        LogStats {
            start_offset: d.start,
            durable_offset: d.durable,
            next_offset: d.next,
            bytes: d.bytes,
            segments: (d.next - d.start).div_ceil(RECORDS_PER_SEGMENT).max(1),
        }
    }

    fn wait_durable(&self, offset: Offset) -> WaitDurable {
        self.0.durable_until(offset + 1)
    }

    fn set_low_water(&self, offset: Offset) -> Result<(), StoreError> {
        let mut d = self.0.data.lock();
        d.low_water = d.low_water.max(offset);
        Ok(())
    }

    fn reclaim(&self, now_ms: u64) -> Result<Reclaimed, StoreError> {
        let mut d = self.0.data.lock();
        if d.closed {
            return Err(StoreError::Closed);
        }
        let mut reclaimed = Reclaimed::default();
        // Never the open segment, never a segment not wholly durable.
        while let Some((count, segment_end)) =
            segment_after(&d.records, d.start, RECORDS_PER_SEGMENT)
                .filter(|(_, segment_end)| *segment_end <= d.durable)
        {
            let newest_ts = d
                .records
                .get(count - 1)
                .map_or(0, |r| r.record.timestamp_ms);
            let seg_bytes: u64 = d
                .records
                .iter()
                .take(count)
                .map(|r| r.record.payload_len() as u64)
                .sum();
            let retention = d.config.retention;
            let below_mark = segment_end <= d.low_water;
            let too_old = retention
                .max_age_ms
                .is_some_and(|age| now_ms.saturating_sub(newest_ts) > age);
            let too_big = retention.max_bytes.is_some_and(|max| d.bytes > max);
            if !(below_mark || too_old || too_big) {
                break;
            }
            d.records.drain(..count);
            d.start = segment_end;
            d.bytes -= seg_bytes;
            reclaimed.segments += 1;
            reclaimed.bytes += seg_bytes;
        }
        reclaimed.start_offset = d.start;
        Ok(reclaimed)
    }

    fn flush(&self) -> Durable {
        let next = self.0.data.lock().next;
        self.0.durable_until(next)
    }
}

#[derive(Debug)]
struct SnapshotState {
    snapshot: Option<Bytes>,
    closed: bool,
}

/// A journal of a [`FaultyStore`]: a snapshot (replaced atomically) plus an entries log with
/// the same written / durable split and faults as [`FaultyLog`].
#[derive(Debug)]
pub struct FaultyJournal {
    snapshot: Mutex<SnapshotState>,
    entries: Arc<FaultyLog>,
}

impl FaultyJournal {
    fn from_parts(
        name: String,
        snapshot: Option<Bytes>,
        entries: LogData,
        faults: SharedFaults,
    ) -> FaultyJournal {
        FaultyJournal {
            snapshot: Mutex::new(SnapshotState {
                snapshot,
                closed: false,
            }),
            entries: Arc::new(FaultyLog::from_data(name, entries, faults)),
        }
    }
}

impl FaultyJournal {
    /// What an open finds now: the snapshot and the durable entries.
    fn contents(&self) -> JournalContents {
        let s = self.snapshot.lock();
        let d = self.entries.data.lock();
        JournalContents {
            snapshot: s.snapshot.clone(),
            entries: d
                .records
                .iter()
                .take_while(|r| r.offset < d.durable)
                .map(|r| r.record.body.clone())
                .collect(),
        }
    }
}

/// A handle on a [`FaultyJournal`], with what was there when it was opened.
#[derive(Debug)]
struct JournalHandle(Arc<FaultyJournal>, JournalContents);

impl Journal for JournalHandle {
    fn recovered(&self) -> JournalContents {
        self.1.clone()
    }

    fn append(&self, entries: &[Bytes]) -> Result<Durable, StoreError> {
        let records: Vec<Record> = entries
            .iter()
            .map(|e| Record {
                body: e.clone(),
                ..Record::default()
            })
            .collect();
        Ok(LogHandle(self.0.entries.clone()).append(&records)?.durable)
    }

    fn snapshot(&self, state: Bytes) -> Result<(), StoreError> {
        let mut s = self.0.snapshot.lock();
        if s.closed {
            return Err(StoreError::Closed);
        }
        // Entries the snapshot replaces must be durable first (as in weir-log).
        let mut d = self.0.entries.data.lock();
        self.0.entries.sync_locked(&mut d)?;
        let mut faults = self.0.entries.faults.lock();
        let ppm = faults.plan.snapshot_failure_ppm;
        if faults.rng.chance(ppm) {
            faults.counters.failed_snapshots += 1;
            return Err(StoreError::io(
                "write snapshot",
                &self.0.entries.name,
                std::io::Error::other("injected snapshot failure"),
            ));
        }
        drop(faults);
        s.snapshot = Some(state);
        d.start = d.next;
        d.records.clear();
        d.bytes = 0;
        Ok(())
    }

    fn bytes_since_snapshot(&self) -> u64 {
        self.0.entries.data.lock().bytes
    }
}

impl Store for FaultyStore {
    fn open_log(&self, name: &StoreName, config: &LogConfig) -> Result<Arc<dyn Log>, StoreError> {
        let mut objects = self.objects.lock();
        match objects.get(name) {
            Some(Object::Log(log)) => Ok(Arc::new(LogHandle(log.clone()))),
            Some(Object::Journal(_)) => Err(StoreError::InvalidName {
                name: name.to_string(),
                reason: "a journal of that name exists".into(),
            }),
            None => {
                let log = Arc::new(FaultyLog::new(
                    name.to_string(),
                    *config,
                    self.faults.clone(),
                ));
                objects.insert(name.clone(), Object::Log(log.clone()));
                Ok(Arc::new(LogHandle(log)))
            }
        }
    }

    fn open_journal(
        &self,
        name: &StoreName,
        _fsync: FsyncPolicy,
    ) -> Result<Arc<dyn Journal>, StoreError> {
        let mut objects = self.objects.lock();
        match objects.get(name) {
            Some(Object::Journal(j)) => Ok(Arc::new(JournalHandle(j.clone(), j.contents()))),
            Some(Object::Log(_)) => Err(StoreError::InvalidName {
                name: name.to_string(),
                reason: "a log of that name exists".into(),
            }),
            None => {
                let j = Arc::new(FaultyJournal::from_parts(
                    name.to_string(),
                    None,
                    LogData::empty(LogConfig::default()),
                    self.faults.clone(),
                ));
                objects.insert(name.clone(), Object::Journal(j.clone()));
                Ok(Arc::new(JournalHandle(j, JournalContents::default())))
            }
        }
    }

    fn remove(&self, name: &StoreName) -> Result<(), StoreError> {
        let prefix = name.components();
        self.objects.lock().retain(|k, object| {
            let keep = !k.components().starts_with(prefix);
            if !keep {
                match object {
                    Object::Log(l) => l.data.lock().closed = true,
                    Object::Journal(j) => {
                        j.snapshot.lock().closed = true;
                        j.entries.data.lock().closed = true;
                    }
                }
            }
            keep
        });
        Ok(())
    }

    fn list(&self, prefix: &StoreName) -> Result<Vec<String>, StoreError> {
        let depth = prefix.components().len();
        let mut out: Vec<String> = self
            .objects
            .lock()
            .keys()
            .filter(|k| {
                k.components().len() > depth && k.components().starts_with(prefix.components())
            })
            .map(|k| k.components()[depth].clone())
            .collect();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn name(s: &str) -> StoreName {
        StoreName::parse(s).expect("name")
    }

    fn rec(body: &'static str) -> Record {
        Record {
            body: Bytes::from_static(body.as_bytes()),
            ..Record::default()
        }
    }

    #[test]
    fn faulty_store_without_faults_passes_conformance() {
        crate::conformance::run_all(
            &|| Box::new(FaultyStore::new(FaultPlan::default())) as Box<dyn Store>,
            &|s| s,
        );
    }

    #[test]
    fn pending_writes_are_invisible_until_synced_and_may_die_in_a_crash() {
        let store = FaultyStore::new(FaultPlan {
            seed: 7,
            ..FaultPlan::default()
        });
        let log = store
            .open_log(&name("a/b"), &LogConfig::default())
            .expect("open");
        let a = log.append(&[rec("one"), rec("two")]).expect("append");
        assert_eq!(log.stats().durable_offset, 0);
        assert!(log.read(0, 10, 1 << 20).expect("read").is_empty());
        a.durable
            .now_or_never()
            .expect("resolves at once")
            .expect("ok");
        assert_eq!(log.read(0, 10, 1 << 20).expect("read").len(), 2);
        let pending = log.append(&[rec("three")]).expect("append");
        store.crash();
        assert!(matches!(
            pending.durable.now_or_never(),
            Some(Err(StoreError::Closed))
        ));
        assert!(matches!(log.append(&[rec("x")]), Err(StoreError::Closed)));
        let log = store
            .open_log(&name("a/b"), &LogConfig::default())
            .expect("reopen");
        let n = log.read(0, 10, 1 << 20).expect("read").len();
        assert!(
            n == 2 || n == 3,
            "durable records survive, the pending one may: {n}"
        );
        assert_eq!(store.counters().crashes, 1);
    }

    #[test]
    fn a_failed_sync_poisons_until_the_crash() {
        let store = FaultyStore::new(FaultPlan {
            fail_nth_sync: Some(2),
            ..FaultPlan::default()
        });
        let log = store
            .open_log(&name("l"), &LogConfig::default())
            .expect("open");
        let first = log.append(&[rec("a")]).expect("append");
        first
            .durable
            .now_or_never()
            .expect("ready")
            .expect("sync 1 ok");
        let second = log.append(&[rec("b")]).expect("append");
        assert!(matches!(
            second.durable.now_or_never(),
            Some(Err(StoreError::Failed { .. }))
        ));
        assert!(matches!(
            log.append(&[rec("c")]),
            Err(StoreError::Failed { .. })
        ));
        assert_eq!(log.read(0, 10, 1 << 20).expect("read").len(), 1);
        store.crash();
        let log = store
            .open_log(&name("l"), &LogConfig::default())
            .expect("reopen");
        log.append(&[rec("d")]).expect("healthy again");
    }

    #[test]
    fn disk_full_is_retryable_and_changes_nothing() {
        let store = FaultyStore::new(FaultPlan {
            fail_nth_append: Some(2),
            ..FaultPlan::default()
        });
        let log = store
            .open_log(&name("l"), &LogConfig::default())
            .expect("open");
        log.append(&[rec("a")]).expect("append 1");
        let err = log.append(&[rec("b")]).expect_err("append 2 refused");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(log.stats().next_offset, 1);
        log.append(&[rec("c")]).expect("append 3");
    }

    #[test]
    fn journal_snapshot_failure_keeps_the_old_state() {
        let store = FaultyStore::new(FaultPlan {
            snapshot_failure_ppm: 1_000_000,
            ..FaultPlan::default()
        });
        let j = store
            .open_journal(&name("j"), FsyncPolicy::Always)
            .expect("open");
        let d = j.append(&[Bytes::from_static(b"e1")]).expect("append");
        d.now_or_never().expect("ready").expect("ok");
        assert!(j.snapshot(Bytes::from_static(b"snap")).is_err());
        store.crash();
        let j = store
            .open_journal(&name("j"), FsyncPolicy::Always)
            .expect("reopen");
        assert_eq!(
            j.recovered(),
            JournalContents {
                snapshot: None,
                entries: vec![Bytes::from_static(b"e1")]
            }
        );
    }
}
