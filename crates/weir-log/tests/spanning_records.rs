//! Records that span several offsets (`Log::append_spanning`, a stream's batch): offsets across
//! segment rolls and reopen, reads starting inside a span, a torn spanning tail, and the roll
//! that keeps a segment's relative offsets inside `u32`.

mod common;

use futures::executor::block_on;
use proptest::prelude::*;
use weir_store::{LogConfig, Record, MAX_RECORD_SPAN};

/// Checks that `log` holds `expected` (record, first offset, span) and that a read from any
/// offset inside a span returns the record holding it first.
fn check(log: &dyn weir_store::Log, expected: &[(Record, u64, u32)]) -> Result<(), TestCaseError> {
    let got = common::read_all(log);
    prop_assert_eq!(got.len(), expected.len());
    for (g, (r, offset, span)) in got.iter().zip(expected) {
        prop_assert_eq!((g.offset, g.span), (*offset, *span));
        prop_assert_eq!(&g.record, r);
    }
    for (r, offset, span) in expected {
        for probe in [
            *offset,
            offset + u64::from(*span) / 2,
            offset + u64::from(*span) - 1,
        ] {
            let one = log.read(probe, 1, 0).expect("read one");
            prop_assert_eq!(one.len(), 1);
            prop_assert_eq!((one[0].offset, &one[0].record), (*offset, r));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn spans_survive_rolls_and_reopen(
        batches in proptest::collection::vec(
            proptest::collection::vec((1u32..300, 0usize..2000), 1..6),
            1..10,
        )
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes: 8 * 1024, ..LogConfig::default() };
        let mut expected: Vec<(Record, u64, u32)> = Vec::new();
        let mut next = 0u64;
        {
            let store = common::open_store(dir.path());
            let log = common::open_log(&store, &config);
            for (b, batch) in batches.iter().enumerate() {
                let records: Vec<Record> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, (_, len))| common::record((b * 10 + i) as u64, *len))
                    .collect();
                let spans: Vec<u32> = batch.iter().map(|(span, _)| *span).collect();
                let a = log.append_spanning(&records, &spans).expect("append");
                prop_assert_eq!(a.first_offset, next);
                for (r, span) in records.into_iter().zip(spans) {
                    expected.push((r, next, span));
                    next += u64::from(span);
                }
                prop_assert_eq!(a.next_offset, next);
                block_on(a.durable).expect("durable");
            }
            check(log.as_ref(), &expected)?;
        }
        let store = common::open_store(dir.path());
        let log = common::open_log(&store, &config);
        prop_assert_eq!(log.stats().next_offset, next);
        check(log.as_ref(), &expected)?;
        let a = log.append(&[common::record(7, 3)]).expect("append after reopen");
        prop_assert_eq!(a.first_offset, next);
    }
}

#[test]
fn a_torn_spanning_tail_is_cut_whole_and_appends_continue_at_its_start() {
    let src = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    let head = common::record(0, 50);
    let tail = common::record(1, 300);
    let head_end = {
        let store = common::open_store(src.path());
        let log = common::open_log(&store, &config);
        let a = log
            .append_spanning(std::slice::from_ref(&head), &[10])
            .expect("head");
        block_on(a.durable).expect("durable");
        let seg = common::segment_files(&common::log_dir(src.path()), "log")[0].clone();
        let head_end = std::fs::metadata(seg).expect("stat").len() as usize;
        let b = log.append_spanning(&[tail], &[500]).expect("tail");
        assert_eq!((b.first_offset, b.next_offset), (10, 510));
        block_on(b.durable).expect("durable");
        head_end
    };
    let seg = common::segment_files(&common::log_dir(src.path()), "log")[0].clone();
    let full = std::fs::read(&seg).expect("read");
    assert!(
        full.len() > head_end + 300,
        "the tail frame follows the head"
    );
    for cut in [head_end, head_end + 1, head_end + 30, full.len() - 1] {
        let work = tempfile::tempdir().expect("tempdir");
        let dir = common::log_dir(work.path());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(seg.file_name().expect("name")), &full[..cut]).expect("write");
        let store = common::open_store(work.path());
        let log = common::open_log(&store, &config);
        assert_eq!(
            log.stats().next_offset,
            10,
            "cut at {cut}: the torn span is gone whole"
        );
        let got = common::read_all(log.as_ref());
        assert_eq!(got.len(), 1, "cut at {cut}");
        assert_eq!((got[0].offset, got[0].span, &got[0].record), (0, 10, &head));
        let a = log.append(&[common::record(2, 5)]).expect("append");
        assert_eq!(a.first_offset, 10, "cut at {cut}");
        block_on(a.durable).expect("durable");
    }
}

/// The sparse index stores offsets relative to the segment's base as `u32`: a segment rolls
/// before a span would carry them past `u32::MAX`, however few bytes it holds.
#[test]
fn a_segment_rolls_before_its_relative_offsets_overflow_u32() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default(); // 64 MiB segments: bytes never force a roll here
    let per_segment = (u64::from(u32::MAX) / u64::from(MAX_RECORD_SPAN)) as usize; // 65_535
    let records: Vec<Record> = (0..per_segment + 2)
        .map(|i| common::record(i as u64, 1))
        .collect();
    let spans = vec![MAX_RECORD_SPAN; records.len()];
    let end = records.len() as u64 * u64::from(MAX_RECORD_SPAN);
    {
        let store = common::open_store(dir.path());
        let log = common::open_log(&store, &config);
        let a = log.append_spanning(&records, &spans).expect("append");
        assert_eq!(a.next_offset, end);
        block_on(a.durable).expect("durable");
        assert_eq!(log.stats().segments, 2);
    }
    let segments = common::segment_files(&common::log_dir(dir.path()), "log");
    assert_eq!(segments.len(), 2);
    let second_base = per_segment as u64 * u64::from(MAX_RECORD_SPAN);
    assert_eq!(
        segments[1].file_stem().and_then(|s| s.to_str()),
        Some(format!("{second_base:020}").as_str())
    );
    let store = common::open_store(dir.path());
    let log = common::open_log(&store, &config);
    assert_eq!(log.stats().next_offset, end);
    for (probe, want) in [
        (0, 0),
        (second_base - 1, per_segment - 1),
        (second_base, per_segment),
        (end - 1, per_segment + 1),
    ] {
        let got = log.read(probe, 1, 0).expect("read");
        assert_eq!(got[0].record, records[want], "read({probe})");
    }
}
