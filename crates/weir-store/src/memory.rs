//! An in-memory [`Store`]: every append is durable at once. For tests and simulation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{
    Appended, Durable, FsyncPolicy, Journal, JournalContents, Log, LogConfig, LogStats, Offset,
    Reclaimed, Record, Store, StoreError, StoreName, StoredRecord, WaitDurable,
};

/// Offsets per in-memory "segment", so that reclamation behaves like a segmented log.
const RECORDS_PER_SEGMENT: u64 = 1024;

/// The in-memory "segment" starting at `start`: how many records it holds and the offset after
/// it (the first record at or past the next multiple of `per_segment`; a spanning record never
/// straddles two segments). `None` when no record follows it (the open segment).
pub(crate) fn segment_after(
    records: &VecDeque<StoredRecord>,
    start: Offset,
    per_segment: u64,
) -> Option<(usize, Offset)> {
    let boundary = (start / per_segment + 1) * per_segment;
    let count = records.partition_point(|r| r.offset < boundary);
    records.get(count).map(|r| (count, r.offset))
}

/// [`Log::read`] over records held in memory: from the record holding `from`, below `end`.
pub(crate) fn read_records(
    records: &VecDeque<StoredRecord>,
    from: Offset,
    end: Offset,
    max_records: usize,
    max_bytes: usize,
) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let (mut bytes, mut offsets) = (0usize, 0u64);
    let first = records.partition_point(|r| r.offset + u64::from(r.span) <= from);
    for r in records.iter().skip(first) {
        if r.offset >= end
            || offsets >= max_records as u64
            || (!out.is_empty() && bytes + r.record.payload_len() > max_bytes)
        {
            break;
        }
        bytes += r.record.payload_len();
        offsets += r.offset + u64::from(r.span) - r.offset.max(from);
        out.push(r.clone());
    }
    out
}

#[derive(Debug)]
enum Object {
    Log(Arc<MemoryLog>),
    Journal(Arc<MemoryJournal>),
}

