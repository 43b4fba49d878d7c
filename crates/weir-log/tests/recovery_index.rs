//! Index damage: a deleted, truncated or corrupted index is rebuilt; reads stay correct.

mod common;

use futures::executor::block_on;
use weir_store::LogConfig;

fn build(root: &std::path::Path, config: &LogConfig) -> Vec<weir_store::Record> {
    let store = common::open_store(root);
    let log = common::open_log(&store, config);
    let records: Vec<_> = (0..400)
        .map(|i| common::record(i, 300 + (i as usize % 5) * 100))
        .collect();
    for chunk in records.chunks(37) {
        block_on(log.append(chunk).expect("append").durable).expect("durable");
    }
    records
}

fn check(root: &std::path::Path, config: &LogConfig, records: &[weir_store::Record]) {
    let store = common::open_store(root);
    let log = common::open_log(&store, config);
    let all = common::read_all(log.as_ref());
    assert_eq!(all.len(), records.len());
    for (i, r) in all.iter().enumerate() {
        assert_eq!(&r.record, &records[i]);
    }
    for probe in [0u64, 1, 63, 64, 65, 199, 257, 399] {
        assert_eq!(
            log.read(probe, 1, 0).expect("read")[0].record,
            records[probe as usize]
        );
        let ts = records[probe as usize].timestamp_ms;
        assert_eq!(log.offset_for_timestamp(ts).expect("ts"), Some(probe));
    }
}

#[test]
fn damaged_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let records = build(dir.path(), &config);
    let ldir = common::log_dir(dir.path());
    let idx = common::segment_files(&ldir, "idx");
    assert!(idx.len() >= 2, "{idx:?}");
    assert!(
        std::fs::metadata(&idx[0]).expect("stat").len() > 0,
        "entries were written"
    );
    check(dir.path(), &config, &records);

    std::fs::remove_file(&idx[0]).expect("delete");
    check(dir.path(), &config, &records);
    assert!(idx[0].exists(), "rebuilt");

    let mut bytes = std::fs::read(&idx[1]).expect("read");
    bytes[5] ^= 0xff;
    std::fs::write(&idx[1], &bytes).expect("write");
    check(dir.path(), &config, &records);

    let bytes = std::fs::read(&idx[0]).expect("read");
    std::fs::write(&idx[0], &bytes[..bytes.len() - 7]).expect("truncate");
    check(dir.path(), &config, &records);

    std::fs::write(&idx[0], b"").expect("empty");
    check(dir.path(), &config, &records);
}
