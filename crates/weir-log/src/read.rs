//! Reads: plan under the log's lock (no I/O), then `pread` segment files with no lock held.
//!
//! A read only ever looks at bytes below its segment's `durable_size`, so it sees durable
//! records only, and never waits for (or blocks) the writer. Each buffer read from a file
//! becomes one `Bytes`; keys, header values and bodies are slices of it.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use weir_store::{StoreError, StoredRecord};

use crate::index;
use crate::log::{Hint, LogShared, State, READ_HINTS};
use crate::record::{self, FrameError, FrameInfo};
use crate::segment;

/// Where and how far to read in one segment.
struct Plan {
    base: u64,
    file: Arc<File>,
    position: u64,
    offset: u64,
    limit: u64,
    /// Average frame length in the segment (bytes assigned ÷ records assigned, at least 1): sizes
    /// the first buffer of a read that wants a known number of records.
    avg_frame: u64,
}

/// What a walk callback wants done with the frame it was shown.
enum Flow {
    /// Consume it and go on.
    Next,
    /// Consume it and stop.
    NextThenStop,
    /// Stop before it.
    StopHere,
}

/// Where a walk ended.
struct WalkEnd {
    position: u64,
    offset: u64,
    stopped: bool,
}

/// Smallest buffer a read of records asks the OS for.
const MIN_READ_BYTES: usize = 4 * 1024;
/// Buffer of a scan by timestamp (records of unknown number).
const SCAN_READ_BYTES: usize = 64 * 1024;
/// Added to a read's size estimate, so a record a little above the average still fits.
const READ_SLACK_BYTES: u64 = 1024;
/// Largest first buffer of a read (later ones grow only as a large record needs).
const MAX_READ_BYTES: usize = 4 << 20;

/// Bytes per record in `seg` so far (at least 1; 1 when empty).
fn avg_frame(seg: &segment::Segment) -> u64 {
    let records = seg.next_offset.saturating_sub(seg.base).max(1);
    (seg.size / records).max(1)
}

impl LogShared {
    fn plan(&self, st: &State, from: u64, hints: bool) -> Option<Plan> {
        let i = st
            .segments
            .partition_point(|s| s.base <= from)
            .checked_sub(1)?;
        let seg = &st.segments[i];
        let file = seg.file.clone()?;
        let (mut position, mut offset) = (0, seg.base);
        if let Some(e) = index::floor_offset(&seg.index, from - seg.base) {
            position = u64::from(e.position);
            offset = seg.base + u64::from(e.rel_offset);
        }
        if hints {
            for h in st.hints.iter().flatten() {
                if h.base == seg.base && h.offset <= from && h.offset > offset {
                    (position, offset) = (h.position, h.offset);
                }
            }
        }
        Some(Plan {
            base: seg.base,
            file,
            position,
            offset,
            limit: seg.durable_size,
            avg_frame: avg_frame(seg),
        })
    }

    fn corrupt(&self, base: u64, position: u64, reason: String) -> StoreError {
        StoreError::Corrupt {
            file: self.segment_path(base).display().to_string(),
            position,
            reason,
        }
    }

    /// Visits verified frames from the plan's start up to its limit.
    fn walk(
        &self,
        plan: &Plan,
        want: usize,
        mut visit: impl FnMut(&Bytes, usize, u64, &FrameInfo) -> Result<Flow, StoreError>,
    ) -> Result<WalkEnd, StoreError> {
        let (mut pos, mut off) = (plan.position, plan.offset);
        let mut buf = Bytes::new();
        let mut buf_pos = pos;
        let mut want = want;
        while pos < plan.limit {
            let rel = (pos - buf_pos) as usize;
            let info = match record::check_frame(buf.get(rel..).unwrap_or(&[])) {
                Ok(info) => info,
                Err(FrameError::Incomplete { need }) => {
                    let avail = plan.limit - pos;
                    if need as u64 > avail {
                        return Err(self.corrupt(
                            plan.base,
                            pos,
                            format!("frame of {need} bytes runs past the durable end"),
                        ));
                    }
                    let len = need.max(want).min(avail as usize);
                    let bytes = segment::read_at(&plan.file, pos, len).map_err(|e| {
                        StoreError::io("read", self.segment_path(plan.base).display(), e)
                    })?;
                    if bytes.len() < need {
                        return Err(self.corrupt(
                            plan.base,
                            pos,
                            format!("file ends {} bytes into a {need}-byte frame", bytes.len()),
                        ));
                    }
                    buf = Bytes::from(bytes);
                    buf_pos = pos;
                    want = (want * 2).min(MAX_READ_BYTES);
                    continue;
                }
                Err(FrameError::Bad(reason)) => return Err(self.corrupt(plan.base, pos, reason)),
            };
            if info.offset != off {
                return Err(self.corrupt(
                    plan.base,
                    pos,
                    format!("record holds offset {}, expected {off}", info.offset),
                ));
            }
            let flow = visit(&buf, rel, pos, &info)?;
            if matches!(flow, Flow::StopHere) {
                return Ok(WalkEnd {
                    position: pos,
                    offset: off,
                    stopped: true,
                });
            }
            pos += info.frame_len as u64;
            off += u64::from(info.span);
            if matches!(flow, Flow::NextThenStop) {
                return Ok(WalkEnd {
                    position: pos,
                    offset: off,
                    stopped: true,
                });
            }
        }
        Ok(WalkEnd {
            position: pos,
            offset: off,
            stopped: false,
        })
    }

