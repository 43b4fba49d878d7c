//! Record framing: the bytes of one record on disk (see `docs/storage.md`, "Record frame").
//!
//! ```text
//! frame   = len:u32 crc:u32 payload[len]
//! payload = offset:u64 timestamp_ms:u64 key_len:u32 key[key_len]
//!           header_count:u32 (name_len:u32 name value_len:u32 value)*
//!           body_len:u32 body
//! crc     = crc32c(len ‖ payload[8..] ‖ offset)   (all integers little-endian)
//! ```
//!
//! `key_len == u32::MAX` means "no key". Encoding happens in the appender's thread before the
//! offset is known; the offset and the CRC are patched in under the log's lock with
//! [`EncodedRecord::finish`]. The CRC covers every byte of the frame except the CRC field, but
//! feeds the offset *last*: the appender computes the CRC state of everything else beforehand
//! and the lock only extends it by 8 bytes (a `crc32c_combine` instead cost about a quarter of
//! the CPU at high append rates, under the lock).

use bytes::Bytes;
use weir_store::{Header, Record, StoreError, StoredRecord};

/// Bytes before the payload: `len` and `crc`.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;
/// The smallest valid payload: offset, timestamp, key_len, header_count, body_len.
pub(crate) const MIN_PAYLOAD_BYTES: usize = 8 + 8 + 4 + 4 + 4;
/// The smallest valid frame.
pub(crate) const MIN_FRAME_BYTES: usize = FRAME_HEADER_BYTES + MIN_PAYLOAD_BYTES;
/// The largest payload the format allows (the `len` field stays far from overflow).
pub(crate) const MAX_PAYLOAD_BYTES: usize = 1 << 31;
/// `key_len` value meaning "no key".
const NO_KEY: u32 = u32::MAX;

const _: () = assert!(MIN_FRAME_BYTES == 36);
const _: () = assert!(MAX_PAYLOAD_BYTES <= u32::MAX as usize);

/// Where one record of an [`EncodedBatch`] lies and the CRC of its bytes after the offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EncodedRecord {
    /// Start of the frame in the batch buffer.
    pub(crate) start: usize,
    /// Frame length (header + payload).
    pub(crate) frame_len: usize,
    /// CRC32C state after `len ‖ payload[8..]` (everything but the offset).
    rest_crc: u32,
    /// The record's timestamp.
    pub(crate) timestamp_ms: u64,
}

/// A batch encoded into one buffer, offsets not yet assigned.
#[derive(Debug)]
pub(crate) struct EncodedBatch {
    /// All frames back to back.
    pub(crate) buf: Vec<u8>,
    /// One entry per record, in order.
    pub(crate) records: Vec<EncodedRecord>,
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn len_u32(len: usize, size: usize, max: u32) -> Result<u32, StoreError> {
    u32::try_from(len).map_err(|_| StoreError::RecordTooLarge { size, max })
}

/// Encodes `records`, refusing any whose payload exceeds `max_record_bytes`.
pub(crate) fn encode_batch(
    records: &[Record],
    max_record_bytes: u32,
) -> Result<EncodedBatch, StoreError> {
    if records.is_empty() {
        return Err(StoreError::EmptyBatch);
    }
    let mut total = 0usize;
    for r in records {
        let size = r.payload_len();
        if size > max_record_bytes as usize {
            return Err(StoreError::RecordTooLarge {
                size,
                max: max_record_bytes,
            });
        }
        total = total.saturating_add(MIN_FRAME_BYTES + size + 8 * r.headers.len());
    }
    let mut buf = Vec::with_capacity(total);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let size = r.payload_len();
        let start = buf.len();
        buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES + 8]); // len, crc, offset: patched later
        let rest_start = buf.len();
        buf.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        match &r.key {
            Some(key) => {
                put_u32(&mut buf, len_u32(key.len(), size, max_record_bytes)?);
                buf.extend_from_slice(key);
            }
            None => put_u32(&mut buf, NO_KEY),
        }
        put_u32(&mut buf, len_u32(r.headers.len(), size, max_record_bytes)?);
        for h in &r.headers {
            put_u32(&mut buf, len_u32(h.name.len(), size, max_record_bytes)?);
            buf.extend_from_slice(h.name.as_bytes());
            put_u32(&mut buf, len_u32(h.value.len(), size, max_record_bytes)?);
            buf.extend_from_slice(&h.value);
        }
        put_u32(&mut buf, len_u32(r.body.len(), size, max_record_bytes)?);
        buf.extend_from_slice(&r.body);
        let payload_len = buf.len() - start - FRAME_HEADER_BYTES;
        if payload_len > MAX_PAYLOAD_BYTES {
            return Err(StoreError::RecordTooLarge {
                size,
                max: max_record_bytes,
            });
        }
        // Cannot fail: checked against MAX_PAYLOAD_BYTES <= u32::MAX just above.
        let len = payload_len as u32;
        buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out.push(EncodedRecord {
            start,
            frame_len: buf.len() - start,
            rest_crc: crc32c::crc32c_append(
                crc32c::crc32c(&buf[start..start + 4]),
                &buf[rest_start..],
            ),
            timestamp_ms: r.timestamp_ms,
        });
    }
    Ok(EncodedBatch { buf, records: out })
}

