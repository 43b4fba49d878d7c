//! [`FileJournal`]: a snapshot file plus an entries log.
//!
//! ```text
//! <dir>/journal.snap      magic "WJSN" version:u32=1 entries_from:u64 len:u32 crc:u32 data[len]
//!                         crc = crc32c(first 20 header bytes ‖ data)
//! <dir>/.entries/         a FileLog; one record per entry (body = entry, timestamp 0)
//! ```
//!
//! `snapshot(state)` first makes every entry appended so far durable, then writes
//! `journal.snap.tmp`, fsyncs it, renames it over `journal.snap` and fsyncs the directory. The
//! snapshot names `entries_from`, the entries log's next offset at that moment; recovery replays
//! the entries from there. Entries below it are dropped (whole segments) after the rename.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use weir_store::{Durable, Journal, JournalContents, Log, Record, StoreError};

use crate::log::FileLog;
use crate::segment;

/// File name of a journal's snapshot.
pub(crate) const SNAPSHOT_FILE: &str = "journal.snap";
/// Temporary file a snapshot is written to before the rename.
const SNAPSHOT_TMP: &str = "journal.snap.tmp";
/// Directory of a journal's entries log.
pub(crate) const ENTRIES_DIR: &str = ".entries";
const MAGIC: &[u8; 4] = b"WJSN";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 24;
/// Bytes of entries read per call while replaying.
const REPLAY_READ_BYTES: usize = 16 << 20;

/// A journal stored as files under one directory. Get one from [`crate::FileStore`]
/// (`Store::open_journal`).
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    log: FileLog,
    recovered: JournalContents,
    bytes_since: Mutex<u64>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        file: path.display().to_string(),
        position: 0,
        reason: reason.into(),
    }
}

/// Reads the snapshot: `None` when there is none.
fn read_snapshot(path: &Path) -> Result<Option<(u64, Bytes)>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read snapshot", path.display(), e)),
    };
    if bytes.len() < HEADER_BYTES || &bytes[0..4] != MAGIC {
        return Err(corrupt(path, "not a journal snapshot (bad magic or short)"));
    }
    let u32_at = |at: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(a)
    };
    if u32_at(4) != VERSION {
        return Err(corrupt(
            path,
            format!("unknown snapshot version {}", u32_at(4)),
        ));
    }
    let mut a8 = [0u8; 8];
    a8.copy_from_slice(&bytes[8..16]);
    let entries_from = u64::from_le_bytes(a8);
    let len = u32_at(16) as usize;
    if bytes.len() != HEADER_BYTES + len {
        return Err(corrupt(
            path,
            format!(
                "snapshot says {len} bytes, file holds {}",
                bytes.len() - HEADER_BYTES
            ),
        ));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..20]), &bytes[HEADER_BYTES..]);
    if crc != u32_at(20) {
        return Err(corrupt(path, "snapshot checksum mismatch"));
    }
    let mut bytes = Bytes::from(bytes);
    Ok(Some((entries_from, bytes.split_off(HEADER_BYTES))))
}

impl FileJournal {
    /// Opens the journal in `dir` over its (already opened) entries log.
    pub(crate) fn open(dir: PathBuf, log: FileLog) -> Result<FileJournal, StoreError> {
        let tmp = dir.join(SNAPSHOT_TMP);
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(|e| StoreError::io("remove", tmp.display(), e))?;
            segment::sync_dir(&dir)?;
        }
        // Entries still queued by an earlier handle of this journal become visible first.
        futures::executor::block_on(log.flush())?;
        let snap_path = dir.join(SNAPSHOT_FILE);
        let snapshot = read_snapshot(&snap_path)?;
        let entries_from = snapshot.as_ref().map_or(0, |(from, _)| *from);
        let stats = log.stats();
        if stats.start_offset > entries_from || stats.next_offset < entries_from {
            return Err(corrupt(
                &snap_path,
                format!(
                    "snapshot replays entries from {entries_from}, the entries log holds {}..{}",
                    stats.start_offset, stats.next_offset
                ),
            ));
        }
        let mut entries = Vec::new();
        let mut bytes_since = 0u64;
        let mut next = entries_from;
        loop {
            let batch = log.read(next, usize::MAX, REPLAY_READ_BYTES)?;
            let Some(last) = batch.last() else { break };
            next = last.offset + u64::from(last.span);
            for r in batch {
                bytes_since += r.record.body.len() as u64;
                entries.push(r.record.body);
            }
        }
        Ok(FileJournal {
            dir,
            log,
            recovered: JournalContents {
                snapshot: snapshot.map(|(_, data)| data),
                entries,
            },
            bytes_since: Mutex::new(bytes_since),
        })
    }

    fn write_snapshot(&self, entries_from: u64, state: &[u8]) -> Result<(), StoreError> {
        let len = u32::try_from(state.len()).map_err(|_| StoreError::RecordTooLarge {
            size: state.len(),
            max: u32::MAX,
        })?;
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&entries_from.to_le_bytes());
        header.extend_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header), state);
        header.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let mut f =
            File::create(&tmp).map_err(|e| StoreError::io("create snapshot", tmp.display(), e))?;
        f.write_all(&header)
            .and_then(|()| f.write_all(state))
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io("write snapshot", tmp.display(), e))?;
        drop(f);
        let path = self.dir.join(SNAPSHOT_FILE);
        fs::rename(&tmp, &path)
            .map_err(|e| StoreError::io("rename snapshot", path.display(), e))?;
        segment::sync_dir(&self.dir)
    }
}

impl Journal for FileJournal {
    fn recovered(&self) -> JournalContents {
        self.recovered.clone()
    }

    fn append(&self, entries: &[Bytes]) -> Result<Durable, StoreError> {
        if entries.is_empty() {
            return Ok(Durable::ready(Ok(())));
        }
        let appended = self.log.append(&entry_records(entries))?;
        *self.bytes_since.lock() += entries.iter().map(|e| e.len() as u64).sum::<u64>();
        Ok(appended.durable)
    }

    fn append_deferred(&self, entries: &[Bytes]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.log.append_deferred(&entry_records(entries))?;
        *self.bytes_since.lock() += entries.iter().map(|e| e.len() as u64).sum::<u64>();
        Ok(())
    }

    fn snapshot(&self, state: Bytes) -> Result<(), StoreError> {
        // Entries the snapshot replaces must be durable before it, or a crash could lose them
        // and let later entries reuse their offsets (which the snapshot says to skip).
        futures::executor::block_on(self.log.flush())?;
        let entries_from = self.log.stats().next_offset;
        self.write_snapshot(entries_from, &state)?;
        *self.bytes_since.lock() = 0;
        self.log.set_low_water(entries_from)?;
        if let Err(e) = self.log.reclaim(0) {
            // The snapshot stands; old entries are skipped on replay and reclaimed next time.
            tracing::warn!(journal = %self.dir.display(), error = %e, "reclaiming entries failed");
        }
        Ok(())
    }

    fn bytes_since_snapshot(&self) -> u64 {
        *self.bytes_since.lock()
    }
}

/// One log record per entry (the entry is the body).
fn entry_records(entries: &[Bytes]) -> Vec<Record> {
    entries
        .iter()
        .map(|e| Record {
            body: e.clone(),
            ..Record::default()
        })
        .collect()
}

/// Whether `dir` holds a journal.
pub(crate) fn is_journal(dir: &Path) -> bool {
    dir.join(SNAPSHOT_FILE).exists() || dir.join(ENTRIES_DIR).exists()
}

/// Keeps the type of `Arc<FileJournal>` nameable for the store's registry.
pub(crate) type SharedJournal = Arc<FileJournal>;
