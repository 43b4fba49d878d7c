//! One stream append stored as few log records: the batch record format.
//!
//! An append of `n > 1` records to a partition becomes one log record that spans `n` offsets
//! ([`weir_store::Log::append_spanning`]): one frame, one checksum, one pass of the log's writer
//! over contiguous bytes, instead of `n` of each. That is what lets a stream take records as fast
//! as the disk takes bytes (issue #8, W5). Each record still has its own offset; a read that
//! starts inside a batch gets the records from its offset on.
//!
//! A batch record is marked by a single header with an **empty name** (user header names are
//! never empty, so no record written before batches existed carries one) and the format
//! version as its value. It has no key; its timestamp is every record's (one append, one
//! time). Its body, version 1, is the records in order, each:
//!
//! ```text
//! key_len+1:varint (0 = no key) key  header_count:varint (name_len:varint name value_len:varint value)*
//! body_len:varint body
//! ```
//!
//! A single record is stored as an ordinary log record (key and headers in the frame), as
//! every record was before batches. An append larger than [`MAX_BATCH_BYTES`] is split into
//! several batch records, appended together (atomically) in one `append_spanning` call.

use std::collections::BTreeMap;

use bytes::Bytes;
use weir_store::codec::varint_len;
use weir_store::{Header, Record, StoreError, StoredRecord, MAX_RECORD_SPAN};

use super::{NewRecord, StreamRecord};
use crate::codec::{put_bytes, put_varint, Reader};

/// The marker header's value: the batch body's format version.
const VERSION_1: &[u8] = b"1";
/// Most body bytes one batch record holds (a larger append becomes several batch records;
/// a single record larger than this is stored alone).
pub(crate) const MAX_BATCH_BYTES: usize = 1 << 20;

const _: () = assert!(weir_proto::limits::MAX_BATCH_MESSAGES as u64 <= MAX_RECORD_SPAN as u64);

/// Bytes of a length-prefixed field of `len` bytes.
fn field_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Bytes `r` takes in a batch body.
fn encoded_len(r: &NewRecord) -> usize {
    let key = r
        .key
        .as_ref()
        .map_or(1, |k| varint_len(k.len() as u64 + 1) + k.len());
    let headers: usize = r
        .headers
        .iter()
        .map(|(n, v)| field_len(n.len()) + field_len(v.len()))
        .sum();
    key + varint_len(r.headers.len() as u64) + headers + field_len(r.body.len())
}

fn encode(records: &[&NewRecord], bytes: usize, timestamp_ms: u64) -> Record {
    let mut out = Vec::with_capacity(bytes);
    for r in records {
        match &r.key {
            Some(k) => {
                put_varint(&mut out, k.len() as u64 + 1);
                out.extend_from_slice(k);
            }
            None => out.push(0),
        }
        put_varint(&mut out, r.headers.len() as u64);
        for (name, value) in &r.headers {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_bytes(&mut out, &r.body);
    }
    debug_assert_eq!(out.len(), bytes, "encoded_len is exact");
    Record {
        timestamp_ms,
        key: None,
        headers: vec![Header {
            name: String::new(),
            value: Bytes::from_static(VERSION_1),
        }],
        body: Bytes::from(out),
    }
}

/// The log record of a single stream record (no batch).
fn plain(r: &NewRecord, timestamp_ms: u64) -> Record {
    Record {
        timestamp_ms,
        key: r.key.clone(),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| Header {
                name: k.clone(),
                value: Bytes::copy_from_slice(v.as_bytes()),
            })
            .collect(),
        body: r.body.clone(),
    }
}

