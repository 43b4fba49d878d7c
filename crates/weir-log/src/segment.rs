//! Segment files: names, positional I/O helpers and the verifying scanner used by recovery.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_store::{StoreError, MAX_RECORD_SPAN};

use crate::index::{self, IndexEntry};
use crate::record::{self, FrameError, MIN_FRAME_BYTES};

/// Extension of segment data files.
pub(crate) const LOG_EXT: &str = "log";
/// Extension of sparse index files.
pub(crate) const INDEX_EXT: &str = "idx";
/// Bytes read at a time by the scanner.
const SCAN_WINDOW_BYTES: usize = 1 << 20;

/// `00000000000000000042.log` for base offset 42.
pub(crate) fn file_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// Parses a segment or index file name into its base offset and extension.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if ext != LOG_EXT && ext != INDEX_EXT {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// A segment as the log keeps it in memory.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of its first record.
    pub(crate) base: u64,
    /// The data file (`None` until the writer creates it).
    pub(crate) file: Option<Arc<File>>,
    /// Sparse index of its records.
    pub(crate) index: Vec<IndexEntry>,
    /// Bytes assigned to it (written or pending).
    pub(crate) size: u64,
    /// Bytes written and durable: readers stop here.
    pub(crate) durable_size: u64,
    /// One past the last offset assigned to it.
    pub(crate) next_offset: u64,
    /// Largest timestamp of its records (0 while empty).
    pub(crate) max_ts: u64,
    /// Whether the writer has sealed it (data fsync'd, index written): reclaimable.
    pub(crate) sealed: bool,
}

impl Segment {
    /// Position of the last index entry, 0 if none.
    pub(crate) fn last_entry_position(&self) -> u64 {
        self.index.last().map_or(0, |e| u64::from(e.position))
    }
}

/// Path of a segment's file with extension `ext` in `dir`.
pub(crate) fn path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(file_name(base, ext))
}

/// Opens an existing segment file for reading and writing.
pub(crate) fn open_rw(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open segment", path.display(), e))
}

/// Reads up to `len` bytes at `pos` (fewer only at end of file).
pub(crate) fn read_at(file: &File, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// Fsyncs a directory so that created, renamed or deleted entries in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir.display(), e))
}

/// What a scan of a segment found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Index entries for the scanned records (appended to the ones the scan started with).
    pub(crate) index: Vec<IndexEntry>,
    /// Byte position after the last valid record.
    pub(crate) end: u64,
    /// One past the last valid record's offset.
    pub(crate) next_offset: u64,
    /// Largest timestamp seen (including the starting value).
    pub(crate) max_ts: u64,
    /// The first invalid frame: position and reason (`None` when the scan reached the end).
    pub(crate) bad: Option<(u64, String)>,
}

/// Where a scan starts: a position known to hold the record `offset` (or the end).
#[derive(Debug, Clone)]
pub(crate) struct ScanStart {
    /// The segment's base offset.
    pub(crate) base: u64,
    /// Byte position to start at.
    pub(crate) position: u64,
    /// Offset of the record expected there.
    pub(crate) offset: u64,
    /// Running maximum timestamp before `position`.
    pub(crate) max_ts: u64,
    /// Index entries already known (up to `position`).
    pub(crate) index: Vec<IndexEntry>,
}

/// Reads and verifies every frame from `start` to `file_len`, rebuilding index entries.
pub(crate) fn scan(file: &File, file_len: u64, start: ScanStart) -> io::Result<Scan> {
    let mut out = Scan {
        index: start.index,
        end: start.position,
        next_offset: start.offset,
        max_ts: start.max_ts,
        bad: None,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = start.position; // file position of buf[0]
    let mut pos = start.position;
    while pos < file_len {
        let frame = loop {
            let rel = (pos - buf_pos) as usize;
            let have = buf.len().saturating_sub(rel);
            match record::check_frame(buf.get(rel..).unwrap_or(&[])) {
                Err(FrameError::Incomplete { need }) if (have as u64) < file_len - pos => {
                    let avail = (file_len - pos) as usize;
                    let want = need.max(SCAN_WINDOW_BYTES).min(avail);
                    buf = read_at(file, pos, want)?;
                    buf_pos = pos;
                    if buf.len() < want {
                        // The file shrank under us: report what is there.
                        break Err(FrameError::Incomplete { need });
                    }
                }
                other => break other,
            }
        };
        let info = match frame {
            Ok(info) => info,
            Err(FrameError::Incomplete { need }) => {
                out.bad = Some((
                    pos,
                    format!(
                        "frame of {need} bytes runs past the end of the file ({} bytes left)",
                        file_len - pos
                    ),
                ));
                return Ok(out);
            }
            Err(FrameError::Bad(reason)) => {
                out.bad = Some((pos, reason));
                return Ok(out);
            }
        };
        if info.offset != out.next_offset {
            out.bad = Some((
                pos,
                format!(
                    "record holds offset {}, expected {}",
                    info.offset, out.next_offset
                ),
            ));
            return Ok(out);
        }
        out.max_ts = out.max_ts.max(info.timestamp_ms);
        let last = out.index.last().map_or(0, |e| u64::from(e.position));
        if index::wants_entry(last, pos) {
            out.index.push(IndexEntry {
                rel_offset: (info.offset - start.base) as u32,
                position: pos as u32,
                max_ts: out.max_ts,
            });
        }
        pos += info.frame_len as u64;
        out.next_offset += u64::from(info.span);
        out.end = pos;
    }
    Ok(out)
}

/// Whether any valid frame carrying an offset `>= min_offset` starts in `(from, file_len)`:
/// used to tell a torn tail (nothing valid follows) from corruption in the middle. Returns the
/// position and offset of the first one.
pub(crate) fn find_valid_frame_after(
    file: &File,
    from: u64,
    file_len: u64,
    min_offset: u64,
) -> io::Result<Option<(u64, u64)>> {
    if file_len <= from + 1 {
        return Ok(None);
    }
    let rest = read_at(file, from + 1, (file_len - from - 1) as usize)?;
    // Any real record after `from` holds an offset below this bound (each frame takes at least
    // MIN_FRAME_BYTES and spans at most MAX_RECORD_SPAN offsets).
    let max_offset = min_offset.saturating_add(
        ((rest.len() / MIN_FRAME_BYTES) as u64 + 1).saturating_mul(u64::from(MAX_RECORD_SPAN)),
    );
    for at in 0..rest.len() {
        let b = &rest[at..];
        match record::peek_offset(b) {
            Some(o) if o >= min_offset && o <= max_offset => {}
            _ => continue,
        }
        if let Ok(info) = record::check_frame(b) {
            return Ok(Some((from + 1 + at as u64, info.offset)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name(42, LOG_EXT), "00000000000000000042.log");
        assert_eq!(
            parse_file_name("00000000000000000042.idx"),
            Some((42, INDEX_EXT))
        );
        assert_eq!(parse_file_name("0042.log"), None);
        assert_eq!(parse_file_name("00000000000000000042.tmp"), None);
    }
}