/// An in-memory store. Objects live as long as the store; reopening a name returns the same data,
/// which is how tests simulate a restart of the broker over surviving storage.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<StoreName, Object>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn open_log(&self, name: &StoreName, config: &LogConfig) -> Result<Arc<dyn Log>, StoreError> {
        let mut objects = self.objects.lock();
        match objects.get(name) {
            Some(Object::Log(log)) => Ok(log.clone()),
            Some(Object::Journal(_)) => Err(StoreError::InvalidName {
                name: name.to_string(),
                reason: "a journal of that name exists".into(),
            }),
            None => {
                let log = Arc::new(MemoryLog::new(*config));
                objects.insert(name.clone(), Object::Log(log.clone()));
                Ok(log)
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
            Some(Object::Journal(journal)) => {
                journal.reopen();
                Ok(journal.clone())
            }
            Some(Object::Log(_)) => Err(StoreError::InvalidName {
                name: name.to_string(),
                reason: "a log of that name exists".into(),
            }),
            None => {
                let journal = Arc::new(MemoryJournal::default());
                objects.insert(name.clone(), Object::Journal(journal.clone()));
                Ok(journal)
            }
        }
    }

    fn remove(&self, name: &StoreName) -> Result<(), StoreError> {
        let prefix = name.components();
        self.objects
            .lock()
            .retain(|k, _| !k.components().starts_with(prefix));
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

#[derive(Debug)]
struct LogState {
    records: VecDeque<StoredRecord>,
    start: Offset,
    next: Offset,
    low_water: Offset,
    bytes: u64,
}

/// An in-memory [`Log`].
#[derive(Debug)]
pub struct MemoryLog {
    config: LogConfig,
    state: Mutex<LogState>,
    durable: watch::Sender<Offset>,
}

impl MemoryLog {
    fn new(config: LogConfig) -> MemoryLog {
        MemoryLog {
            config,
            state: Mutex::new(LogState {
                records: VecDeque::new(),
                start: 0,
                next: 0,
                low_water: 0,
                bytes: 0,
            }),
            durable: watch::channel(0).0,
        }
    }
}

impl MemoryLog {
    /// Appends `records`, record `i` occupying `spans[i]` offsets (1 without `spans`).
    fn append_spans(
        &self,
        records: &[Record],
        spans: Option<&[u32]>,
    ) -> Result<Appended, StoreError> {
        if records.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        for r in records {
            if r.payload_len() > self.config.max_record_bytes as usize {
                return Err(StoreError::RecordTooLarge {
                    size: r.payload_len(),
                    max: self.config.max_record_bytes,
                });
            }
        }
        let mut state = self.state.lock();
        let first = state.next;
        for (i, r) in records.iter().enumerate() {
            // `check_spans` made the lengths equal; without spans every record spans one.
            let span = spans.and_then(|s| s.get(i).copied()).unwrap_or(1);
            let offset = state.next;
            state.bytes += r.payload_len() as u64;
            state.records.push_back(StoredRecord {
                offset,
                span,
                record: r.clone(),
            });
            state.next += u64::from(span);
        }
        let next = state.next;
        drop(state);
        self.durable.send_replace(next);
        Ok(Appended {
            first_offset: first,
            next_offset: next,
            durable: Durable::ready(Ok(())),
        })
    }
}

impl Log for MemoryLog {
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
        let state = self.state.lock();
        if from < state.start {
            return Err(StoreError::OffsetOutOfRange {
                requested: from,
                start: state.start,
                next: state.next,
            });
        }
        Ok(read_records(
            &state.records,
            from,
            state.next,
            max_records,
            max_bytes,
        ))
    }

    fn offset_for_timestamp(&self, timestamp_ms: u64) -> Result<Option<Offset>, StoreError> {
        let state = self.state.lock();
        Ok(state
            .records
            .iter()
            .find(|r| r.record.timestamp_ms >= timestamp_ms)
            .map(|r| r.offset))
    }

    fn stats(&self) -> LogStats {
        let state = self.state.lock();
        LogStats {
            start_offset: state.start,
            durable_offset: state.next,
            next_offset: state.next,
            bytes: state.bytes,
            segments: (state.next - state.start)
                .div_ceil(RECORDS_PER_SEGMENT)
                .max(1),
        }
    }

    fn wait_durable(&self, offset: Offset) -> WaitDurable {
        let mut rx = self.durable.subscribe();
        Durable::from_future(async move {
            rx.wait_for(|durable| *durable > offset)
                .await
                .map(|_| ())
                .map_err(|_| StoreError::Closed)
        })
    }

    fn set_low_water(&self, offset: Offset) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        state.low_water = state.low_water.max(offset);
        Ok(())
    }

    fn reclaim(&self, now_ms: u64) -> Result<Reclaimed, StoreError> {
        let mut state = self.state.lock();
        let mut reclaimed = Reclaimed::default();
        // Whole "segments" of RECORDS_PER_SEGMENT offsets, never the last (open) one: some
        // record must start after the segment.
        while let Some((count, segment_end)) =
            segment_after(&state.records, state.start, RECORDS_PER_SEGMENT)
        {
            let newest_ts = state
                .records
                .get(count - 1)
                .map_or(0, |r| r.record.timestamp_ms);
            let seg_bytes: u64 = state
                .records
                .iter()
                .take(count)
                .map(|r| r.record.payload_len() as u64)
                .sum();
            let below_mark = segment_end <= state.low_water;
            let too_old = self
                .config
                .retention
                .max_age_ms
                .is_some_and(|age| now_ms.saturating_sub(newest_ts) > age);
            let too_big = self
                .config
                .retention
                .max_bytes
                .is_some_and(|max| state.bytes > max);
            if !(below_mark || too_old || too_big) {
                break;
            }
            state.records.drain(..count);
            state.start = segment_end;
            state.bytes -= seg_bytes;
            reclaimed.segments += 1;
            reclaimed.bytes += seg_bytes;
        }
        reclaimed.start_offset = state.start;
        Ok(reclaimed)
    }

    fn flush(&self) -> Durable {
        Durable::ready(Ok(()))
    }
}

#[derive(Debug, Default)]
struct JournalState {
    snapshot: Option<Bytes>,
    entries: Vec<Bytes>,
    bytes_since: u64,
    recovered: JournalContents,
}

/// An in-memory [`Journal`].
#[derive(Debug, Default)]
pub struct MemoryJournal {
    state: Mutex<JournalState>,
}

impl MemoryJournal {
    fn reopen(&self) {
        let mut state = self.state.lock();
        state.recovered = JournalContents {
            snapshot: state.snapshot.clone(),
            entries: state.entries.clone(),
        };
    }
}

impl Journal for MemoryJournal {
    fn recovered(&self) -> JournalContents {
        self.state.lock().recovered.clone()
    }

    fn append(&self, entries: &[Bytes]) -> Result<Durable, StoreError> {
        let mut state = self.state.lock();
        for e in entries {
            state.bytes_since += e.len() as u64;
            state.entries.push(e.clone());
        }
        Ok(Durable::ready(Ok(())))
    }

    fn snapshot(&self, snapshot: Bytes) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        state.snapshot = Some(snapshot);
        state.entries.clear();
        state.bytes_since = 0;
        Ok(())
    }

    fn bytes_since_snapshot(&self) -> u64 {
        self.state.lock().bytes_since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_conformance() {
        crate::conformance::run_all(&|| Box::new(MemoryStore::new()) as Box<dyn Store>, &|s| s);
    }
}
