//! Record framing: the bytes of one record on disk (see `docs/storage.md`, "Record frame").
//!
//! ```text
//! frame   = len:u32 crc:u32 payload[len]
//! payload = offset:u64 timestamp_ms:u64 key_len:u32 key[key_len]
//!           header_count:u16 flags:u16 [span:u32 if flags & SPAN]
//!           (name_len:u32 name value_len:u32 value)*
//!           body_len:u32 body
//! crc     = crc32c(len ‖ payload[8..] ‖ offset)   (all integers little-endian)
//! ```
//!
//! `key_len == u32::MAX` means "no key". `flags` is 0 for an ordinary record (so frames written
//! before flags existed, when `header_count` was a u32, read the same); bit 0 (`SPAN`) says the
//! record occupies `span` offsets (2..=`MAX_RECORD_SPAN`) instead of one. An append works in two steps. [`prepare_batch`], in the
//! appender's thread and before any lock, validates every record and computes its frame length
//! and the CRC state of everything but the offset (the pass over the body). [`write_frame`],
//! under the log's lock once the offset is known, writes the frame straight into the log's
//! pending buffer and finishes the CRC by feeding it the 8 offset bytes. The CRC covers every
//! byte of the frame except the CRC field, but feeds the offset *last* so that the lock never
//! covers a pass over the body (a `crc32c_combine` instead cost about a quarter of the CPU at
//! high append rates, under the lock); the frame bytes are copied once, into the buffer the
//! writer thread hands to the kernel.

use bytes::Bytes;
use weir_store::{Header, Record, StoreError, StoredRecord, MAX_RECORD_SPAN};

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
/// Flag: a `span:u32` follows the flags; the record occupies that many offsets.
const FLAG_SPAN: u16 = 1;
/// Most headers one record may carry (the count is a u16).
pub(crate) const MAX_RECORD_HEADERS: usize = u16::MAX as usize;

const _: () = assert!(MIN_FRAME_BYTES == 36);
const _: () = assert!(MAX_PAYLOAD_BYTES <= u32::MAX as usize);

/// One record of a batch, ready to be written once its offset is known.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prepared {
    /// Frame length (header + payload).
    pub(crate) frame_len: usize,
    /// The `len` field.
    len: u32,
    /// CRC32C state after `len ‖ payload[8..]` (everything but the offset).
    rest_crc: u32,
    /// Offsets the record occupies.
    pub(crate) span: u32,
}

/// Batches of at most this many records are prepared without a heap allocation.
const INLINE_RECORDS: usize = 4;

/// A batch whose records are validated and CRC'd, offsets not yet assigned.
#[derive(Debug)]
pub(crate) struct PreparedBatch {
    inline: [Prepared; INLINE_RECORDS],
    heap: Vec<Prepared>,
    len: usize,
    /// Sum of the frame lengths.
    pub(crate) bytes: usize,
}

impl PreparedBatch {
    /// One entry per record, in order.
    pub(crate) fn frames(&self) -> &[Prepared] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

/// Feeds small pieces to a CRC32C through a stack buffer (one call per ~32 bytes of fields
/// rather than one per field).
struct Crc {
    crc: u32,
    stage: [u8; 32],
    n: usize,
}

impl Crc {
    fn new() -> Crc {
        Crc {
            crc: 0,
            stage: [0; 32],
            n: 0,
        }
    }

