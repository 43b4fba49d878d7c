//! Streams: partition choice by key, order, replay, seeking by time, retention by whole segments.

mod common;

use bytes::Bytes;
use common::{block, Harness};
use weir_broker::{partition_for_key, BrokerError, NewRecord, ReadFrom, StreamConfig};

fn rec(key: Option<&str>, body: &str) -> NewRecord {
    NewRecord {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        body: Bytes::copy_from_slice(body.as_bytes()),
        ..NewRecord::default()
    }
}

fn append(h: &Harness, s: &str, records: Vec<NewRecord>) -> Vec<(u32, u64)> {
    let out = h.broker.append_stream(s, records).expect("append");
    block(out.durable);
    out.positions
}

fn texts(h: &Harness, s: &str, p: u32, from: ReadFrom, max: usize) -> (Vec<String>, u64) {
    let b = h.broker.read_stream(s, p, from, max).expect("read");
    (
        b.records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect(),
        b.next_offset,
    )
}

#[test]
fn same_key_same_partition_in_order_and_replayable_from_zero() {
    let mut h = Harness::new();
    let config = StreamConfig {
        partitions: 4,
        ..StreamConfig::default()
    };
    let (_, created) = h.broker.create_stream("s", config).expect("create");
    assert!(created);
    let mut records = Vec::new();
    for i in 0..40 {
        records.push(rec(Some(&format!("k{}", i % 5)), &format!("{i}")));
    }
    let pos = append(&h, "s", records);
    for (i, (p, _)) in pos.iter().enumerate() {
        let key = format!("k{}", i % 5);
        assert_eq!(*p, partition_for_key(key.as_bytes(), 4), "record {i}");
    }
    // Within a partition, offsets follow append order.
    for p in 0..4 {
        let mine: Vec<u64> = pos
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert!(mine.windows(2).all(|w| w[1] == w[0] + 1));
        let (bodies, next) = texts(&h, "s", p, ReadFrom::Offset(0), 1000);
        assert_eq!(next, mine.len() as u64);
        let expect: Vec<String> = pos
            .iter()
            .enumerate()
            .filter(|(_, (q, _))| *q == p)
            .map(|(i, _)| format!("{i}"))
            .collect();
        assert_eq!(bodies, expect);
    }
    // The hash is stable (documented: xxh3_64(key) % partitions).
    assert_eq!(partition_for_key(b"k0", 4), (xxh3(b"k0") % 4) as u32);
    assert_eq!(xxh3(b""), 0x2D06_8005_38D3_94C2, "XXH3-64 reference value");
    // Reading does not consume: replay from 0, also after a restart.
    h.restart();
    let p = pos[0].0;
    let (again, _) = texts(&h, "s", p, ReadFrom::Offset(0), 2);
    assert_eq!(again.len(), 2);
    assert_eq!(again[0], "0");
    let (tail, next) = texts(&h, "s", p, ReadFrom::Offset(1), 1000);
    assert_eq!(tail.len() as u64, next - 1);
}

