//! Property: random batches appended, closed, reopened, read back byte-identical.

mod common;

use bytes::Bytes;
use futures::executor::block_on;
use proptest::prelude::*;
use weir_store::{Header, LogConfig, Record};

fn arb_record() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        proptest::collection::vec(
            ("[a-z]{0,6}", proptest::collection::vec(any::<u8>(), 0..10)),
            0..3,
        ),
        proptest::collection::vec(any::<u8>(), 0..3000),
    )
        .prop_map(|(ts, key, headers, body)| Record {
            timestamp_ms: ts,
            key: key.map(Bytes::from),
            headers: headers
                .into_iter()
                .map(|(name, value)| Header {
                    name,
                    value: Bytes::from(value),
                })
                .collect(),
            body: Bytes::from(body),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn batches_survive_reopen(batches in proptest::collection::vec(proptest::collection::vec(arb_record(), 1..8), 1..12)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes: 8 * 1024, ..LogConfig::default() };
        let mut all = Vec::new();
        {
            let store = common::open_store(dir.path());
            let log = common::open_log(&store, &config);
            let mut waits = Vec::new();
            for b in &batches {
                let a = log.append(b).expect("append");
                prop_assert_eq!(a.first_offset, all.len() as u64);
                all.extend(b.iter().cloned());
                waits.push(a.durable);
            }
            for w in waits {
                block_on(w).expect("durable");
            }
            let got = common::read_all(log.as_ref());
            prop_assert_eq!(got.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), all.clone());
        }
        let store = common::open_store(dir.path());
        let log = common::open_log(&store, &config);
        let got = common::read_all(log.as_ref());
        prop_assert_eq!(got.len(), all.len());
        for (i, r) in got.iter().enumerate() {
            prop_assert_eq!(r.offset, i as u64);
            prop_assert_eq!(&r.record, &all[i]);
        }
        // Random-access reads agree with the sequential ones.
        for probe in [0, all.len() / 3, all.len() / 2, all.len().saturating_sub(1)] {
            let one = log.read(probe as u64, 1, 0).expect("read one");
            prop_assert_eq!(&one[0].record, &all[probe]);
        }
    }
}

/// A read sizes its first buffer from the segment's average record: records far larger than the
/// average (here 300 KiB among 100-byte ones) must still come back whole, from any start.
#[test]
fn reads_sized_by_the_average_record_still_return_records_far_above_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::open_store(dir.path());
    let log = common::open_log(&store, &LogConfig::default());
    let sizes: Vec<usize> = (0..300)
        .map(|i| match i {
            150 => 300 * 1024,
            220 | 221 => 64 * 1024,
            _ => 100,
        })
        .collect();
    let records: Vec<Record> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| common::record(i as u64, len))
        .collect();
    block_on(log.append(&records).expect("append").durable).expect("durable");
    for (from, n) in [
        (0, 300),
        (140, 20),
        (150, 1),
        (149, 2),
        (151, 100),
        (219, 4),
        (0, 151),
    ] {
        let got = log.read(from, n, usize::MAX).expect("read");
        assert_eq!(got.len(), n, "read({from}, {n})");
        for (k, r) in got.iter().enumerate() {
            let i = from as usize + k;
            assert_eq!(r.offset, i as u64);
            assert_eq!(r.record, records[i], "record {i} of read({from}, {n})");
        }
    }
}