    fn flush(&mut self) {
        if self.n > 0 {
            self.crc = crc32c::crc32c_append(self.crc, &self.stage[..self.n]);
            self.n = 0;
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() > self.stage.len() - self.n {
            self.flush();
            if bytes.len() > self.stage.len() {
                self.crc = crc32c::crc32c_append(self.crc, bytes);
                return;
            }
        }
        self.stage[self.n..self.n + bytes.len()].copy_from_slice(bytes);
        self.n += bytes.len();
    }

    fn finish(mut self) -> u32 {
        self.flush();
        self.crc
    }
}

fn len_u32(len: usize, size: usize, max: u32) -> Result<u32, StoreError> {
    u32::try_from(len).map_err(|_| StoreError::RecordTooLarge { size, max })
}

/// The `flags` and optional `span` field of a record spanning `span` offsets.
fn span_fields(span: u32) -> (u16, Option<u32>) {
    if span > 1 {
        (FLAG_SPAN, Some(span))
    } else {
        (0, None)
    }
}

/// Validates `r` (spanning `span` offsets, checked by the caller) against `max_record_bytes`
/// and computes its frame length and CRC state.
fn prepare(r: &Record, span: u32, max_record_bytes: u32) -> Result<Prepared, StoreError> {
    let size = r.payload_len();
    let too_large = || StoreError::RecordTooLarge {
        size,
        max: max_record_bytes,
    };
    if size > max_record_bytes as usize {
        return Err(too_large());
    }
    if r.headers.len() > MAX_RECORD_HEADERS {
        return Err(StoreError::TooManyHeaders {
            count: r.headers.len(),
            max: MAX_RECORD_HEADERS,
        });
    }
    let (flags, span_field) = span_fields(span);
    // offset, timestamp, key_len, header count + flags, body_len; each header two lengths.
    let payload_len = (MIN_PAYLOAD_BYTES + size + if span_field.is_some() { 4 } else { 0 })
        .checked_add(r.headers.len().checked_mul(8).ok_or_else(too_large)?)
        .filter(|n| *n <= MAX_PAYLOAD_BYTES)
        .ok_or_else(too_large)?;
    // Cannot fail: checked against MAX_PAYLOAD_BYTES <= u32::MAX just above.
    let len = payload_len as u32;
    let mut crc = Crc::new();
    crc.put(&len.to_le_bytes());
    crc.put(&r.timestamp_ms.to_le_bytes());
    match &r.key {
        Some(key) => {
            crc.put(&len_u32(key.len(), size, max_record_bytes)?.to_le_bytes());
            crc.put(key);
        }
        None => crc.put(&NO_KEY.to_le_bytes()),
    }
    // Fits: checked against MAX_RECORD_HEADERS (u16::MAX) above.
    crc.put(&(r.headers.len() as u16).to_le_bytes());
    crc.put(&flags.to_le_bytes());
    if let Some(span) = span_field {
        crc.put(&span.to_le_bytes());
    }
    for h in &r.headers {
        crc.put(&len_u32(h.name.len(), size, max_record_bytes)?.to_le_bytes());
        crc.put(h.name.as_bytes());
        crc.put(&len_u32(h.value.len(), size, max_record_bytes)?.to_le_bytes());
        crc.put(&h.value);
    }
    crc.put(&len_u32(r.body.len(), size, max_record_bytes)?.to_le_bytes());
    crc.put(&r.body);
    Ok(Prepared {
        frame_len: FRAME_HEADER_BYTES + payload_len,
        len,
        rest_crc: crc.finish(),
        span,
    })
}

/// Prepares `records`, record `i` spanning `spans[i]` offsets (1 each without `spans`),
/// refusing the whole batch if any payload exceeds `max_record_bytes` or a span is invalid.
pub(crate) fn prepare_batch(
    records: &[Record],
    spans: Option<&[u32]>,
    max_record_bytes: u32,
) -> Result<PreparedBatch, StoreError> {
    if records.is_empty() {
        return Err(StoreError::EmptyBatch);
    }
    if let Some(spans) = spans {
        weir_store::check_spans(records, spans)?;
    }
    let mut batch = PreparedBatch {
        inline: [Prepared::default(); INLINE_RECORDS],
        heap: Vec::new(),
        len: records.len(),
        bytes: 0,
    };
    if records.len() > INLINE_RECORDS {
        batch.heap.reserve_exact(records.len());
    }
    for (i, r) in records.iter().enumerate() {
        // `check_spans` made the lengths equal; without spans every record spans one.
        let span = spans.and_then(|s| s.get(i).copied()).unwrap_or(1);
        let p = prepare(r, span, max_record_bytes)?;
        batch.bytes = batch.bytes.saturating_add(p.frame_len);
        match batch.inline.get_mut(i) {
            Some(slot) if records.len() <= INLINE_RECORDS => *slot = p,
            _ => batch.heap.push(p),
        }
    }
    Ok(batch)
}

/// Appends the frame of `r` (prepared as `p`) with `offset` to `out`.
pub(crate) fn write_frame(out: &mut Vec<u8>, r: &Record, p: &Prepared, offset: u64) {
    let start = out.len();
    out.reserve(p.frame_len);
    let offset_bytes = offset.to_le_bytes();
    let crc = crc32c::crc32c_append(p.rest_crc, &offset_bytes);
    // Lengths were checked to fit in u32 by `prepare`.
    let put_len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&p.len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&offset_bytes);
    out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
    match &r.key {
        Some(key) => {
            put_len(out, key.len());
            out.extend_from_slice(key);
        }
        None => out.extend_from_slice(&NO_KEY.to_le_bytes()),
    }
    let (flags, span_field) = span_fields(p.span);
    // Fits: `prepare` checked the count against MAX_RECORD_HEADERS (u16::MAX).
    out.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    if let Some(span) = span_field {
        out.extend_from_slice(&span.to_le_bytes());
    }
    for h in &r.headers {
        put_len(out, h.name.len());
        out.extend_from_slice(h.name.as_bytes());
        put_len(out, h.value.len());
        out.extend_from_slice(&h.value);
    }
    put_len(out, r.body.len());
    out.extend_from_slice(&r.body);
    debug_assert_eq!(out.len() - start, p.frame_len);
    debug_assert!(
        check_frame(&out[start..]).is_ok(),
        "a written frame verifies"
    );
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
    /// The record's offset (the first of its span).
    pub(crate) offset: u64,
    /// How many offsets it occupies (1 unless the `SPAN` flag is set).
    pub(crate) span: u32,
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
    span: u32,
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
    let count_and_flags = u32_at(f, take(at, 4)? - 4);
    at += 4;
    // Two u16s, little-endian: the low half is the header count, the high half the flags.
    let count = (count_and_flags & 0xFFFF) as usize;
    let flags = (count_and_flags >> 16) as u16;
    if flags & !FLAG_SPAN != 0 {
        return Err(bad("unknown flags"));
    }
    let span = if flags & FLAG_SPAN != 0 {
        let span = u32_at(f, take(at, 4)? - 4);
        at += 4;
        if !(1..=MAX_RECORD_SPAN).contains(&span) {
            return Err(bad("span outside 1..=MAX_RECORD_SPAN"));
        }
        span
    } else {
        1
    };
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
        span,
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
        span: l.span,
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
            span: l.span,
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

