//! Opening a log directory: verify segments, cut a torn tail, rebuild damaged indexes.
//!
//! Rules (also in `docs/storage.md`, "Recovery"):
//! - Segments are named by base offset; each must start where the previous one ends.
//! - A sealed (non-last) segment is verified from its last index entry to its end when its index
//!   is valid, and from its start (rebuilding the index) when the index is missing or damaged.
//!   Any bad frame in a sealed segment is [`StoreError::Corrupt`].
//! - The last segment is verified from its start. A bad frame at position `p` is a **torn tail**
//!   when no valid frame with a plausible offset starts anywhere after `p` in that file: the file
//!   is truncated to `p` and fsync'd. Otherwise it is [`StoreError::Corrupt`] at `p`.
//! - The last segment's `.idx` (if any) is stale by construction and is deleted; its index lives
//!   in memory until the segment is sealed.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use weir_store::StoreError;

use crate::index;
use crate::segment::{self, Scan, ScanStart, Segment, INDEX_EXT, LOG_EXT};

/// A recovered log.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Segments in offset order; never empty.
    pub(crate) segments: VecDeque<Segment>,
    /// One past the last record's offset.
    pub(crate) next_offset: u64,
}

fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        file: path.display().to_string(),
        position,
        reason: reason.into(),
    }
}

/// Recovers the log in `dir` (which must exist), creating its first segment when it has none.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, StoreError> {
    let mut logs = Vec::new();
    let mut idxs = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list log", dir.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list log", dir.display(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match segment::parse_file_name(name) {
            Some((base, LOG_EXT)) => logs.push(base),
            Some((base, _)) => idxs.push(base),
            None => {}
        }
    }
    logs.sort_unstable();
    let mut dir_changed = false;
    for base in &idxs {
        let last = logs.last() == Some(base);
        if logs.binary_search(base).is_err() || last {
            // An orphan (its segment was deleted) or the active segment's stale index.
            let p = segment::path(dir, *base, INDEX_EXT);
            fs::remove_file(&p).map_err(|e| StoreError::io("remove index", p.display(), e))?;
            dir_changed = true;
        }
    }
    if logs.is_empty() {
        let p = segment::path(dir, 0, LOG_EXT);
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| StoreError::io("create segment", p.display(), e))?;
        logs.push(0);
        dir_changed = true;
    }
    if dir_changed {
        segment::sync_dir(dir)?;
    }

    let mut segments = VecDeque::with_capacity(logs.len());
    let mut expected: Option<u64> = None;
    for (i, &base) in logs.iter().enumerate() {
        let path = segment::path(dir, base, LOG_EXT);
        if let Some(e) = expected {
            if e != base {
                return Err(corrupt(
                    &path,
                    0,
                    format!("segment starts at offset {base} but the previous one ends at {e}"),
                ));
            }
        }
        let last = i + 1 == logs.len();
        let seg = if last {
            recover_last(dir, base)?
        } else {
            recover_sealed(dir, base)?
        };
        expected = Some(seg.next_offset);
        segments.push_back(seg);
    }
    let next_offset = expected.unwrap_or(0);
    Ok(Recovered {
        segments,
        next_offset,
    })
}

fn file_len(file: &fs::File, path: &Path) -> Result<u64, StoreError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| StoreError::io("stat segment", path.display(), e))
}

fn segment_from(base: u64, file: fs::File, scan: Scan, sealed: bool) -> Segment {
    Segment {
        base,
        file: Some(Arc::new(file)),
        index: scan.index,
        size: scan.end,
        durable_size: scan.end,
        next_offset: scan.next_offset,
        max_ts: scan.max_ts,
        sealed,
    }
}

fn from_start(base: u64) -> ScanStart {
    ScanStart {
        base,
        position: 0,
        offset: base,
        max_ts: 0,
        index: Vec::new(),
    }
}

/// A sealed segment: trust a valid index, verify the records after its last entry; or rebuild.
fn recover_sealed(dir: &Path, base: u64) -> Result<Segment, StoreError> {
    let path = segment::path(dir, base, LOG_EXT);
    let idx_path = segment::path(dir, base, INDEX_EXT);
    let file = segment::open_rw(&path)?;
    let len = file_len(&file, &path)?;
    let loaded = match fs::read(&idx_path) {
        Ok(bytes) => match index::decode(&bytes, len) {
            Ok(entries) => Some(entries),
            Err(reason) => {
                tracing::warn!(file = %idx_path.display(), %reason, "damaged index; rebuilding");
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(file = %idx_path.display(), "missing index; rebuilding");
            None
        }
        Err(e) => return Err(StoreError::io("read index", idx_path.display(), e)),
    };
    let start = match &loaded {
        Some(entries) => match entries.last() {
            Some(e) => ScanStart {
                base,
                position: u64::from(e.position),
                offset: base + u64::from(e.rel_offset),
                max_ts: e.max_ts,
                index: entries[..entries.len() - 1].to_vec(),
            },
            None => from_start(base),
        },
        None => from_start(base),
    };
    let scan = segment::scan(&file, len, start)
        .map_err(|e| StoreError::io("read segment", path.display(), e))?;
    if let Some((position, reason)) = scan.bad {
        // A bad frame where a valid index points is index damage only if the index was trusted:
        // retry from the start before calling the segment corrupt.
        if loaded.is_some() {
            let full = segment::scan(&file, len, from_start(base))
                .map_err(|e| StoreError::io("read segment", path.display(), e))?;
            if full.bad.is_none() {
                write_index(&idx_path, &full)?;
                return Ok(segment_from(base, file, full, true));
            }
            if let Some((position, reason)) = full.bad {
                return Err(corrupt(&path, position, reason));
            }
        }
        return Err(corrupt(&path, position, reason));
    }
    if loaded.is_none() {
        write_index(&idx_path, &scan)?;
        segment::sync_dir(dir)?;
    }
    Ok(segment_from(base, file, scan, true))
}

fn write_index(idx_path: &Path, scan: &Scan) -> Result<(), StoreError> {
    let bytes = index::encode(&scan.index);
    let f = fs::File::create(idx_path)
        .map_err(|e| StoreError::io("create index", idx_path.display(), e))?;
    std::io::Write::write_all(&mut &f, &bytes)
        .and_then(|()| f.sync_data())
        .map_err(|e| StoreError::io("write index", idx_path.display(), e))
}

/// The last segment: verify everything, cut a torn tail.
fn recover_last(dir: &Path, base: u64) -> Result<Segment, StoreError> {
    let path = segment::path(dir, base, LOG_EXT);
    let file = segment::open_rw(&path)?;
    let len = file_len(&file, &path)?;
    let scan = segment::scan(&file, len, from_start(base))
        .map_err(|e| StoreError::io("read segment", path.display(), e))?;
    if let Some((position, reason)) = &scan.bad {
        let after = segment::find_valid_frame_after(&file, *position, len, scan.next_offset)
            .map_err(|e| StoreError::io("read segment", path.display(), e))?;
        if let Some((at, offset)) = after {
            return Err(corrupt(
                &path,
                *position,
                format!("{reason}; a valid record (offset {offset}) follows at byte {at}"),
            ));
        }
        tracing::warn!(
            file = %path.display(),
            position,
            %reason,
            cut_bytes = len - position,
            "cutting a torn tail"
        );
        file.set_len(*position)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io("truncate torn tail", path.display(), e))?;
    }
    Ok(segment_from(base, file, scan, false))
}