impl EncodedRecord {
    /// Writes `offset` and the final CRC into `frame` (this record's bytes).
    pub(crate) fn finish(&self, frame: &mut [u8], offset: u64) {
        debug_assert_eq!(frame.len(), self.frame_len);
        frame[8..16].copy_from_slice(&offset.to_le_bytes());
        let crc = crc32c::crc32c_append(self.rest_crc, &frame[8..16]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        debug_assert!(check_frame(frame).is_ok(), "a finished frame verifies");
    }
}

/// What is wrong with the bytes at some position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The frame claims `need` bytes but fewer are available.
    Incomplete {
        /// Bytes the frame needs from its start.
        need: usize,
    },
    /// The bytes are not a valid frame.
    Bad(String),
}

/// Summary of a verified frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameInfo {
    /// The record's offset.
    pub(crate) offset: u64,
    /// The record's timestamp.
    pub(crate) timestamp_ms: u64,
    /// Frame length (header + payload).
    pub(crate) frame_len: usize,
    /// [`Record::payload_len`] of the record.
    pub(crate) payload_len: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads the frame length at the start of `b` without verifying anything else.
pub(crate) fn frame_len(b: &[u8]) -> Result<usize, FrameError> {
    if b.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Incomplete {
            need: FRAME_HEADER_BYTES,
        });
    }
    let len = u32_at(b, 0) as usize;
    if len < MIN_PAYLOAD_BYTES {
        return Err(FrameError::Bad(format!(
            "frame length {len} below the minimum {MIN_PAYLOAD_BYTES}"
        )));
    }
    if len > MAX_PAYLOAD_BYTES {
        return Err(FrameError::Bad(format!(
            "frame length {len} above the maximum {MAX_PAYLOAD_BYTES}"
        )));
    }
    let need = FRAME_HEADER_BYTES + len;
    if b.len() < need {
        return Err(FrameError::Incomplete { need });
    }
    Ok(need)
}

/// Field ranges of a payload, found without copying.
struct Layout {
    key: Option<(usize, usize)>,
    headers: Vec<((usize, usize), (usize, usize))>,
    body: (usize, usize),
    payload_len: usize,
}

/// Walks the payload structure of the frame `f` (which must be complete).
fn layout(f: &[u8], want_headers: bool) -> Result<Layout, FrameError> {
    let end = f.len();
    let bad = |what: &str| FrameError::Bad(format!("malformed payload: {what}"));
    let take = |at: usize, n: usize| -> Result<usize, FrameError> {
        at.checked_add(n)
            .filter(|e| *e <= end)
            .ok_or_else(|| bad("field runs past the frame"))
    };
    let mut at = FRAME_HEADER_BYTES + 16;
    let mut payload_len = 0usize;
    let key_len = u32_at(f, take(at, 4)? - 4);
    at += 4;
    let key = if key_len == NO_KEY {
        None
    } else {
        let e = take(at, key_len as usize)?;
        payload_len += key_len as usize;
        let k = (at, e);
        at = e;
        Some(k)
    };
    let count = u32_at(f, take(at, 4)? - 4) as usize;
    at += 4;
    if count > (end - at) / 8 {
        return Err(bad("header count larger than the frame"));
    }
    let mut headers = Vec::new();
    for _ in 0..count {
        let n = u32_at(f, take(at, 4)? - 4) as usize;
        at += 4;
        let ne = take(at, n)?;
        let name = (at, ne);
        at = ne;
        let v = u32_at(f, take(at, 4)? - 4) as usize;
        at += 4;
        let ve = take(at, v)?;
        if want_headers {
            headers.push((name, (at, ve)));
        }
        payload_len += n + v;
        at = ve;
    }
    let body_len = u32_at(f, take(at, 4)? - 4) as usize;
    at += 4;
    if at + body_len != end {
        return Err(bad("body length does not end the frame"));
    }
    payload_len += body_len;
    Ok(Layout {
        key,
        headers,
        body: (at, end),
        payload_len,
    })
}