    fn encode(recs: &[Record], first: u64) -> Vec<u8> {
        let b = prepare_batch(recs, None, 1 << 20).expect("prepare");
        let mut out = Vec::new();
        for (i, (r, p)) in recs.iter().zip(b.frames()).enumerate() {
            write_frame(&mut out, r, p, first + i as u64);
        }
        assert_eq!(out.len(), b.bytes);
        out
    }

    #[test]
    fn round_trip_with_offsets() {
        for n in [1, 4, 5, 9] {
            let recs: Vec<Record> = (0..n).map(sample).collect();
            let buf = Bytes::from(encode(&recs, 100));
            let mut at = 0;
            for (i, r) in recs.iter().enumerate() {
                let (got, len) = decode_frame(&buf, at).expect("decode");
                assert_eq!(got.offset, 100 + i as u64);
                assert_eq!(&got.record, r);
                let info = check_frame(&buf[at..]).expect("check");
                assert_eq!(info.payload_len, r.payload_len());
                at += len;
            }
            assert_eq!(at, buf.len());
        }
    }

    /// Reframes `f` (a frame) with a new CRC computed the documented way.
    fn recrc(f: &mut [u8]) {
        let mut whole = f[0..4].to_vec();
        whole.extend_from_slice(&f[16..]);
        whole.extend_from_slice(&f[8..16]);
        let crc = crc32c::crc32c(&whole);
        f[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn a_spanning_record_round_trips_with_its_span() {
        for span in [2, 100, MAX_RECORD_SPAN] {
            let r = sample(3);
            let b =
                prepare_batch(std::slice::from_ref(&r), Some(&[span]), 1 << 20).expect("prepare");
            let mut out = Vec::new();
            write_frame(&mut out, &r, &b.frames()[0], 40);
            assert_eq!(out.len(), b.bytes);
            let info = check_frame(&out).expect("check");
            assert_eq!((info.offset, info.span), (40, span));
            let (got, _) = decode_frame(&Bytes::from(out), 0).expect("decode");
            assert_eq!((got.offset, got.span, got.record), (40, span, r));
        }
        for bad in [0, MAX_RECORD_SPAN + 1] {
            assert!(matches!(
                prepare_batch(&[sample(1)], Some(&[bad]), 1 << 20),
                Err(StoreError::InvalidSpan { span, .. }) if span == bad
            ));
        }
        assert!(matches!(
            prepare_batch(&[sample(1), sample(2)], Some(&[3]), 1 << 20),
            Err(StoreError::SpanCountMismatch {
                records: 2,
                spans: 1
            })
        ));
    }

    #[test]
    fn frames_from_before_flags_read_the_same() {
        // Before spans, `header_count` was a u32: build such a frame by hand (one header, no
        // key) and check it decodes as a one-offset record.
        let mut payload = Vec::new();
        payload.extend_from_slice(&9u64.to_le_bytes()); // offset
        payload.extend_from_slice(&5u64.to_le_bytes()); // timestamp
        payload.extend_from_slice(&u32::MAX.to_le_bytes()); // no key
        payload.extend_from_slice(&1u32.to_le_bytes()); // header count as a u32
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(b"h");
        payload.extend_from_slice(&2u32.to_le_bytes());
        payload.extend_from_slice(b"vv");
        payload.extend_from_slice(&3u32.to_le_bytes());
        payload.extend_from_slice(b"abc");
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&payload);
        recrc(&mut f);
        let (got, _) = decode_frame(&Bytes::from(f), 0).expect("decode");
        assert_eq!((got.offset, got.span), (9, 1));
        assert_eq!(got.record.headers[0].value, Bytes::from_static(b"vv"));
        assert_eq!(got.record.body, Bytes::from_static(b"abc"));
    }

    #[test]
    fn unknown_flags_and_bad_spans_are_refused_even_with_a_good_crc() {
        let r = Record::default();
        let mut f = encode(std::slice::from_ref(&r), 0);
        // The header count and flags follow offset, timestamp and key_len (no key).
        let at = FRAME_HEADER_BYTES + 16 + 4;
        f[at + 2] = 0b10; // an unknown flag
        recrc(&mut f);
        assert!(matches!(check_frame(&f), Err(FrameError::Bad(m)) if m.contains("flags")));
        let b = prepare_batch(std::slice::from_ref(&r), Some(&[7]), 1 << 20).expect("prepare");
        let mut f = Vec::new();
        write_frame(&mut f, &r, &b.frames()[0], 0);
        f[at + 4..at + 8].copy_from_slice(&(MAX_RECORD_SPAN + 1).to_le_bytes());
        recrc(&mut f);
        assert!(matches!(check_frame(&f), Err(FrameError::Bad(m)) if m.contains("span")));
    }

    #[test]
    fn crc_is_the_documented_one() {
        // crc = crc32c(len ‖ payload[8..] ‖ offset), whatever the sizes of the pieces.
        for body in [0usize, 1, 31, 32, 33, 100, 4096] {
            let r = Record {
                timestamp_ms: 5,
                key: Some(Bytes::from(vec![9u8; body % 40])),
                headers: vec![Header {
                    name: "n".repeat(body % 7),
                    value: Bytes::from(vec![3u8; body % 50]),
                }],
                body: Bytes::from(vec![1u8; body]),
            };
            let f = encode(std::slice::from_ref(&r), 77);
            let mut whole = f[0..4].to_vec();
            whole.extend_from_slice(&f[16..]);
            whole.extend_from_slice(&f[8..16]);
            assert_eq!(u32_at(&f, 4), crc32c::crc32c(&whole), "body {body}");
        }
    }

    #[test]
    fn too_large_refuses_the_batch() {
        let big = Record {
            body: Bytes::from(vec![0u8; 11]),
            ..Record::default()
        };
        let small = Record::default();
        assert!(matches!(
            prepare_batch(&[small, big], None, 10),
            Err(StoreError::RecordTooLarge { size: 11, max: 10 })
        ));
        assert!(matches!(
            prepare_batch(&[], None, 10),
            Err(StoreError::EmptyBatch)
        ));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let buf = encode(&[sample(3)], 9);
        for bit in 0..buf.len() * 8 {
            let mut f = buf.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            assert!(check_frame(&f).is_err(), "bit {bit}");
        }
    }
}
