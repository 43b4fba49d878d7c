//! Bit flips. Rule: a damaged record in the last segment that no valid record follows is a torn
//! tail and is cut; a damaged record followed by a valid one, or any damage in a sealed segment,
//! is `Corrupt` naming the file and the byte position of the damaged record.

mod common;

use weir_store::{LogConfig, Store, StoreError};

fn write_records(root: &std::path::Path, config: &LogConfig, n: u64) -> Vec<u64> {
    let store = common::open_store(root);
    let log = common::open_log(&store, config);
    let mut ends = Vec::new();
    for i in 0..n {
        common::append_each(log.as_ref(), &[common::record(i, 100)]);
        let segs = common::segment_files(&common::log_dir(root), "log");
        ends.push(
            std::fs::metadata(segs.last().expect("segment"))
                .expect("stat")
                .len(),
        );
    }
    ends
}

fn flip(path: &std::path::Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at as usize] ^= 0x10;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn flip_in_the_middle_is_corrupt_with_file_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    let ends = write_records(dir.path(), &config, 10);
    let seg = common::segment_files(&common::log_dir(dir.path()), "log")[0].clone();
    let record_start = ends[4]; // record 5 starts where record 4 ends
    flip(&seg, record_start + 30);
    let store = common::open_store(dir.path());
    match store.open_log(&common::name(), &config) {
        Err(StoreError::Corrupt {
            file,
            position,
            reason,
        }) => {
            assert!(file.ends_with("00000000000000000000.log"), "{file}");
            assert_eq!(position, record_start, "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn flip_in_the_length_field_in_the_middle_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    let ends = write_records(dir.path(), &config, 10);
    let seg = common::segment_files(&common::log_dir(dir.path()), "log")[0].clone();
    flip(&seg, ends[2] + 1);
    let store = common::open_store(dir.path());
    assert!(matches!(
        store.open_log(&common::name(), &config),
        Err(StoreError::Corrupt { position, .. }) if position == ends[2]
    ));
}

#[test]
fn flip_in_the_last_record_is_cut_as_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    let ends = write_records(dir.path(), &config, 10);
    let seg = common::segment_files(&common::log_dir(dir.path()), "log")[0].clone();
    flip(&seg, ends[8] + 50);
    let store = common::open_store(dir.path());
    let log = common::open_log(&store, &config);
    assert_eq!(log.stats().next_offset, 9);
    assert_eq!(common::read_all(log.as_ref()).len(), 9);
    assert_eq!(std::fs::metadata(&seg).expect("stat").len(), ends[8]);
}

#[test]
fn flip_in_a_sealed_segment_is_corrupt_even_in_its_last_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    write_records(dir.path(), &config, 100);
    let segs = common::segment_files(&common::log_dir(dir.path()), "log");
    assert!(segs.len() > 2);
    let first = &segs[0];
    let len = std::fs::metadata(first).expect("stat").len();
    flip(first, len - 3);
    let store = common::open_store(dir.path());
    match store.open_log(&common::name(), &config) {
        Err(StoreError::Corrupt { file, .. }) => {
            assert!(file.ends_with("00000000000000000000.log"))
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
