//! Reclamation deletes only whole sealed segments, only below the mark or outside the rules,
//! never the active segment.

mod common;

use futures::executor::block_on;
use weir_store::{LogConfig, Retention, StoreError};

fn fill(log: &dyn weir_store::Log, n: u64) {
    let batch: Vec<_> = (0..n).map(|i| common::record(i, 200)).collect();
    block_on(log.append(&batch).expect("append").durable).expect("durable");
}

#[test]
fn low_water_deletes_whole_segments_below_the_mark_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let store = common::open_store(dir.path());
    let log = common::open_log(&store, &config);
    fill(log.as_ref(), 200);
    let ldir = common::log_dir(dir.path());
    let before = common::segment_files(&ldir, "log");
    assert!(before.len() > 5);
    assert_eq!(log.reclaim(u64::MAX).expect("reclaim").segments, 0);
    log.set_low_water(57).expect("mark");
    let r = log.reclaim(u64::MAX).expect("reclaim");
    let start = log.stats().start_offset;
    assert!(start <= 57 && start > 0, "start {start}");
    assert_eq!(r.start_offset, start);
    let after = common::segment_files(&ldir, "log");
    assert_eq!(after.len() as u64, before.len() as u64 - r.segments);
    assert_eq!(
        common::segment_files(&ldir, "idx").len(),
        after.len() - 1,
        "sealed ones have an index"
    );
    // The first remaining segment is named by the new start; everything from it is readable.
    assert!(after[0].ends_with(format!("{start:020}.log")));
    assert!(matches!(
        log.read(start - 1, 1, 0),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    assert_eq!(common::read_all(log.as_ref()).len() as u64, 200 - start);
    // A mark past the end still never deletes the active segment.
    log.set_low_water(u64::MAX).expect("mark");
    log.reclaim(u64::MAX).expect("reclaim");
    assert_eq!(common::segment_files(&ldir, "log").len(), 1);
    assert_eq!(log.stats().next_offset, 200);
    drop(log);
    drop(store);
    let store = common::open_store(dir.path());
    let log = common::open_log(&store, &config);
    let s = log.stats();
    assert_eq!((s.next_offset, s.segments), (200, 1));
    assert_eq!(
        common::read_all(log.as_ref()).len() as u64,
        200 - s.start_offset
    );
}

#[test]
fn age_and_size_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 4096,
        retention: Retention {
            max_age_ms: Some(1_000),
            max_bytes: None,
        },
        ..LogConfig::default()
    };
    let store = common::open_store(dir.path());
    let log = common::open_log(&store, &config);
    fill(log.as_ref(), 100); // timestamps 1000..1099
                             // At now = 2050 segments whose newest record is older than 1050 go.
    let r = log.reclaim(2_050).expect("reclaim");
    assert!(r.segments > 0);
    let start = log.stats().start_offset;
    let first = log.read(start, 1, 0).expect("read");
    assert!(start <= 50, "start {start}");
    // The segment before the start held only records older than the cut-off.
    assert!(first[0].record.timestamp_ms <= 1_050);
    assert_eq!(log.reclaim(2_050).expect("again").segments, 0, "idempotent");
    drop(log);

    let config = LogConfig {
        segment_bytes: 4096,
        retention: Retention {
            max_age_ms: None,
            max_bytes: Some(10_000),
        },
        ..LogConfig::default()
    };
    let log = store
        .open_log(
            &weir_store::StoreName::parse("sized").expect("name"),
            &config,
        )
        .expect("open");
    fill(log.as_ref(), 200);
    let total = log.stats().bytes;
    assert!(total > 10_000);
    log.reclaim(0).expect("reclaim");
    let s = log.stats();
    assert!(s.bytes <= 10_000 + 4096, "bytes {}", s.bytes);
    assert!(
        s.bytes > 10_000 - 4096,
        "deletes no more than needed: {}",
        s.bytes
    );
}

use weir_store::Store;
