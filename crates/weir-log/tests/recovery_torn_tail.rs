//! Torn tail: cut the last segment at every byte across its last records; reopening yields
//! exactly the records before the cut, and appends continue at the right offsets.

mod common;

use futures::executor::block_on;
use weir_store::LogConfig;

#[test]
fn every_cut_in_the_last_records_recovers_the_prefix() {
    let src = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    let records: Vec<_> = (0..20)
        .map(|i| common::record(i, 40 + (i as usize * 7) % 90))
        .collect();
    let mut ends = Vec::new(); // file size after each record
    {
        let store = common::open_store(src.path());
        let log = common::open_log(&store, &config);
        for r in &records {
            common::append_each(log.as_ref(), std::slice::from_ref(r));
            let seg = &common::segment_files(&common::log_dir(src.path()), "log")[0];
            ends.push(std::fs::metadata(seg).expect("stat").len());
        }
    }
    let seg_name = common::segment_files(&common::log_dir(src.path()), "log")[0]
        .file_name()
        .expect("name")
        .to_owned();
    let full = std::fs::read(common::log_dir(src.path()).join(&seg_name)).expect("read");
    assert_eq!(full.len() as u64, *ends.last().expect("records"));
    // Cut at every byte of the last three records (and at the exact end).
    let from = ends[ends.len() - 4];
    let work = tempfile::tempdir().expect("tempdir");
    for cut in from..=full.len() as u64 {
        let root = work.path().join(format!("cut{cut}"));
        let dir = common::log_dir(&root);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(&seg_name), &full[..cut as usize]).expect("write");
        let kept = ends.iter().filter(|e| **e <= cut).count();
        let store = common::open_store(&root);
        let log = common::open_log(&store, &config);
        let stats = log.stats();
        assert_eq!(stats.next_offset, kept as u64, "cut at {cut}");
        assert_eq!(stats.durable_offset, kept as u64, "cut at {cut}");
        let got = common::read_all(log.as_ref());
        assert_eq!(got.len(), kept, "cut at {cut}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.record, records[i], "cut at {cut}");
        }
        let len = std::fs::metadata(dir.join(&seg_name)).expect("stat").len();
        assert_eq!(
            len,
            if kept == 0 { 0 } else { ends[kept - 1] },
            "truncated to the last valid record"
        );
        let extra = common::record(999, 33);
        let a = log
            .append(std::slice::from_ref(&extra))
            .expect("append after recovery");
        assert_eq!(a.first_offset, kept as u64);
        block_on(a.durable).expect("durable");
        drop(log);
        drop(store);
        let store = common::open_store(&root);
        let log = common::open_log(&store, &config);
        let got = common::read_all(log.as_ref());
        assert_eq!(got.len(), kept + 1, "cut at {cut}");
        assert_eq!(got[kept].record, extra);
        drop(log);
        drop(store);
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
