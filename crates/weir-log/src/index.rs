//! The sparse index of one segment: offset, position and running-maximum timestamp.
//!
//! ```text
//! .idx file = entry*          entry (20 bytes, little-endian):
//!   rel_offset:u32  position:u32  max_ts:u64  crc:u32 = crc32c(first 16 bytes)
//! ```
//!
//! An entry is made for a record whose position is at least [`INDEX_INTERVAL_BYTES`] past the
//! previous entry's (the segment start counts as an implicit entry at 0). `max_ts` is the
//! largest timestamp among the segment's records up to and including that record, so it never
//! decreases and a binary search on it is exact even when timestamps are out of order.
//!
//! The index is kept in memory for every segment and written to disk once, when its segment is
//! sealed (rolled); the active segment's index is rebuilt by the recovery scan.

/// Bytes of segment data between two index entries (at least).
pub(crate) const INDEX_INTERVAL_BYTES: u64 = 32 * 1024;
/// Bytes of one entry in an `.idx` file.
pub(crate) const INDEX_ENTRY_BYTES: usize = 20;

/// One sparse index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Offset minus the segment's base offset.
    pub(crate) rel_offset: u32,
    /// Byte position of the record's frame in the segment file.
    pub(crate) position: u32,
    /// Largest timestamp of the segment's records up to and including this one.
    pub(crate) max_ts: u64,
}

/// Encodes entries into the `.idx` file format.
pub(crate) fn encode(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * INDEX_ENTRY_BYTES);
    for e in entries {
        let start = out.len();
        out.extend_from_slice(&e.rel_offset.to_le_bytes());
        out.extend_from_slice(&e.position.to_le_bytes());
        out.extend_from_slice(&e.max_ts.to_le_bytes());
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

/// Decodes and validates an `.idx` file for a segment of `segment_len` bytes. Any damage is an
/// error (the caller rebuilds the index from the segment).
pub(crate) fn decode(bytes: &[u8], segment_len: u64) -> Result<Vec<IndexEntry>, String> {
    if bytes.len() % INDEX_ENTRY_BYTES != 0 {
        return Err(format!(
            "length {} is not a multiple of {INDEX_ENTRY_BYTES}",
            bytes.len()
        ));
    }
    let mut out: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / INDEX_ENTRY_BYTES);
    for (i, chunk) in bytes.chunks_exact(INDEX_ENTRY_BYTES).enumerate() {
        let mut a4 = [0u8; 4];
        let mut a8 = [0u8; 8];
        a4.copy_from_slice(&chunk[16..20]);
        let crc = u32::from_le_bytes(a4);
        if crc != crc32c::crc32c(&chunk[..16]) {
            return Err(format!("entry {i}: checksum mismatch"));
        }
        a4.copy_from_slice(&chunk[0..4]);
        let rel_offset = u32::from_le_bytes(a4);
        a4.copy_from_slice(&chunk[4..8]);
        let position = u32::from_le_bytes(a4);
        a8.copy_from_slice(&chunk[8..16]);
        let max_ts = u64::from_le_bytes(a8);
        let e = IndexEntry {
            rel_offset,
            position,
            max_ts,
        };
        let prev_pos = out.last().map_or(0, |p| u64::from(p.position));
        let ordered = match out.last() {
            Some(p) => p.rel_offset < rel_offset && p.position < position && p.max_ts <= max_ts,
            None => rel_offset > 0 && position > 0,
        };
        if !ordered || u64::from(position) < prev_pos + INDEX_INTERVAL_BYTES {
            return Err(format!("entry {i}: out of order"));
        }
        if u64::from(position) >= segment_len {
            return Err(format!(
                "entry {i}: position {position} past the segment end {segment_len}"
            ));
        }
        out.push(e);
    }
    Ok(out)
}

/// The last entry with `rel_offset <= rel`, if any.
pub(crate) fn floor_offset(entries: &[IndexEntry], rel: u64) -> Option<IndexEntry> {
    let k = entries.partition_point(|e| u64::from(e.rel_offset) <= rel);
    k.checked_sub(1).map(|i| entries[i])
}

/// Where to start scanning for the first record with timestamp `>= ts`: the last entry whose
/// running maximum is still below `ts` (every record up to it is older), if any.
pub(crate) fn floor_time(entries: &[IndexEntry], ts: u64) -> Option<IndexEntry> {
    let k = entries.partition_point(|e| e.max_ts < ts);
    k.checked_sub(1).map(|i| entries[i])
}

/// Whether a record at `position` gets an entry, given the last entry's position (0 if none).
pub(crate) fn wants_entry(last_entry_position: u64, position: u64) -> bool {
    position >= last_entry_position + INDEX_INTERVAL_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let entries: Vec<IndexEntry> = (1..10)
            .map(|i| IndexEntry {
                rel_offset: i * 100,
                position: i * 40_000,
                max_ts: u64::from(i) * 5,
            })
            .collect();
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes, 1 << 30).expect("valid"), entries);
        assert!(decode(&bytes, 100_000).is_err(), "past the end");
        assert!(decode(&bytes[..bytes.len() - 1], 1 << 30).is_err());
        let mut flipped = bytes.clone();
        flipped[25] ^= 4;
        assert!(decode(&flipped, 1 << 30).is_err());
        assert_eq!(floor_offset(&entries, 99), None);
        assert_eq!(floor_offset(&entries, 250), Some(entries[1]));
        assert_eq!(floor_time(&entries, 5), None);
        assert_eq!(floor_time(&entries, 11), Some(entries[1]));
    }
}