fn verify_crc(f: &[u8]) -> Result<(), FrameError> {
    let stored = u32_at(f, 4);
    let head = crc32c::crc32c(&f[0..4]);
    let actual = crc32c::crc32c_append(crc32c::crc32c_append(head, &f[16..]), &f[8..16]);
    if stored != actual {
        return Err(FrameError::Bad(format!(
            "checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        )));
    }
    Ok(())
}

/// Verifies the frame at the start of `b` (length, CRC, structure) without copying it.
pub(crate) fn check_frame(b: &[u8]) -> Result<FrameInfo, FrameError> {
    let n = frame_len(b)?;
    let f = &b[..n];
    verify_crc(f)?;
    let l = layout(f, false)?;
    Ok(FrameInfo {
        offset: u64_at(f, 8),
        timestamp_ms: u64_at(f, 16),
        frame_len: n,
        payload_len: l.payload_len,
    })
}

/// Decodes the verified frame at `buf[at..]`; key, header values and body are slices of `buf`.
pub(crate) fn decode_frame(buf: &Bytes, at: usize) -> Result<(StoredRecord, usize), FrameError> {
    let n = frame_len(&buf[at..])?;
    let f = &buf[at..at + n];
    verify_crc(f)?;
    let l = layout(f, true)?;
    let slice = |(s, e): (usize, usize)| buf.slice(at + s..at + e);
    let mut headers = Vec::with_capacity(l.headers.len());
    for (name, value) in l.headers {
        let name = std::str::from_utf8(&f[name.0..name.1])
            .map_err(|_| FrameError::Bad("header name is not UTF-8".into()))?;
        headers.push(Header {
            name: name.to_string(),
            value: slice(value),
        });
    }
    let record = Record {
        timestamp_ms: u64_at(f, 16),
        key: l.key.map(slice),
        headers,
        body: slice(l.body),
    };
    Ok((
        StoredRecord {
            offset: u64_at(f, 8),
            record,
        },
        n,
    ))
}

/// The offset field of a frame whose first 16 bytes are available (no verification).
pub(crate) fn peek_offset(b: &[u8]) -> Option<u64> {
    (b.len() >= 16).then(|| u64_at(b, 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> Record {
        Record {
            timestamp_ms: 7 + i,
            key: (i % 2 == 0).then(|| Bytes::from(vec![1, 2, 3])),
            headers: vec![Header {
                name: "h".into(),
                value: Bytes::from_static(b"v"),
            }],
            body: Bytes::from(vec![i as u8; i as usize * 10]),
        }
    }

    #[test]
    fn round_trip_with_patched_offsets() {
        let recs: Vec<Record> = (0..5).map(sample).collect();
        let mut b = encode_batch(&recs, 1 << 20).expect("encode");
        for (i, e) in b.records.clone().iter().enumerate() {
            e.finish(&mut b.buf[e.start..e.start + e.frame_len], 100 + i as u64);
        }
        let buf = Bytes::from(b.buf);
        let mut at = 0;
        for (i, r) in recs.iter().enumerate() {
            let (got, n) = decode_frame(&buf, at).expect("decode");
            assert_eq!(got.offset, 100 + i as u64);
            assert_eq!(&got.record, r);
            let info = check_frame(&buf[at..]).expect("check");
            assert_eq!(info.payload_len, r.payload_len());
            at += n;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut b = encode_batch(&[sample(3)], 1 << 20).expect("encode");
        let e = b.records[0];
        e.finish(&mut b.buf, 9);
        for bit in 0..b.buf.len() * 8 {
            let mut f = b.buf.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            assert!(check_frame(&f).is_err(), "bit {bit}");
        }
    }
}