    /// [`weir_store::Log::read`].
    pub(crate) fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Offsets covered at or after `from` by the records in `out` (what `max_records` bounds).
        let mut covered = 0u64;
        let max_offsets = max_records as u64;
        let mut next = from;
        let most = max_bytes
            .saturating_add(16 * 1024)
            .clamp(MIN_READ_BYTES, MAX_READ_BYTES);
        loop {
            let plan = {
                let st = self.state.lock();
                let start = st.segments.front().map_or(0, |s| s.base);
                if next < start {
                    if out.is_empty() {
                        return Err(StoreError::OffsetOutOfRange {
                            requested: from,
                            start,
                            next: st.next_offset,
                        });
                    }
                    break; // reclaimed under us: return what we have
                }
                if next >= st.durable_offset || covered >= max_offsets {
                    break;
                }
                match self.plan(&st, next, true) {
                    Some(p) => p,
                    None => break,
                }
            };
            // The first buffer holds about the records this read still wants (from the plan's
            // index entry on), not `most`: reading (and zeroing) megabytes for a few records
            // was most of a fan-out consumer's CPU. A short guess costs one more pread.
            let records = (next.saturating_sub(plan.offset))
                .saturating_add(max_offsets.saturating_sub(covered));
            let guess = records
                .saturating_mul(plan.avg_frame)
                .saturating_add(READ_SLACK_BYTES);
            let want = usize::try_from(guess).map_or(most, |g| g.clamp(MIN_READ_BYTES, most));
            let end = self.walk(&plan, want, |buf, rel, pos, info| {
                let end = info.offset + u64::from(info.span);
                if end <= from {
                    return Ok(Flow::Next);
                }
                if !out.is_empty() && bytes.saturating_add(info.payload_len) > max_bytes {
                    return Ok(Flow::StopHere);
                }
                let (rec, _) = record::decode_frame(buf, rel)
                    .map_err(|e| self.corrupt(plan.base, pos, format!("{e:?}")))?;
                bytes = bytes.saturating_add(info.payload_len);
                covered += end - info.offset.max(from);
                out.push(rec);
                Ok(if covered >= max_offsets {
                    Flow::NextThenStop
                } else {
                    Flow::Next
                })
            })?;
            {
                let mut st = self.state.lock();
                let slot = st.hint_next % READ_HINTS;
                st.hints[slot] = Some(Hint {
                    base: plan.base,
                    offset: end.offset,
                    position: end.position,
                });
                st.hint_next = st.hint_next.wrapping_add(1);
            }
            if end.stopped || end.offset <= next {
                break;
            }
            next = end.offset;
        }
        Ok(out)
    }

    /// [`weir_store::Log::offset_for_timestamp`].
    pub(crate) fn offset_for_timestamp(&self, ts: u64) -> Result<Option<u64>, StoreError> {
        let mut from_base = 0u64;
        loop {
            let plan = {
                let st = self.state.lock();
                let seg = st.segments.iter().find(|s| {
                    s.base >= from_base
                        && s.base < st.durable_offset
                        && s.next_offset > s.base
                        && s.max_ts >= ts
                });
                let Some(seg) = seg else { return Ok(None) };
                let Some(file) = seg.file.clone() else {
                    return Ok(None);
                };
                let (position, offset) = match index::floor_time(&seg.index, ts) {
                    Some(e) => (u64::from(e.position), seg.base + u64::from(e.rel_offset)),
                    None => (0, seg.base),
                };
                Plan {
                    base: seg.base,
                    file,
                    position,
                    offset,
                    limit: seg.durable_size,
                    avg_frame: avg_frame(seg),
                }
            };
            let mut found = None;
            self.walk(&plan, SCAN_READ_BYTES, |_, _, _, info| {
                if info.timestamp_ms >= ts {
                    found = Some(info.offset);
                    return Ok(Flow::StopHere);
                }
                Ok(Flow::Next)
            })?;
            if found.is_some() {
                return Ok(found);
            }
            from_base = plan.base + 1;
        }
    }
}