fn xxh3(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

#[test]
fn keyless_records_spread_and_bad_reads_are_refused() {
    let h = Harness::new();
    h.broker
        .create_stream(
            "s",
            StreamConfig {
                partitions: 3,
                ..StreamConfig::default()
            },
        )
        .expect("create");
    let pos = append(
        &h,
        "s",
        (0..6).map(|i| rec(None, &format!("{i}"))).collect(),
    );
    let mut per = [0; 3];
    for (p, _) in &pos {
        per[*p as usize] += 1;
    }
    assert_eq!(per, [2, 2, 2]);
    assert!(matches!(
        h.broker.read_stream("s", 3, ReadFrom::Offset(0), 1),
        Err(BrokerError::NotFound { .. })
    ));
    assert!(matches!(
        h.broker.read_stream("s", 0, ReadFrom::Offset(99), 1),
        Err(BrokerError::InvalidArgument(_))
    ));
    assert!(h
        .broker
        .read_stream("s", 0, ReadFrom::Offset(0), 0)
        .is_err());
    // The partition count is fixed.
    let err = h
        .broker
        .create_stream("s", StreamConfig::default())
        .expect_err("conflict");
    assert!(matches!(err, BrokerError::Conflict(_)));
    // Reading at the end returns nothing and the same position; a waiter wakes on append.
    let (none, next) = texts(&h, "s", 0, ReadFrom::Offset(2), 10);
    assert!(none.is_empty());
    assert_eq!(next, 2);
    let waiter = h.broker.wait_stream("s", 0, 2).expect("wait");
    append(
        &h,
        "s",
        (0..3).map(|i| rec(None, &format!("{i}"))).collect(),
    );
    block(waiter);
}

#[test]
fn seek_by_timestamp() {
    let h = Harness::new();
    h.broker
        .create_stream("s", StreamConfig::default())
        .expect("create");
    let t0 = h.clock_now();
    append(&h, "s", vec![rec(None, "a"), rec(None, "b")]);
    h.advance(1000);
    append(&h, "s", vec![rec(None, "c")]);
    h.advance(1000);
    append(&h, "s", vec![rec(None, "d")]);
    let (b, _) = texts(&h, "s", 0, ReadFrom::Timestamp(t0 + 500), 10);
    assert_eq!(b, vec!["c", "d"]);
    let (b, _) = texts(&h, "s", 0, ReadFrom::Timestamp(t0 + 1000), 1);
    assert_eq!(b, vec!["c"]);
    let (b, next) = texts(&h, "s", 0, ReadFrom::Timestamp(t0 + 5000), 10);
    assert!(b.is_empty());
    assert_eq!(next, 4);
    let r = h
        .broker
        .read_stream("s", 0, ReadFrom::Offset(0), 1)
        .expect("read");
    assert_eq!(r.records[0].timestamp_ms, t0);
}

#[test]
fn retention_by_age_removes_only_whole_old_segments() {
    let h = Harness::new();
    h.broker
        .create_stream(
            "s",
            StreamConfig {
                partitions: 1,
                retention_ms: Some(60_000),
                retention_bytes: None,
            },
        )
        .expect("create");
    // 1500 old records in appends of 100, each stored as one batch record: the first memory-store
    // segment (offsets 0..1024, rounded up to the batch boundary 1100) and part of the next.
    for _ in 0..15 {
        append(&h, "s", (0..100).map(|_| rec(None, "old")).collect());
    }
    h.advance(120_000);
    append(&h, "s", (0..1000).map(|_| rec(None, "new")).collect());
    h.broker.tick();
    let st = h.broker.stream_stats("s").expect("stats");
    assert_eq!(st.partitions[0].start_offset, 1100);
    // Reading from 0 starts at the retained start; the old records of the mixed segment stay.
    let b = h
        .broker
        .read_stream("s", 0, ReadFrom::Offset(0), 1)
        .expect("read");
    assert_eq!(b.records[0].offset, 1100);
    let (first, _) = texts(&h, "s", 0, ReadFrom::Offset(1100), 1);
    assert_eq!(first, vec!["old"]);
    let (last, _) = texts(&h, "s", 0, ReadFrom::Offset(2499), 1);
    assert_eq!(last, vec!["new"]);
}

#[test]
fn retention_by_size_set_later_removes_whole_segments_conservatively() {
    let h = Harness::new();
    h.broker
        .create_stream("s", StreamConfig::default())
        .expect("create");
    for _ in 0..30 {
        append(&h, "s", (0..100).map(|_| rec(None, "0123456789")).collect());
    }
    h.broker
        .create_stream(
            "s",
            StreamConfig {
                retention_bytes: Some(12_000),
                ..StreamConfig::default()
            },
        )
        .expect("update");
    h.broker.tick();
    h.broker.tick();
    // Until a restart applies it exactly, a limit set later is an estimate at segment
    // granularity that never removes a segment holding records it should keep: 30 batch records
    // of 1301 bytes (100 × 13 encoded + the 1-byte marker) = 39 030 bytes over 12 000 → mark
    // 2077 → only the whole segment 0..1100 (0..1024 rounded up to a batch boundary) goes.
    let st = h.broker.stream_stats("s").expect("stats");
    assert_eq!(st.partitions[0].start_offset, 1100);
    assert_eq!(st.partitions[0].end_offset, 3000);
}