/// The log records (and their spans) that store `records`, in order.
pub(crate) fn pack(records: &[&NewRecord], timestamp_ms: u64) -> (Vec<Record>, Vec<u32>) {
    let (mut stored, mut spans) = (Vec::new(), Vec::new());
    let mut flush = |chunk: &[&NewRecord], bytes: usize| {
        match chunk {
            [] => return,
            [one] => stored.push(plain(one, timestamp_ms)),
            many => stored.push(encode(many, bytes, timestamp_ms)),
        }
        // A chunk holds at most MAX_BATCH_MESSAGES (≤ MAX_RECORD_SPAN) records.
        spans.push(chunk.len() as u32);
    };
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let len = encoded_len(r);
        if i > start && bytes + len > MAX_BATCH_BYTES {
            flush(&records[start..i], bytes);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    flush(&records[start..], bytes);
    (stored, spans)
}

/// Whether `r` is a batch record (of any version).
fn is_batch(r: &Record) -> bool {
    r.key.is_none() && matches!(r.headers.as_slice(), [h] if h.name.is_empty())
}

/// A length-prefixed UTF-8 field of a batch body (lossy, as plain records' header values are).
fn text(r: &mut Reader<'_>) -> Result<String, StoreError> {
    Ok(String::from_utf8_lossy(r.bytes()?).into_owned())
}

/// Appends to `out` the stream records stored in `r` at offsets `>= from`, until `out` holds
/// `max`. Keys and bodies are slices of the record's body (no copy). An error describes a batch
/// that does not decode (the log's checksum passed, so this is a bug or a foreign writer).
pub(crate) fn unpack(
    r: StoredRecord,
    from: u64,
    max: usize,
    out: &mut Vec<StreamRecord>,
) -> Result<(), StoreError> {
    let timestamp_ms = r.record.timestamp_ms;
    if !is_batch(&r.record) {
        if r.offset >= from && out.len() < max {
            out.push(StreamRecord {
                offset: r.offset,
                timestamp_ms,
                key: r.record.key,
                headers: r
                    .record
                    .headers
                    .into_iter()
                    .map(|h| (h.name, String::from_utf8_lossy(&h.value).into_owned()))
                    .collect(),
                body: r.record.body,
            });
        }
        return Ok(());
    }
    let body = r.record.body;
    let mut c = Reader::new("stream batch", &body);
    if r.record.headers[0].value != VERSION_1 {
        return Err(c.error(format!(
            "unknown batch version {:?}",
            String::from_utf8_lossy(&r.record.headers[0].value)
        )));
    }
    let mut offset = r.offset;
    let end = r.offset + u64::from(r.span);
    while !c.is_empty() {
        if offset >= end {
            return Err(c.error(format!("batch holds more than its {} records", r.span)));
        }
        let key = match c.varint()? {
            0 => None,
            n => {
                let n = usize::try_from(n - 1).map_err(|_| c.error("key length overflows"))?;
                Some(body.slice_ref(c.take(n)?))
            }
        };
        let count = c.varint()?;
        let mut headers = BTreeMap::new();
        for _ in 0..count {
            let name = text(&mut c)?;
            headers.insert(name, text(&mut c)?);
        }
        let record_body = body.slice_ref(c.bytes()?);
        if offset >= from {
            if out.len() >= max {
                return Ok(());
            }
            out.push(StreamRecord {
                offset,
                timestamp_ms,
                key,
                headers,
                body: record_body,
            });
        }
        offset += 1;
    }
    if offset != end {
        return Err(c.error(format!(
            "batch holds {} records, its span says {}",
            offset - r.offset,
            r.span
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize, body_len: usize) -> NewRecord {
        NewRecord {
            key: (i % 3 == 0).then(|| Bytes::from(format!("k{i}"))),
            headers: if i % 2 == 0 {
                BTreeMap::from([
                    ("h".to_string(), format!("v{i}")),
                    ("é".into(), String::new()),
                ])
            } else {
                BTreeMap::new()
            },
            body: Bytes::from(vec![i as u8; body_len]),
        }
    }

    fn stored(records: Vec<Record>, spans: &[u32], first: u64) -> Vec<StoredRecord> {
        let mut offset = first;
        records
            .into_iter()
            .zip(spans)
            .map(|(record, span)| {
                let r = StoredRecord {
                    offset,
                    span: *span,
                    record,
                };
                offset += u64::from(*span);
                r
            })
            .collect()
    }

    fn unpack_all(stored: &[StoredRecord], from: u64, max: usize) -> Vec<StreamRecord> {
        let mut out = Vec::new();
        for r in stored {
            unpack(r.clone(), from, max, &mut out).expect("unpack");
        }
        out
    }

    #[test]
    fn records_round_trip_through_a_batch_from_any_offset() {
        let records: Vec<NewRecord> = (0..50).map(|i| rec(i, i * 7)).collect();
        let refs: Vec<&NewRecord> = records.iter().collect();
        let (packed, spans) = pack(&refs, 1234);
        assert_eq!(spans, vec![50], "one batch record");
        assert!(is_batch(&packed[0]));
        let stored = stored(packed, &spans, 100);
        for from in [0, 100, 101, 125, 149] {
            let got = unpack_all(&stored, from, 1000);
            let skip = from.saturating_sub(100) as usize;
            assert_eq!(got.len(), 50 - skip, "from {from}");
            for (k, g) in got.iter().enumerate() {
                let want = &records[skip + k];
                assert_eq!(g.offset, 100 + (skip + k) as u64);
                assert_eq!(g.timestamp_ms, 1234);
                assert_eq!(
                    (&g.key, &g.headers, &g.body),
                    (&want.key, &want.headers, &want.body)
                );
            }
        }
        assert_eq!(
            unpack_all(&stored, 110, 3).len(),
            3,
            "max bounds the records returned"
        );
        assert!(unpack_all(&stored, 150, 1000).is_empty());
    }

    #[test]
    fn one_record_is_stored_plain_and_large_appends_are_split() {
        let one = rec(0, 10);
        let (packed, spans) = pack(&[&one], 5);
        assert_eq!(spans, vec![1]);
        assert!(
            !is_batch(&packed[0]),
            "a single record keeps the plain format"
        );
        assert_eq!(packed[0].key, one.key);
        let got = unpack_all(&stored(packed, &spans, 7), 0, 10);
        assert_eq!(
            (got[0].offset, &got[0].body, &got[0].headers),
            (7, &one.body, &one.headers)
        );

        // 5 records of 400 KiB: two per batch record (≤ 1 MiB each), the last alone (plain).
        let big: Vec<NewRecord> = (0..5).map(|i| rec(i, 400 << 10)).collect();
        let refs: Vec<&NewRecord> = big.iter().collect();
        let (packed, spans) = pack(&refs, 5);
        assert_eq!(spans, vec![2, 2, 1]);
        assert!(packed.iter().all(|r| r.body.len() <= MAX_BATCH_BYTES));
        let got = unpack_all(&stored(packed, &spans, 0), 0, 10);
        let bodies: Vec<_> = got.iter().map(|r| (r.offset, r.body.clone())).collect();
        let want: Vec<_> = big
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64, r.body.clone()))
            .collect();
        assert_eq!(bodies, want);
    }

    #[test]
    fn a_batch_that_disagrees_with_its_span_or_version_is_an_error() {
        let records: Vec<NewRecord> = (0..4).map(|i| rec(i, 3)).collect();
        let refs: Vec<&NewRecord> = records.iter().collect();
        let (packed, _) = pack(&refs, 1);
        for span in [3, 5] {
            let r = StoredRecord {
                offset: 0,
                span,
                record: packed[0].clone(),
            };
            let e = unpack(r, 0, 100, &mut Vec::new())
                .expect_err("wrong span")
                .to_string();
            assert!(e.contains("span") || e.contains("more than"), "{e}");
        }
        let mut v2 = packed[0].clone();
        v2.headers[0].value = Bytes::from_static(b"2");
        let r = StoredRecord {
            offset: 0,
            span: 4,
            record: v2,
        };
        assert!(unpack(r, 0, 100, &mut Vec::new())
            .expect_err("version")
            .to_string()
            .contains("version"));
        let mut cut = packed[0].clone();
        cut.body = cut.body.slice(..cut.body.len() - 1);
        let r = StoredRecord {
            offset: 0,
            span: 4,
            record: cut,
        };
        assert!(
            unpack(r, 0, 100, &mut Vec::new()).is_err(),
            "a truncated body"
        );
    }
}
